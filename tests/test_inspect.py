"""The inspection report: parts, EMA, CLIP position ids, junk, markers, sidecars, advice."""

from __future__ import annotations

import numpy as np
import pytest

import sdmodel
from tests import families as fam
from tests.builders import arrays, shrink, with_dtype, with_ema, write_safetensors

CLIP_KEY = "cond_stage_model.transformer.text_model.embeddings.position_ids"


def test_full_sd15_with_ema_report(sparse):
    report = sdmodel.inspect(sparse(with_ema(fam.sd1())))
    d = report.to_dict()
    assert (d["kind"], d["family"], d["format"]) == ("checkpoint", "sd1", "safetensors")
    assert set(d["components"]) == {"unet", "ema", "vae", "text_encoder", "schedule"}
    assert d["components"]["unet"]["tensors"] == 686
    assert d["components"]["unet"]["dtypes"] == {"F32": 686}
    assert d["ema"] == {
        "present": True,
        "tensors": 688,
        "bytes": d["components"]["ema"]["bytes"],
        "unet_covered": 686,
        "unet_total": 686,
        "complete": True,
    }
    gen = d["advice"]["generate"]
    assert gen["options"] == ["--dtype", "fp16", "--ema", "drop"]
    # fp16 without EMA: about a quarter of the fp32 full file
    assert 0.26 < gen["bytes_after"] / d["size_bytes"] < 0.29
    assert d["advice"]["train"]["options"] == ["--dtype", "fp32", "--ema", "keep"]


def test_partial_ema_is_reported(sparse):
    d = sdmodel.inspect(sparse(with_ema(fam.sd1(), fraction=0.5))).to_dict()
    assert d["ema"]["present"] and not d["ema"]["complete"]
    assert d["ema"]["unet_covered"] == 343


def test_single_set_has_no_ema(sparse):
    d = sdmodel.inspect(sparse(with_dtype(fam.sd1(), "F16"))).to_dict()
    assert d["ema"]["present"] is False
    assert "--ema" not in d["advice"]["generate"]["options"]
    assert any("no fp32" in w for w in d["advice"]["train"]["why"])


def _with_values(tmp_path, lay, name="m.safetensors", override=None):
    tensors = arrays(shrink(lay))
    tensors.update(override or {})
    path = tmp_path / name
    from safetensors.numpy import save_file

    save_file(tensors, str(path))
    return path


def test_clip_ok(tmp_path):
    d = sdmodel.inspect(_with_values(tmp_path, fam.sd1())).to_dict()
    assert d["clip_position_ids"]["status"] == "ok"


def test_clip_broken_float_merge(tmp_path):
    ids = np.arange(77, dtype=np.float32)
    ids[76] = 75.9975
    ids[40] = 39.9999
    path = _with_values(tmp_path, fam.sd1(), override={CLIP_KEY: ids.reshape(1, 77)})
    clip = sdmodel.inspect(path).to_dict()["clip_position_ids"]
    assert clip["status"] == "broken"
    assert [(b["position"], b["loader_sees"]) for b in clip["broken"]] == [(40, 39), (76, 75)]
    assert clip["broken"][1]["value"] == pytest.approx(75.9975, abs=1e-4)


def test_clip_missing_and_absent(sparse, tmp_path):
    no_ids = {k: v for k, v in fam.sd1().items() if "position_ids" not in k}
    assert sdmodel.inspect(sparse(no_ids)).to_dict()["clip_position_ids"]["status"] == "missing"
    assert (
        sdmodel.inspect(sparse(fam.sd2(), name="sd2.safetensors")).to_dict()["clip_position_ids"]["status"] == "absent"
    )


def test_clip_novelai_names(tmp_path):
    path = _with_values(tmp_path, fam.sd1_novelai())
    clip = sdmodel.inspect(path).to_dict()["clip_position_ids"]
    assert clip["status"] == "ok" and clip["key"] == "cond_stage_model.transformer.embeddings.position_ids"


def test_junk_markers_and_unknown_keys(sparse):
    lay = fam.sd1() | {
        "embedding_manager.embedder.x": ((4,), "F32"),
        "lora_unet_foo.lora_down.weight": ((4, 4), "F32"),
        "first_stage_model.loss.discriminator.main.0.weight": ((64, 3, 4, 4), "F32"),
        "v_pred": ((), "F32"),
        "ztsnr": ((), "F32"),
        "something.else": ((2,), "F32"),
    }
    d = sdmodel.inspect(sparse(lay)).to_dict()
    assert d["kind"] == "checkpoint"
    assert d["junk"]["tensors"] == 3
    assert set(d["junk"]["groups"]) == {
        "textual-inversion training leftover",
        "VAE training discriminator",
        "LoRA weights merged into the checkpoint by accident",
    }
    assert d["markers"] == ["v_pred", "ztsnr"] or sorted(d["markers"]) == ["v_pred", "ztsnr"]
    assert d["unknown_keys"] == ["something.else"]
    assert d["prediction"] == "v"
    assert "--prune" in d["advice"]["generate"]["options"]


def test_sidecars(sparse, tmp_path):
    path = sparse(fam.sd2(), name="model.v2.safetensors")
    for name in ("model.v2.yaml", "model.v2.preview.png", "model.v2.civitai.info", "model.v2.vae.pt", "other.yaml"):
        (tmp_path / name).write_text("x")
    d = sdmodel.inspect(path).to_dict()
    kinds = {s["kind"] for s in d["sidecars"]}
    assert kinds == {"config", "preview", "civitai", "vae"}
    assert not any("needs a config" in n for n in d["notes"])


def test_sd2_without_yaml_says_so(sparse):
    d = sdmodel.inspect(sparse(fam.sd2())).to_dict()
    assert any("needs a config" in n for n in d["notes"])


def test_vae_fingerprint_is_dtype_independent(tmp_path):
    lay = shrink(fam.sd1())
    a = write_safetensors(tmp_path / "a.safetensors", lay)
    b = write_safetensors(tmp_path / "b.safetensors", with_dtype(lay, "F16"))
    fa = sdmodel.inspect(a).to_dict()["vae"]
    fb = sdmodel.inspect(b).to_dict()["vae"]
    assert fa["present"] and fa["fingerprint"] == fb["fingerprint"]
    assert fa["name"] == "unknown"


def test_standalone_parts_are_one_component(sparse):
    d = sdmodel.inspect(sparse(fam.vae_only())).to_dict()
    assert d["kind"] == "vae" and set(d["components"]) == {"vae"}
    d = sdmodel.inspect(sparse(fam.lora_kohya(), name="l.safetensors")).to_dict()
    assert d["kind"] == "lora" and set(d["components"]) == {"lora"}


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("ema", [True, False])
def test_torch_checkpoints_every_precision(tmp_path, dtype, ema):
    from tests.builders import write_ckpt

    lay = with_dtype(shrink(fam.sd1()), dtype)
    if ema:
        lay = with_ema(lay)
    path = write_ckpt(tmp_path / "m.ckpt", lay)
    d = sdmodel.inspect(path).to_dict()
    assert (d["format"], d["kind"], d["family"]) == ("torch-zip", "checkpoint", "sd1")
    assert d["components"]["unet"]["dtypes"] == {dtype: 686}
    assert d["ema"]["present"] is ema and d["ema"]["complete"] is ema
    assert d["clip_position_ids"]["status"] == "ok"


@pytest.mark.parametrize(
    ("wrap", "legacy"), [((), False), (("state_dict", "state_dict"), False), (("state_dict",), True)]
)
def test_torch_checkpoint_wrappings(tmp_path, wrap, legacy):
    from tests.builders import write_ckpt

    path = write_ckpt(tmp_path / "m.ckpt", shrink(fam.sd1_novelai()), wrap=wrap, legacy=legacy)
    d = sdmodel.inspect(path).to_dict()
    assert (d["kind"], d["family"]) == ("checkpoint", "sd1")
    assert d["format"] == ("torch-legacy" if legacy else "torch-zip")
    assert d["clip_position_ids"]["key"] == "cond_stage_model.transformer.embeddings.position_ids"


def test_torch_checkpoint_broken_clip(tmp_path):
    import torch

    from tests.builders import torch_tensors

    state = torch_tensors(shrink(fam.sd1()))
    ids = torch.arange(77, dtype=torch.float32)
    ids[76] = 75.9975
    state[CLIP_KEY] = ids.reshape(1, 77)
    path = tmp_path / "merge.ckpt"
    torch.save({"state_dict": state}, str(path))
    clip = sdmodel.inspect(path).to_dict()["clip_position_ids"]
    assert clip["status"] == "broken" and clip["broken"][0]["loader_sees"] == 75


@pytest.mark.parametrize(
    ("dtype", "generate_dtype"),
    [("F32", "fp16"), ("F16", None), ("BF16", None), ("F8_E4M3", None)],
)
def test_generating_advice_never_grows_the_file(sparse, dtype, generate_dtype):
    """One policy (advice.generating_dtype): fp32 becomes fp16; bf16 and fp8 keep their precision."""
    d = sdmodel.inspect(sparse(with_dtype(fam.sd1(), dtype))).to_dict()
    gen = d["advice"]["generate"]
    assert (gen["options"][1] if gen["options"][:1] == ["--dtype"] else None) == generate_dtype
    assert gen["bytes_after"] <= d["size_bytes"]
    assert gen["already_optimal"] == (generate_dtype is None)


def test_generating_policy_cases():
    from sdmodel.advice import generating_dtype, weight_dtypes

    assert generating_dtype({"F32"}) == "fp16"
    assert generating_dtype({"F32", "F16"}) == "fp16"
    assert generating_dtype({"F32", "F8_E4M3"}) is None  # fp8 weights would double in size
    assert generating_dtype({"BF16"}) is None
    assert generating_dtype(set()) is None
    assert weight_dtypes({"unet": ["F16"], "schedule": ["F32"], "marker": ["I64"], "junk": ["F32"]}) == {"F16"}
