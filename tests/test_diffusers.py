"""Diffusers folders read as single-file models: fixtures are the real SD1.5 / SDXL layouts mapped in
reverse to the diffusers layout (sparse files for names/shapes, shrunk files for values)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from sdmodel.errors import ModelReadError
from sdmodel.formats import diffusers_map as dm
from sdmodel.formats import open_model
from sdmodel.formats.diffusers import DiffusersSource, LdmVaeView
from sdmodel.formats.safetensors import SafetensorsSource
from sdmodel.parts import SCHEDULE_KEYS, SD1_TEXT_PREFIX, SD2_TEXT_PREFIX, SDXL_TEXT2_PREFIX, SDXL_TEXT_PREFIX
from tests import builders

# (single-file prefix, diffusers component, mapping role) per family.
PARTS = {
    "sd15": [
        (dm.UNET_PREFIX, "unet", "unet"),
        (dm.VAE_PREFIX, "vae", "vae"),
        (SD1_TEXT_PREFIX, "text_encoder", "clip_l"),
    ],
    "sdxl-base": [
        (dm.UNET_PREFIX, "unet", "unet"),
        (dm.VAE_PREFIX, "vae", "vae"),
        (SDXL_TEXT_PREFIX, "text_encoder", "clip_l"),
        (SDXL_TEXT2_PREFIX, "text_encoder_2", "openclip"),
    ],
}
STRUCTURE = {"sd15": dm.UNET_SD1, "sdxl-base": dm.UNET_SDXL}
UNET_CONFIG = {
    "sd15": {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 768, "in_channels": 4},
    "sdxl-base": {
        "_class_name": "UNet2DConditionModel",
        "cross_attention_dim": 2048,
        "in_channels": 4,
        "addition_embed_type": "text_time",
    },
}
PIPELINE = {"sd15": "StableDiffusionPipeline", "sdxl-base": "StableDiffusionXLPipeline"}
COMPONENT_CONFIG = {
    "vae": {"_class_name": "AutoencoderKL", "_diffusers_version": "0.21.0"},
    "text_encoder": {"architectures": ["CLIPTextModel"], "transformers_version": "4.31.0"},
    "text_encoder_2": {"architectures": ["CLIPTextModelWithProjection"], "transformers_version": "4.31.0"},
}
WEIGHT_FILE = {
    "unet": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
    "text_encoder_2": "model",
}


# ------------------------------------------------------------------------------------ reverse mapping


def clip_l_name(rest: str) -> str:
    """The shared layouts store CLIP-L without ``text_model.`` (except position_ids); real SD1.5 / SDXL
    releases and diffusers use ``text_model.*`` under the prefix, which is what DiffusersSource presents."""
    return rest if rest.startswith("text_model.") else "text_model." + rest


def reverse_layout(family: str, names: list[str]) -> list[tuple[str, str, str, str, int | None]]:
    """(component, diffusers name, layout name, op, q/k/v piece) for every layout tensor diffusers stores."""
    table = dm.unet_table(STRUCTURE[family])
    out = []
    for name in names:
        for prefix, comp, role in PARTS[family]:
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix) :]
            if role == "unet":
                out.append((comp, table.to_diffusers(rest), name, dm.COPY, None))
            elif role == "vae":
                op = dm.CONV1X1 if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", rest) else dm.COPY
                out.append((comp, dm.vae_table().to_diffusers(rest), name, op, None))
            elif role == "clip_l":
                if not rest.endswith("position_ids"):  # transformers >= 4.31 does not save them
                    out.append((comp, clip_l_name(rest), name, dm.COPY, None))
            else:
                hf = dm.openclip_ldm_to_hf(rest)
                if isinstance(hf, tuple):
                    out.extend((comp, h, name, dm.QKV, i) for i, h in enumerate(hf))
                elif hf is not None:
                    op = dm.TRANSPOSE if rest == "text_projection" else dm.COPY
                    out.append((comp, hf, name, op, None))
            break
    assert all(r[1] is not None for r in out)
    return out


def diffusers_shape(op: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if op == dm.CONV1X1:
        return shape[:2]
    if op == dm.QKV:
        return (shape[0] // 3, *shape[1:])
    if op == dm.TRANSPOSE:
        return shape[::-1]
    return shape


def diffusers_value(op: str, a: np.ndarray, piece: int | None) -> np.ndarray:
    if op == dm.CONV1X1:
        return a.reshape(a.shape[:2])
    if op == dm.QKV:
        return np.ascontiguousarray(np.split(a, 3)[piece])
    if op == dm.TRANSPOSE:
        return np.ascontiguousarray(a.T)
    return a


def expected_names(family: str, lay: builders.Layout) -> dict[str, tuple[tuple[int, ...], str]]:
    """What DiffusersSource must present for a folder built from ``lay``: the layout minus the keys
    diffusers does not store, with CLIP-L under ``text_model.`` (see ``clip_l_name``)."""
    text_prefix = dict((comp, prefix) for prefix, comp, _ in PARTS[family])["text_encoder"]
    out = {}
    for name, v in lay.items():
        if name in SCHEDULE_KEYS or name.endswith("position_ids") or name.endswith(".logit_scale"):
            continue
        if name.startswith(text_prefix):
            name = text_prefix + clip_l_name(name[len(text_prefix) :])
        out[name] = v
    return out


def write_configs(root: Path, family: str, comps: list[str]) -> None:
    index = {
        "_class_name": PIPELINE[family],
        "_diffusers_version": "0.21.0",
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "safety_checker": [None, None],
    }
    for comp in comps:
        lib = "diffusers" if comp in ("unet", "vae") else "transformers"
        index[comp] = [lib, "x"]
        (root / comp).mkdir(parents=True, exist_ok=True)
        cfg = UNET_CONFIG[family] if comp == "unet" else COMPONENT_CONFIG[comp]
        (root / comp / "config.json").write_text(json.dumps(cfg))
    (root / "model_index.json").write_text(json.dumps(index))
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": "epsilon"}))
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "vocab.json").write_text("{}")


def build_sparse_folder(root: Path, family: str, lay: builders.Layout) -> Path:
    per: dict[str, builders.Layout] = {}
    for comp, dname, name, op, _ in reverse_layout(family, list(lay)):
        shape, dtype = lay[name]
        per.setdefault(comp, {})[dname] = (diffusers_shape(op, shape), dtype)
    write_configs(root, family, list(per))
    for comp, clay in per.items():
        builders.write_sparse_safetensors(root / comp / f"{WEIGHT_FILE[comp]}.safetensors", clay)
    return root


def small(lay: builders.Layout) -> builders.Layout:
    """Every dimension at most 12 (divisible by 3, so in_proj splits into q/k/v)."""
    return builders.shrink(lay, keep=lambda _: False, limit=12)


def build_value_folder(root: Path, family: str, arrays: dict[str, np.ndarray]) -> Path:
    per: dict[str, dict[str, np.ndarray]] = {}
    for comp, dname, name, op, piece in reverse_layout(family, list(arrays)):
        per.setdefault(comp, {})[dname] = diffusers_value(op, arrays[name], piece)
    write_configs(root, family, list(per))
    for comp, tensors in per.items():
        save_file(tensors, str(root / comp / f"{WEIGHT_FILE[comp]}.safetensors"))
    return root


# ------------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("family", ["sd15", "sdxl-base"])
def test_pipeline_presents_the_layout_names_and_shapes(tmp_path: Path, family: str) -> None:
    lay = builders.layout(family)
    root = build_sparse_folder(tmp_path / "model", family, lay)
    with open_model(root) as src:
        assert isinstance(src, DiffusersSource)
        assert src.format == "diffusers"
        got = {k: (t.shape, t.dtype) for k, t in src.tensors.items()}
        assert got == expected_names(family, lay)
        assert src.metadata == {"_class_name": PIPELINE[family], "_diffusers_version": "0.21.0"}
        comps = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl-base" else [])
        assert src.extras["components"] == comps
        assert src.extras["family"] == {"sd15": "sd1", "sdxl-base": "sdxl"}[family]
        assert src.extras["prediction_type"] == "epsilon"
        assert not [n for n in src.notes if n.code == "diffusers-unmapped"]


def test_expected_differences_are_exactly_the_unstored_keys(tmp_path: Path) -> None:
    """Listed explicitly: what a diffusers SD1.5 folder cannot give back, and what SDXL loses."""
    sd15 = builders.novelai_clip(builders.layout("sd15"))
    with open_model(build_sparse_folder(tmp_path / "a", "sd15", sd15)) as src:
        missing = set(sd15) - set(src.tensors)
        renamed = set(src.tensors) - set(sd15)
    clip_l = {k for k in missing if k.startswith("cond_stage_model.transformer.")}
    assert missing - clip_l == set(SCHEDULE_KEYS) - {"logvar"}
    assert "cond_stage_model.transformer.text_model.embeddings.position_ids" in missing
    assert len(missing) == 12 + 1 + 196  # schedule buffers, position_ids, CLIP-L names without text_model.
    assert {k.replace("text_model.", "", 1) for k in renamed} <= set(sd15)
    real = builders.layout("sd15")  # the release spelling: the folder gives back every CLIP-L name
    with open_model(build_sparse_folder(tmp_path / "c", "sd15", real)) as src:
        assert set(real) - set(src.tensors) == (set(SCHEDULE_KEYS) - {"logvar"}) | {
            "cond_stage_model.transformer.text_model.embeddings.position_ids"
        }
        assert set(src.tensors) <= set(real)
    sdxl = builders.layout("sdxl-base")
    with open_model(build_sparse_folder(tmp_path / "b", "sdxl-base", sdxl)) as src:
        missing = {k for k in set(sdxl) - set(src.tensors) if not k.startswith(SDXL_TEXT_PREFIX)}
        assert missing == {"conditioner.embedders.1.model.logit_scale"}
        assert any(n.code == "diffusers-no-logit-scale" for n in src.notes)


@pytest.mark.parametrize("family", ["sd15", "sdxl-base"])
def test_values_round_trip_bit_exact(tmp_path: Path, family: str) -> None:
    lay = (
        small(builders.with_dtype(builders.layout(family), "F32"))
        if family == "sd15"
        else small(builders.layout(family))
    )
    arrays = builders.arrays(lay, seed=3)
    root = build_value_folder(tmp_path / "model", family, arrays)
    expected = expected_names(family, lay)
    by_presented = {}
    for name in lay:
        presented = name
        text_prefix = PARTS[family][2][0]
        if name.startswith(text_prefix):
            presented = text_prefix + clip_l_name(name[len(text_prefix) :])
        by_presented[presented] = name
    with DiffusersSource(root) as src:
        assert set(src.tensors) == set(expected)
        for name, info in src.tensors.items():
            a = src.read(name)
            want = arrays[by_presented[name]]
            assert a.shape == info.shape == want.shape, name
            assert a.dtype == want.dtype
            assert a.tobytes() == want.tobytes(), name
        # the tensors that need more than a rename
        vq = "first_stage_model.decoder.mid.attn_1.q.weight"
        assert src.tensors[vq].shape[2:] == (1, 1)
        assert src.source_of(vq)[0][1] == "decoder.mid_block.attentions.0.to_q.weight"
        if family == "sdxl-base":
            ip = "conditioner.embedders.1.model.transformer.resblocks.5.attn.in_proj_weight"
            assert [p for _, p in src.source_of(ip)] == [
                f"text_model.encoder.layers.5.self_attn.{c}_proj.weight" for c in "qkv"
            ]
            tp = "conditioner.embedders.1.model.text_projection"
            raw = src.source_of(tp)
            assert raw[0][1] == "text_projection.weight"
            with SafetensorsSource(raw[0][0]) as te2:
                assert np.array_equal(te2.read("text_projection.weight").T, src.read(tp))


def test_sdxl_openclip_shapes_at_full_size(tmp_path: Path) -> None:
    lay = builders.layout("sdxl-base")
    with open_model(build_sparse_folder(tmp_path / "m", "sdxl-base", lay)) as src:
        t = src.tensors
        block = "conditioner.embedders.1.model.transformer.resblocks.31."
        assert t[block + "attn.in_proj_weight"].shape == (3840, 1280)
        assert t["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_bias"].shape == (3840,)
        assert t["conditioner.embedders.1.model.text_projection"].dtype == "F16"
        te2 = tmp_path / "m" / "text_encoder_2" / "model.safetensors"
        with SafetensorsSource(te2) as raw:
            assert "text_model.encoder.layers.0.self_attn.q_proj.weight" in raw.tensors
            assert raw.tensors["text_model.encoder.layers.0.self_attn.q_proj.weight"].shape == (1280, 1280)


def test_known_names_from_the_conversion_tables() -> None:
    """Spot checks written from the published tables, independent of the generated prefix tables."""
    sd1 = {
        "conv_in.weight": "input_blocks.0.0.weight",
        "time_embedding.linear_2.bias": "time_embed.2.bias",
        "down_blocks.0.attentions.1.proj_in.weight": "input_blocks.2.1.proj_in.weight",
        "down_blocks.1.resnets.0.conv_shortcut.weight": "input_blocks.4.0.skip_connection.weight",
        "down_blocks.2.downsamplers.0.conv.weight": "input_blocks.9.0.op.weight",
        "down_blocks.3.resnets.1.conv2.weight": "input_blocks.11.0.out_layers.3.weight",
        "mid_block.resnets.1.time_emb_proj.weight": "middle_block.2.emb_layers.1.weight",
        "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight": "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
        "up_blocks.0.resnets.2.norm1.bias": "output_blocks.2.0.in_layers.0.bias",
        "up_blocks.0.upsamplers.0.conv.weight": "output_blocks.2.1.conv.weight",
        "up_blocks.2.upsamplers.0.conv.bias": "output_blocks.8.2.conv.bias",
        "up_blocks.3.attentions.2.proj_out.weight": "output_blocks.11.1.proj_out.weight",
        "conv_norm_out.weight": "out.0.weight",
        "conv_out.bias": "out.2.bias",
    }
    table = dm.unet_table(dm.UNET_SD1)
    assert {k: table.to_ldm(k) for k in sd1} == sd1
    sdxl = {
        "add_embedding.linear_1.weight": "label_emb.0.0.weight",
        "down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight": "input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight",
        "up_blocks.0.upsamplers.0.conv.weight": "output_blocks.2.2.conv.weight",
        "up_blocks.1.upsamplers.0.conv.weight": "output_blocks.5.2.conv.weight",
        "up_blocks.2.resnets.2.conv1.weight": "output_blocks.8.0.in_layers.2.weight",
    }
    table = dm.unet_table(dm.UNET_SDXL)
    assert {k: table.to_ldm(k) for k in sdxl} == sdxl
    vae = {
        "encoder.down_blocks.1.resnets.0.conv_shortcut.weight": "encoder.down.1.block.0.nin_shortcut.weight",
        "encoder.down_blocks.0.downsamplers.0.conv.bias": "encoder.down.0.downsample.conv.bias",
        "decoder.up_blocks.0.resnets.2.conv1.weight": "decoder.up.3.block.2.conv1.weight",
        "decoder.up_blocks.0.upsamplers.0.conv.weight": "decoder.up.3.upsample.conv.weight",
        "decoder.up_blocks.3.resnets.0.norm1.weight": "decoder.up.0.block.0.norm1.weight",
        "decoder.mid_block.resnets.1.conv2.weight": "decoder.mid.block_2.conv2.weight",
        "encoder.mid_block.attentions.0.group_norm.weight": "encoder.mid.attn_1.norm.weight",
        "encoder.mid_block.attentions.0.to_out.0.weight": "encoder.mid.attn_1.proj_out.weight",
        "decoder.mid_block.attentions.0.query.bias": "decoder.mid.attn_1.q.bias",  # diffusers < 0.14
        "decoder.mid_block.attentions.0.proj_attn.weight": "decoder.mid.attn_1.proj_out.weight",
        "encoder.conv_norm_out.bias": "encoder.norm_out.bias",
        "post_quant_conv.weight": "post_quant_conv.weight",
    }
    assert {k: dm.vae_table().to_ldm(k) for k in vae} == vae
    assert dm.vae_table().to_ldm("decoder.something_else.weight") is None
    plan = dm.plan_openclip(
        [
            "text_model.encoder.layers.3.layer_norm2.bias",
            "text_model.encoder.layers.3.mlp.fc1.weight",
            "text_model.encoder.layers.3.mlp.fc2.bias",
            "text_model.encoder.layers.3.self_attn.out_proj.weight",
            "text_model.final_layer_norm.weight",
            "text_model.embeddings.position_ids",
        ],
        "p.",
    )
    assert [m.target for m in plan.mappings] == [
        "p.transformer.resblocks.3.ln_2.bias",
        "p.transformer.resblocks.3.mlp.c_fc.weight",
        "p.transformer.resblocks.3.mlp.c_proj.bias",
        "p.transformer.resblocks.3.attn.out_proj.weight",
        "p.ln_final.weight",
    ]
    assert plan.dropped == ["text_model.embeddings.position_ids"]


def test_vae_helpers() -> None:
    # the mid-attention linear weights (and only they) become 1x1 convolutions
    plan = dm.plan_vae(
        [
            "encoder.mid_block.attentions.0.to_k.weight",
            "decoder.mid_block.attentions.0.to_out.0.weight",
            "decoder.mid_block.attentions.0.to_q.bias",
            "decoder.up_blocks.0.resnets.0.conv1.weight",
        ]
    )
    assert [m.op for m in plan.mappings] == [dm.CONV1X1, dm.CONV1X1, dm.COPY, dm.COPY]
    vae_names = [k[len(dm.VAE_PREFIX) :] for k in builders.layout("sd15") if k.startswith(dm.VAE_PREFIX)]
    assert not dm.looks_like_diffusers_vae(vae_names)
    assert dm.looks_like_diffusers_vae([dm.vae_table().to_diffusers(k) for k in vae_names])
    assert not dm.looks_like_diffusers_vae(["model.diffusion_model.input_blocks.0.0.weight"])


def vae_folder(tmp_path: Path, dtype: str = "F32", name: str = "diffusion_pytorch_model.safetensors"):
    lay = small(
        builders.with_dtype({k: v for k, v in builders.layout("sd15").items() if k.startswith(dm.VAE_PREFIX)}, dtype)
    )
    arrays = {k[len(dm.VAE_PREFIX) :]: a for k, a in builders.arrays(lay, seed=5).items()}
    table = dm.vae_table()
    diff = {
        table.to_diffusers(k): (a.reshape(a.shape[:2]) if a.ndim == 4 and "attn_1" in k else a)
        for k, a in arrays.items()
    }
    folder = tmp_path / "vae"
    folder.mkdir(exist_ok=True)
    config = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.20.0"}
    (folder / "config.json").write_text(json.dumps(config))
    save_file(diff, str(folder / name))
    return folder, arrays


def test_lone_vae_folder(tmp_path: Path) -> None:
    folder, arrays = vae_folder(tmp_path)
    with open_model(folder) as src:
        assert src.format == "diffusers"
        assert set(src.tensors) == set(arrays)  # LDM names, no first_stage_model.
        assert src.metadata == {"_class_name": "AutoencoderKL", "_diffusers_version": "0.20.0"}
        assert src.extras["components"] == ["vae"] and src.extras["family"] == "vae"
        for k, a in arrays.items():
            assert src.read(k).tobytes() == a.tobytes() and src.tensors[k].shape == a.shape
        assert src.tensors["encoder.conv_in.weight"].shape == (12, 3, 3, 3)
        assert src.tensors["decoder.mid.attn_1.v.weight"].shape == (12, 12, 1, 1)


def test_ldm_vae_view_of_a_diffusers_vae_file(tmp_path: Path) -> None:
    folder, arrays = vae_folder(tmp_path)
    with LdmVaeView(open_model(folder / "diffusion_pytorch_model.safetensors"), dm.VAE_PREFIX) as view:
        assert set(view.tensors) == {dm.VAE_PREFIX + k for k in arrays}
        k = "decoder.mid.attn_1.proj_out.weight"
        assert view.read(dm.VAE_PREFIX + k).tobytes() == arrays[k].tobytes()
        assert view.tensors[dm.VAE_PREFIX + k].shape == arrays[k].shape


def test_fp16_variant_prefers_full_precision(tmp_path: Path) -> None:
    folder, _ = vae_folder(tmp_path)
    vae_folder(tmp_path, "F16", "diffusion_pytorch_model.fp16.safetensors")
    with open_model(folder) as src:
        assert {t.dtype for t in src.tensors.values()} == {"F32"}
        assert src.extras["files"] == ["diffusion_pytorch_model.safetensors"]
        assert any(n.code == "diffusers-variant" and "fp16" in str(n.message) for n in src.notes)
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    with open_model(folder) as src:
        assert {t.dtype for t in src.tensors.values()} == {"F16"}
        assert not any(n.code == "diffusers-variant" for n in src.notes)


def test_fp16_variant_in_a_pipeline(tmp_path: Path) -> None:
    lay = builders.with_dtype(builders.layout("sd15"), "F16")
    root = build_sparse_folder(tmp_path / "m", "sd15", lay)
    for comp, base in WEIGHT_FILE.items():
        f = root / comp / f"{base}.safetensors"
        if f.exists():
            f.rename(f.with_name(f"{base}.fp16.safetensors"))
    with open_model(root) as src:
        assert {(k, t.shape, t.dtype) for k, t in src.tensors.items()} == {
            (k, s, d) for k, (s, d) in expected_names("sd15", lay).items()
        }


def test_sharded_component(tmp_path: Path) -> None:
    lay = builders.layout("sd15")
    root = build_sparse_folder(tmp_path / "m", "sd15", lay)
    unet = root / "unet" / "diffusion_pytorch_model.safetensors"
    with SafetensorsSource(unet) as s:
        items = {k: (t.shape, t.dtype) for k, t in s.tensors.items()}
    unet.unlink()
    names = sorted(items)
    shards = {
        "diffusion_pytorch_model-00001-of-00002.safetensors": names[::2],
        "diffusion_pytorch_model-00002-of-00002.safetensors": names[1::2],
    }
    for fname, part in shards.items():
        builders.write_sparse_safetensors(root / "unet" / fname, {k: items[k] for k in part})
    index = {"metadata": {}, "weight_map": {k: f for f, part in shards.items() for k in part}}
    index_path = root / "unet" / "diffusion_pytorch_model.safetensors.index.json"
    index_path.write_text(json.dumps(index))
    with open_model(root) as src:
        assert {k: (t.shape, t.dtype) for k, t in src.tensors.items()} == expected_names("sd15", lay)
        assert src.extras["files"][:2] == [f"unet/{f}" for f in shards]
    index["weight_map"]["extra.weight"] = "diffusion_pytorch_model-00003-of-00002.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(ModelReadError, match=r"shard .* is missing"):
        open_model(root)
    index["weight_map"]["extra.weight"] = "../vae/diffusion_pytorch_model.safetensors"
    index_path.write_text(json.dumps(index))
    with pytest.raises(ModelReadError, match="not a file name"):
        open_model(root)


def test_hf_cache_symlinks(tmp_path: Path) -> None:
    """Hugging Face cache snapshots hold symlinks to blobs elsewhere: followed like files."""
    folder, arrays = vae_folder(tmp_path)
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.rename(blobs / "3f2a")
    weights.symlink_to(Path("..") / "blobs" / "3f2a")
    with open_model(folder) as src:
        assert set(src.tensors) == set(arrays)


def test_sharded_values(tmp_path: Path) -> None:
    folder, arrays = vae_folder(tmp_path)
    whole = folder / "diffusion_pytorch_model.safetensors"
    with SafetensorsSource(whole) as s:
        data = {k: s.read(k) for k in s.tensors}
    whole.unlink()
    names = sorted(data)
    shard = "diffusion_pytorch_model-0000{}-of-00002.safetensors"
    save_file({k: data[k] for k in names[:50]}, str(folder / shard.format(1)))
    save_file({k: data[k] for k in names[50:]}, str(folder / shard.format(2)))
    wm = {k: shard.format(1 if i < 50 else 2) for i, k in enumerate(names)}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    with open_model(folder) as src:
        assert set(src.tensors) == set(arrays)
        assert all(src.read(k).tobytes() == a.tobytes() for k, a in arrays.items())


def test_broken_folders_give_clean_errors(tmp_path: Path) -> None:
    folder = tmp_path / "vae"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(ModelReadError, match=r"config\.json but no weight file"):
        open_model(folder)
    root = build_sparse_folder(tmp_path / "m", "sd15", builders.layout("sd15"))
    (root / "text_encoder" / "model.safetensors").unlink()
    with pytest.raises(ModelReadError, match=r"text_encoder: config\.json but no weight file"):
        open_model(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelReadError, match="not a diffusers folder"):
        open_model(empty)
    (empty / "model_index.json").write_text("{not json")
    with pytest.raises(ModelReadError, match=r"model_index\.json: cannot read JSON"):
        open_model(empty)
    (empty / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ModelReadError, match="no weight files"):
        open_model(empty)
    truncated = tmp_path / "t" / "vae"
    truncated.mkdir(parents=True)
    (truncated / "config.json").write_text("{}")
    (truncated / "diffusion_pytorch_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(ModelReadError):
        open_model(truncated)


def test_unknown_architecture_is_kept_unmapped(tmp_path: Path) -> None:
    root = tmp_path / "sd3"
    index = {
        "_class_name": "StableDiffusion3Pipeline",
        "_diffusers_version": "0.29.0",
        "transformer": ["diffusers", "SD3Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (root / "transformer").mkdir(parents=True)
    (root / "vae").mkdir()
    (root / "model_index.json").write_text(json.dumps(index))
    (root / "transformer" / "config.json").write_text(json.dumps({"_class_name": "SD3Transformer2DModel"}))
    (root / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    builders.write_sparse_safetensors(
        root / "transformer" / "diffusion_pytorch_model.safetensors",
        {
            "joint_blocks.0.x_block.attn.qkv.weight": ((4608, 1536), "F16"),
            "x_embedder.proj.weight": ((1536, 16, 2, 2), "F16"),
        },
    )
    builders.write_sparse_safetensors(
        root / "vae" / "diffusion_pytorch_model.safetensors", {"encoder.conv_in.weight": ((128, 3, 3, 3), "F32")}
    )
    with open_model(root) as src:
        assert set(src.tensors) == {
            "vae.encoder.conv_in.weight",
            "transformer.joint_blocks.0.x_block.attn.qkv.weight",
            "transformer.x_embedder.proj.weight",
        }
        assert src.extras["components"] == ["vae", "transformer"]
        notes = [n for n in src.notes if n.code == "diffusers-no-mapping"]
        assert notes and "StableDiffusion3Pipeline" in str(notes[0].message)


def test_sd2_text_encoder_and_extra_components(tmp_path: Path) -> None:
    """SD2: OpenCLIP-H under cond_stage_model.model. (23 layers); position_ids dropped; safety checker
    skipped; a component without a single-file name kept under its folder name."""
    root = tmp_path / "sd2"
    te: builders.Layout = {
        "text_model.embeddings.token_embedding.weight": ((49408, 1024), "F32"),
        "text_model.embeddings.position_embedding.weight": ((77, 1024), "F32"),
        "text_model.embeddings.position_ids": ((1, 77), "I64"),
        "text_model.final_layer_norm.weight": ((1024,), "F32"),
    }
    for i in range(23):
        for c in "qkvo":
            proj = "out_proj" if c == "o" else f"{c}_proj"
            te[f"text_model.encoder.layers.{i}.self_attn.{proj}.weight"] = ((1024, 1024), "F32")
            te[f"text_model.encoder.layers.{i}.self_attn.{proj}.bias"] = ((1024,), "F32")
    unet = {
        "conv_in.weight": ((320, 9, 3, 3), "F32"),
        "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": ((320, 1024), "F32"),
    }
    index = {
        "_class_name": "StableDiffusionInpaintPipeline",
        "_diffusers_version": "0.8.0",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    for comp, clay in (
        ("unet", unet),
        ("text_encoder", te),
        ("safety_checker", {"x.weight": ((3,), "F32")}),
        ("image_encoder", {"vision_model.post_layernorm.weight": ((1280,), "F32")}),
    ):
        (root / comp).mkdir(parents=True)
        (root / comp / "config.json").write_text("{}")  # no cross_attention_dim: read from the shapes
        fname = "diffusion_pytorch_model" if comp == "unet" else "model"
        builders.write_sparse_safetensors(root / comp / f"{fname}.safetensors", clay)
    (root / "model_index.json").write_text(json.dumps(index))
    with open_model(root) as src:
        t = src.tensors
        assert src.extras["family"] == "sd2"
        assert src.extras["components"] == ["unet", "text_encoder", "image_encoder"]
        assert t["model.diffusion_model.input_blocks.0.0.weight"].shape == (320, 9, 3, 3)
        to_k = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
        assert t[to_k].shape == (320, 1024)
        assert t["cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight"].shape == (3072, 1024)
        assert t["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_bias"].shape == (3072,)
        assert t["cond_stage_model.model.positional_embedding"].shape == (77, 1024)
        assert t["cond_stage_model.model.ln_final.weight"].shape == (1024,)
        assert "image_encoder.vision_model.post_layernorm.weight" in t
        assert not any("position_ids" in k or "safety" in k for k in t)
        codes = {n.code for n in src.notes}
        assert {
            "diffusers-sd2-text-layers",
            "diffusers-dropped",
            "diffusers-skipped",
            "diffusers-unmapped",
            "diffusers-missing-component",
        } <= codes
        n_text = sum(1 for k in t if k.startswith(SD2_TEXT_PREFIX))
        assert n_text == 23 * 4 + 3


def test_clip_l_position_ids_kept_when_stored(tmp_path: Path) -> None:
    """Files saved by transformers < 4.31 carry position_ids: presented as an SD1 checkpoint has them."""
    lay = builders.layout("sd15")
    root = build_sparse_folder(tmp_path / "m", "sd15", lay)
    te = root / "text_encoder" / "model.safetensors"
    with SafetensorsSource(te) as s:
        items = {k: (t.shape, t.dtype) for k, t in s.tensors.items()}
    items["text_model.embeddings.position_ids"] = ((1, 77), "I64")
    builders.write_sparse_safetensors(te, items)
    with open_model(root) as src:
        info = src.tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"]
        assert (info.shape, info.dtype) == ((1, 77), "I64")


def test_single_text_encoder_and_unet_folders(tmp_path: Path) -> None:
    te = tmp_path / "text_encoder"
    te.mkdir()
    config = {"architectures": ["CLIPTextModel"], "transformers_version": "4.40"}
    (te / "config.json").write_text(json.dumps(config))
    builders.write_sparse_safetensors(
        te / "model.safetensors", {"text_model.encoder.layers.0.mlp.fc1.weight": ((3072, 768), "F32")}
    )
    with open_model(te) as src:
        assert list(src.tensors) == ["text_model.encoder.layers.0.mlp.fc1.weight"]
        assert src.metadata == {"_class_name": "CLIPTextModel", "transformers_version": "4.40"}
    unet = tmp_path / "unet"
    unet.mkdir()
    (unet / "config.json").write_text(json.dumps(UNET_CONFIG["sdxl-base"]))
    builders.write_sparse_safetensors(
        unet / "diffusion_pytorch_model.safetensors",
        {"add_embedding.linear_1.weight": ((1280, 2816), "F16"), "conv_in.weight": ((320, 4, 3, 3), "F16")},
    )
    with open_model(unet) as src:
        assert set(src.tensors) == {"label_emb.0.0.weight", "input_blocks.0.0.weight"}
        assert src.extras["family"] == "sdxl"


def test_pickle_weights_are_read_through_open_model(tmp_path: Path) -> None:
    pytest.importorskip("sdmodel.formats.torch_zip")
    folder, _ = vae_folder(tmp_path)
    st = folder / "diffusion_pytorch_model.safetensors"
    with SafetensorsSource(st) as s:
        lay = {k: (t.shape, t.dtype) for k, t in s.tensors.items()}
    st.unlink()
    builders.write_ckpt(folder / "diffusion_pytorch_model.bin", lay, wrap=())
    with open_model(folder) as src:
        k = "decoder.mid.attn_1.q.weight"
        assert src.tensors[k].shape == (12, 12, 1, 1)
        assert math.prod(src.read(k).shape) == 144


def test_sdxl_refiner_bigg_only(tmp_path: Path) -> None:
    root = tmp_path / "refiner"
    (root / "unet").mkdir(parents=True)
    (root / "text_encoder_2").mkdir()
    (root / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None]})
    )
    (root / "unet" / "config.json").write_text(
        json.dumps({"cross_attention_dim": 1280, "addition_embed_type": "text_time"})
    )
    (root / "text_encoder_2" / "config.json").write_text("{}")
    builders.write_sparse_safetensors(
        root / "unet" / "diffusion_pytorch_model.safetensors",
        {"conv_in.weight": ((384, 4, 3, 3), "F16"), "add_embedding.linear_1.weight": ((1536, 2560), "F16")},
    )
    builders.write_sparse_safetensors(
        root / "text_encoder_2" / "model.safetensors", {"text_projection.weight": ((1280, 1280), "F16")}
    )
    with open_model(root) as src:
        assert src.extras["family"] == "sdxl_refiner"
        assert set(src.tensors) == {
            "model.diffusion_model.input_blocks.0.0.weight",
            "model.diffusion_model.label_emb.0.0.weight",
            "conditioner.embedders.0.model.text_projection",
        }
        assert not any(n.code == "diffusers-missing-component" for n in src.notes)
