"""Where a converted file came from, written into it: the source's name, its SHA256 and AutoV3
(the hashes Civitai looks files up by), next to the ModelSpec identity the output keeps.

ModelSpec defines no field for a source, so these are ``sdmodel.*`` keys. The hashes are known only
once the source has been read: the output's header carries fixed-width placeholders that the sink
fills in at the end (as it does for ``modelspec.hash_sha256``), and the source is hashed (the two
SHA-256 only) on a thread of its own from the moment it is open, while the plan is made and the
engine reads it, so the disk is read once; a file
hashed before by ``sdmodel hash`` or the library costs nothing (the hash cache).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from sdmodel.errors import ConversionError, SdmodelError, error_message
from sdmodel.formats.base import TensorSource
from sdmodel.hashing import HashCache, compute_hashes
from sdmodel.i18n import Msg

SOURCE_KEY = "sdmodel.source"  # the source's file name; also marks our outputs (convert -r skips them)
SOURCE_SHA256_KEY = "sdmodel.source_sha256"
SOURCE_AUTOV3_KEY = "sdmodel.source_autov3"
PENDING = "0" * 64  # the placeholder of a hash not known yet: as wide as the hash


def provenance_entries(source: TensorSource) -> dict[str, str]:
    """The metadata an output of ``source`` records: its name, and placeholders for the hashes of
    a single-file source (AutoV3 for safetensors only, as Civitai defines it)."""
    entries = {SOURCE_KEY: Path(source.path).name}
    if Path(source.path).is_file():
        entries[SOURCE_SHA256_KEY] = PENDING
        if source.format == "safetensors":
            entries[SOURCE_AUTOV3_KEY] = PENDING
    return entries


class _Stopped(Exception):
    """The hashes are not wanted any more."""


class SourceHasher:
    """Hashes the source file on a thread of its own, started as soon as the source is open (the
    plan is made meanwhile, on the other core); ``values(keys)`` gives the placeholders' values,
    ``stop()`` gives up (the plan failed, or the output records no hash)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._hashes: dict[str, str | None] = {}
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sdmodel-source-hash", daemon=True)

    def start(self) -> SourceHasher:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._hashes = _cached(self.path) or compute_hashes(self.path, self._check, sha256_only=True)
        except _Stopped:
            pass
        except (OSError, SdmodelError) as e:
            self._error = e

    def _check(self, _done: int, _total: int) -> None:
        if self._stop.is_set():
            raise _Stopped

    def stop(self) -> None:
        self._stop.set()

    def values(self, keys: list[str]) -> dict[str, str]:
        """The hashes ``keys`` name (SOURCE_SHA256_KEY, SOURCE_AUTOV3_KEY), waiting for them."""
        self._thread.join()
        if self._error is not None:
            raise ConversionError(
                Msg("{path}: could not hash the source: {error}", path=self.path, error=error_message(self._error))
            )
        found = {SOURCE_SHA256_KEY: self._hashes.get("sha256"), SOURCE_AUTOV3_KEY: self._hashes.get("autov3")}
        missing = [k for k in keys if not found.get(k)]
        if missing:
            raise ConversionError(
                Msg("{path}: no {missing} for the source", path=self.path, missing=", ".join(missing))
            )
        return {k: str(found[k]) for k in keys}


def _cached(path: Path) -> dict[str, str | None] | None:
    """The source's hashes from the hash cache, when ``sdmodel hash`` or the library made them."""
    try:
        cache = HashCache()
    except (OSError, sqlite3.Error):
        return None
    try:
        return cache.get(path)
    except sqlite3.Error:
        return None
    finally:
        cache.close()


def start_source_hasher(source: TensorSource) -> SourceHasher | None:
    """A running hasher of ``source`` when it is one file (what provenance_entries records)."""
    return SourceHasher(Path(source.path)).start() if Path(source.path).is_file() else None


def pending_hashes(metadata: dict[str, str]) -> list[str]:
    """The hash keys ``metadata`` holds placeholders for."""
    return [k for k in (SOURCE_SHA256_KEY, SOURCE_AUTOV3_KEY) if metadata.get(k) == PENDING]
