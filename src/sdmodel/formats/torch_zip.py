"""PyTorch zip checkpoints (torch >= 1.6): ``<archive>/data.pkl`` + one ``<archive>/data/<key>``
record per storage, looked up the way ``torch.load`` does (archive name = folder of the first
central-directory entry, first entry wins on duplicate names). The pickle runs in our VM in load
mode; storages are read on demand with seek + readinto (no mmap, never the whole file), and their
records' local headers are read only then (over HTTP, reading the structure fetches the end of the
file, the central directory and the pickle, not every record)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.errors import ModelReadError
from sdmodel.formats.pickle_vm import run_pickle
from sdmodel.formats.torch_common import TorchSource
from sdmodel.formats.torch_records import StorageRef, parse_storage_pid
from sdmodel.formats.zipview import ZipEntry, ZipView, read_zip
from sdmodel.i18n import Bytes, Msg

MAX_PICKLE = 1 << 30


class TorchZipSource(TorchSource):
    format = "torch-zip"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.zip: ZipView
        self.archive = ""
        self._storages: dict[str, StorageRef] = {}
        self._entries: dict[str, ZipEntry] = {}
        self._parse_or_close()

    def _parse(self) -> None:
        self.zip = z = read_zip(self._file)
        if z.archive_name is None:
            raise self._fail(Msg("zip archive has no top-level folder: not a PyTorch checkpoint"))
        a = self.archive = z.archive_name
        if z.find(f"{a}/constants.pkl") is not None:
            raise self._fail(Msg("TorchScript archive (has constants.pkl): a compiled program, not a checkpoint"))
        pkl = z.find(f"{a}/data.pkl")
        if pkl is None:
            raise self._fail(Msg("no {a}/data.pkl record: not a PyTorch checkpoint", a=a))
        self._container_notes()
        order = z.find(f"{a}/byteorder")
        if order is None:
            self.note("no-byteorder", Msg("no byteorder record (older torch): little-endian assumed"))
        else:
            value = z.read(order, max_size=64)
            if value not in (b"little", b"big"):
                raise self._fail(Msg("byteorder record holds {value!r}, not 'little' or 'big'", value=value[:20]))
            if value == b"big":
                self.big_endian = True
                self.note("byteorder-big", Msg("saved on a big-endian machine: values are byte-swapped on read"))
        data = z.read(pkl, max_size=MAX_PICKLE)
        renamed = [e.name for e in (pkl, order) if e is not None and e.local_name not in (None, e.name)]
        if renamed:
            self.note("name-mismatch", Msg("{names}: another name in the local header", names=", ".join(renamed)))
        res = run_pickle(data, member=pkl.name, strict=True, persistent_load=self._persistent_load)
        self.pickle_result = res
        if res.end != len(data):
            self.note(
                "trailing-data",
                Msg("{n} after the pickle's STOP in {name}", n=Bytes(len(data) - res.end), name=pkl.name),
            )
        self._install(res.value)

    def _container_notes(self) -> None:
        z, a = self.zip, self.archive
        if z.duplicates:
            self.note(
                "duplicate-entries",
                Msg(
                    "zip names repeat ({names}): the first entry is used, like torch",
                    names=", ".join(sorted(set(z.duplicates))[:5]),
                ),
            )
        if z.prefix_bytes:
            self.note(
                "prefix-bytes", Msg("{prefix_bytes} before the first zip entry", prefix_bytes=Bytes(z.prefix_bytes))
            )
        if z.trailing_bytes:
            self.note(
                "trailing-bytes",
                Msg("{trailing_bytes} after the end of the zip archive", trailing_bytes=Bytes(z.trailing_bytes)),
            )
        outside = [e.name for e in z.entries if not e.name.startswith(a + "/")]
        if outside:
            self.note(
                "outside-archive",
                Msg("{n} entries outside {archive}/ (e.g. {example!r})", n=len(outside), archive=a, example=outside[0]),
            )
        if any(e.method != 0 for e in z.entries):
            self.note("compressed", Msg("some records are compressed (torch writes them stored)"))

    def _persistent_load(self, pid: Any) -> StorageRef:
        ref = parse_storage_pid(pid)
        cached = self._storages.get(ref.key)
        if cached is not None:  # torch keeps the first storage loaded for a key
            return cached
        entry = self.zip.find(f"{self.archive}/data/{ref.key}")
        if entry is None:
            raise ModelReadError(Msg("storage record data/{key} is missing", key=ref.key))
        if entry.encrypted or entry.method not in (0, 8):
            raise ModelReadError(
                Msg("storage record data/{key} is encrypted or compressed ({method})", key=ref.key, method=entry.method)
            )
        if ref.nbytes > entry.size:
            raise ModelReadError(
                Msg(
                    "storage {key!r} has {numel} {dtype} elements ({nbytes}) but its record holds {size}",
                    key=ref.key,
                    numel=ref.numel,
                    dtype=ref.dtype,
                    nbytes=Bytes(ref.nbytes),
                    size=Bytes(entry.size),
                )
            )
        if ref.nbytes != entry.size:
            self.note(
                "record-size",
                Msg("storage record data/{key} is larger than its {nbytes}", key=ref.key, nbytes=Bytes(ref.nbytes)),
            )
        self._storages[ref.key] = ref
        self._entries[ref.key] = entry
        return ref

    def _record(self, storage: StorageRef) -> tuple[int, int]:
        entry = self._entries[storage.key]
        return (self.zip.local(entry).data_offset if entry.method == 0 else -1), entry.size

    def _read_storage(self, storage: StorageRef, start: int, count: int, dtype: np.dtype) -> np.ndarray:
        entry = self._entries[storage.key]
        if entry.method == 0:
            return super()._read_storage(storage, start, count, dtype)
        data = self.zip.read(entry)
        return np.frombuffer(data, dtype, count, start).copy()
