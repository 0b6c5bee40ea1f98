"""The hashes users compare (A1111 modules/hashes.py and sd_models.py, Civitai's AutoV1/V2/V3),
all computed in one read pass, and cached.

The file is read once in large chunks; the digests are spread over two worker threads (hashlib,
blake3 and zlib release the GIL on large buffers), so computing all of them costs about as much
as SHA-256 alone on a two-core machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import blake3
import numpy as np

from sdmodel.dtypes import NUMPY_DTYPES, is_float
from sdmodel.formats import sniff
from sdmodel.formats.base import TensorSource
from sdmodel.parts import part_of

CHUNK = 16 << 20
AUTOV1_OFFSET = 0x100000
AUTOV1_SIZE = 0x10000

Progress = Callable[[int, int], None]


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sdmodel" / "hashes-v2.sqlite"


class HashCache:
    """SQLite cache keyed on (absolute path, size, mtime_ns)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS hashes (path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, value TEXT)"
        )

    @staticmethod
    def _key(path: Path) -> tuple[bytes, int, int]:
        st = path.stat()
        # File names are bytes on POSIX and need not be valid UTF-8: key on the raw bytes.
        return os.fsencode(path.resolve()), st.st_size, st.st_mtime_ns

    def get(self, path: Path) -> dict | None:
        key = self._key(path)
        row = self.db.execute("SELECT size, mtime_ns, value FROM hashes WHERE path = ?", (key[0],)).fetchone()
        if row and (row[0], row[1]) == key[1:]:
            return json.loads(row[2])
        return None

    def put(self, path: Path, value: dict) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", (*self._key(path), json.dumps(value)))

    def close(self) -> None:
        self.db.close()


def _safetensors_data_start(path: Path) -> int | None:
    """Where a safetensors file's data section begins (AutoV3 covers [start, EOF)), else None."""
    if sniff(path) != "safetensors":
        return None
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    return 8 + n


def compute_hashes(path: Path, progress: Progress | None = None, *, sha256_only: bool = False) -> dict[str, str | None]:
    """Every hash of one file in a single read pass (no cache). ``sha256_only``: only the two
    SHA-256 hashes (SHA256 and AutoV3), the others None: what a conversion records of its source."""
    path = Path(path)
    size = path.stat().st_size
    data_start = _safetensors_data_start(path)
    whole, data = hashlib.sha256(), hashlib.sha256()
    b3: Any = _NoDigest() if sha256_only else blake3.blake3()
    crc = [0]

    def crc_update(chunk: memoryview) -> None:
        if not sha256_only:
            crc[0] = zlib.crc32(chunk, crc[0])

    def data_update(chunk: memoryview, pos: int) -> None:
        if data_start is not None and pos + len(chunk) > data_start:
            data.update(chunk[max(0, data_start - pos) :])

    # Balance the two workers: SHA-256 is the slowest digest (~1 GB/s), BLAKE3 and CRC32 are
    # cheaper; a safetensors file needs a second SHA-256 (AutoV3) over its data section.
    if data_start is None:

        def feed_a(chunk: memoryview, pos: int) -> None:
            whole.update(chunk)

        def feed_b(chunk: memoryview, pos: int) -> None:
            b3.update(chunk)
            crc_update(chunk)
    else:

        def feed_a(chunk: memoryview, pos: int) -> None:
            whole.update(chunk)
            crc_update(chunk)

        def feed_b(chunk: memoryview, pos: int) -> None:
            data_update(chunk, pos)
            b3.update(chunk)

    buffers = [bytearray(CHUNK), bytearray(CHUNK)]
    done = 0
    with open(path, "rb") as f, ThreadPoolExecutor(2) as pool:
        pending: list = []
        which = 0
        while True:
            buf = buffers[which]
            n = f.readinto(buf)
            for fut in pending:  # the other buffer is free again once its work is done
                fut.result()
            if not n:
                break
            chunk = memoryview(buf)[:n]
            pending = [pool.submit(feed_a, chunk, done), pool.submit(feed_b, chunk, done)]
            done += n
            which ^= 1
            if progress:
                progress(done, size)
        autov1 = None
        if size >= AUTOV1_OFFSET + AUTOV1_SIZE:
            f.seek(AUTOV1_OFFSET)
            autov1 = hashlib.sha256(f.read(AUTOV1_SIZE)).hexdigest()[:8]
    sha = whole.hexdigest()
    autov3 = data.hexdigest() if data_start is not None else None
    if sha256_only:
        return {"sha256": sha, "autov3": autov3}
    crc_hex = f"{crc[0]:08x}"
    return {
        "autov1": autov1,
        "autov2": sha[:10],
        "sha256": sha,
        "autov3": autov3,
        "blake3": b3.hexdigest(),
        "crc32": crc_hex,
        "crc32_civitai": bytes.fromhex(crc_hex)[::-1].hex().upper(),
    }


class _NoDigest:
    def update(self, _data: memoryview) -> None:
        pass


def hash_file(path: str | Path, progress: Progress | None = None, use_cache: bool = True) -> dict[str, str | None]:
    """AutoV1, AutoV2, SHA256, AutoV3 (safetensors data section), BLAKE3, CRC32 (zlib order and
    Civitai's reversed order) of a file, from the cache when the file is unchanged."""
    path = Path(path)
    cache = None
    if use_cache:
        try:
            cache = HashCache()
            hit = cache.get(path)
            if hit is not None:
                return hit
        except sqlite3.Error:
            cache = None
    try:
        value = compute_hashes(path, progress)
        if cache is not None:
            try:
                cache.put(path, value)
            except sqlite3.Error:
                pass
        return value
    finally:
        if cache is not None:
            cache.close()


def _rounded_bytes(array: np.ndarray, dtype: str, to: str = "F16") -> bytes:
    """Values rounded to ``to`` (F16 or BF16), integers as int64: copies of the same weights made
    by rounding to nearest (as every converter does) give the same bytes as their fp32 source."""
    if is_float(dtype):
        return np.ascontiguousarray(array.astype(np.float32).astype(NUMPY_DTYPES[to])).tobytes()
    return np.ascontiguousarray(array.astype(np.int64)).tobytes()


def tensor_fingerprint(source: TensorSource, names: list[str], strip: str = "") -> str:
    """A hash of names (less ``strip``), shapes and fp16-rounded values of the given tensors: the
    same weights give the same fingerprint in fp32 or fp16, safetensors or ckpt."""
    return _fingerprints(source, names, strip, ("F16",))["F16"]


def _fingerprints(source: TensorSource, names: list[str], strip: str, rounding: tuple[str, ...]) -> dict[str, str]:
    hashes = {to: blake3.blake3() for to in rounding}
    for name in sorted(names):
        info = source.tensors[name]
        short = name[len(strip) :] if strip and name.startswith(strip) else name
        values = source.read(name)
        for to, h in hashes.items():
            h.update(f"{short}:{list(info.shape)};".encode())
            h.update(_rounded_bytes(values, info.dtype, to))
    return {to: h.hexdigest()[:32] for to, h in hashes.items()}


def content_fingerprints(source: TensorSource) -> dict[str, str]:
    """Fingerprints of the whole model (every tensor except EMA, junk and markers) with values
    rounded to fp16 and to bf16, in one read: the fp16 one matches fp32/fp16 copies, the bf16 one
    fp32/bf16 copies (fp32 -> fp16 -> bf16 is not fp32 -> bf16), so a fp16 and a bf16 copy are
    tied through their fp32 original. Reads every tensor."""
    names = [n for n in source.tensors if part_of(n) not in ("ema", "junk", "marker")]
    found = _fingerprints(source, names, "", ("F16", "BF16"))
    return {"fp16": found["F16"], "bf16": found["BF16"]}
