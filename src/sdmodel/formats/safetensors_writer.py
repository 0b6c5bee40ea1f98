"""The safetensors writer (a ``Sink``, see formats/sink.py), in the reference writer's layout.

Header first, with a fixed-width placeholder for the ModelSpec data hash when the metadata asks for
one, then the data in the order the ``safetensors`` library writes it (``reference_order``), then
the hash patched in place: the header never changes length.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from safetensors import safe_open

from sdmodel.dtypes import FP8_DTYPES
from sdmodel.errors import ConversionError
from sdmodel.formats.base import TensorInfo
from sdmodel.formats.safetensors import SafetensorsSource, header_bytes, reference_order
from sdmodel.formats.sink import Expected, Output, raw_bytes
from sdmodel.i18n import Msg

HASH_KEY = "modelspec.hash_sha256"
HASH_PLACEHOLDER = "0x" + "0" * 64
VERIFY_SPAN = 64 * 1000 * 1000  # verify reopens the output after this many bytes (see verify)


class SafetensorsSink:
    format = "safetensors"

    def __init__(self, tensors: list[TensorInfo], metadata: dict[str, str] | None) -> None:
        self.tensors = list(tensors)
        self.metadata = dict(metadata) if metadata else None
        self.hashing = self.metadata is not None and HASH_KEY in self.metadata
        if self.metadata is not None and self.hashing:
            self.metadata[HASH_KEY] = HASH_PLACEHOLDER
        self.layout = reference_order(self.tensors)
        index = {t.name: i for i, t in enumerate(self.tensors)}
        self.order = [index[t.name] for t in self.layout]
        self.prefix, _ = header_bytes(self.layout, self.metadata)
        self.sha = hashlib.sha256() if self.hashing else None
        self.digest: str | None = None
        self.filled: dict[str, str] = {}

    def begin(self, f: Output) -> None:
        f.write(self.prefix)

    def encode(self, index: int, array: np.ndarray, into: np.ndarray | None = None) -> memoryview:
        return raw_bytes(array)

    def write(self, f: Output, index: int, data: memoryview) -> None:
        f.write(data)

    def hash(self, data: memoryview) -> None:
        """Called in data order, from a thread of its own (SHA-256 is the slowest step)."""
        if self.sha is not None:
            self.sha.update(data)

    def fill(self, values: dict[str, str]) -> None:
        self.filled.update(values)

    def finish(self, f: Output) -> None:
        late = dict(self.filled)
        if self.sha is not None:
            self.digest = self.sha.hexdigest()
            late[HASH_KEY] = "0x" + self.digest
        for key, value in late.items():
            self._patch(f, key, value)
        f.seek(0, os.SEEK_END)

    def _patch(self, f: Output, key: str, value: str) -> None:
        """Overwrite the placeholder value of ``key`` in the written header (same width)."""
        if self.metadata is None or key not in self.metadata:
            raise ConversionError(Msg("internal error: no placeholder for {key} in the header", key=key))
        placeholder = self.metadata[key]
        marker = json.dumps({key: placeholder}, separators=(",", ":"), ensure_ascii=False)[1:-1].encode()
        pos = self.prefix.find(marker)
        if pos < 0 or len(value.encode()) != len(placeholder.encode()):  # pragma: no cover - compact JSON
            raise ConversionError(
                Msg("internal error: placeholder of {key} not found or not as wide as its value", key=key)
            )
        f.seek(pos + len(marker) - 1 - len(placeholder.encode()))
        f.write(value.encode())
        self.metadata[key] = value

    def check(self, path: Path) -> None:
        """Re-open the written file with our validating reader and compare with the plan."""
        with SafetensorsSource(path) as out:
            got = [(t.name, t.dtype, t.shape) for t in out.tensors.values()]
            want = [(t.name, t.dtype, t.shape) for t in self.layout]
            if got != want:
                raise ConversionError(Msg("{path}: written header does not match the plan", path=path))
            if (out.metadata or None) != (self.metadata or None):
                raise ConversionError(Msg("{path}: written metadata does not match the plan", path=path))

    def verify(self, path: Path, expected: Expected) -> None:
        """Every tensor read back by the reference reader equals ``expected``, bit for bit.

        The reference reader maps the file: it is reopened every VERIFY_SPAN bytes so that the
        mapped pages it touched do not pile up in resident memory."""
        with safe_open(str(path), "np") as f:
            if sorted(f.keys()) != sorted(t.name for t in self.tensors):
                raise ConversionError(
                    Msg("{path}: the reference reader sees other tensor names than planned", path=path)
                )
        batch: list[int] = []
        size = 0
        for i in [*self.order, None]:
            if i is not None:
                batch.append(i)
                size += self.tensors[i].nbytes
            if batch and (i is None or size >= VERIFY_SPAN):
                self._verify_batch(path, batch, expected)
                batch, size = [], 0

    def _verify_batch(self, path: Path, batch: list[int], expected: Expected) -> None:
        with safe_open(str(path), "np") as f, SafetensorsSource(path) as ours:
            for i in batch:
                t = self.tensors[i]
                view = f.get_slice(t.name)
                if view.get_dtype() != t.dtype or tuple(view.get_shape()) != t.shape:
                    raise ConversionError(
                        Msg(
                            "{path}: the reference reader sees {name} with another dtype or shape",
                            path=path,
                            name=t.name,
                        )
                    )
                # numpy has no fp8: the reference reader checked dtype and shape, our reader the bytes
                got = ours.read(t.name) if t.dtype in FP8_DTYPES else f.get_tensor(t.name)
                if not _same_bits(got, expected(i)):
                    raise ConversionError(
                        Msg("{path}: tensor {name} differs from the source after casting", path=path, name=t.name)
                    )


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype.itemsize != b.dtype.itemsize:
        return False
    if a.size == 0:
        return True
    return np.array_equal(_contiguous(a).reshape(-1).view(np.uint8), _contiguous(b).reshape(-1).view(np.uint8))


def _contiguous(a: np.ndarray) -> np.ndarray:
    return a if a.flags.c_contiguous else a.copy(order="C")
