"""The writer interface: every output format is a ``Sink`` the engine (sdmodel.engine) streams tensors into.

The engine reads, fixes and casts each planned tensor; the sink decides where its bytes go, in
which order, and may choose the bytes themselves (``encode``: a quantizing writer turns the cast
array into its blocks). Adding a format is one sink class and one line in ``formats.writers.SINKS``;
the engine does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np


class Output(Protocol):
    """Where a sink writes: a binary file (sdmodel.output_file.OutputFile in the engine)."""

    def write(self, data: bytes | memoryview, /) -> int: ...

    def tell(self) -> int: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...


Expected = Callable[[int], np.ndarray]  # index of a tensor -> the values it must hold (re-read, re-cast)


class Sink(Protocol):
    """One output file being written. Made from the output tensors (name, dtype, shape as the
    engine casts them) and the metadata; the engine then calls ``begin``, ``encode`` and ``write``
    once per tensor in ``order`` (``encode`` from its encoder thread, running ahead of ``write``
    from its writer thread), ``hash`` with the same bytes in the same order (from a thread of its own), ``fill`` and ``finish``; then ``check`` and, when asked, ``verify`` on the
    closed file."""

    format: str
    order: list[int]  # indices of the tensors in the order they are written
    digest: str | None  # hex SHA-256 of the data, when the format records one

    def begin(self, f: Output) -> None: ...

    def encode(self, index: int, array: np.ndarray, into: np.ndarray | None = None) -> memoryview:
        """The bytes to write for tensor ``index``, given its cast values (C-contiguous; bf16
        values neither fixed nor cast come as their uint16 bits, engine._as_bits). ``into``: a
        reused uint8 buffer of at least the encoded size, given for tensors the sink encodes
        itself (Step.encoding), which it may fill and return a view of (fresh memory costs page
        faults)."""
        ...

    def write(self, f: Output, index: int, data: memoryview) -> None: ...

    def hash(self, data: memoryview) -> None: ...

    def fill(self, values: dict[str, str]) -> None:
        """Values for metadata placeholders known only once the data is read (the source's
        hashes); called before ``finish``, which writes them in place."""
        ...

    def finish(self, f: Output) -> None: ...

    def check(self, path: Path) -> None:
        """Re-open the written file and compare its structure with what was planned."""
        ...

    def verify(self, path: Path, expected: Expected) -> None:
        """Every tensor read back (by the reference reader where there is one) equals ``expected``."""
        ...


def raw_bytes(array: np.ndarray) -> memoryview:
    """The bytes of a C-contiguous array as they are (what a sink writes when it stores values)."""
    return array.reshape(-1).view(np.uint8).data if array.size else memoryview(b"")
