"""Readers and writers. ``open_model`` picks the reader from the content, never the extension."""

from __future__ import annotations

import struct
from pathlib import Path

from sdmodel.errors import ModelReadError
from sdmodel.formats.base import DictSource, TensorInfo, TensorSource, model_path, open_bytes
from sdmodel.i18n import Msg

__all__ = ["DictSource", "TensorInfo", "TensorSource", "open_model", "sniff", "sniff_head"]

ZIP_MAGIC = b"PK\x03\x04"
GGUF_MAGIC = b"GGUF"
SNIFF_BYTES = 512  # how much of a file ``sniff`` reads


def sniff(path: Path) -> str:
    """The container a file (or folder) really is, from its content: see ``sniff_head``; a folder
    is ``diffusers``."""
    path = model_path(path)
    if path.is_dir():
        return "diffusers"
    with open_bytes(path) as f:
        return sniff_head(f.read(SNIFF_BYTES))


def sniff_head(head: bytes) -> str:
    """The container a file is, from its first SNIFF_BYTES bytes: ``safetensors``, ``gguf``, ``torch-zip``,
    ``torch-legacy`` (a pickle, PROTO 0-5), ``tar``, ``npy``, ``7z``, ``empty`` or ``unknown``."""
    if not head:
        return "empty"
    if head.startswith(ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(GGUF_MAGIC):
        return "gguf"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        # A plausible length followed by JSON: the reader then says precisely what is wrong.
        if 2 <= n < 1 << 40 and head[8:9] in (b"{", b"[", b" ", b"\t", b"\n", b"\r"):
            return "safetensors"
    if head[0] == 0x80 and len(head) > 1 and head[1] <= 5:
        return "torch-legacy"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    return "unknown"


def open_model(name: str | Path) -> TensorSource:
    """Open any model file or diffusers folder (local, or a URL: :mod:`sdmodel.remote`) for lazy
    reading. Raises ModelReadError."""
    path = model_path(name)
    if not path.exists():
        raise ModelReadError(Msg("{path}: no such file or directory", path=path))
    kind = sniff(path)
    if kind == "safetensors":
        from sdmodel.formats.safetensors import SafetensorsSource  # noqa: PLC0415 - start-up time: only the reader needed

        return SafetensorsSource(path)
    if kind == "gguf":
        from sdmodel.formats.gguf import GGUFSource  # noqa: PLC0415 - start-up time: only the reader needed

        return GGUFSource(path)
    if kind == "torch-zip":
        from sdmodel.formats.torch_zip import TorchZipSource  # noqa: PLC0415 - start-up time: only the reader needed

        return TorchZipSource(path)
    if kind == "torch-legacy":
        from sdmodel.formats.torch_legacy import TorchLegacySource  # noqa: PLC0415 - start-up time: only the reader needed

        return TorchLegacySource(path)
    if kind == "diffusers":
        from sdmodel.formats.diffusers import DiffusersSource  # noqa: PLC0415 - start-up time: only the reader needed

        return DiffusersSource(path)
    if kind == "empty":
        raise ModelReadError(Msg("{path}: file is empty", path=path))
    if kind == "tar":
        raise ModelReadError(
            Msg("{path}: obsolete tar-format PyTorch checkpoint (run 'sdmodel scan' on it; not read)", path=path)
        )
    raise ModelReadError(
        Msg(
            "{path}: not a model file (neither safetensors, GGUF, a PyTorch checkpoint nor a diffusers folder)",
            path=path,
        )
    )
