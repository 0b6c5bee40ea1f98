"""Read a zip archive the way PyTorch's miniz reader does.

Python's ``zipfile`` raises on anomalies torch tolerates (and fixes others silently), so a checker
that used it would see a different archive than ``torch.load``. This reader follows miniz: find the
end-of-central-directory record (and the Zip64 locator/record), walk the central directory, take
sizes and offsets from it, and read each local header only to find where the data starts
(``local header offset + 30 + local name length + local extra length``). CRCs are not checked
while reading (miniz does not either); :meth:`ZipView.crc_ok` computes one on demand.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

from sdmodel.errors import ModelReadError

MAX_ENTRIES = 1_000_000
MAX_CENTRAL_DIR = 256 * 1024 * 1024
_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64_LOC = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CHUNK = 1 << 20
_LOCAL_SLACK = 256  # local extra field (torch pads records to 64 bytes) + the first bytes of data


@dataclass
class ZipEntry:
    name: str
    local_name: str
    local_header_offset: int
    data_offset: int
    compressed_size: int
    size: int
    method: int
    flags: int
    crc32: int

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & 0x0001) or bool(self.flags & 0x0040)


@dataclass
class ZipView:
    """The archive as miniz sees it. ``entries`` are in central-directory order."""

    f: BinaryIO
    file_size: int
    entries: list[ZipEntry]
    prefix_bytes: int
    archive_name: str | None
    duplicates: list[str]
    comment: bytes = b""
    trailing_bytes: int = 0
    zip64: bool = False
    _by_name: dict[str, ZipEntry] = field(default_factory=dict, repr=False)

    def find(self, name: str) -> ZipEntry | None:
        """The FIRST entry with this name (what torch uses when names repeat)."""
        return self._by_name.get(name)

    def read(self, entry: ZipEntry, max_size: int | None = None) -> bytes:
        """The entry's uncompressed bytes (stored or deflated; encrypted entries are refused)."""
        if entry.encrypted or entry.flags & 0x20:
            raise ModelReadError(f"zip entry {entry.name!r} is encrypted or patched data: not readable")
        if max_size is not None and entry.size > max_size:
            raise ModelReadError(f"zip entry {entry.name!r} is {entry.size} bytes (limit {max_size})")
        if entry.data_offset + entry.compressed_size > self.file_size:
            raise ModelReadError(f"zip entry {entry.name!r} runs past the end of the file (truncated?)")
        self.f.seek(entry.data_offset)
        if entry.method == 0:
            if entry.compressed_size != entry.size:
                raise ModelReadError(f"stored zip entry {entry.name!r} has different sizes in its header")
            data = self.f.read(entry.size)
            if len(data) != entry.size:
                raise ModelReadError(f"zip entry {entry.name!r} is truncated")
            return data
        if entry.method == 8:
            out = bytearray()
            dec = zlib.decompressobj(-15)
            left = entry.compressed_size
            try:
                while left and len(out) <= entry.size:
                    chunk = self.f.read(min(_CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    out += dec.decompress(chunk, entry.size + 1 - len(out))
                if len(out) <= entry.size:
                    out += dec.flush()
            except zlib.error as e:
                raise ModelReadError(f"zip entry {entry.name!r}: corrupt deflate data ({e})") from None
            if len(out) != entry.size:
                raise ModelReadError(f"zip entry {entry.name!r} does not inflate to its stated size")
            return bytes(out)
        raise ModelReadError(f"zip entry {entry.name!r} uses unsupported compression method {entry.method}")

    def crc_ok(self, entry: ZipEntry) -> bool:
        """Whether the entry's data matches its CRC-32 (reads the whole entry, in chunks)."""
        crc = 0
        if entry.method == 0 and not entry.encrypted:
            self.f.seek(entry.data_offset)
            left = entry.size
            while left:
                chunk = self.f.read(min(_CHUNK, left))
                if not chunk:
                    return False
                crc = zlib.crc32(chunk, crc)
                left -= len(chunk)
        else:
            try:
                crc = zlib.crc32(self.read(entry))
            except ModelReadError:
                return False
        return crc == entry.crc32


def _fail(problem: str) -> ModelReadError:
    return ModelReadError(f"not a readable zip archive: {problem}")


def _decode(raw: bytes) -> str:
    # miniz compares names as bytes; surrogateescape keeps that a bijection.
    return raw.decode("utf-8", "surrogateescape")


def read_zip(f: BinaryIO, max_entries: int = MAX_ENTRIES) -> ZipView:
    """Parse the archive's directory. Raises ModelReadError on a bad or truncated zip."""
    size = f.seek(0, 2)
    if size < _EOCD.size:
        raise _fail("file too short")
    tail_len = min(size, _EOCD.size + 0xFFFF + _EOCD64_LOC.size)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(b"PK\x05\x06", 0, len(tail) - _EOCD.size + 4)
    if i < 0:
        raise _fail("no end-of-central-directory record (truncated file?)")
    eocd_pos = size - tail_len + i
    _, disk, cd_disk, n_here, n_total, cd_size, cd_offset, comment_len = _EOCD.unpack_from(tail, i)
    comment = tail[i + _EOCD.size : i + _EOCD.size + comment_len]
    trailing = max(0, size - (eocd_pos + _EOCD.size + comment_len))
    zip64 = False
    if i >= _EOCD64_LOC.size and tail[i - _EOCD64_LOC.size : i - _EOCD64_LOC.size + 4] == b"PK\x06\x07":
        _, _, rec_offset, _ = _EOCD64_LOC.unpack_from(tail, i - _EOCD64_LOC.size)
        if rec_offset + _EOCD64.size > size:
            raise _fail("Zip64 end-of-central-directory record is past the end of the file")
        f.seek(rec_offset)
        rec = f.read(_EOCD64.size)
        if rec[:4] != b"PK\x06\x06":
            raise _fail("Zip64 end-of-central-directory locator points to nothing")
        (_, _, _, _, disk, cd_disk, n_here, n_total, cd_size, cd_offset) = _EOCD64.unpack(rec)
        zip64 = True
    if disk != 0 or cd_disk != 0 or n_here != n_total:
        raise _fail("multi-disk archives are not supported")
    if n_total > max_entries:
        raise _fail(f"{n_total} entries (limit {max_entries})")
    if cd_size > MAX_CENTRAL_DIR:
        raise _fail(f"central directory of {cd_size} bytes (limit {MAX_CENTRAL_DIR})")
    if cd_offset + cd_size > size:
        raise _fail("central directory runs past the end of the file (truncated?)")
    f.seek(cd_offset)
    cd = f.read(cd_size)
    entries: list[ZipEntry] = []
    by_name: dict[str, ZipEntry] = {}
    duplicates: list[str] = []
    pos = 0
    central: list[tuple[str, int, int, int, int, int, int]] = []
    for _ in range(n_total):
        if pos + _CENTRAL.size > len(cd):
            raise _fail("central directory is truncated")
        fields = _CENTRAL.unpack_from(cd, pos)
        sig, (flags, method), (crc, csize, usize, nlen, xlen, clen), lho = (
            fields[0],
            fields[3:5],
            fields[7:13],
            fields[16],
        )
        if sig != b"PK\x01\x02":
            raise _fail(f"bad central directory entry signature at offset {cd_offset + pos}")
        end = pos + _CENTRAL.size + nlen + xlen + clen
        if end > len(cd):
            raise _fail("central directory is truncated")
        name = _decode(cd[pos + _CENTRAL.size : pos + _CENTRAL.size + nlen])
        extra = cd[pos + _CENTRAL.size + nlen : pos + _CENTRAL.size + nlen + xlen]
        if 0xFFFFFFFF in (csize, usize, lho):
            usize, csize, lho = _zip64_extra(extra, usize, csize, lho, name)
        pos = end
        central.append((name, lho, csize, usize, method, flags, crc))
    prefetch = getattr(f, "prefetch", None)
    if prefetch is not None:  # a remote file (sdmodel.remote): fetch the local headers together
        prefetch([(c[1], _LOCAL.size + 2 * len(c[0]) + _LOCAL_SLACK) for c in central])
    for name, lho, csize, usize, method, flags, crc in central:
        entries.append(_local(f, size, name, lho, csize, usize, method, flags, crc))
        if name in by_name:
            duplicates.append(name)
        else:
            by_name[name] = entries[-1]
    archive = None
    if entries and "/" in entries[0].name:
        archive = entries[0].name.split("/", 1)[0]
    prefix = min((e.local_header_offset for e in entries), default=0)
    return ZipView(f, size, entries, prefix, archive, duplicates, comment, trailing, zip64, by_name)


def _zip64_extra(extra: bytes, usize: int, csize: int, lho: int, name: str) -> tuple[int, int, int]:
    p = 0
    while p + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, p)
        body = extra[p + 4 : p + 4 + n]
        if tag == 0x0001:
            vals = []
            for q in range(0, len(body) - 7, 8):
                vals.append(struct.unpack_from("<Q", body, q)[0])
            it = iter(vals)
            try:
                if usize == 0xFFFFFFFF:
                    usize = next(it)
                if csize == 0xFFFFFFFF:
                    csize = next(it)
                if lho == 0xFFFFFFFF:
                    lho = next(it)
            except StopIteration:
                raise _fail(f"entry {name!r}: Zip64 extra field is too short") from None
            return usize, csize, lho
        p += 4 + n
    return usize, csize, lho


def _local(
    f: BinaryIO, size: int, name: str, lho: int, csize: int, usize: int, method: int, flags: int, crc: int
) -> ZipEntry:
    if lho + _LOCAL.size > size:
        raise _fail(f"entry {name!r}: local header is past the end of the file (truncated?)")
    f.seek(lho)
    head = f.read(_LOCAL.size)
    sig, _, _, _, _, _, _, _, _, nlen, xlen = _LOCAL.unpack(head)
    if sig != b"PK\x03\x04":
        raise _fail(f"entry {name!r}: no local header at offset {lho}")
    local_name = _decode(f.read(nlen))
    data_offset = lho + _LOCAL.size + nlen + xlen
    if data_offset + csize > size:
        raise _fail(f"entry {name!r} runs past the end of the file (truncated?)")
    return ZipEntry(name, local_name, lho, data_offset, csize, usize, method, flags, crc)
