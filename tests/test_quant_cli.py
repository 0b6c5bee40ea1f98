"""Quantized files through the product: info (storage, problems, advice), convert (exact
dequantization or a refusal), hostile files at the CLI, and the library's same-model groups."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.quant_files import FLUX_SMALL, flux_values, fp8_scaled, json_tensor, random_blocks, save_torch, write_gguf

torch = pytest.importorskip("torch")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdmodel", *args], capture_output=True, text=True, timeout=180)


# The small Flux with the real widths of the keys identification reads (img_in, the pooled CLIP-L
# input vector_in), so that these files are recognised as Flux.
FLUX_LIKE = FLUX_SMALL | {"img_in.weight": (3072, 64), "img_in.bias": (3072,), "vector_in.in_layer.weight": (3072, 768)}


def flux_like() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    real = {k: s for k, s in FLUX_LIKE.items() if FLUX_SMALL.get(k) != s}
    return flux_values() | {k: (rng.standard_normal(s) * 0.02).astype(np.float32) for k, s in real.items()}


@pytest.fixture
def flux_q(tmp_path):
    values = flux_like()
    types = {k: "Q8_0" for k, v in values.items() if v.ndim == 2}
    types["double_blocks.0.img_mlp.0.weight"] = "Q4_K"
    raw = {"double_blocks.0.img_mlp.0.weight": random_blocks(FLUX_SMALL["double_blocks.0.img_mlp.0.weight"], "Q4_K")}
    return write_gguf(tmp_path / "flux1-dev-Q8_0.gguf", values, types, raw=raw)


@pytest.fixture
def flux_fp8(tmp_path):
    tensors = fp8_scaled(flux_like())
    return save_torch(tmp_path / "flux1-dev-fp8-scaled.safetensors", tensors), tensors


def test_info_reports_storage_and_never_advises_a_larger_file(flux_q, flux_fp8):
    for path, label in ((flux_q, "GGUF Q8_0 (mix: "), (flux_fp8[0], "fp8 e4m3, per-tensor scale (ComfyUI scaled)")):
        r = run("info", str(path), "--json")
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)
        assert (rep["family"], rep["kind"]) == ("flux", "unet")
        unet = rep["components"]["unet"]
        assert unet["storage"].startswith(label), unet["storage"]
        assert 4 < unet["bits_per_weight"] < 16
        gen = rep["advice"]["generate"]
        assert gen.get("saves_bytes", 0) >= 0 and gen["already_optimal"]
        assert any("Q8_0" in w or "fp8" in w for w in gen["why"])
        assert "bf16" in " ".join(rep["advice"]["train"]["why"])
        text = run("info", str(path))
        assert text.returncode == 0 and label.split(" (")[0] in text.stdout


def test_convert_fp8_scaled_dequantizes_with_the_scale(tmp_path, flux_fp8):
    """The bug of the issue: the scale must be applied, scales and marker consumed."""
    from safetensors import safe_open

    path, tensors = flux_fp8
    out = tmp_path / "out.safetensors"
    r = run("convert", str(path), "--dtype", "bf16", "-o", str(out))
    assert r.returncode == 0, r.stderr
    with safe_open(str(out), "pt") as f:
        names = set(f.keys())
        assert names == set(FLUX_LIKE)
        for name in names:
            t = tensors[name]
            scale = tensors.get(name[: -len("weight")] + "scale_weight")
            want = t.to(torch.bfloat16) * scale.to(torch.bfloat16) if scale is not None else t.to(torch.bfloat16)
            assert torch.equal(f.get_tensor(name).view(torch.int16), want.view(torch.int16)), name
        assert "_quantization_metadata" not in (f.metadata() or {})


def test_convert_gguf_matches_gguf_py(tmp_path, flux_q):
    import gguf
    from safetensors import safe_open

    out = tmp_path / "out.safetensors"
    r = run("convert", str(flux_q), "--dtype", "fp32", "-o", str(out))
    assert r.returncode == 0, r.stderr
    ref = gguf.GGUFReader(str(flux_q))
    with safe_open(str(out), "np") as f:
        assert set(f.keys()) == set(FLUX_LIKE)
        for t in ref.tensors:
            want = gguf.quants.dequantize(t.data, t.tensor_type).reshape(FLUX_LIKE[t.name])
            assert np.array_equal(f.get_tensor(t.name).view(np.int32), want.astype(np.float32).view(np.int32))
        assert not any(k.startswith("general.") for k in (f.metadata() or {}))


def test_convert_dry_run_shows_dequantize(flux_fp8):
    r = run("convert", str(flux_fp8[0]), "--dtype", "fp16", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "dequantiz" in r.stdout


@pytest.mark.parametrize(
    "args",
    [[], ["--dtype", "fp8_e4m3fn"], ["--prune"], ["--unet-dtype", "bf16", "--vae-dtype", "fp16", "--dtype", "fp32"]],
    ids=["no dtype", "fp8", "prune only", "mixed"],
)
def test_other_steps_over_quantized_storage_are_refused(tmp_path, flux_fp8, args):
    out = tmp_path / "o.safetensors"
    r = run("convert", str(flux_fp8[0]), "-o", str(out), *args)
    if args and args[-1] == "fp32":
        assert r.returncode == 0, r.stderr  # the quantized part gets one target: fine
        return
    assert r.returncode == 2 and not out.exists()
    assert "quantized" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_hostile_files_at_the_cli(tmp_path):
    bad = tmp_path / "trunc.gguf"
    bad.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (1 << 40).to_bytes(8, "little") + bytes(8))
    r = run("info", str(bad))
    assert r.returncode == 2 and "absurd" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    nojson = save_torch(
        tmp_path / "nojson.safetensors",
        {
            "a.weight": torch.zeros(4, 4, dtype=torch.float8_e4m3fn),
            "a.comfy_quant": torch.tensor(list(b"{x"), dtype=torch.uint8),
        },
    )
    for cmd in (
        ["info", str(nojson)],
        ["convert", str(nojson), "--dtype", "bf16", "-o", str(tmp_path / "x.safetensors")],
    ):
        r = run(*cmd)
        assert r.returncode == 2 and "not valid JSON" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_info_names_load_problems(tmp_path):
    path = save_torch(
        tmp_path / "bad.safetensors",
        {
            "a.weight": torch.zeros(16, 16, dtype=torch.float8_e4m3fn),
            "a.weight_scale": torch.tensor(1.0, dtype=torch.bfloat16),
            "a.comfy_quant": json_tensor({"format": "float8_e4m3fn"}),
        },
    )
    r = run("info", str(path), "--json")
    assert r.returncode == 0, r.stderr
    problems = json.loads(r.stdout)["quantization"]["problems"]
    assert [p["code"] for p in problems] == ["scale-dtype"]


def test_library_groups_precision_copies_not_fine_tunes(tmp_path):
    """bf16, fp8-scaled and Q8_0 copies of one model are one "model" duplicate group; a fine-tune
    of it (and its own fp8 copy) is another; the savings plan never up-casts them."""
    import os

    from sdmodel.library.catalog import Catalog
    from sdmodel.library.report import build_report
    from sdmodel.library.savings import compute_plan
    from sdmodel.library.scanning import scan_library

    root = tmp_path / "models"
    root.mkdir()
    base = flux_values(seed=1)
    rng = np.random.default_rng(2)
    tuned = {k: v + (rng.standard_normal(v.shape) * 2e-4).astype(np.float32) for k, v in base.items()}
    for tag, values in (("base", base), ("tuned", tuned)):
        save_torch(
            root / f"{tag}-bf16.safetensors", {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in values.items()}
        )
        save_torch(root / f"{tag}-fp8.safetensors", fp8_scaled(values))
    write_gguf(root / "base-Q8_0.gguf", base, {k: "Q8_0" for k, v in base.items() if v.ndim == 2})
    cat = Catalog(tmp_path / "lib.db")
    scan_library(cat, [(root, "")], hashes=True, jobs=1)
    rows = {os.path.basename(f["path"]): f for f in cat.all_files()}
    assert rows["base-Q8_0.gguf"]["precision"] == "Q8_0" and rows["base-fp8.safetensors"]["precision"] == "fp8_scaled"
    groups = [(g["level"], sorted(os.path.basename(p) for p in g["files"])) for g in build_report(cat)["duplicates"]]
    assert sorted(groups) == [
        ("model", ["base-Q8_0.gguf", "base-bf16.safetensors", "base-fp8.safetensors"]),
        ("model", ["tuned-bf16.safetensors", "tuned-fp8.safetensors"]),
    ]
    plan = compute_plan(cat)
    assert not any(i["src"].endswith(("fp8.safetensors", ".gguf")) for i in plan.items)
