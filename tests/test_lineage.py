"""SDXL bases (Pony, Illustrious, NoobAI) and v-prediction from what was written about a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdmodel.lineage import lineage


def test_modelspec_wins_over_the_file_name(tmp_path: Path) -> None:
    f = tmp_path / "ponyRealism.safetensors"
    f.write_bytes(b"x")
    got = lineage({"modelspec.title": "NoobAI XL v-pred 1.0"}, set(), f)
    assert (got.base, got.base_source) == ("noobai", "modelspec.title metadata")
    assert (got.v_prediction, got.v_source) == (True, "modelspec.title metadata")
    assert any("sd_xl_v.yaml" in s for s in got.settings)


def test_kohya_metadata() -> None:
    got = lineage({"ss_sd_model_name": "illustriousXL_v01.safetensors", "ss_v_parameterization": "false"}, set())
    assert (got.base, got.base_source) == ("illustrious", "kohya ss_sd_model_name metadata")
    assert got.v_prediction is None


def test_markers_decide_prediction_and_zsnr() -> None:
    got = lineage({}, {"v_pred", "ztsnr"})
    assert (got.v_prediction, got.v_source) == (True, "v_pred marker tensor")
    assert (got.zsnr, got.zsnr_source) == (True, "ztsnr marker tensor")
    assert len(got.settings) == 2


def test_civitai_sidecar(tmp_path: Path) -> None:
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    (tmp_path / "model.civitai.info").write_text(json.dumps({"baseModel": "Pony", "model": {"name": "Some merge"}}))
    got = lineage({}, set(), f)
    assert (got.base, got.base_source) == ("pony", "model.civitai.info baseModel")


def test_a1111_json_sidecar(tmp_path: Path) -> None:
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"x")
    (tmp_path / "m.json").write_text(json.dumps({"sd version": "Illustrious"}))
    assert lineage({}, set(), f).base == "illustrious"


@pytest.mark.parametrize(
    ("name", "base", "v"),
    [
        ("noobaiXLNAIXL_vPred10Version.safetensors", "noobai", True),
        ("ponyDiffusionV6XL_v6StartWithThisOne.safetensors", "pony", None),
        ("autismmixSDXL_autismmixPony.safetensors", "pony", None),
        ("waiNSFWIllustrious_v140.safetensors", "illustrious", None),
        ("sd_xl_base_1.0.safetensors", None, None),
        ("ponytail_hairstyle_sdxl.safetensors", None, None),  # not Pony
        ("model-eps-pred.safetensors", None, False),
    ],
)
def test_file_names(tmp_path: Path, name: str, base: str | None, v: bool | None) -> None:
    f = tmp_path / name
    f.write_bytes(b"x")
    got = lineage({}, set(), f)
    assert (got.base, got.v_prediction) == (base, v)
    if base:
        assert got.base_source == "file name"


def test_broken_sidecars_are_ignored(tmp_path: Path) -> None:
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"x")
    (tmp_path / "m.civitai.info").write_text("{not json")
    (tmp_path / "m.json").write_text("[1, 2]")
    assert lineage({}, set(), f).base is None
