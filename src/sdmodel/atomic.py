"""Writing an output so that it appears whole or not at all.

The data goes to a hidden temporary file in the target's folder (``.<name>.sdmodel-tmp``), is
fsynced, checked, and only then renamed onto the final name; the folder is fsynced after the
rename. On any failure, an interrupt included, the temporary file is removed. A SIGKILL can leave it
behind under that name; the next run writing the same output replaces it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from sdmodel.errors import ConversionError, OutputExistsError, SdmodelError
from sdmodel.i18n import Msg

TEMP_SUFFIX = ".sdmodel-tmp"


def temp_path(final: Path) -> Path:
    """Where ``final`` is written before it is renamed: ``.<name>.sdmodel-tmp`` beside it."""
    return final.parent / f".{final.name}{TEMP_SUFFIX}"


def staged_path(final: Path) -> Path:
    """A temporary output that keeps its extension (``.<stem>.sdmodel-tmp.safetensors``): for a
    step that is itself a conversion (which writes through ``temp_path`` and puts files named
    after the output, a yaml, beside it) and is renamed later, after other steps (library apply)."""
    return final.with_name(f".{final.stem}{TEMP_SUFFIX}{final.suffix}")


def check_target(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse to write onto an input (same path or same inode) or over a file without ``overwrite``."""
    out = Path(out)
    if not out.parent.is_dir():
        raise ConversionError(Msg("{out}: directory {parent} does not exist", out=out, parent=out.parent))
    if out.is_dir():
        raise ConversionError(Msg("{out}: is a directory", out=out))
    for p in inputs:
        p = Path(p)
        same = out.resolve() == p.resolve()
        if not same and out.exists() and p.exists():
            try:
                same = os.path.samefile(out, p)
            except OSError:
                same = False
        if same:
            raise ConversionError(Msg("{out}: refusing to write onto the input file", out=out))
        if p.is_dir() and out.resolve().is_relative_to(p.resolve()):
            raise ConversionError(Msg("{out}: refusing to write inside the input folder {p}", out=out, p=p))
    if out.exists() and not overwrite:
        raise OutputExistsError(Msg("{out}: already exists (use --overwrite to replace it)", out=out))


class Flushable(Protocol):
    def flush(self) -> None: ...

    def fileno(self) -> int: ...


def sync(f: Flushable) -> None:
    """Flush ``f`` and wait until its data is on disk."""
    f.flush()
    os.fsync(f.fileno())


def sync_dir(d: Path) -> None:
    """Make a rename in ``d`` durable (best effort: not every file system can)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_error(out: Path, e: OSError) -> SdmodelError:
    """The one-line error for a failed write of ``out``."""
    if e.errno == errno.ENOSPC:
        return ConversionError(Msg("{out}: disk full while writing; nothing was written", out=out))
    if e.errno == errno.EFBIG:
        return ConversionError(
            Msg("{out}: file too large for this file system or size limit; nothing was written", out=out)
        )
    return ConversionError(Msg("{out}: write failed: {value}; nothing was written", out=out, value=e.strerror or e))


@contextmanager
def replacing(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield the temporary path to write (and sync) ``out`` at; when the block ends normally,
    rename it onto ``out`` (unless ``out`` appeared meanwhile and ``overwrite`` is off) and sync
    the folder. Any exception removes the temporary file; an OSError becomes a one-line
    ConversionError."""
    tmp = temp_path(out)
    try:
        try:
            yield tmp
            if out.exists() and not overwrite:  # appeared while we were writing
                raise OutputExistsError(Msg("{out}: already exists (use --overwrite to replace it)", out=out))
            os.replace(tmp, out)
        except OSError as e:
            raise write_error(out, e) from e
        sync_dir(out.parent)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
