"""GGUF (version 3) written as a stream: the whole header first, then each tensor's bytes in turn.

Everything in the header (key-values, tensor names, shapes, types and offsets) is known from the
plan before any tensor is read, so a tensor is written as soon as it is quantized and the model is
never held in memory. Layout (GGML's gguf.h): magic, version, counts, key-values, tensor infos
(dimensions in GGML order: the numpy shape reversed), padding to the alignment, then the data with
each tensor starting on an aligned offset.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from gguf import GGMLQuantizationType, GGUFValueType

from sdmodel.errors import ConversionError
from sdmodel.quant.ggml_quantize import QuantType

ALIGNMENT = 32  # GGUF's default (no general.alignment key written)
GGUF_VERSION = 3

KVValue = str | bool | int | float | tuple[int, ...]


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of the file: name, GGML type, numpy-order shape and stored size."""

    name: str
    qtype: QuantType
    shape: tuple[int, ...]
    nbytes: int


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(value: KVValue) -> bytes:
    """Typed value: str STRING, bool BOOL, int UINT32 (or INT64 when it does not fit), float
    FLOAT32, tuple of ints an ARRAY of INT32 (what ComfyUI-GGUF expects for orig_shape)."""
    if isinstance(value, str):
        return struct.pack("<I", GGUFValueType.STRING) + _string(value)
    if isinstance(value, bool):
        return struct.pack("<I?", GGUFValueType.BOOL, value)
    if isinstance(value, int):
        if 0 <= value < 2**32:
            return struct.pack("<II", GGUFValueType.UINT32, value)
        return struct.pack("<Iq", GGUFValueType.INT64, value)
    if isinstance(value, float):
        return struct.pack("<If", GGUFValueType.FLOAT32, value)
    return struct.pack(f"<IIQ{len(value)}i", GGUFValueType.ARRAY, GGUFValueType.INT32, len(value), *value)


def _pad(n: int) -> int:
    return -n % ALIGNMENT


class GGUFWriter:
    """Write ``begin`` (header), then ``write_tensor`` for every tensor in order, then ``finish``."""

    def __init__(self, tensors: Sequence[GGUFTensor], kv: Mapping[str, KVValue]) -> None:
        self.tensors = list(tensors)
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            raise ConversionError("GGUF tensor names must be unique")
        self.offsets: list[int] = []
        offset = 0
        infos = []
        for t in self.tensors:
            dims = tuple(reversed(t.shape))
            infos.append(
                _string(t.name)
                + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, GGMLQuantizationType[t.qtype], offset)
            )
            self.offsets.append(offset)
            offset += t.nbytes + _pad(t.nbytes)
        pairs = [_string(k) + _value(v) for k, v in kv.items()]
        head = b"GGUF" + struct.pack("<IQQ", GGUF_VERSION, len(self.tensors), len(pairs))
        header = head + b"".join(pairs) + b"".join(infos)
        self.header = header + bytes(_pad(len(header)))
        self.data_offset = len(self.header)
        self.size = self.data_offset + offset
        self._next = 0

    def begin(self, f: BinaryIO) -> None:
        f.write(self.header)

    def write_tensor(self, f: BinaryIO, index: int, data: memoryview | bytes) -> None:
        t = self.tensors[index]
        if index != self._next:
            raise ConversionError(f"GGUF tensors must be written in order: {t.name} came out of turn")
        size = memoryview(data).nbytes
        if size != t.nbytes:
            raise ConversionError(f"{t.name}: {size} bytes for a {t.qtype} tensor of {t.nbytes}")
        f.write(data)
        f.write(bytes(_pad(t.nbytes)))
        self._next += 1

    def finish(self, f: BinaryIO) -> None:
        if self._next != len(self.tensors):
            raise ConversionError(f"GGUF file incomplete: {self._next} of {len(self.tensors)} tensors written")
