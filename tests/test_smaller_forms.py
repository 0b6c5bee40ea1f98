"""GGUF and scaled-fp8 forms in the advice and the library plan: offered with their sizes beside the
16-bit form for the families ComfyUI loads that way, never for training, run in batch by apply."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import pytest

from sdmodel import advice as advice_mod
from sdmodel.cli import main
from sdmodel.formats import open_model
from sdmodel.inspection import inspect_source
from sdmodel.library.apply import apply_plan
from sdmodel.library.catalog import Catalog
from sdmodel.library.savings import compute_plan
from sdmodel.library.scanning import scan_library
from tests.builders import layout, shrink, with_dtype, write_safetensors, write_sparse_safetensors
from tests.families import t5xxl
from tests.quant_layouts import flux_layout

UNET = "model.diffusion_model."


def _advice(path: Path) -> advice_mod.Advice:
    with open_model(path) as source:
        report = inspect_source(source)
    assert report.advice is not None
    return report.advice


def test_flux_advice_offers_gguf_and_fp8_with_sizes_beside_fp16(tmp_path: Path) -> None:
    src = write_sparse_safetensors(
        tmp_path / "flux1-dev-fp32.safetensors", {UNET + k: (s, "F32") for k, (s, _) in flux_layout().items()}
    )
    adv = _advice(src)
    assert adv.generate is not None and str(adv.generate.target) == "fp16 safetensors"  # never the only option
    assert adv.smaller is not None
    forms = {o.target: o for o in adv.smaller}
    assert list(forms) == ["GGUF Q8_0", "fp8 e4m3fn scaled", "GGUF Q5_K_S", "GGUF Q4_K_S"]
    q8, q4 = forms["GGUF Q8_0"], forms["GGUF Q4_K_S"]
    assert 12.6e9 < (q8.bytes_after or 0) < 12.8e9 and 6.7e9 < (q4.bytes_after or 0) < 6.9e9
    assert "near-lossless" in str(q8.why[0]) and "fits 16 GB GPUs" in str(q8.why[0])
    assert "fits 8 GB GPUs" in str(q4.why[0])
    assert q4.command and q4.command.endswith("--format gguf --quant Q4_K_S")
    assert forms["fp8 e4m3fn scaled"].options == ["--dtype", "fp8_e4m3fn_scaled"]
    # training: fp32, nothing smaller
    assert adv.train is not None and adv.train.options == ["--dtype", "fp32"]
    assert "smaller" in adv.to_dict()


def test_info_prints_the_smaller_forms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_sparse_safetensors(tmp_path / "flux1-dev.safetensors", {UNET + k: v for k, v in flux_layout().items()})
    try:
        main(["info", str(src)])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out.replace("\n", " ")
    assert "already the file you want" in out and "GGUF Q4_K_S: 6.80 GB" in out and "fits 8 GB" in out


def test_no_smaller_forms_where_they_do_not_fit(tmp_path: Path) -> None:
    # an SD1.5 checkpoint is small: any GPU holds its 16-bit form
    assert _advice(write_sparse_safetensors(tmp_path / "sd15.safetensors", layout("sd15"))).smaller is None
    # a text encoder: not a diffusion model ComfyUI-GGUF / the scaled-fp8 writer takes
    assert _advice(write_sparse_safetensors(tmp_path / "t5.safetensors", t5xxl())).smaller is None
    # already fp8: quantized advice keeps the file
    fp8 = {UNET + k: (s, "F8_E4M3") for k, (s, _) in flux_layout().items()}
    assert _advice(write_sparse_safetensors(tmp_path / "flux-fp8.safetensors", fp8)).smaller is None


def test_library_plan_offers_and_apply_runs_a_smaller_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advice_mod, "SMALLER_FROM_BYTES", 0)  # small test models
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "models"
    (root / "unet").mkdir(parents=True)
    (root / "Stable-diffusion").mkdir()
    unet = {k: v for k, v in with_dtype(shrink(layout("sdxl-base")), "F16").items() if k.startswith(UNET)}
    write_safetensors(root / "unet" / "xl-small.safetensors", unet)
    write_safetensors(root / "Stable-diffusion" / "plain.safetensors", shrink(layout("sd15")), seed=2)
    cat = Catalog(tmp_path / "lib.db")
    scan_library(cat, [(root, "comfyui")], jobs=1)
    plan = compute_plan(cat, [])
    assert {o.target for o in plan.offers} >= {"Q8_0", "Q4_K_S", "fp8_e4m3fn_scaled"}
    assert all(i.dtype in ("fp16", "keep") for i in plan.items)  # not chosen: offered only

    cat.set_meta("smaller", "Q8_0")
    plan = compute_plan(cat, [])
    items = {os.path.basename(i.src): i for i in plan.items}
    xl = items["xl-small.safetensors"]
    assert (xl.dtype, os.path.basename(xl.dst), xl.target) == ("gguf:Q8_0", "xl-small-Q8_0.gguf", "GGUF Q8_0")
    assert items["plain.safetensors"].dtype == "fp16"  # a checkpoint does not become GGUF (its other parts)
    assert compute_plan(cat, [str(root / "unet")]).items[0].dtype != "gguf:Q8_0"  # never for training
    cat.store_plan(plan.items)
    stats = apply_plan(cat)
    assert (stats.done, stats.failed) == (2, 0), [i["error"] for i in cat.plan_items()]
    reader = gguf.GGUFReader(root / "unet" / "xl-small-Q8_0.gguf")
    assert reader.fields["general.architecture"].contents() == "sdxl"
    assert {t.tensor_type.name for t in reader.tensors} >= {"Q8_0"}
    assert not (root / "unet" / "xl-small.safetensors").exists()  # in the trash

    cat.set_meta("smaller", "fp8_e4m3fn_scaled")
    scan_library(cat, [(root, "comfyui")], jobs=1)
    plan = compute_plan(cat, [])
    assert [(os.path.basename(i.dst), i.dtype) for i in plan.items] == [
        ("plain-fp8_e4m3fn_scaled.safetensors", "fp8_e4m3fn_scaled")  # the GGUF: already quantized
    ]


def test_library_plan_cli_smaller_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "lib.db"
    Catalog(db).close()
    with pytest.raises(SystemExit) as e:
        main(["library", "plan", "--db", str(db), "--smaller", "Q3_K"])
    assert e.value.code == 2 and "Q8_0, fp8_e4m3fn_scaled, Q5_K_S, Q4_K_S" in capsys.readouterr().err
