"""Adversarial corpus for ``sdmodel scan``: SECURITY.md section 6, plus honest files of every family.

Every malicious file is written byte by byte (pickle opcodes, zip and tar structures via ``struct``)
with a harmless payload (``builtins.print('MARK')``, ``os.system('echo MARK')``...). Nothing here
ever unpickles a file. Only a few honest files use ``torch.save`` (imported lazily).

``CASES`` lists every case; ``case.write(directory)`` writes its file and returns the path.
Expectations: ``safe`` (verdict safe, no notes needed), ``notes`` (verdict safe, inert extras
allowed), ``dangerous``, ``not-safe`` (anything but safe), ``parses`` (safe or suspicious: read
correctly, no alarm required) and ``error`` (unscannable).
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAFE, NOTES, DANGEROUS, NOT_SAFE, PARSES, ERROR = "safe", "notes", "dangerous", "not-safe", "parses", "error"


def verdict_matches(expect: str, verdict: str) -> bool:
    """Whether a scanner verdict (safe/suspicious/dangerous/error) meets an expectation."""
    return {
        SAFE: verdict == "safe",
        NOTES: verdict == "safe",
        DANGEROUS: verdict == "dangerous",
        NOT_SAFE: verdict != "safe",
        PARSES: verdict in ("safe", "suspicious"),
        ERROR: verdict == "error",
    }[expect]


# --------------------------------------------------------------------------------------------------
# Pickle assembler: each helper returns the bytes of opcodes that push one value.

MARK, STOP, POP, DUP, TUPLE, REDUCE, BUILD = b"(", b".", b"0", b"2", b"t", b"R", b"b"
NEWOBJ, NEWOBJ_EX, STACK_GLOBAL, INST, OBJ = b"\x81", b"\x92", b"\x93", b"i", b"o"
EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, SETITEM, SETITEMS = b"}", b"]", b")", b"s", b"u"
APPEND, APPENDS, NONE, TRUE, FALSE, BINPERSID = b"a", b"e", b"N", b"\x88", b"\x89", b"Q"
MEMOIZE = b"\x94"


def proto(n: int) -> bytes:
    return b"\x80" + bytes([n])


def glob(module: str, name: str) -> bytes:
    """GLOBAL opcode (protocols 0-3 style)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def s(text: str) -> bytes:
    """BINUNICODE."""
    raw = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(raw)) + raw


def sbu(text: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4)."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def string0(text: str) -> bytes:
    """STRING (protocol 0, quoted repr)."""
    return b"S'" + text.encode() + b"'\n"


def sglob(module: str, name: str) -> bytes:
    """STACK_GLOBAL with its two operands (protocol 4)."""
    return sbu(module) + sbu(name) + STACK_GLOBAL


def i(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def f64(x: float) -> bytes:
    return b"G" + struct.pack(">d", x)


def tup(*items: bytes) -> bytes:
    if not items:
        return EMPTY_TUPLE
    if len(items) <= 3:
        return b"".join(items) + b"\x85\x86\x87"[len(items) - 1 : len(items)]
    return MARK + b"".join(items) + TUPLE


def lst(*items: bytes) -> bytes:
    return EMPTY_LIST + (MARK + b"".join(items) + APPENDS if items else b"")


def dct(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(k + v for k, v in pairs)
    return EMPTY_DICT + (MARK + body + SETITEMS if body else b"")


def call(module: str, name: str, *args: bytes) -> bytes:
    """GLOBAL + args tuple + REDUCE."""
    return glob(module, name) + tup(*args) + REDUCE


def odict(pairs: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    body = b"".join(k + v for k, v in pairs)
    return call("collections", "OrderedDict") + (MARK + body + SETITEMS if body else b"")


def pkl(body: bytes, protocol: int = 2) -> bytes:
    return (proto(protocol) if protocol >= 2 else b"") + body + STOP


MARK_PRINT = call("builtins", "print", s("MARK"))


def contiguous(size: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for d in reversed(size):
        stride.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(stride))


def ints(values: Iterable[int]) -> bytes:
    return tup(*(i(v) for v in values))


def storage_pid(stype: str, key: str, numel: int, location: str = "cpu", legacy: bool = False) -> bytes:
    module = "torch.storage" if stype == "UntypedStorage" else "torch"
    parts = [s("storage"), glob(module, stype), s(key), s(location), i(numel)]
    if legacy:
        parts.append(NONE)
    return tup(*parts) + BINPERSID


def tensor(
    key: str,
    stype: str,
    numel: int,
    size: tuple[int, ...],
    stride: tuple[int, ...] | None = None,
    offset: int = 0,
    location: str = "cpu",
    legacy: bool = False,
    pid: bytes | None = None,
) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    pid = pid if pid is not None else storage_pid(stype, key, numel, location, legacy)
    args = pid + i(offset) + ints(size) + ints(stride if stride is not None else contiguous(size))
    return glob("torch._utils", "_rebuild_tensor_v2") + MARK + args + FALSE + odict() + TUPLE + REDUCE


def raw_tensor(stride_bytes: bytes, size_bytes: bytes, offset_bytes: bytes, pid: bytes) -> bytes:
    """A rebuild call whose size/stride/offset operands are given as opcodes (for malformed cases)."""
    args = pid + offset_bytes + size_bytes + stride_bytes
    return glob("torch._utils", "_rebuild_tensor_v2") + MARK + args + FALSE + odict() + TUPLE + REDUCE


# --------------------------------------------------------------------------------------------------
# Tensors of an SD-shaped state dict (small shapes, real names, every dtype torch uses).

ITEMSIZE = {
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "DoubleStorage": 8,
    "ByteStorage": 1,
    "UntypedStorage": 1,
}
NP_DTYPE = {
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "BFloat16Storage": "<u2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "DoubleStorage": "<f8",
    "ByteStorage": "u1",
}

SD_TENSORS: list[tuple[str, str, tuple[int, ...]]] = [
    ("model.diffusion_model.input_blocks.0.0.weight", "HalfStorage", (320, 4, 3, 3)),
    ("model.diffusion_model.input_blocks.0.0.bias", "FloatStorage", (320,)),
    ("model.diffusion_model.out.2.weight", "BFloat16Storage", (4, 320, 3, 3)),
    ("model.diffusion_model.out.2.bias", "BFloat16Storage", (4,)),
    ("first_stage_model.decoder.conv_out.weight", "FloatStorage", (3, 128, 3, 3)),
    ("first_stage_model.decoder.conv_out.bias", "FloatStorage", (3,)),
    ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "HalfStorage", (768,)),
    ("cond_stage_model.transformer.text_model.embeddings.position_ids", "LongStorage", (1, 77)),
    ("alphas_cumprod", "FloatStorage", (1000,)),
]


def storage_bytes(stype: str, numel: int, seed: int, big_endian: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    dt = np.dtype(NP_DTYPE[stype])
    if dt.kind == "f":
        arr = (rng.standard_normal(numel) * 0.02).astype(dt)
    elif stype == "LongStorage":
        arr = np.arange(numel, dtype=dt)
    else:
        arr = rng.integers(0, 2**15, numel).astype(dt)
    if big_endian:
        arr = arr.astype(dt.newbyteorder(">"))
    return arr.tobytes()


def sd_state_dict(
    tensors: list[tuple[str, str, tuple[int, ...]]] = SD_TENSORS,
    location: str = "cpu",
    legacy: bool = False,
    big_endian: bool = False,
) -> tuple[bytes, dict[str, bytes]]:
    """(OrderedDict opcodes, {storage key: raw bytes}) for the given tensors."""
    pairs, storages = [], {}
    for n, (name, stype, size) in enumerate(tensors):
        numel = int(np.prod(size))
        storages[str(n)] = storage_bytes(stype, numel, n, big_endian)
        pairs.append((s(name), tensor(str(n), stype, numel, size, location=location, legacy=legacy)))
    return odict(pairs), storages


# --------------------------------------------------------------------------------------------------
# Zip writer with every knob torch's reader tolerates.


@dataclass
class Member:
    name: str
    data: bytes = b""
    local_name: str | None = None  # differs from the central name (CVE-2025-1944)
    method: int = 0  # 0 stored, 8 deflate
    flags: int = 0x0800
    crc: int | None = None  # wrong CRC (CVE-2025-10156)
    sparse_size: int = 0  # data is a hole of this many zero bytes (written with truncate/seek)
    deflated: tuple[bytes, int, int] | None = None  # precompressed (payload, size, crc): zip bombs


def _crc32_zeros(crc: int, n: int) -> int:
    """CRC-32 of ``crc`` extended by ``n`` zero bytes, without reading them (zlib's crc32_combine)."""

    def times(mat: list[int], vec: int) -> int:
        out, k = 0, 0
        while vec:
            if vec & 1:
                out ^= mat[k]
            vec >>= 1
            k += 1
        return out

    def square(mat: list[int]) -> list[int]:
        return [times(mat, mat[k]) for k in range(32)]

    if n <= 0:
        return crc
    odd = [0xEDB88320] + [1 << k for k in range(31)]  # operator for one zero bit
    even = square(odd)  # two bits
    odd = square(even)  # four bits
    crc ^= 0xFFFFFFFF
    while True:
        even = square(odd)
        if n & 1:
            crc = times(even, crc)
        n >>= 1
        if not n:
            break
        odd = square(even)
        if n & 1:
            crc = times(odd, crc)
        n >>= 1
        if not n:
            break
    return crc ^ 0xFFFFFFFF


def write_zip(path: Path, members: list[Member], prefix: bytes = b"", align: int = 64) -> Path:
    """A zip laid out like torch's writer (stored, 64-byte aligned data), Zip64 when needed."""
    central = []
    with open(path, "wb") as f:
        f.write(prefix)
        for m in members:
            offset = f.tell()
            name = m.name.encode()
            local = (m.local_name if m.local_name is not None else m.name).encode()
            if m.sparse_size:
                size = m.sparse_size
                crc = _crc32_zeros(0, size)
                payload = None
            elif m.deflated is not None:
                payload, size, crc = m.deflated
            else:
                payload = zlib.compress(m.data)[2:-4] if m.method == 8 else m.data
                size, crc = len(m.data), zlib.crc32(m.data)
            csize = size if payload is None else len(payload)
            if m.crc is not None:
                crc = m.crc
            big = size >= 0xFFFFFFFF or csize >= 0xFFFFFFFF
            extra = struct.pack("<HHQQ", 1, 16, size, csize) if big else b""
            base = offset + 30 + len(local) + len(extra) + 4
            pad = (-base) % align if align else 0
            extra += b"FB" + struct.pack("<H", pad) + b"Z" * pad
            f.write(
                struct.pack(
                    "<IHHHHHIIIHH",
                    0x04034B50,
                    45 if big else 20,
                    m.flags,
                    m.method,
                    0,
                    0x21,
                    crc,
                    0xFFFFFFFF if big else csize,
                    0xFFFFFFFF if big else size,
                    len(local),
                    len(extra),
                )
            )
            f.write(local + extra)
            if payload is None:
                f.seek(size, 1)
            else:
                f.write(payload)
            central.append((name, m, crc, csize, size, offset))
        cd_start = f.tell()
        need64 = cd_start >= 0xFFFFFFFF
        for name, m, crc, csize, size, offset in central:
            fields = [v for v in (size, csize, offset) if v >= 0xFFFFFFFF]
            # Zip64 extra: only the overflowing fields, in the order usize, csize, offset.
            extra = (
                struct.pack("<HH", 1, 8 * len(fields)) + b"".join(struct.pack("<Q", v) for v in fields)
                if fields
                else b""
            )
            need64 |= bool(fields)
            f.write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    0x031E,
                    45 if fields else 20,
                    m.flags,
                    m.method,
                    0,
                    0x21,
                    crc,
                    min(csize, 0xFFFFFFFF),
                    min(size, 0xFFFFFFFF),
                    len(name),
                    len(extra),
                    0,
                    0,
                    0,
                    0o644 << 16,
                    min(offset, 0xFFFFFFFF),
                )
            )
            f.write(name + extra)
        cd_end = f.tell()
        if need64:
            f.write(
                struct.pack(
                    "<IQHHIIQQQQ",
                    0x06064B50,
                    44,
                    0x031E,
                    45,
                    0,
                    0,
                    len(central),
                    len(central),
                    cd_end - cd_start,
                    cd_start,
                )
            )
            f.write(struct.pack("<IIQI", 0x07064B50, 0, cd_end, 1))
        f.write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                min(len(central), 0xFFFF),
                min(len(central), 0xFFFF),
                min(cd_end - cd_start, 0xFFFFFFFF),
                min(cd_start, 0xFFFFFFFF),
                0,
            )
        )
        f.truncate()
    return Path(path)


def torch_records(
    archive: str,
    data_pkl: bytes,
    storages: dict[str, bytes],
    *,
    modern: bool = True,
    byteorder: str | None = "little",
    version: str = "3\n",
) -> list[Member]:
    """The records torch.save writes, in its order."""
    out = [Member(f"{archive}/data.pkl", data_pkl)]
    if modern:
        out += [Member(f"{archive}/.format_version", b"1"), Member(f"{archive}/.storage_alignment", b"64")]
    if byteorder is not None:
        out.append(Member(f"{archive}/byteorder", byteorder.encode()))
    out += [Member(f"{archive}/data/{k}", v) for k, v in storages.items()]
    out.append(Member(f"{archive}/version", version.encode()))
    if modern:
        out.append(Member(f"{archive}/.data/serialization_id", b"1234567890" * 4))
    return out


def write_torch_zip(
    path: Path, data_pkl: bytes, storages: dict[str, bytes] | None = None, archive: str | None = None, **kw: object
) -> Path:
    archive = archive or Path(path).stem
    return write_zip(path, torch_records(archive, data_pkl, storages or {}, **kw))  # type: ignore[arg-type]


def ckpt_pickle(state: bytes, extras: Iterable[tuple[bytes, bytes]] = ()) -> bytes:
    return pkl(dct([(s("state_dict"), state), *extras]))


def honest_zip_parts() -> tuple[bytes, dict[str, bytes]]:
    state, storages = sd_state_dict()
    return ckpt_pickle(state), storages


# --------------------------------------------------------------------------------------------------
# Legacy formats.

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def legacy_sys_info(little: bool = True) -> bytes:
    sizes = dct([(s("short"), i(2)), (s("int"), i(4)), (s("long"), i(4))])
    return pkl(
        dct(
            [
                (s("protocol_version"), i(1001)),
                (s("little_endian"), TRUE if little else FALSE),
                (s("type_sizes"), sizes),
            ]
        )
    )


def legacy_file(
    path: Path,
    obj: bytes,
    storages: dict[str, tuple[bytes, int]],
    *,
    magic: bytes | None = None,
    sys_info: bytes | None = None,
    trailer: bytes = b"",
) -> Path:
    """The 5-pickle format: magic, 1001, sys_info, object, sorted keys, then numel + bytes per key."""
    keys = sorted(storages)
    out = [
        magic if magic is not None else pkl(i(LEGACY_MAGIC)),
        pkl(i(1001)),
        sys_info if sys_info is not None else legacy_sys_info(),
        obj,
        pkl(lst(*(s(k) for k in keys))),
    ]
    for k in keys:
        data, itemsize = storages[k]
        out.append(struct.pack("<q", len(data) // itemsize) + data)
    Path(path).write_bytes(b"".join(out) + trailer)
    return Path(path)


def legacy_state() -> tuple[bytes, dict[str, tuple[bytes, int]]]:
    pairs, storages = [], {}
    for n, (name, stype, size) in enumerate(SD_TENSORS[:4] + SD_TENSORS[6:8]):
        numel = int(np.prod(size))
        storages[str(1000 + n)] = (storage_bytes(stype, numel, n), ITEMSIZE[stype])
        pairs.append((s(name), tensor(str(1000 + n), stype, numel, size, legacy=True)))
    return pkl(odict(pairs)), storages


def legacy_tar(path: Path, pickle_member: bytes) -> Path:
    """The pre-0.1.10 tar format: sys_info, storages, tensors and pickle members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (
            ("sys_info", legacy_sys_info()),
            ("storages", pkl(i(0))),
            ("tensors", pkl(i(0))),
            ("pickle", pickle_member),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


def npy_object(path: Path, payload: bytes) -> Path:
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * ((-(10 + len(header) + 1)) % 64) + b"\n"
    Path(path).write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload)
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Case registry.


@dataclass(frozen=True)
class Case:
    id: str
    section: int | None  # SECURITY.md section 6 row, None for extra honest files
    expect: str
    filename: str
    what: str
    build: Callable[[Path], object]
    needs_torch: bool = False
    runs_in_torch: bool = False  # torch.load(weights_only=False) runs its payload (writes MARKER)

    def write(self, directory: Path) -> Path:
        path = Path(directory) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        self.build(path)
        return path


CASES: list[Case] = []


def case(
    cid: str,
    section: int | None,
    expect: str,
    what: str,
    ext: str = ".pkl",
    needs_torch: bool = False,
    runs_in_torch: bool = False,
) -> Callable[[Callable[[Path], object]], Callable[[Path], object]]:
    def register(fn: Callable[[Path], object]) -> Callable[[Path], object]:
        CASES.append(Case(cid, section, expect, cid + ext, what, fn, needs_torch, runs_in_torch))
        return fn

    return register


def pickle_case(cid: str, section: int | None, expect: str, what: str, data: bytes, ext: str = ".pkl") -> None:
    case(cid, section, expect, what, ext)(lambda p, d=data: Path(p).write_bytes(d))


def zip_case(
    cid: str,
    section: int | None,
    expect: str,
    what: str,
    data_pkl: bytes,
    ext: str = ".ckpt",
    storages: dict[str, bytes] | None = None,
) -> None:
    case(cid, section, expect, what, ext)(lambda p: write_torch_zip(p, data_pkl, storages))


def build_corpus(directory: Path, with_torch: bool = True) -> list[tuple[Case, Path]]:
    """Write every case into ``directory``; torch-made honest files only when ``with_torch``."""
    return [(c, c.write(directory)) for c in CASES if with_torch or not c.needs_torch]


# ---- honest files -----------------------------------------------------------------------------------


def _torch_ckpt(path: Path, layout: str, legacy: bool = False) -> None:
    from tests.builders import layout as load_layout
    from tests.builders import shrink, with_dtype, write_ckpt

    lay = shrink(with_dtype(load_layout(layout), "F16"), keep=lambda k: False, limit=4)
    write_ckpt(path, lay, legacy=legacy)


case("h-sd15-torchsave", 1, SAFE, "SD1.5 names, torch.save, fp16 (shrunk)", ".ckpt", True)(
    lambda p: _torch_ckpt(p, "sd15")
)
case("h-sdxl-torchsave", 1, SAFE, "SDXL base names, torch.save, fp16 (shrunk)", ".ckpt", True)(
    lambda p: _torch_ckpt(p, "sdxl-base")
)
case("h-legacy-torchsave", 2, SAFE, "legacy 5-pickle format written by torch.save", ".pt", True)(
    lambda p: _torch_ckpt(p, "sd15", legacy=True)
)


@case(
    "h-views-torchsave", 3, SAFE, "shared views, transposed strides, 0-dim with offset, empty, _metadata", ".pt", True
)
def _views(path: Path) -> None:
    import torch

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = torch.nn.Linear(3, 2).state_dict()  # OrderedDict with _metadata (BUILD)
    for k, v in {
        "row": base[1],
        "t": base.t(),
        "scalar": base[2, 3],
        "empty": torch.zeros(0, 4),
        "base": base,
        "i64": torch.arange(5),
    }.items():
        sd[k] = v
    torch.save(sd, str(path))


@case("h-float8-torchsave", 6, SAFE, "float8_e4m3fn via _rebuild_tensor_v3 + UntypedStorage", ".pt", True)
def _float8(path: Path) -> None:
    import torch

    torch.save({"w": torch.linspace(-1, 1, 8).to(torch.float8_e4m3fn)}, str(path))


@case("h-safetensors", None, SAFE, "safetensors with values (shrunk SD1.5)", ".safetensors")
def _safetensors(path: Path) -> None:
    from tests.builders import layout, shrink, write_safetensors

    write_safetensors(path, shrink(layout("sd15"), keep=lambda k: False, limit=4))


@case("h-safetensors-sparse", None, SAFE, "full-size SDXL safetensors (sparse)", ".safetensors")
def _safetensors_sparse(path: Path) -> None:
    from tests.builders import layout, write_sparse_safetensors

    write_sparse_safetensors(path, layout("sdxl-base"))


@case(
    "c01-modern-zip",
    1,
    SAFE,
    "hand-built torch zip: fp32/fp16/bf16/int64, all modern records, archive name != 'archive'",
    ".ckpt",
)
def _modern(path: Path) -> None:
    data, storages = honest_zip_parts()
    write_torch_zip(path, data, storages, archive="v1-5-pruned-emaonly")


@case("c01-old-zip", 1, SAFE, "torch 1.6-style zip: no byteorder/.format_version records", ".ckpt")
def _old_zip(path: Path) -> None:
    data, storages = honest_zip_parts()
    write_torch_zip(path, data, storages, archive="archive", modern=False, byteorder=None)


@case("c02-legacy", 2, SAFE, "hand-built legacy 5-pickle file with numel-prefixed storages", ".bin")
def _legacy(path: Path) -> None:
    obj, storages = legacy_state()
    legacy_file(path, obj, storages)


@case("c03-views-hand", 3, SAFE, "shared key views, strides, 0-dim with offset, empty, _metadata BUILD", ".ckpt")
def _views_hand(path: Path) -> None:
    base = storage_bytes("FloatStorage", 24, 3)
    pairs = [
        (s("base"), tensor("0", "FloatStorage", 24, (4, 6))),
        (s("row"), tensor("0", "FloatStorage", 24, (6,), offset=6)),
        (s("t"), tensor("0", "FloatStorage", 24, (6, 4), stride=(1, 6))),
        (s("scalar"), tensor("0", "FloatStorage", 24, (), stride=(), offset=15)),
        (s("empty"), tensor("1", "FloatStorage", 0, (0, 4))),
    ]
    meta = dct([(s("_metadata"), odict([(s(""), dct([(s("version"), i(1))]))]))])
    write_torch_zip(path, pkl(odict(pairs) + meta + BUILD), {"0": base, "1": b""})


def numpy_scalar(value: float, module: str = "numpy.core.multiarray") -> bytes:
    """A numpy float64 scalar exactly as numpy pickles it at protocol 2."""
    raw = struct.pack("<d", value).decode("latin1")
    dtype = (
        call("numpy", "dtype", s("f8"), FALSE, TRUE) + tup(i(3), s("<"), NONE, NONE, NONE, i(-1), i(-1), i(0)) + BUILD
    )
    return glob(module, "scalar") + dtype + call("_codecs", "encode", s(raw), s("latin1")) + b"\x86" + REDUCE


@case(
    "c04-lightning",
    4,
    NOTES,
    "LDM training ckpt: callbacks keyed by the ModelCheckpoint class, numpy scalars via _codecs.encode",
    ".ckpt",
)
def _lightning(path: Path) -> None:
    state, storages = sd_state_dict()
    callback = dct(
        [
            (s("monitor"), NONE),
            (s("best_model_score"), numpy_scalar(0.125)),
            (s("best_model_path"), s("logs/checkpoints/last.ckpt")),
            (s("current_score"), numpy_scalar(0.25, "numpy._core.multiarray")),
            (s("dirpath"), s("logs/checkpoints")),
        ]
    )
    callbacks = dct([(glob("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"), callback)])
    extras = [
        (s("epoch"), i(6)),
        (s("global_step"), i(470000)),
        (s("pytorch-lightning_version"), s("1.4.2")),
        (s("callbacks"), callbacks),
        (s("optimizer_states"), lst()),
        (s("lr_schedulers"), lst()),
    ]
    write_torch_zip(path, pkl(dct([*extras, (s("state_dict"), state)])), storages, archive="archive")


@case(
    "c05-embedding",
    5,
    NOTES,
    "A1111 textual inversion: ParameterDict NEWOBJ+BUILD, _rebuild_parameter, __builtin__.set, cuda:0",
    ".pt",
)
def _embedding(path: Path) -> None:
    vec = tensor("0", "FloatStorage", 2 * 768, (2, 768), location="cuda:0")
    param = glob("torch._utils", "_rebuild_parameter") + tup(vec, TRUE, odict()) + REDUCE
    state = dct(
        [
            (s("training"), TRUE),
            (s("_parameters"), odict([(s("*"), param)])),
            (s("_buffers"), odict()),
            (s("_non_persistent_buffers_set"), glob("__builtin__", "set") + tup(lst()) + REDUCE),
            (s("_backward_hooks"), odict()),
            (s("_forward_hooks"), odict()),
            (s("_forward_pre_hooks"), odict()),
            (s("_state_dict_hooks"), odict()),
            (s("_load_state_dict_pre_hooks"), odict()),
            (s("_modules"), odict()),
            (s("_keys"), dct([(s("*"), NONE)])),
        ]
    )
    pdict = glob("torch.nn.modules.container", "ParameterDict") + EMPTY_TUPLE + NEWOBJ + state + BUILD
    obj = dct(
        [
            (s("string_to_token"), dct([(s("*"), i(265))])),
            (s("string_to_param"), pdict),
            (s("name"), s("my-style")),
            (s("step"), i(3000)),
            (s("sd_checkpoint"), s("7460a6fa")),
            (s("sd_checkpoint_name"), s("sd-v1-4")),
        ]
    )
    write_torch_zip(path, pkl(obj), {"0": storage_bytes("FloatStorage", 2 * 768, 5)}, archive="archive")


@case("c06-big-endian", 6, PARSES, "byteorder=big with byte-swapped data", ".ckpt")
def _big_endian(path: Path) -> None:
    state, storages = sd_state_dict(SD_TENSORS[:3], big_endian=True)
    write_torch_zip(path, ckpt_pickle(state), storages, byteorder="big")


@case("c06-float8-hand", 6, SAFE, "float8_e4m3fn via _rebuild_tensor_v3 + torch.storage.UntypedStorage", ".ckpt")
def _float8_hand(path: Path) -> None:
    args = storage_pid("UntypedStorage", "0", 8) + i(0) + ints((8,)) + ints((1,)) + FALSE + odict()
    t = glob("torch._utils", "_rebuild_tensor_v3") + MARK + args + glob("torch", "float8_e4m3fn") + TUPLE + REDUCE
    write_torch_zip(path, pkl(dct([(s("w"), t)])), {"0": bytes(range(0, 64, 8))})


pickle_case(
    "h-plain-pickle",
    None,
    SAFE,
    "plain pickle of builtin containers",
    pkl(dct([(s("a"), lst(i(1), i(2))), (s("b"), tup(f64(0.5), NONE))])),
)


@case("h-numpy-npy", None, SAFE, "numeric .npy array (no pickle)", ".npy")
def _npy(path: Path) -> None:
    with open(path, "wb") as f:
        np.save(f, np.arange(12, dtype=np.float32).reshape(3, 4))


HONEST_YAML = """model:
  base_learning_rate: 1.0e-04
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        lossconfig:
          target: torch.nn.Identity
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
    scheduler_config:
      target: ldm.lr_scheduler.LambdaLinearScheduler
"""


@case("h-yaml-sidecar", None, SAFE, "checkpoint with an honest v1-inference.yaml beside it", ".ckpt")
def _yaml_ok(path: Path) -> None:
    data, storages = honest_zip_parts()
    write_torch_zip(path, data, storages)
    path.with_suffix(".yaml").write_text(HONEST_YAML)


@case("y-yaml-target", None, DANGEROUS, "sidecar .yaml whose target: names os.system", ".ckpt")
def _yaml_bad(path: Path) -> None:
    data, storages = honest_zip_parts()
    write_torch_zip(path, data, storages)
    path.with_suffix(".yaml").write_text(
        HONEST_YAML.replace("ldm.lr_scheduler.LambdaLinearScheduler", "os.system\n      params: {command: echo MARK}")
    )


# ---- 7: direct calls through every opcode -------------------------------------------------------------

pickle_case(
    "c07-global-reduce-p0",
    7,
    DANGEROUS,
    "posix.system via GLOBAL+REDUCE, protocol 0",
    glob("posix", "system") + MARK + string0("echo MARK") + TUPLE + REDUCE + STOP,
)
pickle_case(
    "c07-global-reduce-p2",
    7,
    DANGEROUS,
    "os.system via GLOBAL+REDUCE, protocol 2",
    pkl(call("os", "system", s("echo MARK"))),
)
pickle_case(
    "c07-stack-global-p4",
    7,
    DANGEROUS,
    "builtins.print via STACK_GLOBAL, protocol 4",
    pkl(sglob("builtins", "print") + sbu("MARK") + b"\x85" + REDUCE, 4),
)
pickle_case(
    "c07-inst", 7, DANGEROUS, "builtins.print via INST", MARK + string0("MARK") + INST + b"builtins\nprint\n" + STOP
)
pickle_case("c07-obj", 7, DANGEROUS, "builtins.print via OBJ", pkl(MARK + glob("builtins", "print") + s("MARK") + OBJ))
pickle_case(
    "c07-newobj",
    7,
    DANGEROUS,
    "subprocess.Popen via NEWOBJ",
    pkl(glob("subprocess", "Popen") + tup(lst(s("echo"), s("MARK"))) + NEWOBJ),
)
pickle_case(
    "c07-newobj-ex",
    7,
    DANGEROUS,
    "builtins.print via NEWOBJ_EX",
    pkl(sglob("builtins", "print") + tup(sbu("MARK")) + EMPTY_DICT + NEWOBJ_EX, 4),
)
for _mod, _name, _arg in [
    ("nt", "system", "echo MARK"),
    ("builtins", "eval", "print('MARK')"),
    ("builtins", "exec", "print('MARK')"),
    ("builtins", "compile", "1"),
    ("builtins", "getattr", None),
    ("builtins", "__import__", "os"),
    ("builtins", "open", "/dev/null"),
    ("builtins", "breakpoint", None),
]:
    _args = (s(_arg),) if _arg is not None else ()
    if _name == "getattr":
        _args = (glob("builtins", "print"), s("__call__"))
    pickle_case(
        f"c07-{_mod}-{_name.strip('_')}", 7, DANGEROUS, f"{_mod}.{_name} called", pkl(call(_mod, _name, *_args))
    )

# ---- 8: py2 names --------------------------------------------------------------------------------------

for _mod, _name, _arg in [
    ("__builtin__", "eval", "print('MARK')"),
    ("commands", "getoutput", "echo MARK"),
    ("cPickle", "loads", "N."),
]:
    pickle_case(
        f"c08-{_mod.strip('_')}-{_name}",
        8,
        DANGEROUS,
        f"py2 name {_mod}.{_name} (mapped by CPython)",
        glob(_mod, _name) + MARK + string0(_arg) + TUPLE + REDUCE + STOP,
    )

# ---- 9: known gadgets (picklescan GHSA advisories and others) -----------------------------------------

GADGETS: list[tuple[str, str]] = [
    ("multiprocessing.util", "spawnv_passfds"),
    ("ssl", "get_server_certificate"),
    ("logging", "FileHandler"),
    ("_io", "FileIO"),
    ("urllib.request", "urlopen"),
    ("pkgutil", "resolve_name"),
    ("types", "CodeType"),
    ("cloudpickle.cloudpickle", "_make_function"),
    ("cloudpickle.cloudpickle", "subimport"),
    ("uuid", "_get_command_stdout"),
    ("_osx_support", "_read_output"),
    ("_aix_support", "_read_cmd_output"),
    ("_pyrepl.pager", "pipe_pager"),
    ("imaplib", "IMAP4_stream"),
    ("test.support.script_helper", "assert_python_ok"),
    ("mlflow.projects.backend.local", "_run_entry_point"),
    ("runpy", "_run_code"),
    ("cProfile", "run"),
    ("profile", "run"),
    ("timeit", "timeit"),
    ("pydoc", "pipepager"),
    ("pdb", "run"),
    ("bdb", "Bdb"),
    ("code", "InteractiveInterpreter.runcode"),
    ("doctest", "debug_script"),
    ("ensurepip", "_run_pip"),
    ("idlelib.pyshell", "ModifiedInterpreter.runcode"),
    ("idlelib.run", "Executive.runcode"),
    ("lib2to3.pgen2.grammar", "Grammar.loads"),
    ("trace", "Trace.run"),
    ("venv", "create"),
    ("webbrowser", "open"),
    ("ctypes", "CDLL"),
    ("shutil", "rmtree"),
    ("socket", "create_connection"),
    ("httplib", "HTTPSConnection"),
    ("http.client", "HTTPSConnection"),
    ("requests.api", "get"),
    ("pty", "spawn"),
    ("sys", "exit"),
    ("distutils.file_util", "write_file"),
    ("pip", "main"),
    ("numpy.f2py", "getlincoef"),
    ("numpy.testing._private.utils", "runstring"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("marshal", "loads"),
    ("importlib", "import_module"),
    ("torch._inductor.codecache", "compile_file"),
    ("torch.jit.unsupported_tensor_ops", "execWrapper"),
    ("torch.utils.collect_env", "run"),
    ("torch.fx.experimental.symbolic_shapes", "ShapeEnv.evaluate_guards_expression"),
    ("torch._dynamo.guards", "GuardBuilder.get"),
    ("torch.hub", "load"),
    ("torch", "load"),
    ("numpy", "load"),
    ("joblib", "load"),
    ("dill", "loads"),
    ("tempfile", "mkstemp"),
    ("threading", "Thread"),
    ("signal", "signal"),
    ("glob", "glob"),
    ("platform", "popen"),
]
for _mod, _name in GADGETS:
    pickle_case(
        f"c09-{_mod}.{_name}".replace("_", "-").lower(),
        9,
        DANGEROUS,
        f"gadget {_mod}.{_name} called",
        pkl(call(_mod, _name, s("MARK"))),
    )
pickle_case(
    "c09-uncalled-unknown",
    9,
    NOT_SAFE,
    "unknown global referenced, never called",
    pkl(dct([(s("x"), glob("mypackage.models", "Thing"))])),
)

# ---- 10: submodules and private aliases ----------------------------------------------------------------

for _mod, _name in [
    ("asyncio.unix_events", "_UnixSubprocessTransport"),
    ("aiohttp.client", "ClientSession"),
    ("_operator", "attrgetter"),
    ("_posixsubprocess", "fork_exec"),
    ("_pickle", "loads"),
    ("os.path", "join"),
    ("subprocess._posixsubprocess", "fork_exec"),
]:
    pickle_case(
        f"c10-{_mod}.{_name}".replace("_", "-").lower(),
        10,
        DANGEROUS,
        f"{_mod}.{_name}",
        pkl(call(_mod, _name, s("MARK"))),
    )

# ---- 11: dotted and dunder names ---------------------------------------------------------------------

pickle_case(
    "c11-dotted-global-p4",
    11,
    DANGEROUS,
    "GLOBAL pathlib os.system under PROTO 4",
    pkl(glob("pathlib", "os.system") + sbu("echo MARK") + b"\x85" + REDUCE, 4),
)
pickle_case(
    "c11-dotted-numpy",
    11,
    DANGEROUS,
    "STACK_GLOBAL numpy prod.os.system",
    pkl(sglob("numpy", "prod.os.system") + sbu("echo MARK") + b"\x85" + REDUCE, 4),
)
pickle_case(
    "c11-builtins-dunder",
    11,
    DANGEROUS,
    "numpy __builtins__ + builtins dict.get -> eval",
    pkl(
        sglob("builtins", "dict.get")
        + sglob("numpy", "__builtins__")
        + sbu("eval")
        + b"\x86"
        + REDUCE
        + sbu("print('MARK')")
        + b"\x85"
        + REDUCE,
        4,
    ),
)
pickle_case(
    "c11-dotted-uncalled",
    11,
    DANGEROUS,
    "dotted name referenced only",
    pkl(lst(sglob("torch", "serialization.load")), 4),
)

# ---- 12: modules as objects, BUILD on modules/functions ------------------------------------------------

pickle_case(
    "c12-module-override",
    12,
    DANGEROUS,
    "GLOBAL torch _utils then BUILD overwriting an attribute",
    pkl(glob("torch", "_utils") + dct([(s("_rebuild_tensor_v2"), glob("builtins", "print"))]) + BUILD + POP + dct([])),
)
pickle_case(
    "c12-sys-modules",
    12,
    DANGEROUS,
    "sys.modules as a global, mutated by SETITEM",
    pkl(glob("sys", "modules") + s("torch") + glob("builtins", "print") + SETITEM + POP + dct([])),
)
pickle_case(
    "c12-build-function",
    12,
    DANGEROUS,
    "BUILD with slotstate on an allow-listed function",
    pkl(glob("torch._utils", "_rebuild_tensor_v2") + tup(NONE, dct([(s("__code__"), NONE)])) + BUILD),
)
pickle_case(
    "c12-build-ordereddict-class",
    12,
    DANGEROUS,
    "BUILD on the collections.OrderedDict class",
    pkl(glob("collections", "OrderedDict") + dct([(s("__init__"), glob("builtins", "print"))]) + BUILD),
)

# ---- 13: foreign names from allowed modules ----------------------------------------------------------

pickle_case(
    "c13-collections-itemgetter",
    13,
    DANGEROUS,
    "collections._itemgetter (not allow-listed)",
    pkl(call("collections", "_itemgetter", i(0))),
)
pickle_case(
    "c13-torch-serialization-load",
    13,
    DANGEROUS,
    "torch.serialization.load",
    pkl(call("torch.serialization", "load", s("other.ckpt"))),
)
pickle_case(
    "c13-storage-load-from-bytes",
    13,
    DANGEROUS,
    "torch.storage._load_from_bytes(inner pickle)",
    pkl(call("torch.storage", "_load_from_bytes", b"C\x02N.")),
)
pickle_case(
    "c13-rebuild-from-type",
    13,
    DANGEROUS,
    "_rebuild_from_type_v2 with a foreign func",
    pkl(
        call(
            "torch._tensor",
            "_rebuild_from_type_v2",
            glob("builtins", "print"),
            glob("torch", "Tensor"),
            tup(s("MARK")),
            dct([]),
        )
    ),
)
pickle_case(
    "c13-torch-storage-name",
    13,
    DANGEROUS,
    "a *Storage name from a foreign module, called",
    pkl(call("os", "SystemStorage", s("echo MARK"))),
)

# ---- 14: nested loaders --------------------------------------------------------------------------------

_INNER = b"\x80\x02N."
pickle_case(
    "c14-pickle-loads",
    14,
    DANGEROUS,
    "pickle.loads of a harmless inner pickle",
    pkl(call("pickle", "loads", b"C" + bytes([len(_INNER)]) + _INNER)),
)
pickle_case("c14-cpickle-loads", 14, DANGEROUS, "_pickle.loads", pkl(call("_pickle", "loads", b"C\x02N.")))
pickle_case(
    "c14-partial-torch-load",
    14,
    DANGEROUS,
    "functools.partial(torch.load, ...)",
    pkl(call("functools", "partial", glob("torch", "load"), s("x.pt")) + EMPTY_TUPLE + REDUCE),
)
pickle_case(
    "c14-config-module",
    14,
    DANGEROUS,
    "torch.utils._config_module ConfigModule.load_config",
    pkl(call("torch.utils._config_module", "ConfigModule.load_config", b"C\x02N.")),
)
pickle_case(
    "c14-basichandlers",
    14,
    DANGEROUS,
    "datapipes decoder basichandlers",
    pkl(call("torch.utils.data.datapipes.utils.decoder", "basichandlers", s("pickle"), b"C\x02N.")),
)

# ---- 15: memo and operand tricks ----------------------------------------------------------------------

pickle_case(
    "c15-ctf-decoy",
    15,
    DANGEROUS,
    "STACK_GLOBAL operands from memo with decoy strings (CTF)",
    b"Vos\np2\n0Vsystem\np3\n0Vtorch\np0\n0VLongStorage\np1\n0g2\ng3\n"
    + STACK_GLOBAL
    + MARK
    + b"Vecho MARK\n"
    + TUPLE
    + REDUCE
    + STOP,
)
pickle_case(
    "c15-string-operands",
    15,
    DANGEROUS,
    "STACK_GLOBAL operands given as STRING",
    proto(4) + string0("os") + string0("system") + STACK_GLOBAL + string0("echo MARK") + b"\x85" + REDUCE + STOP,
)
pickle_case(
    "c15-missing-memo",
    15,
    DANGEROUS,
    "call then BINGET of a missing memo key",
    pkl(call("os", "system", s("echo MARK")) + b"h\x07"),
)
pickle_case(
    "c15-int-in-memo",
    15,
    DANGEROUS,
    "int stored in memo used as STACK_GLOBAL operand",
    pkl(i(5) + b"q\x00" + POP + sbu("os") + b"h\x00" + STACK_GLOBAL + sbu("x") + b"\x85" + REDUCE, 4),
)
pickle_case(
    "c15-dup",
    15,
    DANGEROUS,
    "operands duplicated with DUP",
    pkl(sbu("builtins") + sbu("print") + STACK_GLOBAL + DUP + POP + sbu("MARK") + b"\x85" + REDUCE, 4),
)
pickle_case(
    "c15-reduce-operands",
    15,
    DANGEROUS,
    "module name computed by REDUCE (str.join)",
    pkl(
        call("builtins", "str.join", s(""), lst(s("o"), s("s")))
        + sbu("system")
        + STACK_GLOBAL
        + sbu("echo MARK")
        + b"\x85"
        + REDUCE,
        4,
    ),
)
pickle_case(
    "c15-memoize-p4",
    15,
    DANGEROUS,
    "MEMOIZE + BINGET to reuse a denied global",
    pkl(sglob("os", "system") + MEMOIZE + POP + b"h\x02" + sbu("echo MARK") + b"\x85" + REDUCE, 4),
)

# ---- 16-21: stream-level tricks ------------------------------------------------------------------------

pickle_case(
    "c16-call-dropped",
    16,
    DANGEROUS,
    "REDUCE result thrown away by POP",
    pkl(call("builtins", "print", s("MARK")) + POP + dct([])),
)
pickle_case(
    "c16-obj-dropped",
    16,
    DANGEROUS,
    "OBJ result thrown away by POP",
    pkl(MARK + glob("builtins", "print") + s("MARK") + OBJ + POP + NONE),
)
pickle_case(
    "c17-truncated",
    17,
    DANGEROUS,
    "bad GLOBAL+REDUCE then a truncated stream (nullifAI)",
    proto(2) + call("os", "system", s("echo MARK")) + b"X\xff\x00\x00\x00abc",
)
pickle_case(
    "c17-garbage",
    17,
    DANGEROUS,
    "bad GLOBAL+REDUCE then an invalid opcode",
    proto(2) + call("os", "system", s("echo MARK")) + b"\xff\xfe garbage",
)
pickle_case(
    "c17-broken-benign",
    17,
    NOT_SAFE,
    "benign start then an invalid opcode",
    proto(2) + dct([(s("a"), i(1))]) + b"\xff\xfe",
)
pickle_case(
    "c18-second-pickle",
    18,
    DANGEROUS,
    "benign pickle followed by a malicious second pickle",
    pkl(lst(s("a"))) + pkl(call("os", "system", s("echo MARK"))),
)
pickle_case(
    "c18-trailing-benign",
    18,
    NOT_SAFE,
    "benign pickle followed by trailing junk",
    pkl(lst(s("a"))) + b"junk after stop\x00\x01",
)
zip_case(
    "c18-datapkl-trailing-mal",
    18,
    DANGEROUS,
    "data.pkl followed by a malicious pickle",
    honest_zip_parts()[0] + pkl(MARK_PRINT),
    storages=honest_zip_parts()[1],
)
zip_case(
    "c18-datapkl-trailing-junk",
    18,
    NOT_SAFE,
    "data.pkl followed by trailing bytes",
    honest_zip_parts()[0] + b"\x00" * 16 + b"hidden",
    storages=honest_zip_parts()[1],
)
_FRAMED = dct([(sbu("a"), i(1))]) + STOP
pickle_case(
    "c19-frame-too-long",
    19,
    NOT_SAFE,
    "FRAME length larger than the data",
    proto(4) + b"\x95" + struct.pack("<Q", len(_FRAMED) + 50) + _FRAMED,
)
pickle_case(
    "c19-frame-too-short",
    19,
    NOT_SAFE,
    "FRAME length ends inside an opcode",
    proto(4) + b"\x95" + struct.pack("<Q", 3) + _FRAMED,
)
pickle_case(
    "c19-frame-hides-call",
    19,
    DANGEROUS,
    "call hidden across a FRAME boundary",
    proto(4) + b"\x95" + struct.pack("<Q", 4) + sglob("builtins", "print") + sbu("MARK") + b"\x85" + REDUCE + STOP,
)
pickle_case("c19-two-proto", 19, NOT_SAFE, "two PROTO opcodes", proto(2) + dct([]) + proto(4) + STOP)
pickle_case(
    "c20-stack-left-mal",
    20,
    DANGEROUS,
    "stack not empty at STOP, os.system called",
    pkl(call("os", "system", s("echo MARK")) + dct([])),
)
pickle_case("c20-stack-left-benign", 20, PARSES, "stack not empty at STOP, benign", pkl(i(1) + i(2) + dct([])))
pickle_case(
    "c21-billion-laughs",
    21,
    NOT_SAFE,
    "nested DUP/memo list expansion",
    pkl(
        lst(s("lol") * 1)
        + b"q\x00"
        + b"".join(EMPTY_LIST + MARK + (b"h%c" % n) * 4 + APPENDS + b"q%c" % (n + 1) for n in range(60))
    ),
)
pickle_case(
    "c21-huge-long4",
    21,
    NOT_SAFE,
    "LONG4 claiming 2**31 bytes",
    proto(2) + b"\x8b" + struct.pack("<i", 2**31 - 1) + b"\x01" * 16 + STOP,
)
pickle_case(
    "c21-huge-binunicode",
    21,
    NOT_SAFE,
    "BINUNICODE8 claiming 2**62 bytes",
    proto(4) + b"\x8d" + struct.pack("<Q", 2**62) + b"abc" + STOP,
)
pickle_case("c21-million-marks", 21, NOT_SAFE, "10**6 MARK opcodes", proto(2) + MARK * 1_000_000 + STOP)
pickle_case(
    "c21-deep-nesting", 21, NOT_SAFE, "200000 nested empty lists", proto(2) + (EMPTY_LIST + MARK) * 200_000 + STOP
)

# ---- 22-29: container differentials --------------------------------------------------------------------


def _zip_with(members: Callable[[str], list[Member]], prefix: bytes = b"") -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        return write_zip(path, members(Path(path).stem), prefix)

    return build


def _records(arch: str, data_pkl: bytes | None = None, **member_kw: object) -> list[Member]:
    data, storages = honest_zip_parts()
    recs = torch_records(arch, data_pkl if data_pkl is not None else data, storages)
    for k, v in member_kw.items():
        setattr(recs[0], k, v)
    return recs


MAL_PKL = pkl(call("os", "system", s("echo MARK")))
case("c22-name-mismatch-mal", 22, DANGEROUS, "local name != central name, malicious data.pkl", ".ckpt")(
    _zip_with(lambda a: _records(a, MAL_PKL, local_name=f"{a}/data.pkx"))
)
case("c22-name-mismatch-benign", 22, NOT_SAFE, "local name != central name, benign", ".ckpt")(
    _zip_with(lambda a: _records(a, local_name=f"{a}/innocent.txt"))
)
case("c23-crc-mal", 23, DANGEROUS, "CRC mismatch, malicious data.pkl", ".ckpt")(
    _zip_with(lambda a: _records(a, MAL_PKL, crc=0x12345678))
)
case("c23-crc-benign", 23, NOT_SAFE, "CRC mismatch, benign", ".ckpt")(_zip_with(lambda a: _records(a, crc=0x12345678)))
for _flag in (0x1, 0x20, 0x40):
    case(f"c24-flag-{_flag:#x}-mal", 24, DANGEROUS, f"GP flag {_flag:#x}, plaintext malicious data.pkl", ".ckpt")(
        _zip_with(lambda a, fl=_flag: _records(a, MAL_PKL, flags=fl))
    )
case("c24-encrypted", 24, NOT_SAFE, "really encrypted-looking data.pkl (flag 0x1, random bytes)", ".ckpt")(
    _zip_with(lambda a: _records(a, bytes(np.random.default_rng(1).integers(0, 256, 200, dtype=np.uint8)), flags=0x1))
)
case("c25-duplicate-datapkl", 25, DANGEROUS, "duplicate archive/data.pkl, malicious first", ".ckpt")(
    _zip_with(lambda a: [Member(f"{a}/data.pkl", MAL_PKL), *_records(a)])
)
case("c25-duplicate-datapkl-second", 25, DANGEROUS, "duplicate archive/data.pkl, malicious second", ".ckpt")(
    _zip_with(lambda a: [*_records(a), Member(f"{a}/data.pkl", MAL_PKL)])
)
case("c26-polyglot-pkl", 26, DANGEROUS, "malicious pickle with a valid torch zip appended", ".pkl")(
    _zip_with(lambda a: _records(a), prefix=MAL_PKL)
)
case("c26-polyglot-ckpt", 26, DANGEROUS, "malicious pickle with a valid torch zip appended", ".ckpt")(
    _zip_with(lambda a: _records(a), prefix=MAL_PKL)
)
case("c27-junk-before-pk", 27, NOT_SAFE, "non-pickle junk before PK (torch: legacy, fails)", ".ckpt")(
    _zip_with(lambda a: _records(a), prefix=b"JUNKJUNK" * 8)
)
case("c27-payload-before-pk", 27, DANGEROUS, "legacy-looking pickle payload before PK", ".pt")(
    _zip_with(lambda a: _records(a), prefix=pkl(i(LEGACY_MAGIC)) + MAL_PKL)
)
case("c28-torchscript", 28, DANGEROUS, "TorchScript archive (constants.pkl, code/) named .ckpt", ".ckpt")(
    _zip_with(
        lambda a: [
            Member(f"{a}/data.pkl", pkl(dct([]))),
            Member(f"{a}/constants.pkl", pkl(tup())),
            Member(f"{a}/code/__torch__.py", b"def forward(self):\n    print('MARK')\n"),
            Member(f"{a}/version", b"3\n"),
        ]
    )
)
case("c29-extra-pkl", 29, DANGEROUS, "archive/extra.pkl with a payload", ".ckpt")(
    _zip_with(lambda a: [*_records(a), Member(f"{a}/extra.pkl", MAL_PKL)])
)
case("c29-pickle-as-txt", 29, DANGEROUS, "pickle payload stored as data.txt", ".ckpt")(
    _zip_with(lambda a: [*_records(a), Member(f"{a}/data.txt", MAL_PKL)])
)
case("c29-pickle-as-storage", 29, DANGEROUS, "pickle payload stored as an unused data/99 record", ".ckpt")(
    _zip_with(lambda a: [*_records(a), Member(f"{a}/data/99", MAL_PKL)])
)

# ---- 30-34: legacy formats, wrappers, extensions -------------------------------------------------------

case("c30-tar-mal", 30, DANGEROUS, "legacy tar with a malicious pickle member", ".pt")(lambda p: legacy_tar(p, MAL_PKL))
case("c30-tar-benign", 30, NOT_SAFE, "legacy tar with a benign pickle member", ".pt")(
    lambda p: legacy_tar(p, pkl(dct([])))
)
case("c31-legacy-mal-object", 31, DANGEROUS, "legacy file with correct magic, malicious main pickle", ".bin")(
    lambda p: legacy_file(p, MAL_PKL, {})
)
case("c31-legacy-mal-sysinfo", 31, DANGEROUS, "legacy file with a payload in the sys_info pickle", ".bin")(
    lambda p: legacy_file(p, legacy_state()[0], legacy_state()[1], sys_info=MAL_PKL)
)
case("c31-legacy-mal-keys", 31, DANGEROUS, "legacy file with a payload in the storage-keys pickle", ".bin")(
    lambda p: Path(p).write_bytes(pkl(i(LEGACY_MAGIC)) + pkl(i(1001)) + legacy_sys_info() + pkl(dct([])) + MAL_PKL)
)
case("c32-magic-eval", 32, DANGEROUS, "legacy magic number computed by eval", ".pt")(
    lambda p: legacy_file(
        p, legacy_state()[0], legacy_state()[1], magic=pkl(call("builtins", "eval", s(str(LEGACY_MAGIC))))
    )
)
case("c32-magic-computed", 32, NOT_SAFE, "legacy magic as a BININT expression, not one LONG", ".pt")(
    lambda p: legacy_file(p, legacy_state()[0], legacy_state()[1], magic=pkl(s(str(LEGACY_MAGIC))))
)
case("c33-7z", 33, ERROR, "7z-wrapped checkpoint", ".7z")(
    lambda p: Path(p).write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24) + MAL_PKL)
)
case("c33-7z-as-ckpt", 33, ERROR, "7z archive named .ckpt", ".ckpt")(
    lambda p: Path(p).write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24) + MAL_PKL)
)
case("c33-npy-object", 33, DANGEROUS, ".npy object array with a gadget", ".npy")(lambda p: npy_object(p, MAL_PKL))
case("c33-npy-object-benign", 33, NOT_SAFE, ".npy object array of plain ints (numpy globals)", ".npy")(
    lambda p: npy_object(
        p,
        pkl(
            call("numpy.core.multiarray", "_reconstruct", glob("numpy", "ndarray"), ints((0,)), b"C\x01b") + NONE + POP
        ),
    )
)
for _ext in (".safetensors", ".bin", ".pth"):
    pickle_case(f"c34-pickle-as-{_ext[1:]}", 34, DANGEROUS, f"malicious pickle named {_ext}", MAL_PKL, _ext)
case("c34-png-as-pt", 34, ERROR, "PNG named .pt", ".pt")(
    lambda p: Path(p).write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
)
case("c34-empty", 34, ERROR, "empty file named .ckpt", ".ckpt")(lambda p: Path(p).write_bytes(b""))

# ---- 35: compression, bombs, Zip64 ---------------------------------------------------------------------

case("c35-deflated-datapkl", 35, PARSES, "deflate-compressed data.pkl (honest content)", ".ckpt")(
    _zip_with(lambda a: _records(a, method=8))
)
case("c35-deflated-mal", 35, DANGEROUS, "deflate-compressed malicious data.pkl", ".ckpt")(
    _zip_with(lambda a: _records(a, MAL_PKL, method=8))
)


def deflate_bomb(head: bytes, fill: bytes, size: int) -> tuple[bytes, int, int]:
    """Raw deflate of ``head`` + ``fill`` repeated up to ``size`` bytes: one compressed 1 MB block
    (full flush: byte-aligned, no back references) repeated, so building it costs nothing."""
    chunk = fill * (2**20 // len(fill))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)]
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(chunk) + comp.flush(zlib.Z_FULL_FLUSH)
    n = (size - len(head)) // len(chunk)
    crc = zlib.crc32(head)
    for _ in range(n):
        crc = zlib.crc32(chunk, crc)
    return b"".join([*out, block * n, comp.flush()]), len(head) + n * len(chunk), crc


case("c35-zip-bomb", 35, NOT_SAFE, "data.pkl deflating to 256 MB of MARK opcodes", ".ckpt")(
    _zip_with(lambda a: [Member(f"{a}/data.pkl", method=8, deflated=deflate_bomb(proto(2), MARK, 2**28))])
)


@case("c35-zip64-sparse", 35, SAFE, "Zip64 checkpoint > 4 GB (sparse storage record)", ".ckpt")
def _zip64(path: Path) -> None:
    numel = (4 * 2**30 + 4096) // 2
    data = ckpt_pickle(odict([(s("model.diffusion_model.big"), tensor("0", "HalfStorage", numel, (numel,)))]))
    arch = Path(path).stem
    write_zip(
        path,
        [
            Member(f"{arch}/data.pkl", data),
            Member(f"{arch}/byteorder", b"little"),
            Member(f"{arch}/data/0", sparse_size=numel * 2),
            Member(f"{arch}/version", b"3\n"),
        ],
    )


# ---- 36-41: lying tensor metadata -------------------------------------------------------------------


def _bad_tensor_case(
    cid: str, section: int, expect: str, what: str, t: bytes, storages: dict[str, bytes] | None = None
) -> None:
    zip_case(
        cid,
        section,
        expect,
        what,
        ckpt_pickle(odict([(s("w"), t)])),
        storages=storages if storages is not None else {"0": bytes(64)},
    )


_bad_tensor_case(
    "c36-numel-too-large",
    36,
    DANGEROUS,
    "persistent id numel 1000 for a 64-byte record",
    tensor("0", "FloatStorage", 1000, (1000,)),
)
_bad_tensor_case(
    "c37-offset-beyond",
    37,
    NOT_SAFE,
    "storage_offset + extent beyond the storage",
    tensor("0", "FloatStorage", 16, (8,), offset=12),
)
_bad_tensor_case(
    "c37-negative-size", 37, NOT_SAFE, "negative size", tensor("0", "FloatStorage", 16, (-4, 4), stride=(4, 1))
)
_bad_tensor_case(
    "c37-negative-stride",
    37,
    NOT_SAFE,
    "negative stride",
    tensor("0", "FloatStorage", 16, (4,), stride=(-1,), offset=3),
)
_bad_tensor_case(
    "c37-huge-size", 37, NOT_SAFE, "size 2**40 with stride 0", tensor("0", "FloatStorage", 16, (2**40,), stride=(0,))
)
_bad_tensor_case(
    "c37-overflow",
    37,
    NOT_SAFE,
    "size product overflowing int64",
    tensor("0", "FloatStorage", 16, (2**32, 2**32), stride=(1, 1)),
)
_bad_tensor_case(
    "c37-stride-beyond",
    37,
    NOT_SAFE,
    "strides reaching past the storage",
    tensor("0", "FloatStorage", 16, (4, 4), stride=(8, 1)),
)
_bad_tensor_case(
    "c37-float-size",
    37,
    NOT_SAFE,
    "float size",
    raw_tensor(ints((1,)), tup(f64(4.0)), i(0), storage_pid("FloatStorage", "0", 16)),
)
_bad_tensor_case(
    "c37-string-size",
    37,
    NOT_SAFE,
    "string size",
    raw_tensor(ints((1,)), tup(s("4")), i(0), storage_pid("FloatStorage", "0", 16)),
)
_bad_tensor_case(
    "c37-negative-offset", 37, NOT_SAFE, "negative storage_offset", tensor("0", "FloatStorage", 16, (4,), offset=-4)
)
_bad_tensor_case("c38-key-dotdot", 38, NOT_SAFE, "storage key ../0", tensor("../0", "FloatStorage", 16, (16,)))
_bad_tensor_case(
    "c38-key-inner-dotdot", 38, NOT_SAFE, "storage key 0/../1", tensor("0/../1", "FloatStorage", 16, (16,))
)
_bad_tensor_case(
    "c38-key-int",
    38,
    NOT_SAFE,
    "storage key is an int",
    raw_tensor(
        ints((1,)),
        ints((16,)),
        i(0),
        tup(s("storage"), glob("torch", "FloatStorage"), i(0), s("cpu"), i(16)) + BINPERSID,
    ),
)
_bad_tensor_case(
    "c38-key-missing", 38, NOT_SAFE, "storage key missing from the archive", tensor("7", "FloatStorage", 16, (16,))
)
pickle_case("c39-setitem-tuple", 39, DANGEROUS, "SETITEM on a tuple", pkl(tup(i(1)) + s("k") + i(2) + SETITEM))
_bad_tensor_case(
    "c39-setitems-tensor",
    39,
    DANGEROUS,
    "SETITEMS on a tensor",
    tensor("0", "FloatStorage", 16, (16,)) + MARK + s("k") + i(1) + SETITEMS,
)
pickle_case("c39-append-dict", 39, DANGEROUS, "APPEND on a dict", pkl(dct([]) + i(1) + APPEND))
_bad_tensor_case(
    "c39-build-tensor",
    39,
    DANGEROUS,
    "BUILD on a tensor (legacy set_)",
    tensor("0", "FloatStorage", 16, (16,)) + tup(NONE, dct([(s("data"), i(1))])) + BUILD,
)
zip_case(
    "c40-two-dtypes",
    40,
    NOT_SAFE,
    "same storage key used as Float and Half",
    ckpt_pickle(
        odict([(s("a"), tensor("0", "FloatStorage", 16, (16,))), (s("b"), tensor("0", "HalfStorage", 32, (32,)))])
    ),
    storages={"0": bytes(64)},
)
case("c40-byteorder-middle", 40, NOT_SAFE, "byteorder record says 'middle'", ".ckpt")(
    lambda p: write_torch_zip(p, *honest_zip_parts(), byteorder="middle")
)
case("c40-version-out-of-range", 40, NOT_SAFE, "version record 99", ".ckpt")(
    lambda p: write_torch_zip(p, *honest_zip_parts(), version="99\n")
)
case("c41-module-pid", 41, NOT_SAFE, "legacy persistent id ('module', cls, file, source)", ".pt")(
    lambda p: legacy_file(
        p, pkl(tup(s("module"), glob("torch.nn", "Linear"), s("linear.py"), s("class Linear: pass")) + BINPERSID), {}
    )
)

# ---- 42: scanner deactivation -------------------------------------------------------------------------

for _mod, _name in [
    ("picklescan.scanner", "scan_file_path"),
    ("fickling", "always_check_safety"),
    ("fickling.hook", "deactivate_safe_ml_environment"),
    ("modelscan.modelscan", "ModelScan"),
]:
    pickle_case(
        f"c42-{_mod}.{_name}".replace("_", "-").lower(), 42, DANGEROUS, f"{_mod}.{_name} called", pkl(call(_mod, _name))
    )


# ---- 43: where torch's readers and the format specs disagree (docs/loader-differentials.md) -----------
# Each file is proven by tests/test_scan_differentials.py: torch.load(weights_only=False) runs its payload,
# which only creates MARKER in the current directory.

MARKER = "sdmodel-loader-marker"
TOUCH = call("os", "system", s(f"touch {MARKER}"))
TOUCH0 = b"N0" + glob("os", "system") + MARK + string0(f"touch {MARKER}") + TUPLE + REDUCE + STOP
"""Protocol 0, first byte an ordinary opcode (NONE): no PROTO to sniff."""


def differential(
    cid: str, what: str, ext: str = ".ckpt"
) -> Callable[[Callable[[Path], object]], Callable[[Path], object]]:
    return case(cid, 43, DANGEROUS, what, ext, runs_in_torch=True)


def _sd_records(arch: str, extra: list[Member]) -> list[Member]:
    state, storages = sd_state_dict()
    return torch_records(arch, ckpt_pickle(state), storages) + extra


differential("d01-zip-case-collision", "honest torch zip plus an appended archive/DATA.PKL (protocol 0)")(
    _zip_with(lambda a: _sd_records(a, [Member(f"{a}/DATA.PKL", TOUCH0)]))
)
differential("d02-zip-case-only", "the only pickle is archive/Data.Pkl (protocol 0): torch loads it")(
    _zip_with(lambda a: [Member(f"{a}/Data.Pkl", TOUCH0), *_records(a)[1:]])
)
differential("d03-zip-duplicate-second-read", "duplicate data.pkl, torch reads the second one (miniz order)")(
    _zip_with(lambda a: _sd_records(a, [Member(f"{a}/data.pkl", pkl(TOUCH))]))
)


def _frame_split(opcode: bytes) -> bytes:
    """FRAME of 2 bytes holding an opcode and the first byte of its 4-byte length. The spec (and
    pickle.loads) read the length across the frame end: the hidden call is string data. The C
    unpickler reading io.BytesIO drops the frame's rest, reads a zero length from the next 4
    bytes, then runs the call."""
    hidden = glob("os", "system") + MARK + s(f"touch {MARKER}") + TUPLE + REDUCE
    frame = b"\x95" + struct.pack("<Q", 2) + opcode + bytes([len(hidden) + 1])
    return proto(4) + frame + bytes(4) + hidden + POP + NONE + STOP


differential("d04-frame-split-binbytes", "FRAME 2, BINBYTES length straddling its end (CPython _pickle.c)")(
    _zip_with(lambda a: _records(a, _frame_split(b"B")))
)
differential("d05-frame-split-binunicode", "FRAME 2, BINUNICODE length straddling its end")(
    _zip_with(lambda a: _records(a, _frame_split(b"X")))
)


def tar_checkpoint(path: Path, members: list[tuple[bytes, bytes]], v7: bool = False) -> Path:
    """A tar written header by header (raw names; ``v7``: no ustar magic, as tar before POSIX)."""
    out = bytearray()
    for name, data in members:
        head = bytearray(512)
        head[: len(name)] = name
        head[100:108] = b"0000644\0"
        head[108:116] = head[116:124] = b"0000000\0"
        head[124:136] = b"%011o\0" % len(data)
        head[136:148] = b"00000000000\0"
        head[156:157] = b"0"
        if not v7:
            head[257:265] = b"ustar\x0000"
        head[148:156] = b" " * 8
        head[148:156] = b"%06o\0 " % sum(head)
        out += head + data + bytes(-len(data) % 512)
    Path(path).write_bytes(bytes(out + bytes(1024)))
    return Path(path)


_NO_STORAGES = pkl(i(0)) + pkl(lst())
differential("d06-tar-v7", "legacy tar without the ustar magic (tarfile only checks the checksum)", ".pt")(
    lambda p: tar_checkpoint(
        p, [(b"storages", _NO_STORAGES), (b"tensors", pkl(i(0))), (b"pickle", pkl(TOUCH))], v7=True
    )
)
differential("d07-tar-storages-second-pickle", "legacy tar: payload in the 2nd pickle of 'storages'", ".pt")(
    lambda p: tar_checkpoint(
        p, [(b"storages", pkl(i(1)) + pkl(TOUCH)), (b"tensors", pkl(i(0))), (b"pickle", pkl(dct([])))]
    )
)
differential("d08-tar-tensors-second-pickle", "legacy tar: payload in the 2nd pickle of 'tensors'", ".pt")(
    lambda p: tar_checkpoint(
        p, [(b"storages", _NO_STORAGES), (b"tensors", pkl(i(1)) + pkl(TOUCH)), (b"pickle", pkl(dct([])))]
    )
)
differential("d09-tar-npy-polyglot", "legacy tar whose first member is named like a .npy header", ".npy")(
    lambda p: tar_checkpoint(
        p, [(b"\x93NUMPY\x01\x00", b""), (b"storages", _NO_STORAGES), (b"tensors", pkl(i(0))), (b"pickle", pkl(TOUCH))]
    )
)
