"""sdmodel.convert / extract and the CLI, on SD-shaped files written by safetensors and torch.save."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import sdmodel
from sdmodel.cli import main_group
from sdmodel.conversion import ConvertOptions, convert, default_output, extract
from sdmodel.errors import ConversionError
from tests import families
from tests.builders import default_keep, shrink, with_ema, write_ckpt, write_safetensors

POS = "cond_stage_model.transformer.text_model.embeddings.position_ids"


def keep(name: str) -> bool:
    """Real shapes for what identification probes (the old CLIP-L names included)."""
    return default_keep(name) or name.endswith("encoder.layers.11.self_attn.q_proj.weight")


def sd15(tmp_path: Path, name: str = "model.safetensors", ema: bool = True, metadata=None, lay=None) -> Path:
    lay = shrink(lay or families.sd1(), keep=keep)
    if ema:
        lay = with_ema(lay)  # after shrinking: EMA shapes equal the UNet's
    path = tmp_path / name
    if name.endswith(".safetensors"):
        return write_safetensors(path, lay, metadata)
    return write_ckpt(path, lay)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_all(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def test_public_api_names() -> None:
    assert sdmodel.convert is convert and sdmodel.extract is extract
    from sdmodel.diffing import diff

    assert sdmodel.diff is diff


def test_same_tensors_as_the_peer_path(tmp_path: Path) -> None:
    """torch.load + drop EMA + .half() + safetensors.torch.save_file (what the A1111 converter does)."""
    torch = pytest.importorskip("torch")
    import safetensors.torch

    src = sd15(tmp_path, "model.ckpt")
    before = sha(src)
    sd = torch.load(str(src), weights_only=True)["state_dict"]
    peer = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items() if not k.startswith("model_ema.")}
    safetensors.torch.save_file(peer, str(tmp_path / "peer.safetensors"))
    r = convert(src, dtype="fp16", ema="drop", verify=True)
    assert r.output == tmp_path / "model-fp16-noema.safetensors" and r.write.verified
    ours, theirs = read_all(r.output), read_all(tmp_path / "peer.safetensors")
    assert set(ours) == set(theirs)
    for k in ours:
        if k in families.sd1() and k.count(".") == 0:  # noise schedule: kept fp32 on purpose
            assert ours[k].dtype == np.float32
            continue
        assert ours[k].dtype == theirs[k].dtype and np.array_equal(ours[k].view(np.uint8), theirs[k].view(np.uint8)), k
    assert sha(src) == before


def test_ckpt_output_loads_with_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    src = sd15(tmp_path, ema=False)
    r = convert(src, format="ckpt", dtype="bf16", verify=True)
    assert r.output.name == "model-bf16.ckpt"
    sd = torch.load(str(r.output), weights_only=True)["state_dict"]
    ref = read_all(src)
    assert set(sd) == set(ref)
    k = "model.diffusion_model.input_blocks.0.0.weight"
    assert torch.equal(sd[k], torch.from_numpy(ref[k]).bfloat16())
    assert sd[POS].dtype == torch.int64


def test_fp8_clamps_and_counts(tmp_path: Path) -> None:
    lay = shrink(families.sd1())
    from tests.builders import arrays

    arrs = arrays(lay)
    k = "model.diffusion_model.input_blocks.0.0.weight"
    arrs[k] = arrs[k].copy()
    arrs[k].reshape(-1)[:5] = [500, -1000, 448, np.inf, 3]
    from safetensors.numpy import save_file

    save_file(arrs, str(tmp_path / "m.safetensors"))
    r = convert(tmp_path / "m.safetensors", dtype="fp8_e4m3fn", verify=True)
    assert r.clamped[k] == 3
    assert any(f"clamped 3 values of {k}" in n for n in map(str, r.notes))
    from sdmodel.formats import open_model

    with open_model(r.output) as out:
        v = out.read(k).astype(np.float32).reshape(-1)
        assert list(v[:4]) == [448, -448, 448, 448] and not np.isnan(v).any()
        assert out.tensors["model.diffusion_model.input_blocks.0.0.bias"].dtype == "F16"
        assert out.tensors["alphas_cumprod"].dtype == "F32"


def test_metadata_kept_modelspec_added_and_hash_correct(tmp_path: Path) -> None:
    src = sd15(tmp_path, ema=False, metadata={"ss_note": "kept", "modelspec.title": "My model"})
    r = convert(src, dtype="fp16", meta=["modelspec.author=me"])
    from safetensors import safe_open

    with safe_open(str(r.output), "np") as f:
        md = f.metadata()
    assert md["ss_note"] == "kept" and md["modelspec.title"] == "My model" and md["modelspec.author"] == "me"
    assert md["modelspec.sai_model_spec"] == "1.0.0" and md["modelspec.implementation"] == "sgm"
    assert md["modelspec.architecture"] == "stable-diffusion-v1" and md["modelspec.resolution"] == "512x512"
    raw = r.output.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert md["modelspec.hash_sha256"] == "0x" + hashlib.sha256(raw[8 + n :]).hexdigest()
    assert r.metadata == md
    r2 = convert(src, tmp_path / "bare.safetensors", no_meta=True)
    with safe_open(str(r2.output), "np") as f:
        assert not f.metadata()


def test_naming_overwrite_and_input_refusal(tmp_path: Path) -> None:
    src = sd15(tmp_path, "my.model.v1.safetensors", ema=True)
    assert default_output(src, ["fp16", "noema"], "safetensors").name == "my.model.v1-fp16-noema.safetensors"
    assert default_output(tmp_path / "a.ckpt", [], "safetensors").name == "a.safetensors"
    assert default_output(src, [], "safetensors").name == "my.model.v1-converted.safetensors"
    r = convert(src, ema="drop", dtype="fp16")
    assert r.output.name == "my.model.v1-fp16-noema.safetensors"
    before = sha(r.output)
    with pytest.raises(ConversionError, match="already exists"):
        convert(src, ema="drop", dtype="fp16")
    assert sha(r.output) == before
    convert(src, ema="drop", dtype="fp16", overwrite=True)
    with pytest.raises(ConversionError, match="onto the input"):
        convert(src, src, overwrite=True)


def test_precision_tags_come_first_in_the_name(tmp_path: Path) -> None:
    """fp8 names contain an underscore; per-part ones carry a prefix: both still lead the name."""
    src = tmp_path / "m.safetensors"
    assert default_output(src, ["noema", "fp8_e4m3fn"], "safetensors").name == "m-fp8_e4m3fn-noema.safetensors"
    tags = ["noema", "pruned", "te_fp8_e5m2", "unet_bf16"]
    assert default_output(src, tags, "safetensors").name == "m-te_fp8_e5m2-unet_bf16-noema-pruned.safetensors"


def test_options_object_and_keywords_are_the_same(tmp_path: Path) -> None:
    src = sd15(tmp_path, ema=True)
    options = ConvertOptions(dtype="fp16", ema="drop", dry_run=True)
    by_object = convert(src, None, options)
    by_keywords = convert(src, dtype="fp16", ema="drop", dry_run=True)
    assert by_object.to_dict() == by_keywords.to_dict()
    assert convert(src, None, options, dtype="bf16").output.name == "model-bf16-noema.safetensors"
    with pytest.raises(TypeError):
        convert(src, dtyp="fp16")
    with pytest.raises(ConversionError, match="--format"):
        ConvertOptions(format="zip")


def test_ema_only_fails_loudly_from_cli(tmp_path: Path) -> None:
    src = sd15(tmp_path, ema=False)
    res = CliRunner().invoke(main_group, ["convert", str(src), "--ema", "only"])
    assert res.exit_code != 0 and "no EMA weights" in str(res.exception or res.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_clip_broken_kept_then_fixed(tmp_path: Path) -> None:
    from tests.builders import arrays

    arrs = arrays(shrink(families.sd1()))
    ids = np.arange(77, dtype=np.float32)
    ids[76] = 75.9975
    arrs[POS] = ids.reshape(1, 77)
    from safetensors.numpy import save_file

    save_file(arrs, str(tmp_path / "m.safetensors"))
    kept = convert(tmp_path / "m.safetensors", dtype="fp16")
    assert read_all(kept.output)[POS].dtype == np.int64 and read_all(kept.output)[POS][0, 76] == 75
    fixed = convert(tmp_path / "m.safetensors", dtype="fp16", fix_clip=True)
    assert fixed.output.name == "m-fp16-clipfix.safetensors"
    assert np.array_equal(read_all(fixed.output)[POS], np.arange(77).reshape(1, 77))
    assert any("fixed position ids at 1 position [76]" in n for n in map(str, fixed.notes))


def test_vae_bake_from_pt_replace_and_remove(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    src = sd15(tmp_path, ema=False)
    ref = read_all(src)
    vae = {
        k[len("first_stage_model.") :]: torch.from_numpy(v) * 2
        for k, v in ref.items()
        if k.startswith("first_stage_model.")
    }
    torch.save({"state_dict": vae}, str(tmp_path / "vae.pt"))
    r = convert(src, vae=tmp_path / "vae.pt", dtype="fp16")
    out = read_all(r.output)
    k = "first_stage_model.decoder.conv_in.weight"
    assert np.array_equal(out[k], (vae["decoder.conv_in.weight"].numpy()).astype(np.float16))
    assert r.output.name == "model-fp16-vae.safetensors"
    novae = convert(src, remove_vae=True)
    assert not any(k.startswith("first_stage_model.") for k in read_all(novae.output))
    assert novae.vae_after == "none"
    bad = dict(vae)
    bad["decoder.conv_in.weight"] = torch.zeros(3)
    torch.save(bad, str(tmp_path / "bad.pt"))
    with pytest.raises(ConversionError, match="has shape"):
        convert(src, vae=tmp_path / "bad.pt")


@pytest.mark.parametrize(
    ("part", "probe"),
    [
        ("vae", "decoder.conv_in.weight"),
        ("unet", "input_blocks.0.0.weight"),
        ("text_encoder", "text_model.embeddings.position_ids"),
    ],
)
def test_extract_parts(tmp_path: Path, part: str, probe: str) -> None:
    src = sd15(tmp_path, ema=True)
    r = extract(src, part)
    assert r.output.name == "model-" + {"text_encoder": "te1"}.get(part, part) + ".safetensors"
    names = set(read_all(r.output))
    assert probe in names
    assert not any(n.startswith(("model.", "first_stage_model.", "cond_stage_model.", "model_ema.")) for n in names)
    from sdmodel.formats import open_model
    from sdmodel.identify import identify

    with open_model(r.output) as out:
        assert identify(out).kind == {"vae": "vae", "unet": "unet", "text_encoder": "text_encoder"}[part]


def test_extract_sdxl_text_encoder_2_keeps_openclip_names(tmp_path: Path) -> None:
    src = write_safetensors(tmp_path / "xl.safetensors", shrink(families.sdxl(), keep=lambda k: False))
    r = extract(src, "text_encoder_2")
    names = set(read_all(r.output))
    assert "transformer.resblocks.0.attn.in_proj_weight" in names and "text_projection" in names


def test_yaml_copied_and_sd2_yaml_written(tmp_path: Path) -> None:
    src = sd15(tmp_path, ema=False)
    (tmp_path / "model.yaml").write_text("model: {}\n")
    r = convert(src, dtype="fp16")
    assert r.yaml == tmp_path / "model-fp16.yaml" and r.yaml.read_text() == "model: {}\n"

    sd2 = write_safetensors(tmp_path / "sd21.safetensors", shrink(families.sd2()))
    unknown = convert(sd2, dtype="fp16")
    assert unknown.yaml is None and any("--prediction v" in n for n in map(str, unknown.notes))
    r2 = convert(sd2, dtype="bf16", prediction="v")
    import yaml

    cfg = yaml.safe_load(r2.yaml.read_text())
    assert r2.yaml.name == "sd21-bf16.yaml"
    assert cfg["model"]["params"]["parameterization"] == "v"
    assert cfg["model"]["params"]["unet_config"]["params"]["context_dim"] == 1024
    assert r2.metadata["modelspec.prediction_type"] == "v"
    assert r2.metadata["modelspec.architecture"] == "stable-diffusion-v2-768-v"
    r3 = convert(sd2, dtype="fp32", prediction="epsilon")
    assert "parameterization" not in yaml.safe_load(r3.yaml.read_text())["model"]["params"]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path: Path) -> None:
    src = sd15(tmp_path, ema=True)
    res = CliRunner().invoke(
        main_group,
        ["convert", str(src), "--dtype", "fp16", "--ema", "drop", "--prune", "--dry-run"],
        terminal_width=200,
    )
    assert res.exit_code == 0, res.output
    assert "F32 -> F16" in res.output and "688" in res.output and "dry run: nothing written" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    res = CliRunner().invoke(main_group, ["convert", str(src), "--dtype", "fp16", "--dry-run", "--json"])
    data = json.loads(res.output)
    assert data["dry_run"] and data["bytes_after"] < data["bytes_before"]


def test_cli_convert_verify_and_ckpt(tmp_path: Path) -> None:
    src = sd15(tmp_path, "m.ckpt", ema=True)
    res = CliRunner().invoke(main_group, ["convert", str(src), "--dtype", "fp16", "--ema", "drop", "--verify"])
    assert res.exit_code == 0, res.output
    assert "verified bit for bit" in res.output and (tmp_path / "m-fp16-noema.safetensors").exists()


def test_recursive_skips_earlier_outputs(tmp_path: Path) -> None:
    d = tmp_path / "models"
    (d / "sub").mkdir(parents=True)
    sd15(d, "a.safetensors", ema=False)
    sd15(d / "sub", "b.safetensors", ema=False)
    runner = CliRunner()
    res = runner.invoke(main_group, ["convert", str(d), "--recursive", "--dtype", "fp16"])
    assert res.exit_code == 0, res.output
    assert (d / "a-fp16.safetensors").exists() and (d / "sub" / "b-fp16.safetensors").exists()
    assert "2 converted" in res.output
    res = runner.invoke(main_group, ["convert", str(d), "--recursive", "--dtype", "fp16"])
    assert "0 converted" in res.output and "4 skipped" in res.output
    res = runner.invoke(main_group, ["convert", str(d), "--dtype", "fp16"])
    assert res.exit_code != 0 and "--recursive" in res.output


def test_vae_from_diffusers_layout(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from sdmodel.formats.diffusers_map import vae_table_for

    src = sd15(tmp_path, ema=False)
    ref = read_all(src)
    ldm = {k[len("first_stage_model.") :]: v for k, v in ref.items() if k.startswith("first_stage_model.")}
    table = vae_table_for([])
    diffusers = {}
    for k, v in ldm.items():
        name = table.to_diffusers(k)
        assert name is not None, k
        diffusers[name] = (v.reshape(v.shape[:2]) if v.ndim == 4 and v.shape[2:] == (1, 1) else v) * 3
    save_file(diffusers, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    r = convert(src, tmp_path / "baked.safetensors", vae=tmp_path / "diffusion_pytorch_model.safetensors")
    out = read_all(r.output)
    for k, v in ldm.items():
        assert np.array_equal(out["first_stage_model." + k], v * 3), k


def test_progress_callback_reaches_the_total(tmp_path: Path) -> None:
    src = sd15(tmp_path, ema=False)
    calls: list[tuple[int, int]] = []
    r = convert(src, dtype="fp16", progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] == r.bytes_after
    assert calls == sorted(calls)


def test_extract_ema_unet_from_cli(tmp_path: Path) -> None:
    src = sd15(tmp_path, ema=True)
    res = CliRunner().invoke(main_group, ["extract", str(src), "--part", "unet", "--ema", "only", "--dtype", "fp16"])
    assert res.exit_code == 0, res.output
    out = read_all(tmp_path / "model-fp16-emaonly-unet.safetensors")
    ref = read_all(src)
    k = "input_blocks.0.0.weight"
    assert np.array_equal(out[k], ref["model_ema.diffusion_modelinput_blocks00weight"].astype(np.float16))


def test_diffusers_folder_to_single_file(tmp_path: Path) -> None:
    from tests.builders import arrays
    from tests.test_diffusers import build_value_folder, small

    arrs = arrays(small(families.sd1()))
    root = build_value_folder(tmp_path / "my-model", "sd15", arrs)
    r = convert(root, dtype="fp16")
    assert r.output == tmp_path / "my-model-fp16.safetensors"
    out = read_all(r.output)
    k = "model.diffusion_model.input_blocks.1.1.proj_in.weight"
    assert np.array_equal(out[k], arrs[k].astype(np.float16))
    k = "first_stage_model.decoder.mid.attn_1.q.weight"
    assert out[k].shape == arrs[k].shape and np.array_equal(out[k], arrs[k].astype(np.float16))


def test_sd2_inpainting_yaml_needs_no_prediction(tmp_path: Path) -> None:
    lay = families.sd2()
    lay["model.diffusion_model.input_blocks.0.0.weight"] = ((320, 9, 3, 3), "F32")
    src = write_safetensors(tmp_path / "inpaint.safetensors", shrink(lay))
    r = convert(src, dtype="fp16")
    import yaml

    cfg = yaml.safe_load(r.yaml.read_text())
    assert cfg["model"]["target"] == "ldm.models.diffusion.ddpm.LatentInpaintDiffusion"
    assert cfg["model"]["params"]["unet_config"]["params"]["in_channels"] == 9
