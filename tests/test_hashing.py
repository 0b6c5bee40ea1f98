"""Hashes: a known test vector, AutoV1/AutoV3 definitions, the cache, and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import zlib

import numpy as np
from safetensors.numpy import save_file

from sdmodel.cli import main
from sdmodel.formats import open_model
from sdmodel.hashing import HashCache, compute_hashes, content_fingerprints, hash_file
from tests import families as fam
from tests.builders import shrink, with_dtype, write_ckpt, write_safetensors


def test_hello_world_vector(tmp_path):
    p = tmp_path / "hw"
    p.write_bytes(b"hello world")
    h = compute_hashes(p)
    assert h["sha256"] == "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    assert h["autov2"] == "b94d27b993"
    assert h["blake3"] == "d74981efa70a0c880b8d8c1985d075dbcbf679b99a5f9914e5aaf96b831a9e24"
    assert h["crc32"] == "0d4a1185" and h["crc32_civitai"] == "85114A0D"
    assert h["autov1"] is None and h["autov3"] is None


def test_autov1_and_autov3_definitions(tmp_path):
    p = tmp_path / "m.safetensors"
    save_file({"a": np.random.default_rng(0).standard_normal(600_000).astype(np.float32)}, str(p), metadata={"x": "1"})
    raw = p.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    h = compute_hashes(p)
    assert h["autov1"] == hashlib.sha256(raw[0x100000:0x110000]).hexdigest()[:8]
    assert h["autov3"] == hashlib.sha256(raw[8 + n :]).hexdigest()
    assert h["sha256"] == hashlib.sha256(raw).hexdigest()
    assert h["crc32"] == f"{zlib.crc32(raw):08x}"
    # AutoV3 survives a metadata edit, SHA256 does not
    q = tmp_path / "m2.safetensors"
    with open_model(p) as src:
        save_file({"a": src.read("a")}, str(q), metadata={"x": "2", "y": "more"})
    h2 = compute_hashes(q)
    assert h2["autov3"] == h["autov3"] and h2["sha256"] != h["sha256"]


def test_multi_chunk_file(tmp_path):
    p = tmp_path / "big.bin"
    data = os.urandom(40 << 20)
    p.write_bytes(data)
    h = compute_hashes(p)
    assert h["sha256"] == hashlib.sha256(data).hexdigest()


def test_cache_hit_and_invalidation(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    first = hash_file(p)
    assert HashCache().get(p) == first
    p.write_bytes(b"abcd")  # size changes: the cache entry no longer applies
    assert HashCache().get(p) is None
    assert hash_file(p)["sha256"] == hashlib.sha256(b"abcd").hexdigest()


def test_content_fingerprints_across_formats_and_precisions(tmp_path):
    lay = shrink(fam.sd1())
    files = {
        "fp32": write_safetensors(tmp_path / "a.safetensors", lay),
        "fp16": write_safetensors(tmp_path / "b.safetensors", with_dtype(lay, "F16")),
        "ckpt": write_ckpt(tmp_path / "c.ckpt", lay),
        "bf16": write_ckpt(tmp_path / "e.ckpt", with_dtype(lay, "BF16")),
        "other": write_safetensors(tmp_path / "d.safetensors", lay, seed=1),
    }
    fps = {}
    for k, p in files.items():
        with open_model(p) as src:
            fps[k] = content_fingerprints(src)
    assert fps["fp32"]["fp16"] == fps["fp16"]["fp16"] == fps["ckpt"]["fp16"] != fps["other"]["fp16"]
    assert fps["fp32"]["bf16"] == fps["bf16"]["bf16"] == fps["ckpt"]["bf16"] != fps["other"]["bf16"]
    assert fps["bf16"]["fp16"] != fps["fp32"]["fp16"]  # bf16 meets fp16 only through the fp32 copy


def test_cli_hash_json(tmp_path, capsys):
    p = tmp_path / "hw.safetensors"
    p.write_bytes(b"hello world")
    try:
        main(["hash", str(p), "--json"])
    except SystemExit as e:
        assert e.code in (0, None)
    out = json.loads(capsys.readouterr().out)
    assert out["sha256"].startswith("b94d27b9") and out["path"] == str(p)
