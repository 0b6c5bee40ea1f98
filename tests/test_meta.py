"""sdmodel meta: show and edit metadata in place or by a byte-identical rewrite, atomically."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from sdmodel.metadata import (
    MetadataError,
    check_entries,
    edit_metadata,
    journal_path,
    read_metadata,
)

TENSORS = {"a.weight": np.arange(64, dtype=np.float32).reshape(8, 8), "b.bias": np.ones(8, dtype=np.float16)}


def write(path: Path, meta: dict[str, str]) -> Path:
    save_file(TENSORS, str(path), metadata=meta)
    return path


def data_section(path: Path) -> bytes:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return raw[8 + n :]


def loaded(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    with safe_open(str(path), "np") as f:
        return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


def test_in_place_when_the_header_fits(tmp_path: Path) -> None:
    p = write(tmp_path / "m.safetensors", {"modelspec.title": "a long enough title", "x": "1"})
    size, data = p.stat().st_size, data_section(p)
    res = edit_metadata(p, {"modelspec.title": "short"}, ["x"])
    assert res.mode == "in-place" and res.changed == ["modelspec.title"] and res.removed == ["x"]
    assert p.stat().st_size == size and data_section(p) == data
    meta, tensors = loaded(p)
    assert meta == {"modelspec.title": "short"}
    assert all(np.array_equal(tensors[k], v) for k, v in TENSORS.items())
    assert not journal_path(p).exists()


def test_rewrite_keeps_the_data_section_byte_identical(tmp_path: Path) -> None:
    p = write(tmp_path / "m.safetensors", {"k": "v"})
    data = data_section(p)
    res = edit_metadata(p, {"modelspec.description": "x" * 5000})
    assert res.mode == "rewrite" and res.data_unchanged and res.header_after > res.header_before
    assert data_section(p) == data  # AutoV3 (SHA-256 of the data section) unchanged
    meta, _ = loaded(p)
    assert meta == {"k": "v", "modelspec.description": "x" * 5000}
    assert not list(tmp_path.glob(".*tmp*"))


def test_nothing_to_change_writes_nothing(tmp_path: Path) -> None:
    p = write(tmp_path / "m.safetensors", {"k": "v"})
    before = p.stat().st_mtime_ns
    assert edit_metadata(p, {"k": "v"}, ["absent"]).mode == "unchanged"
    assert p.stat().st_mtime_ns == before


def test_values_are_checked() -> None:
    problems = check_entries({"modelspec.date": "yesterday", "modelspec.hash_sha256": "0x" + "a" * 64, "n": 3})
    assert [(p.severity, p.key) for p in problems] == [("warning", "modelspec.date"), ("error", "n")]
    assert check_entries({"modelspec.prediction_type": "v", "modelspec.resolution": "1024x1024"}) == []
    assert [p.severity for p in check_entries({}, header_size=30_000_000)] == ["warning"]
    assert [p.severity for p in check_entries({}, header_size=200_000_000)] == ["error"]


def test_refuses_other_files(tmp_path: Path) -> None:
    p = tmp_path / "m.ckpt"
    p.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(MetadataError, match="safetensors and GGUF"):
        read_metadata(p)


_CRASHER = """
import os, sys
from sdmodel.metadata import edit_metadata
target, at, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def step(name):
    if name == at:
        os._exit(9)
value = "short" if mode == "in-place" else "y" * 4000
edit_metadata(target, {"modelspec.title": value}, checkpoint=step)
"""


@pytest.mark.parametrize(
    ("mode", "step"),
    [
        ("in-place", "journal-partial"),
        ("in-place", "journal-written"),
        ("in-place", "header-partial"),
        ("in-place", "header-written"),
        ("rewrite", "rewrite-header"),
        ("rewrite", "rewrite-written"),
    ],
)
def test_a_kill_at_any_step_leaves_the_old_file_or_the_new(tmp_path: Path, mode: str, step: str) -> None:
    p = write(tmp_path / "m.safetensors", {"modelspec.title": "a long enough title"})
    data = data_section(p)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", _CRASHER, str(p), step, mode], env=env, timeout=60)
    assert proc.returncode == 9
    meta = read_metadata(p).entries  # finishes or discards an interrupted in-place edit
    new = "short" if mode == "in-place" else "y" * 4000
    assert meta["modelspec.title"] in ("a long enough title", new)
    assert data_section(p) == data
    assert loaded(p)[0] == meta
    assert not journal_path(p).exists()
    assert not [f for f in tmp_path.iterdir() if f.name != "m.safetensors"]


def _gguf(path: Path) -> Path:
    import gguf

    w = gguf.GGUFWriter(str(path), "flux")
    w.add_string("general.name", "test")
    w.add_uint32("some.count", 7)
    w.add_uint32("other.count", 3)
    w.add_tensor("img_in.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.add_tensor("img_in.bias", np.ones(4, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_key_values(tmp_path: Path) -> None:
    import gguf

    p = _gguf(tmp_path / "m.gguf")
    meta = read_metadata(p)
    assert meta.format == "gguf"
    assert meta.entries["general.architecture"] == "flux" and meta.entries["some.count"] == 7
    res = edit_metadata(p, {"general.name": "renamed", "sdmodel.source_sha256": "ab" * 32}, ["some.count"])
    assert res.mode == "rewrite"
    r = gguf.GGUFReader(str(p))
    fields = {k: f for k, f in r.fields.items()}
    assert "some.count" not in fields
    assert bytes(fields["general.name"].parts[-1]).decode() == "renamed"
    assert bytes(fields["sdmodel.source_sha256"].parts[-1]).decode() == "ab" * 32
    t = {x.name: np.array(x.data) for x in r.tensors}
    assert np.array_equal(t["img_in.weight"], np.arange(32, dtype=np.float32).reshape(4, 8))
    with pytest.raises(MetadataError, match="only string values"):
        edit_metadata(p, {"other.count": "4"})
    for set_values, unset in (({"general.alignment": "64"}, []), ({}, ["general.architecture"])):
        with pytest.raises(MetadataError, match="cannot be changed"):
            edit_metadata(p, set_values, unset)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdmodel", *args], capture_output=True, text=True, timeout=60)


def test_cli(tmp_path: Path) -> None:
    p = write(tmp_path / "m.safetensors", {"modelspec.title": "t"})
    shown = run_cli("meta", str(p), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["metadata"] == {"modelspec.title": "t"}
    edited = run_cli("meta", str(p), "--set", "modelspec.date=soon", "--set", "author=me")
    assert edited.returncode == 0, edited.stderr
    assert "ModelSpec wants an ISO-8601 date" in edited.stderr and "AutoV3 unchanged" in edited.stdout
    bad = run_cli("meta", str(p), "--set", "novalue")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    hostile = tmp_path / "h.safetensors"
    hostile.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    res = run_cli("meta", str(hostile))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert hashlib.sha256(hostile.read_bytes()).hexdigest()  # never modified, still readable
