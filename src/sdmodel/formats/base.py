"""The one lazy tensor-source API that every reader implements.

A source lists every tensor (name, dtype, shape) without reading data, reads one tensor on demand
as a numpy array, and keeps non-tensor entries (``global_step``, ``epoch``...) as plain values.
"""

from __future__ import annotations

import io
import math
import os
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np

from sdmodel.dtypes import ITEMSIZE, dtype_name
from sdmodel.errors import ModelReadError
from sdmodel.i18n import Bytes, Msg
from sdmodel.remote import RemotePath, as_path, is_remote


@dataclass(frozen=True)
class TensorInfo:
    """What is known of a tensor without reading it. ``dtype`` is a safetensors dtype name, or a
    GGML block type (``Q4_K``...) for GGUF, or a dtype sdmodel does not know (then ``read`` fails
    for that tensor only). ``shape`` is the shape the model uses; ``stored_shape`` is set when the
    file stores it in another shape (ComfyUI-GGUF's ``comfy.gguf.orig_shape``), ``stored_nbytes``
    when the size is not elements x item size (block types, unknown dtypes)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    stored_nbytes: int | None = None
    stored_shape: tuple[int, ...] | None = None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        if self.stored_nbytes is not None:
            return self.stored_nbytes
        return self.numel * ITEMSIZE[self.dtype]

    @property
    def plain(self) -> bool:
        """Stored as one value per element in a dtype numpy can hold (not blocks, not unknown)."""
        return self.dtype in ITEMSIZE


@dataclass
class SourceNote:
    """A quirk found while reading (kept, not fatal): e.g. a header A1111 cannot read."""

    code: str
    message: str | Msg  # Msg: translated where shown


class TensorSource(ABC):
    """A model file (or folder) opened for lazy reading. Use as a context manager."""

    format: str = "unknown"

    def __init__(self, path: Path) -> None:
        self.path = path if is_remote(path) else Path(path)
        # False for a remote file opened without --read-data: tensor values are not fetched.
        self.read_data: bool = getattr(path, "read_data", True)
        self.metadata: dict[str, str] = {}
        self.extras: dict[str, Any] = {}
        self.notes: list[SourceNote] = []
        self._tensors: dict[str, TensorInfo] = {}

    @property
    def tensors(self) -> dict[str, TensorInfo]:
        """Every tensor by name, in file order."""
        return self._tensors

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def __len__(self) -> int:
        return len(self._tensors)

    @abstractmethod
    def read(self, name: str) -> np.ndarray:
        """The tensor's values (C-contiguous, native byte order). May be a read-only view.

        For a tensor that is not ``plain`` (GGML blocks), the stored bytes as uint8: the values
        come from ``sdmodel.quant.dequant``, never from a cast."""

    def read_bits(self, name: str) -> np.ndarray:
        """``read``, bf16 values as their uint16 bits (how the engine passes bf16 on that it does
        not cast, engine._as_bits): a source that computes them (dequantization) gives them so
        without importing ml_dtypes."""
        a = self.read(name)
        return a.view(np.uint16) if a.dtype.name == "bfloat16" else a

    def data_range(self, name: str) -> tuple[int, int] | None:
        """Absolute [begin, end) of the tensor's bytes in ``path`` when they are stored there as
        they are (C order, little-endian, uncompressed), so that a writer can read them straight
        into its own buffer; None otherwise (the default)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release file handles and maps."""

    @property
    def size_bytes(self) -> int:
        p = self.path
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        return p.stat().st_size

    def note(self, code: str, message: str | Msg) -> None:
        self.notes.append(SourceNote(code, message))

    def __enter__(self) -> TensorSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DictSource(TensorSource):
    """An in-memory source (tests, plans that replace tensors)."""

    def __init__(self, arrays: dict[str, np.ndarray], path: Path | str = "<memory>") -> None:
        super().__init__(Path(path))
        self.format = "memory"
        self.arrays = arrays
        self._tensors = {k: TensorInfo(k, dtype_name(v.dtype), tuple(v.shape)) for k, v in arrays.items()}

    def read(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def size_bytes(self) -> int:
        return sum(t.nbytes for t in self._tensors.values())


def model_path(path: str | Path | RemotePath) -> Path:
    """A local ``Path``, or a :class:`~sdmodel.remote.RemotePath` for a URL (typed as a Path: it
    offers the part of the Path API the readers use)."""
    return cast(Path, as_path(path))


def open_bytes(path: str | Path | RemotePath) -> BinaryIO:
    """The one way readers open a model file: a local file, or a remote one whose reads become
    HTTP range requests for exactly the bytes read (:mod:`sdmodel.remote`)."""
    p = as_path(path)
    return cast(BinaryIO, p.open()) if isinstance(p, RemotePath) else open(p, "rb")


_SEEK_LOCK = threading.Lock()


def _read_at(f: Any, offset: int, view: memoryview) -> int:
    """Fill ``view`` from ``offset``; the bytes read. Safe from several threads at once (the engine's
    reader and a plan step that reads other tensors of the same file): a positional read where the
    file has a descriptor, else seek and read under one lock."""
    try:
        fd = f.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    if fd is None or not hasattr(os, "preadv"):
        with _SEEK_LOCK:
            f.seek(offset)
            return int(f.readinto(view))
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got


def read_array(f: Any, offset: int, dtype: np.dtype, shape: tuple[int, ...], what: str | Msg) -> np.ndarray:
    """Read a C-ordered array from an open file into fresh memory (no mmap: resident memory stays
    the size of one tensor, whatever the file size)."""
    out = np.empty(shape, dtype=dtype)
    view = out.reshape(-1).view(np.uint8).data if out.size else memoryview(b"")
    got = _read_at(f, offset, view) if out.size else 0
    if got != out.nbytes:
        raise ModelReadError(
            Msg(
                "{what}: file is truncated (wanted {nbytes} at offset {offset})",
                what=what,
                nbytes=Bytes(out.nbytes),
                offset=offset,
            )
        )
    return out
