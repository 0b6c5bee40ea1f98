"""Outputs record their source: name, SHA256 and AutoV3, computed while converting."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

from sdmodel import convert
from sdmodel.hashing import hash_file
from sdmodel.provenance import SOURCE_AUTOV3_KEY, SOURCE_KEY, SOURCE_SHA256_KEY


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"model.diffusion_model.w{i}": rng.normal(size=(64, 64)).astype(np.float32) for i in range(4)}


def test_safetensors_output_records_its_source(tmp_path: Path) -> None:
    src = tmp_path / "model.safetensors"
    save_file(_tensors(), str(src), metadata={"modelspec.title": "My model"})
    result = convert(src, tmp_path / "out.safetensors", dtype="fp16")
    with safe_open(str(tmp_path / "out.safetensors"), "np") as f:
        meta = f.metadata()
    hashes = hash_file(src, use_cache=False)
    assert meta[SOURCE_KEY] == "model.safetensors"
    assert meta[SOURCE_SHA256_KEY] == hashlib.sha256(src.read_bytes()).hexdigest() == hashes["sha256"]
    assert meta[SOURCE_AUTOV3_KEY] == hashes["autov3"]
    assert meta["modelspec.title"] == "My model"  # the source's ModelSpec identity is kept
    assert result.metadata[SOURCE_SHA256_KEY] == meta[SOURCE_SHA256_KEY]
    assert meta["modelspec.hash_sha256"] != "0x" + "0" * 64


def test_a_checkpoint_has_a_sha256_but_no_autov3(tmp_path: Path) -> None:
    src = tmp_path / "model.ckpt"
    torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in _tensors().items()}}, src)
    convert(src, tmp_path / "out.safetensors")
    with safe_open(str(tmp_path / "out.safetensors"), "np") as f:
        meta = f.metadata()
    assert meta[SOURCE_SHA256_KEY] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert SOURCE_AUTOV3_KEY not in meta


def test_no_meta_records_nothing(tmp_path: Path) -> None:
    src = tmp_path / "model.safetensors"
    save_file(_tensors(), str(src))
    convert(src, tmp_path / "out.safetensors", no_meta=True)
    with safe_open(str(tmp_path / "out.safetensors"), "np") as f:
        assert not (f.metadata() or {})


def test_the_source_hasher_stops_when_the_conversion_fails(tmp_path: Path) -> None:
    """The hashes start before the plan is made; a plan that fails leaves no hashing behind."""
    import threading

    import pytest

    from sdmodel.errors import SdmodelError

    src = tmp_path / "model.safetensors"
    save_file(_tensors(), str(src))
    with pytest.raises(SdmodelError):
        convert(src, tmp_path / "out.safetensors", part="vae")  # no VAE in this file
    for t in threading.enumerate():
        if t.name == "sdmodel-source-hash":
            t.join(5)
            assert not t.is_alive()
    assert not (tmp_path / "out.safetensors").exists()
