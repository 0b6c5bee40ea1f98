"""safetensors: header-only reader validating like the reference reader, and a streaming writer."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np

from sdmodel.dtypes import ITEMSIZE, NUMPY_DTYPES, SUBBYTE_BITS, storage_nbytes
from sdmodel.errors import ModelReadError
from sdmodel.formats.base import TensorInfo, TensorSource, open_bytes, read_array
from sdmodel.i18n import Bytes, Msg

MAX_HEADER = 100_000_000


class SafetensorsSource(TensorSource):
    format = "safetensors"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._file = open_bytes(path)
        try:
            self._parse()
        except Exception:
            self._file.close()
            raise

    def _fail(self, problem: str | Msg, code: str | None = None) -> ModelReadError:
        return ModelReadError(Msg("{path}: {problem}", path=self.path, problem=problem), code)

    def _parse(self) -> None:
        f = self._file
        file_size = f.seek(0, 2)
        f.seek(0)
        head = f.read(8)
        if len(head) < 8:
            raise self._fail(Msg("not a safetensors file (shorter than 8 bytes)"))
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            raise self._fail(Msg("safetensors header length {n} exceeds the 100 MB limit", n=n))
        if 8 + n > file_size:
            raise self._fail(
                Msg(
                    "truncated: header length {n} runs past the end of the file ({file_size})",
                    n=n,
                    file_size=Bytes(file_size),
                )
            )
        raw = f.read(n)
        self.header_size = n
        self.data_start = 8 + n
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._fail(Msg("safetensors header is not valid UTF-8")) from None
        if not text.startswith("{"):
            self.note("header-leading-space", Msg("header does not start with '{': A1111 cannot read its metadata"))
        last_pairs: list = []

        def hook(pairs: list) -> dict:
            # Called innermost first: the last call is the top-level object.
            last_pairs[:] = pairs
            return dict(pairs)

        try:
            header = json.loads(text, object_pairs_hook=hook)
        except json.JSONDecodeError as e:
            raise self._fail(
                Msg("safetensors header is not valid JSON ({msg} at char {pos})", msg=e.msg, pos=e.pos)
            ) from None
        if not isinstance(header, dict):
            raise self._fail(Msg("safetensors header is not a JSON object"))
        if len(last_pairs) != len(header):
            self.note("duplicate-names", Msg("header names a tensor more than once; readers keep the last entry"))
        meta = header.pop("__metadata__", None)
        if meta is not None:
            if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
                raise self._fail(Msg("__metadata__ must map strings to strings"))
            self.metadata = dict(meta)
        entries: list[tuple[int, int, str]] = []
        unknown: list[str] = []
        tensors: dict[str, TensorInfo] = {}
        self._offsets: dict[str, int] = {}
        for name, entry in header.items():
            if not isinstance(entry, dict):
                raise self._fail(Msg("tensor {name!r}: entry is not an object", name=name))
            dtype, shape, offs = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
            if not isinstance(dtype, str) or not dtype or len(dtype) > 32:
                raise self._fail(Msg("tensor {name!r}: invalid dtype {dtype!r}", name=name, dtype=dtype))
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
            ):
                raise self._fail(Msg("tensor {name!r}: invalid shape {shape!r}", name=name, shape=shape))
            if (
                not isinstance(offs, list)
                or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
                or not 0 <= offs[0] <= offs[1]
            ):
                raise self._fail(Msg("tensor {name!r}: invalid data_offsets {offs!r}", name=name, offs=offs))
            need = storage_nbytes(dtype, math.prod(shape))
            if need is None:
                # A dtype newer than sdmodel: the tensor is listed (its span is its size) and only
                # reading it fails; the rest of the file stays readable.
                unknown.append(name)
                info = TensorInfo(name, dtype, tuple(shape), stored_nbytes=offs[1] - offs[0])
            else:
                info = TensorInfo(name, dtype, tuple(shape), stored_nbytes=None if dtype in ITEMSIZE else need)
                if offs[1] - offs[0] != need:
                    raise self._fail(
                        Msg(
                            "tensor {name!r}: data_offsets span {value}, but {dtype}{shape} needs {need}",
                            name=name,
                            value=Bytes(offs[1] - offs[0]),
                            dtype=dtype,
                            shape=list(shape),
                            need=need,
                        )
                    )
            entries.append((offs[0], offs[1], name))
            tensors[name] = info
            self._offsets[name] = offs[0]
        if unknown:
            kinds = sorted({tensors[n].dtype for n in unknown})
            self.note(
                "unknown-dtype",
                Msg(
                    "{n} tensors in a dtype sdmodel cannot read ({dtypes}), e.g. {example}",
                    n=len(unknown),
                    dtypes=", ".join(kinds),
                    example=unknown[0],
                ),
            )
        entries.sort()
        pos = 0
        for begin, end, name in entries:
            if begin < pos:
                raise self._fail(
                    Msg(
                        "tensor {name!r} overlaps the previous tensor (offset {begin} < {pos})",
                        name=name,
                        begin=begin,
                        pos=pos,
                    )
                )
            if begin > pos:
                raise self._fail(Msg("gap of {value} before tensor {name!r}", value=Bytes(begin - pos), name=name))
            pos = end
        data_size = file_size - self.data_start
        if pos > data_size:
            raise self._fail(
                Msg("truncated: tensors need {pos} data bytes, file has {data_size}", pos=pos, data_size=data_size)
            )
        if pos < data_size:
            raise self._fail(
                Msg("{value} trailing bytes after the last tensor", value=data_size - pos), "trailing-bytes"
            )
        # File order = data order, which is how the reference writer lays them out.
        order = sorted(tensors, key=lambda k: self._offsets[k])
        self._tensors = {k: tensors[k] for k in order}

    def read(self, name: str) -> np.ndarray:
        info = self._tensors[name]
        if info.dtype not in NUMPY_DTYPES:
            shape = (info.nbytes,)
            if info.dtype in SUBBYTE_BITS:  # packed sub-byte values: the stored bytes
                return read_array(
                    self._file,
                    self.data_start + self._offsets[name],
                    np.dtype("u1"),
                    shape,
                    Msg("{path}: tensor {name!r}", path=self.path, name=name),
                )
            raise self._fail(Msg("tensor {name!r}: dtype {dtype!r} is not supported", name=name, dtype=info.dtype))
        return read_array(
            self._file,
            self.data_start + self._offsets[name],
            NUMPY_DTYPES[info.dtype],
            info.shape,
            Msg("{path}: tensor {name!r}", path=self.path, name=name),
        )

    def data_range(self, name: str) -> tuple[int, int]:
        """Absolute [begin, end) byte range of a tensor in the file."""
        begin = self.data_start + self._offsets[name]
        return begin, begin + self._tensors[name].nbytes

    def close(self) -> None:
        self._file.close()


def header_bytes(tensors: list[TensorInfo], metadata: dict[str, str] | None = None) -> tuple[bytes, dict[str, int]]:
    """Build a safetensors header for tensors written in the given order.

    Returns the full prefix (length + JSON padded with spaces to a multiple of 8) and each tensor's
    offset in the data section. Offsets depend only on sizes, so a writer can emit the header first
    and stream the tensors after it.
    """
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offsets: dict[str, int] = {}
    pos = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [pos, pos + t.nbytes]}
        offsets[t.name] = pos
        pos += t.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offsets


# The reference writer's dtype rank (its Rust enum order; it sorts by rank descending, then name).
_DTYPE_RANK = {
    d: i
    for i, d in enumerate(
        (
            "BOOL",
            "U8",
            "I8",
            "F8_E5M2",
            "F8_E4M3",
            "F8_E8M0",
            "I16",
            "U16",
            "F16",
            "BF16",
            "I32",
            "U32",
            "F32",
            "F64",
            "I64",
            "U64",
        )
    )
}


def reference_order(tensors: list[TensorInfo]) -> list[TensorInfo]:
    """The reference writer's order: by dtype (alignment first, descending), then by name."""
    return sorted(tensors, key=lambda t: (-ITEMSIZE[t.dtype], -_DTYPE_RANK.get(t.dtype, -1), t.name))
