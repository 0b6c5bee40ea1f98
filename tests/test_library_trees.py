"""Model trees for the library tests (an A1111 install, a ComfyUI install) and the tests of the
walk: install discovery, model roots, sidecars, folders the walk must skip."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from sdmodel.library.walk import category_of, find_installs, normalize_roots, walk_root
from tests.builders import (
    layout,
    renamed,
    shrink,
    with_dtype,
    with_ema,
    write_ckpt,
    write_safetensors,
    write_sparse_safetensors,
)


def vae_layout() -> dict:
    return renamed(
        layout("sd15"), lambda k: k[len("first_stage_model.") :] if k.startswith("first_stage_model.") else None
    )


def lora_layout() -> dict:
    out = {}
    for i in range(2):
        base = f"lora_unet_down_blocks_0_attentions_{i}_transformer_blocks_0_attn2_to_k"
        out[base + ".lora_down.weight"] = ((4, 768), "F16")
        out[base + ".lora_up.weight"] = ((320, 4), "F16")
        out[base + ".alpha"] = ((), "F16")
    return out


def sd2_layout() -> dict:
    """An SD2 checkpoint as the identifier sees it: 1024-wide cross-attention, OpenCLIP-H."""
    lay = {}
    for k, (shape, dt) in layout("sd15").items():
        if k.startswith("cond_stage_model."):
            continue
        if "attn2.to_k" in k or "attn2.to_v" in k:
            shape = (shape[0], 1024)
        if "proj_in" in k or "proj_out" in k:
            shape = shape[:2]
        lay[k] = (shape, dt)
    for i in range(24):
        lay[f"cond_stage_model.model.transformer.resblocks.{i}.attn.in_proj_weight"] = ((3072, 1024), "F32")
    return lay


def evil_pickle(path: Path) -> Path:
    """A pickle naming os.system (written by hand, never loaded)."""
    path.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03.")
    return path


def a1111_tree(base: Path) -> Path:
    """An A1111 install: convertible real files (shrunk), big sparse ones, misplaced, broken and
    malicious files, sidecars."""
    inst = base / "stable-diffusion-webui"
    sd = inst / "models" / "Stable-diffusion"
    for d in (sd, inst / "models" / "VAE", inst / "models" / "Lora", inst / "embeddings"):
        d.mkdir(parents=True)
    (inst / "webui.py").write_text("# not run\n")
    write_safetensors(sd / "dream-fp32-ema.safetensors", shrink(with_ema(layout("sd15"))))
    (sd / "dream-fp32-ema.preview.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (sd / "dream-fp32-ema.civitai.info").write_text('{"id": 1}')
    write_sparse_safetensors(sd / "xl-base.safetensors", with_dtype(layout("sdxl-base"), "F16"))
    write_ckpt(sd / "old.ckpt", shrink(layout("sd15")), seed=3)
    write_sparse_safetensors(sd / "old.safetensors", with_dtype(layout("sd15"), "F16"))
    write_sparse_safetensors(sd / "sd21.safetensors", with_dtype(sd2_layout(), "F16"))
    (sd / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    evil_pickle(sd / "evil.ckpt")
    write_sparse_safetensors(inst / "models" / "VAE" / "vae-ft-mse.safetensors", with_dtype(vae_layout(), "F16"))
    write_sparse_safetensors(inst / "models" / "Lora" / "detail.safetensors", lora_layout())
    write_sparse_safetensors(inst / "models" / "Lora" / "misplaced.safetensors", with_dtype(layout("sd15"), "F16"))
    write_sparse_safetensors(inst / "embeddings" / "style.safetensors", {"emb_params": ((4, 768), "F32")})
    return inst


def comfy_tree(base: Path) -> Path:
    inst = base / "ComfyUI"
    for d in ("checkpoints", "loras", "vae", "embeddings"):
        (inst / "models" / d).mkdir(parents=True)
    (inst / "comfy").mkdir()
    write_sparse_safetensors(inst / "models" / "checkpoints" / "xl.safetensors", with_dtype(layout("sdxl-base"), "F16"))
    write_sparse_safetensors(inst / "models" / "loras" / "detail.safetensors", lora_layout())
    write_sparse_safetensors(inst / "models" / "vae" / "ae.safetensors", vae_layout())
    extra = base / "shared-models" / "loras"
    extra.mkdir(parents=True)
    write_sparse_safetensors(extra / "shared-lora.safetensors", lora_layout())
    (inst / "extra_model_paths.yaml").write_text(
        f"other:\n  base_path: {base / 'shared-models'}\n  loras: |\n    loras\n    missing\n"
    )
    return inst


def test_find_installs_from_cwd_parents_and_home(tmp_path: Path) -> None:
    a1111 = a1111_tree(tmp_path / "a")
    comfy = comfy_tree(tmp_path / "home")
    deep = a1111 / "models" / "Lora"
    found = find_installs(cwd=deep, home=tmp_path / "home")
    assert [(i.path, i.ui) for i in found] == [(a1111, "a1111"), (comfy, "comfyui")]
    assert found[0].roots == (a1111 / "models", a1111 / "embeddings")
    assert found[1].roots == (comfy / "models", tmp_path / "home" / "shared-models" / "loras")
    assert find_installs(cwd=tmp_path, home=tmp_path / "nobody") == []


def test_normalize_roots_drops_nested_and_duplicates(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "a" / "b"
    assert normalize_roots([b, a, a, tmp_path / "c"]) == [a, tmp_path / "c"]


def test_walk_finds_models_sidecars_and_skips_hidden(tmp_path: Path) -> None:
    root = tmp_path / "models"
    sd = root / "Stable-diffusion"
    sd.mkdir(parents=True)
    for name in ("a.safetensors", "a.b.safetensors", "a.vae.pt"):
        write_sparse_safetensors(sd / name, {"w": ((2,), "F32")})
    for name in ("a.png", "a.b.preview.png", "a.yaml", "a.b.civitai.info", "unrelated.txt"):
        (sd / name).write_text("x")
    (root / ".sdmodel-trash").mkdir()
    write_sparse_safetensors(root / ".sdmodel-trash" / "gone.safetensors", {"w": ((2,), "F32")})
    (sd / ".a.sdmodel-tmp.safetensors").write_text("partial")
    pipe = root / "diffusers" / "my-pipe"
    (pipe / "unet").mkdir(parents=True)
    (pipe / "model_index.json").write_text("{}")
    (pipe / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 100)
    os.symlink(root, sd / "loop")  # a cycle must not hang the walk
    found = {f.path.name: f for f in walk_root(root)}
    assert set(found) == {"a.safetensors", "a.b.safetensors", "a.vae.pt", "my-pipe"}
    assert found["a.safetensors"].sidecars == ["a.png", "a.vae.pt", "a.yaml"]
    assert found["a.b.safetensors"].sidecars == ["a.b.civitai.info", "a.b.preview.png"]
    assert found["my-pipe"].is_dir and found["my-pipe"].size == 102
    assert category_of(sd / "a.safetensors", root) == "Stable-diffusion"
    assert category_of(root / "x" / "Lora" / "sub" / "l.safetensors", root) == "Lora"


def test_walk_reads_a_diffusers_component_folder_as_one_model(tmp_path: Path) -> None:
    # config.json with weights beside it: one model, as for 'sdmodel info' (not a loose weight file).
    root = tmp_path / "models"
    comp = root / "VAE" / "sdxl-vae"
    comp.mkdir(parents=True)
    (comp / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    (comp / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 100)
    (root / "VAE" / "notes").mkdir()
    (root / "VAE" / "notes" / "config.json").write_text("{}")  # a config.json alone is not a model
    found = [(f.path, f.is_dir, f.size) for f in walk_root(root)]
    assert found == [(comp, True, 132)]


def test_evil_fixture_is_a_pickle_naming_os_system(tmp_path: Path) -> None:
    data = evil_pickle(tmp_path / "e.ckpt").read_bytes()
    assert b"system" in data and data.startswith(pickle.PROTO + b"\x02")
