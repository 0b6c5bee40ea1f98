"""GGUF: a defensive header parser and a lazy TensorSource.

The layout is the GGML project's (``docs/gguf.md`` in ggml-org/ggml): magic ``GGUF``, version,
tensor and key-value counts, the key-values, the tensor infos, then the tensor data from the first
``general.alignment`` boundary. gguf-py's ``GGUFReader`` trusts the file (it maps every count and
length as given), so the header is parsed here with every count, length, type and offset checked
against the file before anything is allocated; gguf-py is used only for the block dequantization.

Shapes: GGUF lists dimensions fastest first (``ne[0]`` is the row length); ``TensorInfo.shape`` is
the row-major shape models use, or ``comfy.gguf.orig_shape.<name>`` when ComfyUI-GGUF stored the
tensor reshaped (then ``stored_shape`` is the shape in the file).
"""

from __future__ import annotations

import itertools
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.dtypes import GGML_BLOCKS, ITEMSIZE, NUMPY_DTYPES
from sdmodel.errors import ModelReadError
from sdmodel.formats.base import TensorInfo, TensorSource, open_bytes, read_array
from sdmodel.i18n import Bytes, Msg
from sdmodel.remote import is_remote

MAGIC = b"GGUF"
MAX_COUNT = 1_000_000  # tensors or key-values: real files have a few thousand
MAX_DIMS = 8  # GGML_MAX_DIMS is 4; a little slack for newer writers
MAX_KEY = 65_535
MAX_STRING = 64 << 20
REMOTE_CHUNK = 64 << 10  # first read-ahead of a remote header (then doubling)
KEPT_ARRAY = 64  # arrays longer than this (tokenizer vocabularies) are kept as their length only
ORIG_SHAPE = "comfy.gguf.orig_shape."

# GGML type ids (ggml.h enum ggml_type) -> dtype names: plain ones as safetensors names them.
GGML_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    9: "Q8_1",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
    15: "Q8_K",
    16: "IQ2_XXS",
    17: "IQ2_XS",
    18: "IQ3_XXS",
    19: "IQ1_S",
    20: "IQ4_NL",
    21: "IQ3_S",
    22: "IQ2_S",
    23: "IQ4_XS",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    29: "IQ1_M",
    30: "BF16",
    34: "TQ1_0",
    35: "TQ2_0",
    39: "MXFP4",
}
GGML_TYPE_IDS = {v: k for k, v in GGML_TYPES.items()}

# GGUF value types: id -> (struct code, size) for scalars; 8 is string, 9 is array.
_SCALARS = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9


def is_gguf(head: bytes) -> bool:
    return head[:4] == MAGIC


class _Cursor:
    """Sequential reads of the header, each checked against the file size first. Reads ahead in
    blocks of ``chunk`` bytes, doubling up to 1 MB: a remote file's small header then costs one or
    two range requests and little beyond the tensor table, a long one (an LLM's vocabulary) few."""

    def __init__(self, f: Any, size: int, fail: Any, chunk: int = 1 << 20) -> None:
        self.f, self.size, self.fail, self.pos = f, size, fail, 0
        self.buf = b""
        self.buf_at = 0
        self.chunk = chunk

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(
                Msg("truncated GGUF header: {what} needs {n} at offset {pos}", what=what, n=Bytes(n), pos=self.pos)
            )
        end = self.pos + n
        if not (self.buf_at <= self.pos and end <= self.buf_at + len(self.buf)):
            self.f.seek(self.pos)
            self.buf = self.f.read(max(n, self.chunk))
            self.buf_at = self.pos
            self.chunk = min(2 * self.chunk, 1 << 20)
        start = self.pos - self.buf_at
        self.pos = end
        return self.buf[start : start + n]

    def scalar(self, code: str, size: int, what: str) -> Any:
        return struct.unpack(code, self.take(size, what))[0]

    def u32(self, what: str) -> int:
        return self.scalar("<I", 4, what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", 8, what)

    def string(self, what: str, limit: int = MAX_STRING) -> str:
        n = self.u64(f"{what} length")
        if n > limit or self.pos + n > self.size:
            raise self.fail(
                Msg(
                    "GGUF {what}: string length {n} is absurd (file has {value} left)",
                    what=what,
                    n=n,
                    value=Bytes(self.size - self.pos),
                )
            )
        try:
            return self.take(n, what).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(Msg("GGUF {what}: not valid UTF-8", what=what)) from None

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            code, size = _SCALARS[vtype]
            return self.scalar(code, size, what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY and depth == 0:
            itype = self.u32(f"{what} item type")
            count = self.u64(f"{what} count")
            least = _SCALARS[itype][1] if itype in _SCALARS else 8
            if itype not in _SCALARS and itype != _STRING:
                raise self.fail(Msg("GGUF {what}: unsupported array item type {itype}", what=what, itype=itype))
            if count * least > self.size - self.pos:
                raise self.fail(
                    Msg("GGUF {what}: array of {count} items is longer than the file", what=what, count=count)
                )
            if itype in _SCALARS:
                code, size = _SCALARS[itype]
                raw = self.take(count * size, what)
                if count > KEPT_ARRAY:
                    return _Skipped(count)
                return list(struct.unpack(f"<{count}{code[1]}", raw))
            items = [self.string(what) for _ in range(count)]
            return _Skipped(count) if count > KEPT_ARRAY else items
        raise self.fail(Msg("GGUF {what}: unknown value type {vtype}", what=what, vtype=vtype))


class _Skipped(int):
    """A long array kept as its length only (shown as such; JSON gets the length)."""

    def __str__(self) -> str:
        return f"[{int(self):,} items]"


class GGUFSource(TensorSource):
    """A GGUF file. ``fields`` holds the key-values (long arrays as their length);
    ``metadata`` holds the scalar ones as strings, as safetensors metadata does."""

    format = "gguf"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.fields: dict[str, Any] = {}
        self.field_spans: dict[str, tuple[int, int]] = {}  # key -> [begin, end) of its key-value in the file
        self.tensor_table: tuple[int, int] = (0, 0)  # [begin, end) of the tensor infos
        self.alignment = 32
        self.version = 0
        self._file = open_bytes(path)
        try:
            self._parse()
        except Exception:
            self._file.close()
            raise

    def _fail(self, problem: str | Msg) -> ModelReadError:
        return ModelReadError(Msg("{path}: {problem}", path=self.path, problem=problem))

    def _parse(self) -> None:
        f = self._file
        size = f.seek(0, 2)
        c = _Cursor(f, size, self._fail, REMOTE_CHUNK if is_remote(self.path) else 1 << 20)
        if c.take(4, "magic") != MAGIC:
            raise self._fail(Msg("not a GGUF file (no GGUF magic)"))
        self.version = c.u32("version")
        if self.version not in (2, 3):
            if self.version & 0xFFFF == 0 and self.version:
                raise self._fail(Msg("big-endian GGUF is not supported"))
            raise self._fail(Msg("unsupported GGUF version {version} (2 and 3 are read)", version=self.version))
        n_tensors, n_kv = c.u64("tensor count"), c.u64("key-value count")
        # Every tensor info takes at least 24 bytes and every key-value at least 12.
        if n_tensors > MAX_COUNT or n_tensors * 24 > size:
            raise self._fail(
                Msg(
                    "GGUF header claims {n_tensors} tensors: absurd for a file of {size}",
                    n_tensors=n_tensors,
                    size=Bytes(size),
                )
            )
        if n_kv > MAX_COUNT or n_kv * 12 > size:
            raise self._fail(
                Msg("GGUF header claims {n_kv} key-values: absurd for a file of {size}", n_kv=n_kv, size=Bytes(size))
            )
        for i in range(n_kv):
            begin = c.pos
            key = c.string(f"key {i}", MAX_KEY)
            vtype = c.u32(f"type of {key!r}")
            if key in self.fields:
                raise self._fail(Msg("GGUF key {key!r} appears twice", key=key))
            self.fields[key] = c.value(vtype, f"value of {key!r}")
            self.field_spans[key] = (begin, c.pos)
        self.metadata = {
            k: str(v)
            for k, v in self.fields.items()
            if not isinstance(v, (list, _Skipped)) and not k.startswith(ORIG_SHAPE)
        }
        alignment = self.fields.get("general.alignment", 32)
        if (
            not isinstance(alignment, int)
            or isinstance(alignment, bool)
            or alignment <= 0
            or alignment & (alignment - 1)
        ):
            raise self._fail(Msg("GGUF general.alignment {alignment!r} is not a power of two", alignment=alignment))
        self.alignment = alignment
        raw: list[tuple[str, tuple[int, ...], str, int]] = []
        table_begin = c.pos
        for i in range(n_tensors):
            name = c.string(f"tensor {i} name", MAX_KEY)
            n_dims = c.u32(f"tensor {name!r} rank")
            if not 0 < n_dims <= MAX_DIMS:
                raise self._fail(Msg("GGUF tensor {name!r}: rank {n_dims} is absurd", name=name, n_dims=n_dims))
            ne = tuple(c.u64(f"tensor {name!r} dimension") for _ in range(n_dims))
            if any(d == 0 for d in ne) or math.prod(ne) > size * 256:
                raise self._fail(
                    Msg(
                        "GGUF tensor {name!r}: dimensions {ne} do not fit a file of {size}",
                        name=name,
                        ne=list(ne),
                        size=Bytes(size),
                    )
                )
            tid = c.u32(f"tensor {name!r} type")
            if tid not in GGML_TYPES:
                raise self._fail(Msg("GGUF tensor {name!r}: unknown GGML type {tid}", name=name, tid=tid))
            raw.append((name, ne, GGML_TYPES[tid], c.u64(f"tensor {name!r} offset")))
        self.tensor_table = (table_begin, c.pos)
        self.data_start = -(-c.pos // alignment) * alignment
        self._offsets: dict[str, int] = {}
        spans: list[tuple[int, int, str]] = []
        tensors: dict[str, TensorInfo] = {}
        for name, ne, dtype, offset in raw:
            if name in tensors:
                raise self._fail(Msg("GGUF tensor {name!r} appears twice", name=name))
            if offset % alignment:
                raise self._fail(
                    Msg(
                        "GGUF tensor {name!r}: offset {offset} is not a multiple of {alignment}",
                        name=name,
                        offset=offset,
                        alignment=alignment,
                    )
                )
            numel = math.prod(ne)
            if dtype in GGML_BLOCKS:
                per, bsize = GGML_BLOCKS[dtype]
                if ne[0] % per:
                    raise self._fail(
                        Msg(
                            "GGUF tensor {name!r}: row of {ne} is not a whole number of {dtype} blocks ({per})",
                            name=name,
                            ne=ne[0],
                            dtype=dtype,
                            per=per,
                        )
                    )
                nbytes = numel // per * bsize
            else:
                nbytes = numel * ITEMSIZE[dtype]
            end = self.data_start + offset + nbytes
            if end > size:
                raise self._fail(
                    Msg(
                        "GGUF tensor {name!r}: data [{value}, {end}) runs past the end of the file ({size})",
                        name=name,
                        value=self.data_start + offset,
                        end=end,
                        size=Bytes(size),
                    )
                )
            stored = tuple(reversed(ne))
            shape, stored_shape = stored, None
            orig = self.fields.get(ORIG_SHAPE + name)
            if orig is not None:
                if not (
                    isinstance(orig, list)
                    and orig
                    and all(isinstance(d, int) and d > 0 for d in orig)
                    and math.prod(orig) == numel
                ):
                    raise self._fail(
                        Msg(
                            "GGUF {orig_shape}{name} {orig!r} does not match the tensor's {numel} elements",
                            orig_shape=ORIG_SHAPE,
                            name=name,
                            orig=orig,
                            numel=numel,
                        )
                    )
                shape, stored_shape = tuple(orig), stored
            tensors[name] = TensorInfo(
                name, dtype, shape, stored_nbytes=None if dtype in ITEMSIZE else nbytes, stored_shape=stored_shape
            )
            self._offsets[name] = offset
            spans.append((offset, offset + nbytes, name))
        spans.sort()
        for (_b0, e0, n0), (b1, _e1, n1) in itertools.pairwise(spans):
            if b1 < e0:
                raise self._fail(
                    Msg("GGUF tensors {n0!r} and {n1!r} overlap (offset {b1} < {e0})", n0=n0, n1=n1, b1=b1, e0=e0)
                )
        self._tensors = tensors

    @property
    def architecture(self) -> str | None:
        arch = self.fields.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def stored_shape(self, name: str) -> tuple[int, ...]:
        info = self._tensors[name]
        return info.stored_shape or info.shape

    def read(self, name: str) -> np.ndarray:
        """Plain types: the values in ``shape``. Block types: the stored bytes in the stored shape
        with the last dimension in bytes (what ``gguf.quants.dequantize`` takes)."""
        info = self._tensors[name]
        where = Msg("{path}: tensor {name!r}", path=self.path, name=name)
        offset = self.data_start + self._offsets[name]
        stored = self.stored_shape(name)
        if info.dtype in GGML_BLOCKS:
            per, bsize = GGML_BLOCKS[info.dtype]
            return read_array(self._file, offset, np.dtype(np.uint8), (*stored[:-1], stored[-1] // per * bsize), where)
        return read_array(self._file, offset, NUMPY_DTYPES[info.dtype], stored, where).reshape(info.shape)

    def data_range(self, name: str) -> tuple[int, int]:
        begin = self.data_start + self._offsets[name]
        return begin, begin + self._tensors[name].nbytes

    def close(self) -> None:
        self._file.close()
