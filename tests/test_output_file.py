"""The output file: appends through direct I/O where possible, rewrites in place, exact length."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from sdmodel import output_file
from sdmodel.output_file import ALIGN, STAGE, OutputFile


def _pieces() -> list[bytes]:
    """Appends of awkward sizes: below a block, across the stage, larger than the stage."""
    rng = np.random.default_rng(0)
    sizes = [7, ALIGN - 3, STAGE - 5000, 1, STAGE + 12345, 3 * ALIGN, 999]
    return [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]


def _write(path: Path) -> tuple[bytes, OutputFile]:
    """Appends, then rewrites: one in the part already on disk, one in the part still staged,
    one spanning the end, as the sinks fill their placeholders."""
    f = OutputFile(path)
    data = bytearray()
    for piece in _pieces():
        assert f.write(piece) == len(piece)
        data += piece
        assert f.tell() == len(data)
    for pos, new in [(3, b"HEADER"), (len(data) - 10, b"TAIL!"), (STAGE + 2, b"x" * 9)]:
        f.seek(pos)
        f.write(new)
        data[pos : pos + len(new)] = new
    assert f.seek(0, os.SEEK_END) == len(data)
    return bytes(data), f


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "through the cache"])
def test_bytes_and_length_are_exactly_what_was_written(tmp_path: Path, monkeypatch, direct: bool) -> None:
    if not direct:
        monkeypatch.setattr(output_file, "_open_direct", lambda path: None)
    path = tmp_path / "out.bin"
    data, f = _write(path)
    f.flush()
    os.fsync(f.fileno())
    if direct and hasattr(os, "O_DIRECT"):
        assert f.direct  # this file system takes direct I/O (ext4, tmpfs): the path is tested
    f.close()
    assert path.read_bytes() == data


def test_flush_then_more_appends(tmp_path: Path) -> None:
    """A flush pads a direct write to the block size and cuts the file back; appends go on."""
    path = tmp_path / "out.bin"
    with OutputFile(path) as f:
        f.write(b"a" * 100)
        f.flush()
        assert path.stat().st_size == 100
        f.write(b"b" * (STAGE + 50))
        f.flush()
    assert path.read_bytes() == b"a" * 100 + b"b" * (STAGE + 50)


def test_a_file_system_that_refuses_direct_writes_gets_them_through_the_cache(tmp_path: Path, monkeypatch) -> None:
    """Some file systems accept O_DIRECT at open and refuse the write (EINVAL): written anyway."""
    real = os.pwrite
    refused: list[int] = []

    def pwrite(fd: int, data, pos: int) -> int:
        if fd == f._direct:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, pos)

    path = tmp_path / "out.bin"
    f = OutputFile(path)
    if not f.direct:
        pytest.skip("no direct I/O here")
    monkeypatch.setattr(os, "pwrite", pwrite)
    data = os.urandom(STAGE + 100)
    f.write(data)
    f.flush()
    assert refused and not f.direct
    f.close()
    assert path.read_bytes() == data


def test_other_write_errors_are_raised(tmp_path: Path, monkeypatch) -> None:
    def full(fd: int, data, pos: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with OutputFile(tmp_path / "out.bin") as f:
        monkeypatch.setattr(os, "pwrite", full)
        with pytest.raises(OSError) as e:
            f.write(b"x" * STAGE)
        assert e.value.errno == errno.ENOSPC


def test_a_write_past_the_end_is_refused(tmp_path: Path) -> None:
    with OutputFile(tmp_path / "out.bin") as f:
        f.write(b"abc")
        f.seek(10)
        with pytest.raises(OSError):
            f.write(b"x")
