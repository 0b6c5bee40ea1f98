"""GGUF (version 3) written as a stream: the whole header first, then each tensor's bytes in turn.

Everything in the header (key-values, tensor names, shapes, types and offsets) is known from the
plan before any tensor is read, so a tensor is written as soon as it is quantized and the model is
never held in memory. Layout (GGML's gguf.h): magic, version, counts, key-values, tensor infos
(dimensions in GGML order: the numpy shape reversed), padding to the alignment, then the data with
each tensor starting on an aligned offset.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.errors import ConversionError, error_message
from sdmodel.formats.base import TensorInfo
from sdmodel.formats.sink import Output
from sdmodel.i18n import Bytes, Msg
from sdmodel.quant.ggml_quantize import GGML_TYPE_IDS, NonFiniteError, QuantType, as_float32, quantize, row_bytes

ALIGNMENT = 32  # GGUF's default (no general.alignment key written)
GGUF_VERSION = 3
# GGUF value types (GGML gguf.h, gguf_type); gguf-py is not imported here: it takes 0.4 s to load
_UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY, _INT64 = 4, 5, 6, 7, 8, 9, 11

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
        return struct.pack("<I", _STRING) + _string(value)
    if isinstance(value, bool):
        return struct.pack("<I?", _BOOL, value)
    if isinstance(value, int):
        if 0 <= value < 2**32:
            return struct.pack("<II", _UINT32, value)
        return struct.pack("<Iq", _INT64, value)
    if isinstance(value, float):
        return struct.pack("<If", _FLOAT32, value)
    return struct.pack(f"<IIQ{len(value)}i", _ARRAY, _INT32, len(value), *value)


def _pad(n: int) -> int:
    return -n % ALIGNMENT


class GGUFWriter:
    """Write ``begin`` (header), then ``write_tensor`` for every tensor in order, then ``finish``."""

    def __init__(self, tensors: Sequence[GGUFTensor], kv: Mapping[str, KVValue]) -> None:
        self.tensors = list(tensors)
        names = [t.name for t in self.tensors]
        if len(set(names)) != len(names):
            raise ConversionError(Msg("GGUF tensor names must be unique"))
        self.offsets: list[int] = []
        offset = 0
        infos = []
        for t in self.tensors:
            dims = tuple(reversed(t.shape))
            infos.append(
                _string(t.name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, GGML_TYPE_IDS[t.qtype], offset)
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

    def begin(self, f: Output) -> None:
        f.write(self.header)

    def write_tensor(self, f: Output, index: int, data: memoryview | bytes) -> None:
        t = self.tensors[index]
        if index != self._next:
            raise ConversionError(Msg("GGUF tensors must be written in order: {name} came out of turn", name=t.name))
        size = memoryview(data).nbytes
        if size != t.nbytes:
            raise ConversionError(
                Msg(
                    "{name}: {size} for a {qtype} tensor of {nbytes}",
                    name=t.name,
                    size=Bytes(size),
                    qtype=t.qtype,
                    nbytes=t.nbytes,
                )
            )
        f.write(data)
        f.write(bytes(_pad(t.nbytes)))
        self._next += 1

    def finish(self, f: Output) -> None:
        if self._next != len(self.tensors):
            raise ConversionError(
                Msg(
                    "GGUF file incomplete: {next} of {tensors_count} tensors written",
                    next=self._next,
                    tensors_count=len(self.tensors),
                )
            )


class GGUFSink:
    """The engine's GGUF output (a ``Sink``, formats/sink.py): ``tensors`` as the engine hands them
    over (name, values' dtype, shape as stored), ``types`` the GGML type of each, ``kv`` the
    key-values. ``encode`` quantizes (using both cores); the header is written before any tensor.

    ``check`` re-reads the file with gguf-py: architecture, names, types, shapes, and for a few
    tensors (evenly spread, quantized ones first) the first and last rows: their bytes as encoded
    and their values dequantized by gguf-py against the source values kept while encoding."""

    format = "gguf"
    SAMPLES = 8

    def __init__(self, tensors: Sequence[TensorInfo], types: Sequence[QuantType], kv: Mapping[str, KVValue]) -> None:
        self.infos = list(tensors)
        self.types = list(types)
        self.kv = dict(kv)
        self.tensors = [
            GGUFTensor(t.name, q, t.shape, row_bytes(q, t.shape[-1]) * (t.numel // t.shape[-1]) if t.numel else 0)
            for t, q in zip(self.infos, self.types, strict=True)
        ]
        self.writer = GGUFWriter(self.tensors, self.kv)
        self.order = list(range(len(self.tensors)))
        self.digest: str | None = None  # GGUF records no data hash
        pool = [i for i, q in enumerate(self.types) if q not in ("F32", "F16", "BF16")] or self.order
        step = max(1, (len(pool) - 1) // max(1, self.SAMPLES - 1)) if pool else 1
        self._sampled = set(pool[::step][: self.SAMPLES])
        self._kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # index -> (source rows, encoded rows)

    @classmethod
    def from_plan(cls, tensors: list[TensorInfo], metadata: Mapping[str, object] | None) -> GGUFSink:
        """As the engine makes sinks: each tensor's dtype is its GGML type; ``metadata`` holds the
        plan's GGUF key-values and string metadata (ModelSpec, source identity). GGUF records no
        data hash, so ModelSpec's hash placeholder is left out."""
        kv: dict[str, KVValue] = {}
        items = sorted((metadata or {}).items(), key=lambda kv: not kv[0].startswith("general."))
        for key, value in items:
            if key != "modelspec.hash_sha256" and isinstance(value, str | bool | int | float | tuple):
                kv[key] = value
        return cls(tensors, [t.dtype for t in tensors], kv)  # type: ignore[misc]

    def begin(self, f: Output) -> None:
        self.writer.begin(f)

    def encode(self, index: int, array: np.ndarray, into: np.ndarray | None = None) -> memoryview:
        t = self.tensors[index]
        blocks_into = into[: t.nbytes] if into is not None and t.qtype not in ("F32", "F16", "BF16") else None
        try:
            blocks = quantize(array.reshape(t.shape), t.qtype, out=blocks_into)
        except NonFiniteError as e:
            raise ConversionError(
                Msg(
                    "{name}: {reason}; no GGUF type can hold it (nothing written)", name=t.name, reason=error_message(e)
                )
            ) from e
        rows = blocks.reshape(-1, blocks.shape[-1]) if blocks.size else blocks.reshape(0, 0)
        if index in self._sampled and len(rows):
            values = as_float32(array.reshape(len(rows), -1)[[0, -1]])  # those rows only
            self._kept[index] = (values, rows[[0, -1]].copy())
        return blocks.reshape(-1).data if blocks.size else memoryview(b"")

    def write(self, f: Output, index: int, data: memoryview) -> None:
        self.writer.write_tensor(f, index, data)

    def hash(self, data: memoryview) -> None:
        """Nothing to hash."""

    def fill(self, values: dict[str, str]) -> None:
        """Placeholder values (the source's hashes) to patch into the header: same width only."""
        self._filled = {k: v for k, v in values.items() if isinstance(self.kv.get(k), str)}

    def finish(self, f: Output) -> None:
        self.writer.finish(f)
        for key, value in getattr(self, "_filled", {}).items():
            old = _string(key) + _value(self.kv[key])
            pos = self.writer.header.find(old)
            if pos < 0 or len(value.encode()) != len(str(self.kv[key]).encode()):
                raise ConversionError(
                    Msg("internal error: GGUF placeholder of {key} cannot be filled in place", key=key)
                )
            f.seek(pos + len(old) - len(value.encode()))
            f.write(value.encode())
            self.kv[key] = value
        f.seek(0, 2)

    def _reader(self, path: Path) -> Any:
        import gguf  # noqa: PLC0415 - gguf-py takes 0.4 s to import: only when a GGUF file is checked

        try:
            return gguf.GGUFReader(path)
        except Exception as e:  # gguf-py raises ValueError, struct.error... on a bad file
            raise ConversionError(
                Msg("{path}: gguf-py cannot read the written file: {reason}", path=path, reason=error_message(e))
            ) from e

    def check(self, path: Path) -> None:
        import gguf  # noqa: PLC0415 - see _reader

        reader = self._reader(path)
        arch = reader.get_field("general.architecture")
        if arch is None or arch.contents() != self.kv.get("general.architecture"):
            raise ConversionError(Msg("{path}: gguf-py reads another general.architecture than written", path=path))
        got = [(t.name, t.tensor_type.name, tuple(int(d) for d in reversed(t.shape))) for t in reader.tensors]
        want = [(t.name, t.qtype, t.shape) for t in self.tensors]
        if got != want:
            raise ConversionError(
                Msg("{path}: gguf-py reads other tensor names, types or shapes than planned", path=path)
            )
        for i, (values, encoded) in self._kept.items():
            t = self.tensors[i]
            stored = np.asarray(reader.tensors[i].data).reshape(-1).view(np.uint8).reshape(-1, encoded.shape[-1])
            if not np.array_equal(stored[[0, -1]], encoded):
                raise ConversionError(
                    Msg("{path}: tensor {name}: the blocks read back are not the ones written", path=path, name=t.name)
                )
            back = gguf.quants.dequantize(encoded, gguf.GGMLQuantizationType[t.qtype]).reshape(values.shape)
            span = float(np.max(np.abs(values))) or 1.0
            if not np.all(np.abs(back - values) <= _TOLERANCE[t.qtype] * span):
                raise ConversionError(
                    Msg("{path}: tensor {name}: gguf-py dequantizes values far from the source", path=path, name=t.name)
                )

    def verify(self, path: Path, expected: Callable[[int], np.ndarray]) -> None:
        """Every tensor's blocks equal the source values quantized again (bit for bit)."""
        reader = self._reader(path)
        for i, t in enumerate(self.tensors):
            want = quantize(expected(i).reshape(t.shape), t.qtype).reshape(-1)
            got = np.asarray(reader.tensors[i].data).reshape(-1).view(np.uint8)
            if not np.array_equal(got, want):
                raise ConversionError(
                    Msg("{path}: tensor {name} differs from the source quantized as planned", path=path, name=t.name)
                )


# Largest dequantization error gguf-py may show, relative to the row's largest magnitude (a check
# of layout and type, far above each type's own rounding error).
_TOLERANCE: dict[str, float] = {
    "F32": 0.0,
    "F16": 1e-3,
    "BF16": 1e-2,
    "Q8_0": 0.02,
    "Q6_K": 0.1,
    "Q5_K": 0.15,
    "Q5_0": 0.15,
    "Q5_1": 0.15,
    "Q4_K": 0.25,
    "Q4_0": 0.25,
    "Q4_1": 0.25,
    "Q3_K": 0.5,
    "Q2_K": 1.0,
}
