"""Read a zip archive the way PyTorch's miniz reader does.

Python's ``zipfile`` raises on anomalies torch tolerates (and fixes others silently), so a checker
that used it would see a different archive than ``torch.load``. This reader follows miniz: find the
end-of-central-directory record (and the Zip64 locator/record), walk the central directory, take
sizes and offsets from it, and read an entry's local header only when the entry is read, to find
where its data starts (``local header offset + 30 + local name length + local extra length``), as
``mz_zip_reader_extract_to_mem`` does. Over HTTP that keeps a checkpoint's storage records unread
until their values are wanted. :meth:`ZipView.load_local_headers` reads them all at once (the
security scanner checks every one). CRCs are not checked while reading (miniz does not either);
:meth:`ZipView.crc_ok` computes one on demand.

Names are looked up as torch's ``PyTorchStreamReader`` does (``caffe2/serialize/inline_container.cc``
calls ``mz_zip_reader_locate_file`` with flags 0 on an archive opened with flags 0): miniz
heap-sorts the central directory by ASCII-lowercased name when it opens the archive and
binary-searches that order, comparing names ignoring ASCII case. So ``archive/DATA.PKL`` answers a
lookup of ``archive/data.pkl``, and when several entries match ignoring case, the one returned
depends on the heap sort, hence on the number of entries (not always the first).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from sdmodel.errors import ModelReadError, error_message
from sdmodel.i18n import Bytes, Msg

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
    """One central-directory entry. ``local_name`` and ``data_offset`` come from the local header,
    set once :meth:`ZipView.local` has read it (None and -1 before)."""

    name: str
    raw_name: bytes
    local_header_offset: int
    compressed_size: int
    size: int
    method: int
    flags: int
    crc32: int
    local_name: str | None = None
    data_offset: int = -1

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
    _unique: dict[bytes, int] | None = field(default=None, repr=False)
    _sorted: list[int] | None = field(default=None, repr=False)

    def find(self, name: str) -> ZipEntry | None:
        """The entry torch's reader returns for ``name`` (miniz: binary search in the heap-sorted
        directory, ignoring ASCII case), or None."""
        index = self.locate(name)
        return None if index is None else self.entries[index]

    def locate(self, name: str) -> int | None:
        """The central-directory index of :meth:`find`'s entry."""
        if self._unique is None:
            keys = [e.raw_name.lower() for e in self.entries]
            self._unique = {k: i for i, k in enumerate(keys)}
            if len(self._unique) < len(keys):  # names repeat ignoring case: miniz's order decides
                self._sorted = miniz_sorted(keys)
        key = name.encode("utf-8", "surrogateescape").lower()
        if self._sorted is None:
            return self._unique.get(key)
        lo, hi = 0, len(self._sorted) - 1
        while lo <= hi:
            mid = lo + ((hi - lo) >> 1)
            index = self._sorted[mid]
            other = self.entries[index].raw_name.lower()
            if other == key:
                return index
            if other < key:
                lo = mid + 1
            else:
                hi = mid - 1
        return None

    def case_collisions(self) -> list[list[ZipEntry]]:
        """Groups of two or more entries whose names are equal ignoring ASCII case (exact
        duplicates included): which one torch reads depends on the entry count."""
        groups: dict[bytes, list[ZipEntry]] = {}
        for e in self.entries:
            groups.setdefault(e.raw_name.lower(), []).append(e)
        return [g for g in groups.values() if len(g) > 1]

    def local(self, entry: ZipEntry) -> ZipEntry:
        """``entry`` with its local header read (once): where its data starts, the name it gives.
        Raises ModelReadError when there is no local header or the data runs past the file."""
        if entry.data_offset < 0:
            _read_local(self.f, self.file_size, entry)
        return entry

    def load_local_headers(self, entries: Iterable[ZipEntry] | None = None) -> None:
        """Read the local headers of ``entries`` (all by default) together: one merged fetch of
        them over HTTP (a remote file has ``prefetch``) rather than a request each."""
        todo = [e for e in (self.entries if entries is None else entries) if e.data_offset < 0]
        prefetch = getattr(self.f, "prefetch", None)
        if prefetch is not None and len(todo) > 1:
            prefetch([(e.local_header_offset, _LOCAL.size + 2 * len(e.raw_name) + _LOCAL_SLACK) for e in todo])
        for e in todo:
            _read_local(self.f, self.file_size, e)

    def read(self, entry: ZipEntry, max_size: int | None = None) -> bytes:
        """The entry's uncompressed bytes (stored or deflated; encrypted entries are refused)."""
        if entry.encrypted or entry.flags & 0x20:
            raise ModelReadError(Msg("zip entry {name!r} is encrypted or patched data: not readable", name=entry.name))
        if max_size is not None and entry.size > max_size:
            raise ModelReadError(
                Msg(
                    "zip entry {name!r} is {size} (limit {max_size})",
                    name=entry.name,
                    size=Bytes(entry.size),
                    max_size=max_size,
                )
            )
        self.local(entry)
        if entry.data_offset + entry.compressed_size > self.file_size:
            raise ModelReadError(Msg("zip entry {name!r} runs past the end of the file (truncated?)", name=entry.name))
        self.f.seek(entry.data_offset)
        if entry.method == 0:
            if entry.compressed_size != entry.size:
                raise ModelReadError(
                    Msg("stored zip entry {name!r} has different sizes in its header", name=entry.name)
                )
            data = self.f.read(entry.size)
            if len(data) != entry.size:
                raise ModelReadError(Msg("zip entry {name!r} is truncated", name=entry.name))
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
                raise ModelReadError(
                    Msg("zip entry {name!r}: corrupt deflate data ({reason})", name=entry.name, reason=error_message(e))
                ) from None
            if len(out) != entry.size:
                raise ModelReadError(Msg("zip entry {name!r} does not inflate to its stated size", name=entry.name))
            return bytes(out)
        raise ModelReadError(
            Msg("zip entry {name!r} uses unsupported compression method {method}", name=entry.name, method=entry.method)
        )

    def crc_ok(self, entry: ZipEntry) -> bool:
        """Whether the entry's data matches its CRC-32 (reads the whole entry, in chunks)."""
        crc = 0
        if entry.method == 0 and not entry.encrypted:
            try:
                self.f.seek(self.local(entry).data_offset)
            except ModelReadError:
                return False
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


def miniz_sorted(keys: list[bytes]) -> list[int]:
    """Entry indices in the order miniz's ``mz_zip_reader_sort_central_dir_offsets_by_filename``
    leaves them: its in-place heap sort (not stable) of the lowercased names, step for step, so
    equal names end where miniz puts them. ``keys`` are the ASCII-lowercased raw names (bytes
    compare like miniz's ``mz_zip_reader_filename_less``)."""
    idx = list(range(len(keys)))
    size = len(idx)
    if size <= 1:
        return idx

    def sift(root: int, end: int) -> None:
        while True:
            child = 2 * root + 1
            if child >= end:
                return
            if child + 1 < end and keys[idx[child]] < keys[idx[child + 1]]:
                child += 1
            if not keys[idx[root]] < keys[idx[child]]:
                return
            idx[root], idx[child] = idx[child], idx[root]
            root = child

    for start in range((size - 2) >> 1, -1, -1):
        sift(start, size)
    for end in range(size - 1, 0, -1):
        idx[end], idx[0] = idx[0], idx[end]
        sift(0, end)
    return idx


def _fail(problem: Msg) -> ModelReadError:
    return ModelReadError(Msg("not a readable zip archive: {problem}", problem=problem))


def _decode(raw: bytes) -> str:
    # miniz compares names as bytes; surrogateescape keeps that a bijection.
    return raw.decode("utf-8", "surrogateescape")


def read_zip(f: BinaryIO, max_entries: int = MAX_ENTRIES) -> ZipView:
    """Parse the archive's directory. Raises ModelReadError on a bad or truncated zip."""
    size = f.seek(0, 2)
    if size < _EOCD.size:
        raise _fail(Msg("file too short"))
    tail_len = min(size, _EOCD.size + 0xFFFF + _EOCD64_LOC.size)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(b"PK\x05\x06", 0, len(tail) - _EOCD.size + 4)
    if i < 0:
        raise _fail(Msg("no end-of-central-directory record (truncated file?)"))
    eocd_pos = size - tail_len + i
    _, disk, cd_disk, n_here, n_total, cd_size, cd_offset, comment_len = _EOCD.unpack_from(tail, i)
    comment = tail[i + _EOCD.size : i + _EOCD.size + comment_len]
    trailing = max(0, size - (eocd_pos + _EOCD.size + comment_len))
    zip64 = False
    if i >= _EOCD64_LOC.size and tail[i - _EOCD64_LOC.size : i - _EOCD64_LOC.size + 4] == b"PK\x06\x07":
        _, _, rec_offset, _ = _EOCD64_LOC.unpack_from(tail, i - _EOCD64_LOC.size)
        if rec_offset + _EOCD64.size > size:
            raise _fail(Msg("Zip64 end-of-central-directory record is past the end of the file"))
        f.seek(rec_offset)
        rec = f.read(_EOCD64.size)
        if rec[:4] != b"PK\x06\x06":
            raise _fail(Msg("Zip64 end-of-central-directory locator points to nothing"))
        (_, _, _, _, disk, cd_disk, n_here, n_total, cd_size, cd_offset) = _EOCD64.unpack(rec)
        zip64 = True
    if disk != 0 or cd_disk != 0 or n_here != n_total:
        raise _fail(Msg("multi-disk archives are not supported"))
    if n_total > max_entries:
        raise _fail(Msg("{n_total} entries (limit {max_entries})", n_total=n_total, max_entries=max_entries))
    if cd_size > MAX_CENTRAL_DIR:
        raise _fail(
            Msg(
                "central directory of {cd_size} (limit {max_central_dir})",
                cd_size=Bytes(cd_size),
                max_central_dir=MAX_CENTRAL_DIR,
            )
        )
    if cd_offset + cd_size > size:
        raise _fail(Msg("central directory runs past the end of the file (truncated?)"))
    f.seek(cd_offset)
    cd = f.read(cd_size)
    entries: list[ZipEntry] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    pos = 0
    for _ in range(n_total):
        if pos + _CENTRAL.size > len(cd):
            raise _fail(Msg("central directory is truncated"))
        fields = _CENTRAL.unpack_from(cd, pos)
        sig, (flags, method), (crc, csize, usize, nlen, xlen, clen), lho = (
            fields[0],
            fields[3:5],
            fields[7:13],
            fields[16],
        )
        if sig != b"PK\x01\x02":
            raise _fail(Msg("bad central directory entry signature at offset {value}", value=cd_offset + pos))
        end = pos + _CENTRAL.size + nlen + xlen + clen
        if end > len(cd):
            raise _fail(Msg("central directory is truncated"))
        raw_name = cd[pos + _CENTRAL.size : pos + _CENTRAL.size + nlen]
        name = _decode(raw_name)
        extra = cd[pos + _CENTRAL.size + nlen : pos + _CENTRAL.size + nlen + xlen]
        if 0xFFFFFFFF in (csize, usize, lho):
            usize, csize, lho = _zip64_extra(extra, usize, csize, lho, name)
        pos = end
        if lho + _LOCAL.size > size:
            raise _fail(Msg("entry {name!r}: local header is past the end of the file (truncated?)", name=name))
        entries.append(ZipEntry(name, raw_name, lho, csize, usize, method, flags, crc))
        if name in seen:
            duplicates.append(name)
        seen.add(name)
    archive = None
    if entries and "/" in entries[0].name:
        archive = entries[0].name.split("/", 1)[0]
    prefix = min((e.local_header_offset for e in entries), default=0)
    return ZipView(f, size, entries, prefix, archive, duplicates, comment, trailing, zip64)


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
                raise _fail(Msg("entry {name!r}: Zip64 extra field is too short", name=name)) from None
            return usize, csize, lho
        p += 4 + n
    return usize, csize, lho


def _read_local(f: BinaryIO, size: int, entry: ZipEntry) -> None:
    """Fill in ``entry``'s local name and data offset from its local header."""
    lho = entry.local_header_offset
    f.seek(lho)
    head = f.read(_LOCAL.size)
    if len(head) < _LOCAL.size:
        raise _fail(Msg("entry {name!r}: local header is past the end of the file (truncated?)", name=entry.name))
    sig, _, _, _, _, _, _, _, _, nlen, xlen = _LOCAL.unpack(head)
    if sig != b"PK\x03\x04":
        raise _fail(Msg("entry {name!r}: no local header at offset {lho}", name=entry.name, lho=lho))
    local_name = _decode(f.read(nlen))
    data_offset = lho + _LOCAL.size + nlen + xlen
    if data_offset + entry.compressed_size > size:
        raise _fail(Msg("entry {name!r} runs past the end of the file (truncated?)", name=entry.name))
    entry.local_name, entry.data_offset = local_name, data_offset
