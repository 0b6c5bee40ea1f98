"""Write a PyTorch zip checkpoint without PyTorch, streaming one tensor at a time.

The layout is the one ``torch.save`` produces (checked against torch 2.x): stored (uncompressed)
zip records ``archive/data.pkl``, ``.format_version``, ``.storage_alignment``, ``byteorder``,
``data/<i>`` (one storage per tensor, its data 64-byte aligned by padding the local header's extra
field with an ``FB`` record), ``version`` and ``.data/serialization_id``. Local headers carry no
sizes or CRC (flag bit 3); a data descriptor follows each record and the central directory has the
real values. The Zip64 end records are always written, as torch does; entries past 4 GiB get Zip64
extra fields.

The pickle (protocol 2) is built opcode by opcode: ``{"state_dict": OrderedDict(name ->
torch._utils._rebuild_tensor_v2(("storage", torch.<X>Storage, "<i>", "cpu", numel), 0, size,
stride, False, OrderedDict()))}``, like LDM saves; fp8 tensors use ``_rebuild_tensor_v3`` with an
``UntypedStorage`` and the dtype, as torch does. ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import builtins
import secrets
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sdmodel.errors import ConversionError, error_message
from sdmodel.formats.base import TensorInfo
from sdmodel.formats.sink import Expected, Output, raw_bytes
from sdmodel.formats.torch_records import STORAGE_NAMES, TORCH_DTYPE_NAMES
from sdmodel.i18n import Bytes, Msg

ALIGN = 64
ZIP64_LIMIT = 0xFFFFFFFF
ARCHIVE = "archive"

# torch's names, from the reader's tables: a typed storage where torch has one, else an untyped
# storage plus the dtype (torch's v3 rebuild).
STORAGE_TYPES = STORAGE_NAMES
TORCH_DTYPES_V3 = {d: name for d, name in TORCH_DTYPE_NAMES.items() if d not in STORAGE_NAMES}


# --- pickle ------------------------------------------------------------------------------------


class _Pickler:
    """Just the protocol-2 opcodes a state dict needs, with a memo for repeated globals."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")
        self.memo: dict[tuple[str, str], int] = {}

    def _emit_put(self, n: int) -> None:
        self.out += b"q" + bytes([n]) if n < 256 else b"r" + struct.pack("<I", n)

    def glob(self, module: str, name: str) -> None:
        key = (module, name)
        if key in self.memo:
            n = self.memo[key]
            self.out += b"h" + bytes([n]) if n < 256 else b"j" + struct.pack("<I", n)
            return
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        n = len(self.memo)
        self.memo[key] = n
        self._emit_put(n)

    def string(self, s: str) -> None:
        raw = s.encode("utf-8")
        self.out += b"X" + struct.pack("<I", len(raw)) + raw

    def int(self, v: int) -> None:
        if 0 <= v < 256:
            self.out += b"K" + bytes([v])
        elif 0 <= v < 65536:
            self.out += b"M" + struct.pack("<H", v)
        elif -(2**31) <= v < 2**31:
            self.out += b"J" + struct.pack("<i", v)
        else:
            raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            self.out += b"\x8a" + bytes([len(raw)]) + raw

    def int_tuple(self, values: tuple[builtins.int, ...]) -> None:
        if not values:
            self.out += b")"
            return
        if len(values) > 3:
            self.out += b"("
        for v in values:
            self.int(v)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(values), b"t")

    def empty_ordered_dict(self) -> None:
        self.glob("collections", "OrderedDict")
        self.out += b")R"


def _strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def state_dict_pickle(tensors: list[TensorInfo]) -> bytes:
    """The ``data.pkl`` of a checkpoint holding ``{"state_dict": tensors}`` (storage keys "0", "1"...
    in order): the wrapping LDM checkpoints have and every loader accepts."""
    p = _Pickler()
    p.out += b"}"  # EMPTY_DICT
    p.string("state_dict")
    p.empty_ordered_dict()
    p.out += b"("
    for i, t in enumerate(tensors):
        p.string(t.name)
        v3 = t.dtype in TORCH_DTYPES_V3
        if not v3 and t.dtype not in STORAGE_TYPES:
            raise ConversionError(
                Msg(
                    "tensor {name}: dtype {dtype} cannot be written to a PyTorch checkpoint", name=t.name, dtype=t.dtype
                )
            )
        p.glob("torch._utils", "_rebuild_tensor_v3" if v3 else "_rebuild_tensor_v2")
        p.out += b"(("
        p.string("storage")
        if v3:
            p.glob("torch.storage", "UntypedStorage")
        else:
            p.glob("torch", STORAGE_TYPES[t.dtype])
        p.string(str(i))
        p.string("cpu")
        p.int(t.nbytes if v3 else t.numel)
        p.out += b"tQ"  # TUPLE, BINPERSID
        p.int(0)
        p.int_tuple(t.shape)
        p.int_tuple(_strides(t.shape))
        p.out += b"\x89"  # NEWFALSE
        p.empty_ordered_dict()
        if v3:
            p.glob("torch", TORCH_DTYPES_V3[t.dtype])
        p.out += b"tR"  # TUPLE, REDUCE
    p.out += b"u"  # SETITEMS
    p.out += b"s"  # SETITEM
    p.out += b"."  # STOP
    return bytes(p.out)


# --- zip ---------------------------------------------------------------------------------------


class _Entry:
    def __init__(self, name: str, offset: int, size: int) -> None:
        self.name = name.encode("utf-8")
        self.offset = offset
        self.size = size
        self.crc = 0


class CkptWriter:
    """Streams a checkpoint: ``begin`` (pickle and small records), ``write_tensor`` once per tensor
    in order, ``finish`` (small records, central directory)."""

    def __init__(self, tensors: list[TensorInfo]) -> None:
        self.tensors = list(tensors)
        self.entries: list[_Entry] = []
        self.pickle = state_dict_pickle(self.tensors)
        self._open: _Entry | None = None
        self._next = 0
        self._crc = 0
        self._written = 0

    def _zip64(self, e: _Entry) -> bool:
        return e.size >= ZIP64_LIMIT or e.offset >= ZIP64_LIMIT

    def _start(self, f: Output, name: str, size: int) -> None:
        e = _Entry(f"{ARCHIVE}/{name}", f.tell(), size)
        extra = b""
        if e.size >= ZIP64_LIMIT:
            extra = struct.pack("<HHQQ", 1, 16, e.size, e.size)
        elif e.offset >= ZIP64_LIMIT:
            extra = struct.pack("<HHQ", 1, 8, e.offset)
        base = e.offset + 30 + len(e.name) + len(extra) + 4
        pad = -base % ALIGN
        extra += b"FB" + struct.pack("<H", pad) + b"Z" * pad
        f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, 0x0808, 0, 0, 0, 0, 0, 0, len(e.name), len(extra)))
        f.write(e.name)
        f.write(extra)
        self.entries.append(e)
        self._open, self._crc, self._written = e, 0, 0

    def _data(self, f: Output, data: bytes | memoryview) -> None:
        f.write(data)
        self._crc = zlib.crc32(data, self._crc)
        self._written += len(data)

    def _end(self, f: Output) -> None:
        e = self._open
        assert e is not None
        if self._written != e.size:
            raise ConversionError(
                Msg(
                    "{name}: wrote {written}, expected {size}",
                    name=e.name.decode(),
                    written=Bytes(self._written),
                    size=e.size,
                )
            )
        e.crc = self._crc
        if self._zip64(e):
            f.write(struct.pack("<IIQQ", 0x08074B50, e.crc, e.size, e.size))
        else:
            f.write(struct.pack("<IIII", 0x08074B50, e.crc, e.size, e.size))
        self._open = None

    def _record(self, f: Output, name: str, data: bytes) -> None:
        self._start(f, name, len(data))
        self._data(f, data)
        self._end(f)

    def begin(self, f: Output) -> None:
        self._record(f, "data.pkl", self.pickle)
        self._record(f, ".format_version", b"1")
        self._record(f, ".storage_alignment", str(ALIGN).encode())
        self._record(f, "byteorder", b"little")

    def write_tensor(self, f: Output, index: int, data: bytes | memoryview) -> None:
        """All bytes of tensor ``index`` (tensors must come in order)."""
        if index != self._next:
            raise ConversionError(Msg("checkpoint writer: tensor {index} written out of order", index=index))
        self._start(f, f"data/{index}", self.tensors[index].nbytes)
        if len(data):
            self._data(f, data)
        self._end(f)
        self._next += 1

    def finish(self, f: Output) -> None:
        if self._next != len(self.tensors):
            raise ConversionError(
                Msg("checkpoint writer: {value} tensors were not written", value=len(self.tensors) - self._next)
            )
        self._record(f, "version", b"3\n")
        self._record(f, ".data/serialization_id", "".join(str(secrets.randbelow(10)) for _ in range(40)).encode())
        cd_start = f.tell()
        for e in self.entries:
            extra = b""
            fields: list[int] = []
            size32 = e.size
            off32 = e.offset
            if e.size >= ZIP64_LIMIT:
                fields += [e.size, e.size]
                size32 = 0xFFFFFFFF
            if e.offset >= ZIP64_LIMIT:
                fields.append(e.offset)
                off32 = 0xFFFFFFFF
            if fields:
                extra = struct.pack("<HH", 1, 8 * len(fields)) + struct.pack(f"<{len(fields)}Q", *fields)
            f.write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    0,
                    0,
                    0x0808,
                    0,
                    0,
                    0,
                    e.crc,
                    size32,
                    size32,
                    len(e.name),
                    len(extra),
                    0,
                    0,
                    0,
                    0,
                    off32,
                )
            )
            f.write(e.name)
            f.write(extra)
        cd_end = f.tell()
        n, cd_size = len(self.entries), cd_end - cd_start
        f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, n, n, cd_size, cd_start))
        f.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
        f.write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                min(n, 0xFFFF),
                min(n, 0xFFFF),
                min(cd_size, 0xFFFFFFFF),
                min(cd_start, 0xFFFFFFFF),
                0,
            )
        )

    # --- checks of a written file (no torch needed) ---

    def check(self, path: Path) -> None:
        """The zip directory lists every record with the planned sizes."""
        try:
            with zipfile.ZipFile(path) as z:
                sizes = {i.filename: i.file_size for i in z.infolist()}
        except (zipfile.BadZipFile, OSError) as e:
            raise ConversionError(
                Msg("{path}: written checkpoint is not a valid zip ({reason})", path=path, reason=error_message(e))
            ) from None
        want = {f"{ARCHIVE}/data/{i}": t.nbytes for i, t in enumerate(self.tensors)}
        want[f"{ARCHIVE}/data.pkl"] = len(self.pickle)
        for name, size in want.items():
            if sizes.get(name) != size:
                raise ConversionError(
                    Msg("{path}: record {name} is missing or has the wrong size", path=path, name=name)
                )

    def read_storage(self, path: Path, index: int) -> bytes:
        """The bytes of tensor ``index`` as a zip reader sees them (CRC checked)."""
        with zipfile.ZipFile(path) as z:
            return z.read(f"{ARCHIVE}/data/{index}")


class CkptSink:
    """The checkpoint writer as a ``Sink`` (formats/sink.py): tensors in the given order."""

    format = "ckpt"

    def __init__(self, tensors: list[TensorInfo]) -> None:
        self.writer = CkptWriter(tensors)
        self.order = list(range(len(self.writer.tensors)))
        self.digest: str | None = None  # a checkpoint has no data hash

    def begin(self, f: Output) -> None:
        self.writer.begin(f)

    def encode(self, index: int, array: np.ndarray, into: np.ndarray | None = None) -> memoryview:
        return raw_bytes(array)

    def write(self, f: Output, index: int, data: memoryview) -> None:
        self.writer.write_tensor(f, index, data)

    def hash(self, data: memoryview) -> None:
        """The zip CRCs are computed while writing."""

    def fill(self, values: dict[str, str]) -> None:
        """A PyTorch checkpoint has no metadata: nothing to fill."""

    def finish(self, f: Output) -> None:
        self.writer.finish(f)

    def check(self, path: Path) -> None:
        self.writer.check(path)

    def verify(self, path: Path, expected: Expected) -> None:
        for i, t in enumerate(self.writer.tensors):
            if self.writer.read_storage(path, i) != bytes(raw_bytes(expected(i))):
                raise ConversionError(
                    Msg("{path}: tensor {name} differs from the source after casting", path=path, name=t.name)
                )
