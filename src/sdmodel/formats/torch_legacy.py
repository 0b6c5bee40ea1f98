"""PyTorch's pre-1.6 checkpoint format (also ``_use_new_zipfile_serialization=False``).

Five pickles back to back: the magic number (one literal LONG1), the protocol version 1001,
``sys_info``, the object (storages as 6-tuple persistent ids, optionally views of a root storage)
and the list of storage keys. Then, for each key in that list's order, an int64 element count and
the raw bytes. Data offsets are found with one sequential pass over the counts (seeking past the
data). The tar variant of the format (before torch 0.1.10) is not read.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from sdmodel.dtypes import ITEMSIZE
from sdmodel.errors import ModelReadError
from sdmodel.formats.pickle_vm import PickleResult, PickleTruncated, run_pickle
from sdmodel.formats.torch_common import TorchSource
from sdmodel.formats.torch_records import StorageRef, parse_storage_pid
from sdmodel.i18n import Bytes, Msg

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
MAGIC_LONG1 = b"\x8a\x0a" + MAGIC_NUMBER.to_bytes(10, "little", signed=True) + b"."
PROTOCOL_VERSION = 1001
FIRST_CHUNK = 1 << 20
MAX_PICKLES = 1 << 30


class TorchLegacySource(TorchSource):
    format = "torch-legacy"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.sys_info: dict[str, Any] = {}
        self.storage_keys: list[str] = []
        self.pickle_results: list = []
        self._roots: dict[str, StorageRef] = {}
        self._data: dict[str, tuple[int, int]] = {}
        self._parse_or_close()

    def _parse(self) -> None:
        size = self._file.seek(0, 2)
        chunk = FIRST_CHUNK
        while True:
            self._file.seek(0)
            head = self._file.read(min(chunk, size))
            try:
                end = self._run_pickles(head)
                break
            except PickleTruncated:
                if len(head) >= size or chunk >= MAX_PICKLES:
                    raise
                chunk *= 8
        self._locate_storages(end, size)
        self._install(self.pickle_result.value if self.pickle_result else None)

    def _run_pickles(self, head: bytes) -> int:
        """Run the five pickles; returns the offset just after the last one."""
        self._roots = {}
        p = 2 if head[:1] == b"\x80" else 0
        if head[p : p + len(MAGIC_LONG1)] != MAGIC_LONG1:
            if len(head) < p + len(MAGIC_LONG1):
                raise PickleTruncated(Msg("file is truncated inside the magic number"))
            raise ModelReadError(Msg("not a PyTorch checkpoint (no legacy magic number)"))
        pos = p + len(MAGIC_LONG1)
        results: list[PickleResult] = []
        for what in ("protocol", "sys_info", "object", "storage keys"):
            load = self._persistent_load if what == "object" else _no_persistent_ids
            member = f"pickle {len(results) + 2} ({what})"
            res = run_pickle(head, start=pos, member=member, persistent_load=load)
            results.append(res)
            pos = res.end
        protocol, sys_info, obj, keys = results
        if type(protocol.value) is not int or protocol.value != PROTOCOL_VERSION:
            raise ModelReadError(
                Msg(
                    "legacy protocol version {value!r}, expected {protocol_version}",
                    value=protocol.value,
                    protocol_version=PROTOCOL_VERSION,
                )
            )
        if not isinstance(sys_info.value, dict):
            raise ModelReadError(Msg("legacy sys_info is not a dict"))
        if not isinstance(keys.value, list) or not all(isinstance(k, str) for k in keys.value):
            raise ModelReadError(Msg("legacy storage key list is not a list of strings"))
        self.sys_info = {str(k): v for k, v in sys_info.value.items()}
        self.storage_keys = keys.value
        self.pickle_result = obj
        self.pickle_results = results
        return pos

    def _persistent_load(self, pid: Any) -> StorageRef:
        ref = parse_storage_pid(pid, legacy=True)
        root = self._roots.get(ref.key)
        if root is None:
            root = StorageRef(ref.key, ref.dtype, ref.location, pid[4], ref.type_name)
            self._roots[ref.key] = root
        elif root.dtype != ref.dtype or root.numel != pid[4]:
            raise ModelReadError(Msg("storage {key!r} is described twice with different types or sizes", key=ref.key))
        return root if ref.view_key is None else ref

    def _locate_storages(self, pos: int, size: int) -> None:
        little = self.sys_info.get("little_endian", True)
        if little is not True:
            self.big_endian = True
            self.note("byteorder-big", Msg("saved on a big-endian machine: values are byte-swapped on read"))
        count_fmt = struct.Struct(">q" if self.big_endian else "<q")
        f = self._file
        seen: set[str] = set()
        for key in self.storage_keys:
            root = self._roots.get(key)
            if root is None or key in seen:
                raise self._fail(
                    Msg("storage key list names {key!r}, which the pickle does not use (or twice)", key=key)
                )
            seen.add(key)
            f.seek(pos)
            raw = f.read(8)
            if len(raw) != 8:
                raise self._fail(Msg("file is truncated before storage {key!r} (offset {pos})", key=key, pos=pos))
            (count,) = count_fmt.unpack(raw)
            if count != root.numel:
                raise self._fail(
                    Msg(
                        "storage {key!r} holds {count} elements, the pickle says {numel}",
                        key=key,
                        count=count,
                        numel=root.numel,
                    )
                )
            nbytes = count * ITEMSIZE[root.dtype]
            if pos + 8 + nbytes > size:
                raise self._fail(Msg("file is truncated inside storage {key!r}", key=key))
            self._data[key] = (pos + 8, nbytes)
            pos += 8 + nbytes
        missing = [k for k in self._roots if k not in self._data]
        if missing:
            raise self._fail(Msg("storage {missing!r} is used but its data is not in the file", missing=missing[0]))
        if pos != size:
            self.note("trailing-data", Msg("{n} after the last storage", n=Bytes(size - pos)))

    def _record(self, storage: StorageRef) -> tuple[int, int]:
        return self._data[storage.key]


def _no_persistent_ids(pid: Any) -> Any:
    raise ModelReadError(Msg("unexpected persistent id {pid!r:.60} outside the legacy object pickle", pid=pid))
