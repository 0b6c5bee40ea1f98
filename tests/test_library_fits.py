"""``sdmodel library fits``: the catalogued models a catalogued LoRA fits, from the catalog alone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sdmodel.cli import main, main_group
from sdmodel.cli.common import console
from sdmodel.errors import SdmodelError
from sdmodel.library.catalog import Catalog
from sdmodel.library.fits import Fit, find_lora, models_fitting
from sdmodel.library.scanning import scan_library
from tests.test_library_trees import a1111_tree


def row(path: str, kind: str, family: str | None, report: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "path": path,
        "root": "/m",
        "folder": "m",
        "category": "",
        "is_dir": 0,
        "ema": 0,
        "junk_bytes": 0,
        "sidecars": "[]",
        "name": Path(path).name,
        "size": 1,
        "mtime_ns": 0,
        "kind": kind,
        "family": family,
        "report": json.dumps(report) if report else None,
        "scanned_at": time.time(),
    }


def lora_report(trains: list[str], candidates: list[str] | None = None) -> dict[str, Any]:
    return {"lora": {"trains": {t: 1 for t in trains}, "candidates": candidates or []}}


@pytest.fixture
def cat(tmp_path: Path) -> Catalog:
    c = Catalog(tmp_path / "lib.db")
    c.upsert_many(
        [
            row("/m/xl.safetensors", "checkpoint", "sdxl", {"components": {"unet": {}, "text_encoder": {}}}),
            row("/m/xl-unet.safetensors", "unet", "sdxl"),
            row("/m/xl-no-te.safetensors", "checkpoint", "sdxl", {"components": {"unet": {}}}),
            row("/m/sd15.safetensors", "checkpoint", "sd1", {"components": {"unet": {}, "text_encoder": {}}}),
            row("/m/xl-vae.safetensors", "vae", "sdxl"),
            row("/m/flux.safetensors", "unet", "flux"),
            row("/m/style.safetensors", "lora", "sdxl", lora_report(["diffusion model", "text encoder 1"])),
            row("/m/unet-only.safetensors", "lycoris", "sdxl", lora_report(["diffusion model"])),
            row("/m/vague.safetensors", "lora", None, lora_report(["diffusion model"], ["flux", "sd1"])),
        ]
    )
    return c


def test_models_of_the_family_whole_fits_first(cat: Catalog) -> None:
    fits = models_fitting(cat, find_lora(cat, "style.safetensors"))
    ids = {f["path"]: f["id"] for f in cat.all_files()}
    assert fits == [
        Fit(ids[p], p, Path(p).name, kind, "sdxl", partial)
        for p, kind, partial in (
            ("/m/xl.safetensors", "checkpoint", False),
            ("/m/xl-no-te.safetensors", "checkpoint", True),
            ("/m/xl-unet.safetensors", "unet", True),
        )
    ]
    whole = models_fitting(cat, find_lora(cat, "/m/unet-only.safetensors"))
    assert [(f.name, f.partial) for f in whole] == [
        ("xl-no-te.safetensors", False),
        ("xl-unet.safetensors", False),
        ("xl.safetensors", False),
    ]


def test_unknown_family_uses_the_candidates(cat: Catalog) -> None:
    fits = models_fitting(cat, find_lora(cat, "vague.safetensors"))
    assert [(f.name, f.family) for f in fits] == [("flux.safetensors", "flux"), ("sd15.safetensors", "sd1")]


def test_refusals(cat: Catalog) -> None:
    with pytest.raises(SdmodelError, match="not a LoRA"):
        models_fitting(cat, find_lora(cat, "xl-vae.safetensors"))
    with pytest.raises(SdmodelError, match="not in the catalog"):
        find_lora(cat, "nope.safetensors")
    cat.upsert_many([row("/n/style.safetensors", "lora", "sdxl")])
    with pytest.raises(SdmodelError, match="2 files in the catalog match"):
        find_lora(cat, "style.safetensors")


def test_cli_over_a_scanned_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(console, "width", 400)  # whole paths on one line, however deep tmp_path is
    inst = a1111_tree(tmp_path)
    db = tmp_path / "lib.db"
    with Catalog(db) as cat:
        scan_library(cat, [(inst / "models", "a1111")], jobs=1)
    runner = CliRunner()
    res = runner.invoke(main_group, ["library", "fits", "detail.safetensors", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["families"] == ["sd1"]
    names = {Path(m["path"]).name for m in out["models"]}
    assert {"dream-fp32-ema.safetensors", "old.safetensors"} <= names and "xl-base.safetensors" not in names
    res = runner.invoke(
        main_group, ["library", "fits", str(inst / "models" / "Lora" / "detail.safetensors"), "--db", str(db)]
    )
    assert res.exit_code == 0 and "dream-fp32-ema.safetensors" in res.output
    with pytest.raises(SystemExit) as exit_:
        main(["library", "fits", "xl-base.safetensors", "--db", str(db)])
    assert exit_.value.code == 2 and "not a LoRA (kind checkpoint)" in capsys.readouterr().err
