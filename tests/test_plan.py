"""Plan steps on SD-shaped in-memory sources: what each option decides, before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from sdmodel.conversion import build_plan
from sdmodel.errors import ConversionError
from sdmodel.formats.base import DictSource
from sdmodel.parts import SCHEDULE_KEYS, UNET_PREFIX, ema_key
from sdmodel.plan import extract_name
from tests import families
from tests.builders import arrays, novelai_clip, shrink, with_ema

POS = "cond_stage_model.transformer.text_model.embeddings.position_ids"


def small(lay) -> dict[str, np.ndarray]:
    return arrays(shrink(lay, keep=lambda k: False))


def source(arrs: dict[str, np.ndarray], name: str = "model.safetensors") -> DictSource:
    return DictSource(arrs, name)


def steps(plan) -> dict:
    return {s.out: s for s in plan.steps}


def test_keep_everything_by_default() -> None:
    src = source(small(families.sd1()))
    plan = build_plan(src)
    assert [s.out for s in plan.steps] == list(src.tensors)
    assert {s.action for s in plan.steps} == {"keep"}
    assert plan.in_bytes == plan.out_bytes and not plan.dropped and not plan.tags


def test_fp16_casts_floats_only_schedules_markers_and_ints_stay() -> None:
    arrs = small(families.sd1())
    arrs["v_pred"] = np.zeros((), np.float32)
    plan = build_plan(source(arrs), dtype="fp16")
    by = steps(plan)
    assert by["model.diffusion_model.input_blocks.0.0.weight"].out_dtype == "F16"
    assert by["model.diffusion_model.input_blocks.0.0.weight"].action == "cast"
    for k in SCHEDULE_KEYS & set(by):
        assert by[k].out_dtype == "F32"
    assert by["v_pred"].out_dtype == "F32" and by["v_pred"].action == "keep"
    assert by[POS].out_dtype == "I64"
    assert plan.tags == ["fp16"]


def test_fp32_really_upcasts_fp16() -> None:
    arrs = {k: (v.astype(np.float16) if v.dtype == np.float32 else v) for k, v in small(families.sd1()).items()}
    plan = build_plan(source(arrs), dtype="fp32")
    assert {s.out_dtype for s in plan.steps if s.dtype == "F16"} == {"F32"}
    assert steps(plan)["alphas_cumprod"].out_dtype == "F32"  # an explicit fp32 also up-casts schedules


def test_fp8_only_matrices_1d_in_fp16() -> None:
    plan = build_plan(source(small(families.sd1())), dtype="fp8_e4m3fn")
    for s in plan.steps:
        if s.part in ("schedule",) or s.dtype == "I64":
            continue
        if len(s.shape) >= 2:
            assert s.out_dtype == "F8_E4M3" and s.action == "clamp-cast", s.out
        else:
            assert s.out_dtype == "F16", s.out


@pytest.mark.parametrize("spelling", [novelai_clip, lambda lay: lay], ids=["novelai-clip", "release-clip"])
def test_per_part_dtypes(spelling) -> None:
    plan = build_plan(
        source(small(with_ema(spelling(families.sd1()))), "m.ckpt"),
        dtype="fp16",
        unet_dtype="bf16",
        vae_dtype="fp32",
        te_dtype="fp8_e5m2",
    )
    by = steps(plan)
    assert by["model.diffusion_model.out.2.weight"].out_dtype == "BF16"
    assert by[ema_key("model.diffusion_model.out.2.weight")].out_dtype == "BF16"
    assert by["first_stage_model.decoder.conv_in.weight"].out_dtype == "F32"
    te = "cond_stage_model.transformer." + ("text_model." if spelling is not novelai_clip else "")
    assert by[te + "encoder.layers.0.mlp.fc1.weight"].out_dtype == "F8_E5M2"
    assert plan.tags == ["fp16", "te_fp8_e5m2", "unet_bf16", "vae_fp32"]


def test_ema_drop() -> None:
    plan = build_plan(source(small(with_ema(families.sd1()))), ema="drop")
    assert not any(s.out.startswith("model_ema.") for s in plan.steps)
    assert {d.name for d in plan.dropped} >= {"model_ema.decay", "model_ema.num_updates"}
    assert "noema" in plan.tags


def test_ema_only_takes_ema_values_under_unet_names() -> None:
    arrs = small(with_ema(families.sd1()))
    plan = build_plan(source(arrs), ema="only")
    by = steps(plan)
    k = "model.diffusion_model.input_blocks.0.0.weight"
    assert by[k].name == ema_key(k) and by[k].action == "rename"
    assert not any(s.out.startswith("model_ema.") for s in plan.steps)
    assert len([s for s in plan.steps if s.out.startswith(UNET_PREFIX)]) == len(
        [n for n in arrs if n.startswith(UNET_PREFIX)]
    )


def test_ema_only_fails_loudly_without_ema() -> None:
    with pytest.raises(ConversionError, match="no EMA weights"):
        build_plan(source(small(families.sd1())), ema="only")


def test_ema_only_partial_needs_permission() -> None:
    src = source(small(with_ema(families.sd1(), fraction=0.5)))
    with pytest.raises(ConversionError, match=r"EMA covers only 343 of 686 UNet tensors"):
        build_plan(src, ema="only")
    plan = build_plan(src, ema="only", allow_partial_ema=True)
    renamed = [s for s in plan.steps if s.name.startswith("model_ema.")]
    assert len(renamed) == 343
    assert any("343 UNet tensors keep their normal weights" in n for n in map(str, plan.notes))


def test_prune_drops_junk_keeps_markers_and_reports_groups() -> None:
    arrs = small(families.sd1())
    arrs["embedding_manager.embedder.x"] = np.zeros(3, np.float32)
    arrs["lora_unet_down_blocks_0.lora_up.weight"] = np.zeros((2, 2), np.float32)
    arrs["first_stage_model.loss.discriminator.main.0.weight"] = np.zeros(4, np.float32)
    arrs["v_pred"] = np.zeros((), np.float32)
    arrs["ztsnr"] = np.zeros((), np.float32)
    arrs["mystery.tensor"] = np.zeros(2, np.float32)
    plan = build_plan(source(arrs), prune=True)
    by = steps(plan)
    assert "v_pred" in by and "ztsnr" in by and "mystery.tensor" in by
    assert not any(k.startswith(("embedding_manager.", "lora_unet_", "first_stage_model.loss.")) for k in by)
    text = "\n".join(map(str, plan.notes))
    assert "textual-inversion training leftover" in text and "VAE training discriminator" in text
    assert "1 unknown key kept" in text


def test_drop_prefix_never_drops_markers() -> None:
    arrs = small(families.sd1())
    arrs["model.diffusion_model.scaled_fp8"] = np.zeros((), np.float32)
    plan = build_plan(source(arrs), drop=["model.diffusion_model."])
    unet = [s.out for s in plan.steps if s.out.startswith("model.diffusion_model.")]
    assert unet == ["model.diffusion_model.scaled_fp8"]
    assert "dropped" in plan.tags


def broken_clip(dtype=np.float32) -> dict[str, np.ndarray]:
    arrs = small(families.sd1())
    ids = np.arange(77, dtype=np.float32)
    ids[76] = 75.9975
    ids[40] = 39.99
    arrs[POS] = ids.reshape(1, 77).astype(dtype)
    return arrs


def test_clip_broken_kept_as_loaders_see_them() -> None:
    src = source(broken_clip())
    plan = build_plan(src, dtype="fp16")
    s = steps(plan)[POS]
    assert s.out_dtype == "I64" and s.action == "fix"
    seen = s.fix(src.read(POS))
    assert seen.dtype == np.int64 and seen[0, 76] == 75 and seen[0, 40] == 39 and seen[0, 5] == 5
    assert any("broken at 2 positions [40, 76]" in n for n in map(str, plan.notes))


def test_clip_fix_writes_arange_and_reports() -> None:
    src = source(broken_clip())
    plan = build_plan(src, fix_clip=True)
    s = steps(plan)[POS]
    assert np.array_equal(s.fix(src.read(POS)), np.arange(77).reshape(1, 77))
    assert any("fixed position ids at 2 positions [40, 76]" in n for n in map(str, plan.notes))
    assert "clipfix" in plan.tags


def test_clip_missing_key_never_added() -> None:
    arrs = small(families.sd1())
    del arrs[POS]
    plan = build_plan(source(arrs), fix_clip=True)
    assert not any("position_ids" in s.out for s in plan.steps)
    plan2 = build_plan(source(small(families.sd2())), fix_clip=True)  # OpenCLIP has no such key
    assert not any("position_ids" in s.out for s in plan2.steps)


def test_vae_replace_and_mismatch() -> None:
    arrs = small(families.sd1())
    vae = {k[len("first_stage_model.") :]: v + 1 for k, v in arrs.items() if k.startswith("first_stage_model.")}
    plan = build_plan(source(arrs), vae=source(vae, "vae.safetensors"))
    by = steps(plan)
    s = by["first_stage_model.decoder.conv_in.weight"]
    assert s.source == "vae" and s.name == "decoder.conv_in.weight" and s.action == "replace"
    assert "vae" in plan.tags
    prefixed = {"first_stage_model." + k: v for k, v in vae.items()}
    assert build_plan(source(arrs), vae=source(prefixed, "v2.safetensors")).steps
    wrong = dict(vae)
    wrong["decoder.conv_in.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ConversionError, match="has shape"):
        build_plan(source(arrs), vae=source(wrong, "v3.safetensors"))
    missing = dict(vae)
    del missing["decoder.conv_in.weight"]
    with pytest.raises(ConversionError, match="does not match"):
        build_plan(source(arrs), vae=source(missing, "v4.safetensors"))
    with pytest.raises(ConversionError, match="not a VAE"):
        build_plan(source(arrs), vae=source({"x": np.zeros(2, np.float32)}, "v5.safetensors"))


def test_remove_vae() -> None:
    plan = build_plan(source(small(families.sd1())), remove_vae=True)
    assert not any(s.part == "vae" for s in plan.steps) and "novae" in plan.tags


@pytest.mark.parametrize(
    ("name", "part", "expected"),
    [
        ("first_stage_model.decoder.conv_in.weight", "vae", "decoder.conv_in.weight"),
        ("vae.decoder.conv_in.weight", "vae", "decoder.conv_in.weight"),
        ("model.diffusion_model.out.2.weight", "unet", "out.2.weight"),
        (
            "cond_stage_model.transformer.text_model.final_layer_norm.weight",
            "text_encoder",
            "text_model.final_layer_norm.weight",
        ),
        ("cond_stage_model.transformer.embeddings.position_ids", "text_encoder", "text_model.embeddings.position_ids"),
        (
            "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
            "text_encoder",
            "transformer.resblocks.0.attn.in_proj_weight",
        ),
        (
            "conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight",
            "text_encoder",
            "text_model.encoder.layers.0.mlp.fc1.weight",
        ),
        ("conditioner.embedders.1.model.text_projection", "text_encoder_2", "text_projection"),
    ],
)
def test_extract_names(name: str, part: str, expected: str) -> None:
    assert extract_name(name, part) == expected


def test_extract_keeps_one_part() -> None:
    plan = build_plan(source(small(with_ema(families.sd1()))), part="unet", ema="drop")
    assert all(not s.out.startswith(("model.", "first_stage_model.")) for s in plan.steps)
    assert "out.2.weight" in steps(plan)
    with pytest.raises(ConversionError, match="no text_encoder_2"):
        build_plan(source(small(families.sd1())), part="text_encoder_2")
