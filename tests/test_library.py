"""The library: catalog scan (incremental, parallel, hashes), report, duplicates, plan, apply, CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdmodel import open_model
from sdmodel.atomic import staged_path
from sdmodel.cli import main_group
from sdmodel.library import apply as apply_mod
from sdmodel.library.apply import ApplyEvent, apply_plan
from sdmodel.library.catalog import Catalog, Filters, precision_of
from sdmodel.library.report import build_report
from sdmodel.library.savings import compute_plan, new_stem
from sdmodel.library.scanning import scan_library
from sdmodel.units import human_bytes
from tests.builders import layout, shrink, with_dtype, with_ema, write_ckpt, write_safetensors
from tests.test_library_trees import a1111_tree


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # hash cache
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def _scan(db: Path, inst: Path, **kw) -> tuple[Catalog, object]:
    cat = Catalog(db)
    roots = [(inst / "models", "a1111"), (inst / "embeddings", "a1111")]
    return cat, scan_library(cat, roots, jobs=kw.pop("jobs", 1), **kw)


def _by_name(cat: Catalog) -> dict[str, dict]:
    return {f["name"]: f for f in cat.all_files()}


def test_scan_catalogs_every_file_and_reports_problems(tmp_path: Path) -> None:
    inst = a1111_tree(tmp_path)
    cat, stats = _scan(tmp_path / "lib.db", inst)
    assert stats.files == 11 and stats.examined == 11 and stats.errors == 2
    files = _by_name(cat)
    dream = files["dream-fp32-ema.safetensors"]
    assert (dream["kind"], dream["family"], dream["precision"], dream["ema"]) == ("checkpoint", "sd1", "fp32", 1)
    assert dream["category"] == "Stable-diffusion" and dream["folder"] == "models/Stable-diffusion"
    assert dream["sidecars"] == ["dream-fp32-ema.civitai.info", "dream-fp32-ema.preview.png"]
    assert dream["verdict"] == "safe" and dream["report"]["components"]["unet"]["tensors"] > 600
    assert files["xl-base.safetensors"]["precision"] == "fp16"
    assert files["vae-ft-mse.safetensors"]["kind"] == "vae"
    assert files["detail.safetensors"]["kind"] == "lora"
    assert files["style.safetensors"]["kind"] == "embedding"
    assert files["old.ckpt"]["format"] == "torch-zip"
    assert files["evil.ckpt"]["verdict"] == "dangerous" and files["evil.ckpt"]["error"]
    assert "broken.safetensors" in files and files["broken.safetensors"]["error"]

    rep = build_report(cat)
    codes = {(p["code"], os.path.basename(p["path"])) for p in rep["problems"]}
    assert ("dangerous", "evil.ckpt") in codes
    assert ("unreadable", "broken.safetensors") in codes
    assert ("wrong_folder", "misplaced.safetensors") in codes
    assert ("sd2_without_yaml", "sd21.safetensors") in codes
    assert ("ckpt_twin", "old.ckpt") in codes
    assert not any(c == "wrong_folder" and n != "misplaced.safetensors" for c, n in codes)
    assert rep["problems"][0]["code"] == "dangerous"  # most severe first
    kinds = {t["name"]: t["files"] for t in rep["totals"]["kind"]}
    assert kinds["checkpoint"] == 6 and kinds["lora"] == 1 and kinds["error"] == 2
    folders = {t["name"] for t in rep["totals"]["folder"]}
    assert folders == {"models/Stable-diffusion", "models/VAE", "models/Lora", "embeddings"}
    assert {t["name"] for t in rep["totals"]["precision"]} >= {"fp32", "fp16"}
    assert rep["duplicates"] == [] and rep["hashed_files"] == 0

    # The SD2 problem goes away once the yaml is beside the model: no re-read needed.
    (inst / "models" / "Stable-diffusion" / "sd21.yaml").write_text("model: {}\n")
    stats = scan_library(cat, [(inst / "models", "a1111")], jobs=1)
    assert stats.examined == 0
    assert not any(p["code"] == "sd2_without_yaml" for p in build_report(cat)["problems"])


def test_second_scan_reads_nothing_and_follows_changes(tmp_path: Path) -> None:
    inst = a1111_tree(tmp_path)
    cat, _ = _scan(tmp_path / "lib.db", inst)
    _, stats = _scan(tmp_path / "lib.db", inst)
    assert (stats.examined, stats.unchanged, stats.removed) == (0, 11, 0)
    sd = inst / "models" / "Stable-diffusion"
    (sd / "evil.ckpt").unlink()
    os.utime(sd / "old.ckpt", ns=(1, 1))
    write_safetensors(sd / "new.safetensors", shrink(layout("sd15")))
    _, stats = _scan(tmp_path / "lib.db", inst)
    assert (stats.examined, stats.removed, stats.files) == (2, 1, 11)
    assert "evil.ckpt" not in _by_name(cat) and "new.safetensors" in _by_name(cat)
    # A root that disappeared takes its files with it.
    shutil.rmtree(inst / "embeddings")
    _, stats = _scan(tmp_path / "lib.db", inst)
    assert stats.removed == 1 and "style.safetensors" not in _by_name(cat)


def _checkpoint_folder(tmp_path: Path) -> tuple[Path, Path, dict]:
    """(models root, its Stable-diffusion folder, a small SD 1.5 layout) for duplicate tests."""
    root = tmp_path / "models"
    sd = root / "Stable-diffusion"
    sd.mkdir(parents=True)
    return root, sd, shrink(layout("sd15"), limit=8)


def test_parallel_hash_scan_finds_duplicates_at_three_levels(tmp_path: Path) -> None:
    root, sd, lay = _checkpoint_folder(tmp_path)
    write_safetensors(sd / "a.safetensors", lay, seed=1)
    shutil.copy(sd / "a.safetensors", sd / "a-copy.safetensors")
    write_safetensors(sd / "a-meta.safetensors", lay, metadata={"title": "renamed"}, seed=1)
    write_ckpt(sd / "a.ckpt", lay, seed=1)
    write_safetensors(sd / "other.safetensors", lay, seed=2)
    (sd / "junk.ckpt").write_bytes(b"not a model")
    cat = Catalog(tmp_path / "lib.db")
    stats = scan_library(cat, [(root, "")], hashes=True, jobs=2)
    assert stats.examined == 6 and stats.errors == 1
    files = _by_name(cat)
    assert files["a.safetensors"]["hashes"]["sha256"] == files["a-copy.safetensors"]["sha256"]
    assert files["a.safetensors"]["autov3"] == files["a-meta.safetensors"]["autov3"]
    assert files["a.ckpt"]["fingerprint"] == files["a.safetensors"]["fingerprint"]
    groups = {(g["level"], tuple(os.path.basename(p) for p in g["files"])) for g in build_report(cat)["duplicates"]}
    assert groups == {
        ("bytes", ("a-copy.safetensors", "a.safetensors")),
        ("tensors", ("a-copy.safetensors", "a-meta.safetensors", "a.safetensors")),
        ("model", ("a-copy.safetensors", "a-meta.safetensors", "a.ckpt", "a.safetensors")),
    }
    # Files catalogued without hashes get them on the next --hash scan; unchanged hashed files are skipped.
    assert scan_library(cat, [(root, "")], hashes=True, jobs=2).examined == 0


def test_precision_of_report_components() -> None:
    comp = {"unet": {"bytes": 100, "dtypes": {"F16": 10}}, "schedule": {"bytes": 50, "dtypes": {"F32": 2}}}
    assert precision_of({"components": comp}) == "fp16"
    comp["vae"] = {"bytes": 100, "dtypes": {"F32": 10}}
    assert precision_of({"components": comp}) == "mixed"
    assert precision_of({"components": {"x": {"bytes": 8, "dtypes": {"I64": 1}}}}) is None


def test_list_filters_and_pagination(tmp_path: Path) -> None:
    inst = a1111_tree(tmp_path)
    cat, _ = _scan(tmp_path / "lib.db", inst)
    assert cat.count(Filters(kind="checkpoint")) == 6
    assert cat.count(Filters(kind="checkpoint", family="sd1")) == 4
    assert [r["name"] for r in cat.list_files(Filters(text="DREAM"))] == ["dream-fp32-ema.safetensors"]
    assert cat.count(Filters(text="%")) == 0  # LIKE wildcards are literal
    page1 = cat.list_files(offset=0, limit=5)
    page2 = cat.list_files(offset=5, limit=5)
    assert len(page1) == 5 and not {r["id"] for r in page1} & {r["id"] for r in page2}
    assert cat.count(Filters(kind="-")) == 2  # the unreadable files


def test_plan_proposes_the_seed_articles_conversions(tmp_path: Path) -> None:
    inst = a1111_tree(tmp_path)
    cat, _ = _scan(tmp_path / "lib.db", inst)
    plan = compute_plan(cat, [])
    items = {os.path.basename(i.src): i for i in plan.items}
    assert set(items) == {"dream-fp32-ema.safetensors"}  # old.ckpt's safetensors twin blocks it
    dream = items["dream-fp32-ema.safetensors"]
    assert (dream.dtype, dream.ema, dream.mode) == ("fp16", "drop", "generate")
    assert os.path.basename(dream.dst) == "dream-fp16.safetensors"
    assert dream.after_bytes < dream.before_bytes / 2
    skipped = {os.path.basename(s.path): str(s.reason) for s in plan.skipped}
    assert skipped["xl-base.safetensors"] == "already optimal"
    assert "old.safetensors already exists" in skipped["old.ckpt"]
    assert str(plan.summary()) == (
        f"1 file, {human_bytes(plan.before)} -> {human_bytes(plan.after)} "
        f"(saves {human_bytes(plan.before - plan.after)})"
    )
    # A training folder keeps fp32 and the EMA set: only the pickle is worth converting there.
    train = compute_plan(cat, [str(inst / "models" / "Stable-diffusion")])
    assert [i.mode for i in train.items] == []
    assert any(str(s.reason) == "already optimal" for s in train.skipped if "dream" in s.path)


def test_new_stem() -> None:
    assert new_stem("model-fp32", "fp16") == "model-fp16"
    assert new_stem("Model_FP32_full-ema", "fp16", drop_ema=True) == "Model_FP16"
    assert new_stem("float32model", "fp16") == "float32model"
    assert new_stem("v1-5-pruned-emaonly", "fp16", drop_ema=True) == "v1-5-pruned-emaonly"
    assert new_stem("ema", "fp16", drop_ema=True) == "ema"


def _convertible_library(tmp_path: Path) -> tuple[Catalog, Path]:
    root = tmp_path / "models"
    sd = root / "Stable-diffusion"
    sd.mkdir(parents=True)
    write_ckpt(sd / "mix-fp32.ckpt", shrink(with_ema(layout("sd15"))), seed=1)
    (sd / "mix-fp32.preview.png").write_bytes(b"\x89PNG")
    (sd / "mix-fp32.yaml").write_text("model: {}\n")
    write_safetensors(sd / "plain.safetensors", shrink(layout("sd15")), seed=2)
    (sd / "plain.civitai.info").write_text("{}")
    write_safetensors(sd / "small.safetensors", with_dtype(shrink(layout("sd15")), "F16"), seed=3)
    cat = Catalog(tmp_path / "lib.db")
    scan_library(cat, [(root, "a1111")], jobs=1)
    cat.store_plan(compute_plan(cat, []).items)
    return cat, root


def test_apply_converts_verifies_keeps_sidecars_and_trashes_originals(tmp_path: Path) -> None:
    cat, root = _convertible_library(tmp_path)
    sd = root / "Stable-diffusion"
    events: list[ApplyEvent] = []
    stats = apply_plan(cat, on_event=events.append)
    assert (stats.done, stats.failed) == (2, 0)
    assert events[0].type == "start" and events[-1].type == "finish"
    assert any(e.type == "bytes" for e in events)
    names = sorted(p.name for p in sd.iterdir())
    assert names == [
        "mix-fp16.preview.png",
        "mix-fp16.safetensors",
        "mix-fp16.yaml",
        "plain.civitai.info",
        "plain.safetensors",
        "small.safetensors",
    ]
    trash = root / ".sdmodel-trash" / "Stable-diffusion"
    assert sorted(p.name for p in trash.iterdir()) == [
        "mix-fp32.ckpt",
        "mix-fp32.preview.png",
        "mix-fp32.yaml",
        "plain.civitai.info",
        "plain.safetensors",
    ]
    files = _by_name(cat)
    assert "mix-fp32.ckpt" not in files
    new = files["mix-fp16.safetensors"]
    assert (new["format"], new["precision"], new["ema"]) == ("safetensors", "fp16", 0)
    assert new["sidecars"] == ["mix-fp16.preview.png", "mix-fp16.yaml"]
    with open_model(sd / "mix-fp16.safetensors") as out:  # titled by its name, not the temporary one
        assert out.metadata["modelspec.title"] == "mix-fp16"
    assert files["plain.safetensors"]["precision"] == "fp16"
    assert stats.after_bytes < stats.before_bytes / 2
    assert {i["status"] for i in cat.plan_items()} == {"done"}
    assert compute_plan(cat, []).items == []  # nothing left to save
    assert scan_library(cat, [(root, "a1111")], jobs=1).examined == 0  # catalog already up to date


def test_apply_resumes_after_an_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat, root = _convertible_library(tmp_path)
    real_move = apply_mod._move
    calls = {"n": 0}

    def crash_once(src: Path, dst: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # the power goes out after the first output was verified
        real_move(src, dst)

    monkeypatch.setattr(apply_mod, "_move", crash_once)
    with pytest.raises(KeyboardInterrupt):
        apply_plan(cat)
    first = cat.plan_items()[0]
    assert (first["status"], first["step"]) == ("running", "converted")
    assert staged_path(Path(first["dst"])).is_file()
    converted = []
    real_convert = apply_mod._convert
    monkeypatch.setattr(
        apply_mod, "_convert", lambda item, tmp, cb: (converted.append(item["src"]), real_convert(item, tmp, cb))
    )
    stats = apply_plan(cat)
    assert stats.done == 2 and first["src"] not in converted  # resumed, not converted again
    assert not list(root.rglob("*.sdmodel-tmp*"))
    assert {i["status"] for i in cat.plan_items()} == {"done"}


def test_apply_stop_and_failures_and_delete(tmp_path: Path) -> None:
    cat, root = _convertible_library(tmp_path)
    stats = apply_plan(cat, should_stop=lambda: True)
    assert stats.stopped and stats.done == 0
    assert {i["status"] for i in cat.plan_items()} == {"pending"}
    # A file changed since the plan fails alone; the rest goes on; originals deleted on request.
    items = cat.plan_items()
    os.utime(items[0]["src"], ns=(5, 5))
    stats = apply_plan(cat, delete_originals=True)
    assert (stats.done, stats.failed) == (1, 1)
    failed = cat.plan_items(("failed",))[0]
    assert "changed since the plan" in failed["error"]
    assert not (root / ".sdmodel-trash").exists()
    assert not Path(items[1]["src"]).exists() or items[1]["src"] == items[1]["dst"]


def test_apply_leaves_the_sidecars_of_a_longer_named_model(tmp_path: Path) -> None:
    # "dream-fp32.inpainting.preview.png" belongs to "dream-fp32.inpainting.safetensors": renaming
    # "dream-fp32" to "dream-fp16" must not take it along.
    root = tmp_path / "models"
    sd = root / "Stable-diffusion"
    sd.mkdir(parents=True)
    write_safetensors(sd / "dream-fp32.safetensors", shrink(layout("sd15")), seed=1)
    (sd / "dream-fp32.preview.png").write_bytes(b"\x89PNG")
    write_safetensors(sd / "dream-fp32.inpainting.safetensors", with_dtype(shrink(layout("sd15")), "F16"), seed=2)
    (sd / "dream-fp32.inpainting.preview.png").write_bytes(b"\x89PNG")
    cat = Catalog(tmp_path / "lib.db")
    scan_library(cat, [(root, "a1111")], jobs=1)
    cat.store_plan(compute_plan(cat, []).items)
    assert [os.path.basename(i["dst"]) for i in cat.plan_items()] == ["dream-fp16.safetensors"]
    assert apply_plan(cat).done == 1
    assert sorted(p.name for p in sd.iterdir()) == [
        "dream-fp16.preview.png",
        "dream-fp16.safetensors",
        "dream-fp32.inpainting.preview.png",
        "dream-fp32.inpainting.safetensors",
    ]
    files = _by_name(cat)
    assert files["dream-fp16.safetensors"]["sidecars"] == ["dream-fp16.preview.png"]
    assert files["dream-fp32.inpainting.safetensors"]["sidecars"] == ["dream-fp32.inpainting.preview.png"]


def test_cli_scan_report_plan_apply(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inst = a1111_tree(tmp_path)
    monkeypatch.chdir(inst / "models" / "Lora")  # the install is found from inside it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    db = str(tmp_path / "lib.db")
    runner = CliRunner()
    res = runner.invoke(main_group, ["library", "scan", "--db", db, "--jobs", "1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{") :])["files"] == 11
    res = runner.invoke(main_group, ["library", "report", "--db", db, "--json"])
    rep = json.loads(res.stdout)
    assert rep["files"] == 11 and isinstance(rep["duplicates"], list) and rep["problems"]
    res = runner.invoke(main_group, ["library", "report", "--db", db])
    assert res.exit_code == 0 and "wrong folder" in res.stdout
    res = runner.invoke(main_group, ["library", "plan", "--db", db])
    assert res.exit_code == 0 and "1 file, " in res.stdout
    res = runner.invoke(main_group, ["library", "apply", "--db", db])
    assert res.exit_code == 0, res.output
    assert "1 converted, 0 failed" in res.stdout
    assert (inst / "models" / "Stable-diffusion" / "dream-fp16.safetensors").is_file()
    res = runner.invoke(main_group, ["library", "report", "--db", str(tmp_path / "none.db")])
    assert res.exit_code != 0 and "library scan" in str(res.exception)


def test_file_names_that_are_not_utf8_are_skipped_not_fatal(tmp_path: Path) -> None:
    from tests.families import lora_kohya

    root = tmp_path / "models" / "Lora"
    root.mkdir(parents=True)
    from tests.builders import write_sparse_safetensors

    write_sparse_safetensors(root / "fine.safetensors", lora_kohya())
    odd = os.fsdecode(os.fsencode(str(root)) + b"/odd\xffname.safetensors")
    write_sparse_safetensors(Path(odd), lora_kohya())
    cat = Catalog(tmp_path / "lib.db")
    stats = scan_library(cat, [(tmp_path / "models", "a1111")], jobs=1)
    assert stats.files == 1 and stats.errors == 0
    assert len(stats.skipped_names) == 1 and "odd\\xffname" in stats.skipped_names[0]


def test_hash_cache_accepts_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    from sdmodel.hashing import hash_file

    odd = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/odd\xffname.bin"))
    odd.write_bytes(b"hello world")
    assert hash_file(odd)["autov2"] == "b94d27b993"
    assert hash_file(odd)["autov2"] == "b94d27b993"  # from the cache


def test_fp16_and_bf16_copies_group_with_their_fp32_original(tmp_path: Path) -> None:
    root, sd, lay = _checkpoint_folder(tmp_path)
    write_safetensors(sd / "m-fp32.safetensors", lay, seed=3)
    write_safetensors(sd / "m-fp16.safetensors", with_dtype(lay, "F16"), seed=3)
    write_ckpt(sd / "m-bf16.ckpt", with_dtype(lay, "BF16"), seed=3)
    write_safetensors(sd / "other-bf16.safetensors", with_dtype(lay, "F16"), seed=4)
    cat = Catalog(tmp_path / "lib.db")
    scan_library(cat, [(root, "")], hashes=True, jobs=1)
    groups = [(g["level"], sorted(os.path.basename(p) for p in g["files"])) for g in build_report(cat)["duplicates"]]
    assert groups == [("model", ["m-bf16.ckpt", "m-fp16.safetensors", "m-fp32.safetensors"])]


def test_catalog_of_schema_1_gains_the_bf16_fingerprint_column(tmp_path: Path) -> None:
    import sqlite3

    from sdmodel.library.catalog import SCHEMA

    schema_1 = SCHEMA.replace("    fingerprint_bf16 TEXT,\n", "").replace(
        "CREATE INDEX IF NOT EXISTS files_fingerprint_bf16 ON files (fingerprint_bf16);\n", ""
    )
    assert "fingerprint_bf16" not in schema_1
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(schema_1)
    con.commit()
    con.close()
    cat = Catalog(db)
    cols = {r[1] for r in cat.db.execute("PRAGMA table_info(files)")}
    assert "fingerprint_bf16" in cols


def test_catalog_stores_the_report_version_and_older_catalogs_gain_the_column(tmp_path: Path) -> None:
    import sqlite3

    from sdmodel.inspection import REPORT_VERSION
    from sdmodel.library.catalog import SCHEMA

    # Schema 2 ended the table at scanned_at (schema 3 added report_version, schema 4 the card columns).
    head, _, tail = SCHEMA.partition("    scanned_at REAL NOT NULL,\n")
    schema_2 = head + "    scanned_at REAL NOT NULL\n" + tail[tail.index(");") :]
    schema_2 = "".join(line for line in schema_2.splitlines(True) if "base_model" not in line and "creator" not in line)
    assert "report_version" not in schema_2 and "thumbnail" not in schema_2
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(schema_2)
    con.commit()
    con.close()
    inst = a1111_tree(tmp_path)
    cat, _ = _scan(db, inst)
    files = _by_name(cat)
    assert files["dream-fp32-ema.safetensors"]["report_version"] == REPORT_VERSION
    assert files["broken.safetensors"]["report_version"] == REPORT_VERSION  # the examiner's, for errors too


def test_rows_an_older_sdmodel_wrote_are_examined_again(tmp_path: Path) -> None:
    inst = a1111_tree(tmp_path)
    db = tmp_path / "lib.db"
    cat, _ = _scan(db, inst)
    with cat.db:
        cat.db.execute("UPDATE files SET report_version = 1, family = 'flux' WHERE path LIKE '%dream-fp32-ema%'")
    cat, stats = _scan(db, inst)
    files = _by_name(cat)
    assert files["dream-fp32-ema.safetensors"]["family"] == "sd1"
    assert stats.examined == 1 and stats.unchanged == len(files) - 1
