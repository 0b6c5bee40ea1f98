"""Readers and writers. ``open_model`` picks the reader from the content, never the extension."""

from __future__ import annotations

import struct
from pathlib import Path

from sdmodel.errors import ModelReadError
from sdmodel.formats.base import DictSource, TensorInfo, TensorSource, model_path, open_bytes

__all__ = ["DictSource", "TensorInfo", "TensorSource", "open_model", "sniff"]

ZIP_MAGIC = b"PK\x03\x04"


def sniff(name: str | Path) -> str:
    """The container a file really is: ``safetensors``, ``torch-zip``, ``torch-legacy``,
    ``diffusers``, ``tar``, ``empty`` or ``unknown``."""
    path = model_path(name)
    if path.is_dir():
        return "diffusers"
    with open_bytes(path) as f:
        head = f.read(512)
    if not head:
        return "empty"
    if head.startswith(ZIP_MAGIC):
        return "torch-zip"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        # A plausible length followed by JSON: the reader then says precisely what is wrong.
        if 2 <= n < 1 << 40 and head[8:9] in (b"{", b"[", b" ", b"\t", b"\n", b"\r"):
            return "safetensors"
    if head[0] == 0x80 and len(head) > 1 and head[1] <= 5:
        return "torch-legacy"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return "unknown"


def open_model(name: str | Path) -> TensorSource:
    """Open any model file or diffusers folder (local, or a URL: :mod:`sdmodel.remote`) for lazy
    reading. Raises ModelReadError."""
    path = model_path(name)
    if not path.exists():
        raise ModelReadError(f"{path}: no such file or directory")
    kind = sniff(path)
    if kind == "safetensors":
        from sdmodel.formats.safetensors import SafetensorsSource

        return SafetensorsSource(path)
    if kind == "torch-zip":
        from sdmodel.formats.torch_zip import TorchZipSource

        return TorchZipSource(path)
    if kind == "torch-legacy":
        from sdmodel.formats.torch_legacy import TorchLegacySource

        return TorchLegacySource(path)
    if kind == "diffusers":
        from sdmodel.formats.diffusers import DiffusersSource

        return DiffusersSource(path)
    if kind == "empty":
        raise ModelReadError(f"{path}: file is empty")
    if kind == "tar":
        raise ModelReadError(f"{path}: obsolete tar-format PyTorch checkpoint (run 'sdmodel scan' on it; not read)")
    raise ModelReadError(f"{path}: not a model file (neither safetensors, a PyTorch checkpoint nor a diffusers folder)")
