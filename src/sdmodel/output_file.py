"""The file an output is written into: appended through the kernel's direct I/O where it can.

A converted model is written once and not read again soon, so the page cache gains nothing from
it: with ``O_DIRECT`` the bytes go from one small, reused, page-aligned buffer to the disk, with no
copy into the cache and no cache pages to allocate, fill and write back later (on the machines
measured, that copy was a tenth of a quantizing conversion's CPU time, and much more where fresh
memory is slow to fault in). Where the file system refuses direct I/O (tmpfs, some network and FUSE
file systems, or no ``O_DIRECT`` on this system) the same buffer is written through the cache, and
the ranges written are dropped from it as they go, so the final fsync has little left to wait for.
Rewrites of bytes already written (the header's placeholders, filled in at the end) go through the
cache in both cases.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import TracebackType

import numpy as np

ALIGN = 4096  # direct I/O offsets and lengths: a multiple of the logical block size (512 or 4096)
STAGE = 8 << 20  # bytes gathered before one write
WRITEBACK = 128 << 20  # through the cache: bytes written between two requests to write them back


class OutputFile:
    """A write-only file for ``Sink``s (sdmodel.formats.sink.Output): appends are gathered and
    written ``STAGE`` bytes at a time; ``seek`` + ``write`` rewrites earlier bytes in place;
    ``flush`` writes everything so far. Not thread-safe: one writer at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
        self._direct = _open_direct(self.path)
        self._stage = _aligned(STAGE)
        self._used = 0  # bytes in the stage
        self._base = 0  # file offset of the stage's first byte (a multiple of STAGE)
        self._pos = 0  # where the next write goes
        self._size = 0  # bytes written so far (the file's length once flushed)
        self._written_back = 0  # through the cache: offset up to which writeback was requested

    @property
    def direct(self) -> bool:
        """True while appends bypass the page cache."""
        return self._direct is not None

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = base + offset
        return self._pos

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        n = len(view)
        if self._pos < self._size:  # a rewrite, possibly running on past the end
            k = min(n, self._size - self._pos)
            self._rewrite(view[:k], self._pos)
            self._pos += k
            view = view[k:]
        if len(view):
            if self._pos != self._size:
                raise OSError(errno.EINVAL, "writing past the end leaves a hole")
            self._append(view)
        return n

    def _rewrite(self, view: memoryview, pos: int) -> None:
        """Bytes already written: those still in the stage are changed there, the others on disk."""
        staged = max(pos, self._base)
        if staged < pos + len(view):
            lo = staged - pos
            self._stage[staged - self._base : staged - self._base + len(view) - lo] = np.frombuffer(view[lo:], np.uint8)
            view = view[:lo]
        if len(view):
            _pwrite_all(self._fd, view, pos)

    def _append(self, view: memoryview) -> None:
        src = np.frombuffer(view, dtype=np.uint8)
        done = 0
        while done < len(src):
            k = min(len(src) - done, STAGE - self._used)
            np.copyto(self._stage[self._used : self._used + k], src[done : done + k])  # no GIL held
            self._used += k
            done += k
            if self._used == STAGE:
                self._write_stage(STAGE)
                self._base += STAGE
                self._used = 0
        self._pos = self._size = self._pos + len(src)

    def _write_stage(self, length: int) -> None:
        """Write the stage's first ``length`` bytes at its offset: directly when possible (falling
        back for good to the cache if the file system refuses), else through the cache."""
        data = self._stage[:length].data
        if self._direct is not None:
            try:
                _pwrite_all(self._direct, data, self._base)
                return
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                os.close(self._direct)
                self._direct = None
        _pwrite_all(self._fd, data, self._base)
        end = self._base + length
        if end - self._written_back >= WRITEBACK and hasattr(os, "posix_fadvise"):
            try:  # start writing back, and do not keep these pages cached
                os.posix_fadvise(self._fd, self._written_back, end - self._written_back, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            self._written_back = end

    def flush(self) -> None:
        """Write out everything written so far (a direct write ends on a block boundary: the file
        is cut back to its length after it)."""
        if not self._used:
            return
        if self._direct is None:
            self._write_stage(self._used)
            return
        padded = -(-self._used // ALIGN) * ALIGN
        self._stage[self._used : padded] = 0
        self._write_stage(padded)
        if self._direct is not None and padded != self._used:
            os.ftruncate(self._fd, self._size)

    def close(self) -> None:
        """Close without flushing (a failed output is deleted anyway); ``flush`` first to keep it."""
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> OutputFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _aligned(size: int) -> np.ndarray:
    """``size`` bytes starting on an ALIGN boundary, as direct I/O needs."""
    raw = np.empty(size + ALIGN, dtype=np.uint8)
    skip = -raw.ctypes.data % ALIGN
    return raw[skip : skip + size]


def _open_direct(path: Path) -> int | None:
    """A second descriptor of ``path`` for direct appends, or None where there is no direct I/O."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        return os.open(path, os.O_WRONLY | flag | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None


def _pwrite_all(fd: int, data: memoryview, pos: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, pos)
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        data, pos = data[n:], pos + n
