"""``sdmodel.scan``: a static verdict on a model file, for the bytes ``torch.load`` would run.

The container is recognised by content (never by extension) and read the way PyTorch reads it: a
zip only when ``PK\\x03\\x04`` is at offset 0 (through :mod:`sdmodel.formats.zipview`, miniz
semantics: first entry wins, CRC ignored), otherwise a tar or a stream of pickles. Every pickle
goes through the same virtual machine the readers use (:func:`~sdmodel.formats.pickle_vm.run_pickle`,
scan mode): nothing is imported or executed. Only pickles and small records are read, never tensor
data, so a multi-gigabyte checkpoint scans in milliseconds.

Verdict = the worst finding: ``dangerous`` > ``error`` (unscannable) > ``suspicious`` > ``safe``.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from sdmodel.dtypes import ITEMSIZE
from sdmodel.errors import ModelReadError, SdmodelError, error_message
from sdmodel.formats.base import model_path, open_bytes
from sdmodel.formats.gguf import GGUFSource
from sdmodel.formats.pickle_values import GlobalObj
from sdmodel.formats.pickle_vm import Finding, PickleResult, map_py2, run_pickle
from sdmodel.formats.safetensors import SafetensorsSource
from sdmodel.formats.torch_legacy import MAGIC_NUMBER as LEGACY_MAGIC
from sdmodel.formats.torch_records import StorageRef, parse_storage_pid
from sdmodel.formats.zipview import ZipEntry, ZipView, read_zip
from sdmodel.i18n import Bytes, Msg, msg_n
from sdmodel.quant.storage import analyze
from sdmodel.security.grading import grade_global
from sdmodel.security.targets import target_allowed
from sdmodel.vocab import Verdict

__all__ = ["Finding", "ScanReport", "scan"]

_RANK = {"info": 0, "safe": 0, "suspicious": 1, "error": 2, "dangerous": 3}

PICKLE_WINDOW = 64 * 1024 * 1024  # bytes of a pickle stream given to the VM (honest pickles: < 5 MB)
MAX_MEMBER = 64 * 1024 * 1024  # largest zip/tar member read as a pickle
MEMBER_PROBE = 64 * 1024  # bytes of a large zip member interpreted to see whether it is a pickle
MAX_MEMBERS_SCANNED = 512  # zip members inspected by content (besides referenced storages)
MAX_TAR_MEMBERS = 64
MAX_EXTRA_PICKLES = 8  # pickles looked for after the first STOP
MAX_YAML = 1024 * 1024
MAX_STORAGES = 1_000_000
MAX_TORCH_VERSION = 20

# Content that is not a model: (magic, offset, description).
_FOREIGN = [
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7z archive (unpacked, it may hold a checkpoint: scan its contents)"),
    (b"Rar!\x1a\x07", 0, "a RAR archive"),
    (b"\x1f\x8b", 0, "a gzip stream"),
    (b"BZh", 0, "a bzip2 stream"),
    (b"\xfd7zXZ\x00", 0, "an xz stream"),
    (b"\x28\xb5\x2f\xfd", 0, "a zstd stream"),
    (b"\x89PNG\r\n\x1a\n", 0, "a PNG image"),
    (b"\xff\xd8\xff", 0, "a JPEG image"),
    (b"GIF8", 0, "a GIF image"),
    (b"RIFF", 0, "a RIFF (WebP/WAV) file"),
    (b"%PDF", 0, "a PDF document"),
    (b"\x7fELF", 0, "an ELF executable"),
    (b"MZ", 0, "a Windows executable"),
    (b"PK\x05\x06", 0, "an empty zip archive"),
    (b"\x89HDF", 0, "an HDF5 file"),
]
_TORCH_TEXT_RECORDS = (
    "version",
    "byteorder",
    ".format_version",
    ".storage_alignment",
    ".data/serialization_id",
    ".data/version",
)


@dataclass
class ScanReport:
    """The verdict on one file. ``notes``: safe, but with known-inert extras (Lightning callbacks,
    numpy scalars, ParameterDict, set)."""

    path: str
    verdict: Verdict
    format: str
    notes: bool = False
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "verdict": self.verdict,
            "notes": self.notes,
            "format": self.format,
            "findings": [f.to_dict() for f in self.findings],
        }

    def main_findings(self, n: int = 3) -> list[Finding]:
        """The ``n`` most severe findings (file order within a severity)."""
        ranked = sorted(self.findings, key=lambda f: -_RANK.get(f.severity, 0))
        return ranked[:n]


def _problem(error: SdmodelError) -> str | Msg:
    """An error's message without the file name in front: a finding is about this file already."""
    message = error.message
    if isinstance(message, Msg) and message.template == "{path}: {problem}":
        return next(value for name, value in message.fields if name == "problem")  # type: ignore[return-value]
    return str(error).split(": ", 1)[-1]


def scan(path: str | Path) -> ScanReport:
    """Scan one file statically and return its verdict. Never raises for the file's content."""
    path = model_path(path)
    s = _Scan(path)
    try:
        s.run()
    except OSError as e:
        s.add("error", "unreadable", Msg("cannot read the file: {reason}", reason=e.strerror or e))
    except Exception as e:  # a scanner bug must not turn into a traceback or a "safe"
        s.add(
            "error",
            "scanner-failure",
            Msg("internal scanner error: {type_name}: {reason}", type_name=type(e).__name__, reason=error_message(e)),
        )
    return s.report()


class _Scan:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = "unknown"
        self.findings: list[Finding] = []
        self.note_globals: set[str] = set()

    # ---- bookkeeping

    def add(
        self, severity: str, code: str, message: str | Msg, member: str | None = None, offset: int | None = None
    ) -> None:
        self.findings.append(Finding(severity, code, message, offset, member))

    def report(self) -> ScanReport:
        if self.note_globals:
            self.add(
                "info", "inert-extras", Msg("known inert extras: {names}", names=", ".join(sorted(self.note_globals)))
            )
        worst = max((_RANK.get(f.severity, 0) for f in self.findings), default=0)
        verdicts: dict[int, Verdict] = {0: "safe", 1: "suspicious", 2: "error", 3: "dangerous"}
        verdict = verdicts[worst]
        notes = verdict == "safe" and any(f.severity == "info" for f in self.findings)
        return ScanReport(str(self.path), verdict, self.format, notes, self.findings)

    def absorb(self, res: PickleResult, member: str | None) -> None:
        """Take a VM result: its findings, plus the deny-list grade of every unknown global."""
        for f in res.findings:
            if f.member is None:
                f.member = member
            self.findings.append(f)
        for g in res.globals:
            mapped = map_py2(g.module, g.name)
            grade = grade_global(g.module, g.name, mapped)
            if grade is None:
                continue
            severity, why = grade
            if severity == "info":
                self.note_globals.add(".".join(mapped))
            else:
                self.add(
                    severity,
                    "denied-global",
                    Msg("global {module}.{name}: {why}", module=g.module, name=g.name, why=why),
                    member,
                    g.offset,
                )

    def pickle(self, data: bytes, start: int, member: str, persistent_load: Any = None) -> PickleResult:
        res = interpret(data, start, member, persistent_load)
        self.absorb(res, member)
        return res

    # ---- dispatch

    def run(self) -> None:
        path = self.path
        if not path.exists():
            self.add("error", "missing", Msg("no such file"))
            return
        if path.is_dir():
            self.add("error", "directory", Msg("is a directory (scan the files inside it)"))
            return
        if path.suffix.lower() not in (".yaml", ".yml"):
            sidecar = path.with_suffix(".yaml")
            if sidecar.is_file():
                self.scan_yaml(sidecar, sidecar.name)
        with open_bytes(path) as f:
            size = f.seek(0, 2)
            f.seek(0)
            head = f.read(512)
            if not head:
                self.format = "empty"
                self.add("error", "empty", Msg("file is empty: not a model"))
                return
            if head.startswith(b"PK\x03\x04"):
                self.format = "torch-zip"
                self.scan_zip_file(f, None)
            elif _is_tar(head):  # torch tries tarfile before anything else that is not a zip
                self.format = "torch-tar"
                self.scan_tar(f)
            elif head.startswith(b"GGUF"):
                self.format = "gguf"
                self.scan_gguf()
            elif head.startswith(b"\x93NUMPY"):
                self.format = "npy"
                self.scan_npy(f, head, size)
            elif (foreign := _foreign(head)) is not None:
                self.format = "other"
                self.add("error", "not-a-model", Msg("content is {foreign}: unscannable, never safe", foreign=foreign))
            elif _looks_safetensors(head):
                self.format = "safetensors"
                self.scan_safetensors()
            elif path.suffix.lower() in (".yaml", ".yml"):
                self.format = "yaml"
                self.scan_yaml(path, None)
            else:
                self.scan_stream(f, size)

    # ---- pickle streams: plain pickles, the legacy 5-pickle format, polyglots

    def scan_stream(self, f: BinaryIO, size: int) -> None:
        f.seek(0)
        data = f.read(min(size, PICKLE_WINDOW))
        first = self.pickle(data, 0, "pickle")
        if not first.complete and not first.globals and not first.calls:
            self.format = "unknown"
            self.add(
                "error",
                "not-a-pickle",
                Msg("content is not a pickle nor any model format (or it is corrupt)"),
                "pickle",
                first.end,
            )
            self.check_polyglot(f, first)
            return
        if first.complete and type(first.value) is int and first.value == LEGACY_MAGIC:
            self.format = "torch-legacy"
            if first.globals or first.calls or first.n_ops > 3:
                self.add(
                    "suspicious",
                    "magic-computed",
                    Msg("the legacy magic number is computed, not one literal LONG (GHSA-97f8-7cmv-76j2)"),
                    "magic",
                    0,
                )
            self.scan_legacy(f, data, size, first.end)
        else:
            self.format = "pickle"
            self.after_stop(data, first, "pickle", size)
        self.check_polyglot(f, first)

    def after_stop(self, data: bytes, res: PickleResult, member: str, total: int | None = None) -> None:
        """Look past STOP: a second pickle (pickle.load runs only the first, other loaders more) or
        trailing bytes that may hide another format."""
        if not res.complete:
            if total is not None and len(data) < total and res.end >= len(data) - 1:
                self.add(
                    "suspicious",
                    "limit-exceeded",
                    Msg("pickle longer than the {value} MB scan window", value=PICKLE_WINDOW >> 20),
                    member,
                )
            return
        pos, n = res.end, 1
        end = len(data) if total is None else total
        while pos < len(data) and n <= MAX_EXTRA_PICKLES:
            n += 1
            sub = interpret(data, pos, f"{member} #{n}")
            if sub.complete or sub.globals or sub.calls:
                self.add(
                    "suspicious", "extra-pickle", Msg("another pickle follows STOP at byte {pos}", pos=pos), member, pos
                )
                self.absorb(sub, f"{member} #{n}")
                if not sub.complete:
                    return
                pos = sub.end
            else:
                break
        if pos < end:
            self.add(
                "suspicious",
                "trailing-bytes",
                Msg("{value} after the pickle's STOP", value=Bytes(end - pos)),
                member,
                pos,
            )

    def scan_legacy(self, f: BinaryIO, data: bytes, size: int, pos: int) -> None:
        """Pickles 2-5 of the legacy format, then the numel header of every storage."""
        declared: dict[str, StorageRef] = {}

        def persistent_load(pid: Any) -> StorageRef:
            ref = parse_storage_pid(pid, legacy=True)
            root = pid[2]
            if root in declared and declared[root].dtype != ref.dtype:
                self.add(
                    "suspicious", "storage-dtype", Msg("storage {root!r} used with two types", root=root), "object"
                )
            declared.setdefault(root, StorageRef(root, ref.dtype, ref.location, pid[4], ref.type_name))
            return ref

        names = ("protocol version", "sys_info", "object", "storage keys")
        values: dict[str, Any] = {}
        for name in names:
            res = self.pickle(data, pos, name, persistent_load if name == "object" else None)
            if not res.complete:
                self.after_stop(data, res, name, size)
                return
            values[name] = res.value
            pos = res.end
        if values["protocol version"] != 1001:
            self.add(
                "suspicious",
                "legacy-version",
                Msg("legacy protocol version {version!r} (torch writes 1001)", version=values["protocol version"]),
                "protocol version",
            )
        info = values["sys_info"]
        little = True
        if isinstance(info, dict) and isinstance(info.get("little_endian"), bool):
            little = info["little_endian"]
        else:
            self.add("suspicious", "legacy-sys-info", Msg("sys_info is not the dict torch writes"), "sys_info")
        keys = values["storage keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(keys) > MAX_STORAGES:
            self.add("suspicious", "legacy-keys", Msg("storage key list is not a list of strings"), "storage keys")
            return
        for missing in sorted(set(declared) - set(keys))[:5]:
            self.add(
                "suspicious",
                "missing-storage",
                Msg("storage {missing!r} is used but its data is not in the file", missing=missing),
                "storage keys",
            )
        order = "<q" if little else ">q"
        for key in keys:
            f.seek(pos)
            raw = f.read(8)
            if len(raw) < 8:
                self.add("suspicious", "truncated", Msg("file ends before storage {key!r}", key=key), "storages", pos)
                return
            (numel,) = struct.unpack(order, raw)
            ref = declared.get(key)
            if ref is None:
                self.add(
                    "suspicious",
                    "unused-storage",
                    Msg("storage {key!r} is listed but never used", key=key),
                    "storages",
                    pos,
                )
                return
            if numel != ref.numel:
                self.add(
                    "suspicious",
                    "storage-size",
                    Msg(
                        "storage {key!r}: the pickle says {numel} elements, the data header says {numel2}",
                        key=key,
                        numel=ref.numel,
                        numel2=numel,
                    ),
                    "storages",
                    pos,
                )
            if numel < 0:
                return
            pos += 8 + numel * ITEMSIZE[ref.dtype]
            if pos > size:
                break
        if pos > size:
            self.add(
                "suspicious",
                "truncated",
                Msg("storages need {value} more than the file has", value=Bytes(pos - size)),
                "storages",
            )
        elif pos < size:
            self.add(
                "suspicious",
                "trailing-bytes",
                Msg("{value} after the last storage", value=Bytes(size - pos)),
                "storages",
                pos,
            )
            f.seek(pos)
            tail = f.read(min(size - pos, MAX_MEMBER))
            if tail[:1] == b"\x80" or tail[:4] == b"PK\x03\x04":
                res = interpret(tail, 0, "trailing data")
                if res.globals or res.calls:
                    self.absorb(res, "trailing data")

    def check_polyglot(self, f: BinaryIO, first: PickleResult) -> None:
        """A zip after leading data: torch runs the leading pickle, zip tools see the archive."""
        size = f.seek(0, 2)
        f.seek(max(0, size - 0x10000 - 22 - 20))
        if b"PK\x05\x06" not in f.read():
            return
        try:
            zv = read_zip(f)
            zv.load_local_headers()
        except ModelReadError:
            return
        if not zv.entries or zv.prefix_bytes <= 0:
            return
        if first.complete:
            self.add(
                "dangerous",
                "polyglot",
                Msg(
                    "a pickle ({prefix_bytes}) precedes a zip archive: torch.load runs the pickle, zip-based tools see the archive",
                    prefix_bytes=Bytes(zv.prefix_bytes),
                ),
                "pickle",
                0,
            )
        else:
            self.add(
                "suspicious",
                "data-before-zip",
                Msg(
                    "{prefix_bytes} precede the zip archive (torch does not read it as a zip)",
                    prefix_bytes=Bytes(zv.prefix_bytes),
                ),
                None,
                0,
            )
        self.format = "polyglot"
        self.scan_zip(zv, "zip:")

    # ---- torch zip

    def scan_zip_file(self, f: BinaryIO, prefix: str | None) -> None:
        try:
            zv = read_zip(f)
            zv.load_local_headers()  # all of them: scan_zip checks every local name
        except ModelReadError as e:
            self.add("error", "bad-zip", e.message)
            return
        self.scan_zip(zv, prefix or "")

    def read_member(self, zv: ZipView, e: ZipEntry, prefix: str) -> bytes | None:
        """An entry's bytes, ignoring encryption flags (a plaintext payload behind flag 0x1 is what
        older torch loaded), bounded by MAX_MEMBER; None (and a finding) when unreadable."""
        try:
            return zv.read(dataclasses.replace(e, flags=0), max_size=MAX_MEMBER)
        except ModelReadError as err:
            sev = "suspicious" if e.size > MAX_MEMBER else "error"
            code = "limit-exceeded" if e.size > MAX_MEMBER else "unreadable-member"
            self.add(sev, code, err.message, prefix + e.name)
            return None

    def scan_zip(self, zv: ZipView, prefix: str) -> None:
        arch = zv.archive_name
        if arch is None:
            self.add(
                "suspicious", "no-archive-dir", Msg("first zip entry is not inside a directory (not torch's layout)")
            )
            arch = ""
        base = f"{arch}/" if arch else ""
        for group in zv.case_collisions():
            names = list(dict.fromkeys(e.name for e in group))
            chosen = zv.locate(group[0].name)
            which = Msg("torch reads entry #{index}", index=chosen) if chosen is not None else Msg("torch reads one")
            pkl = any(e.name.lower().endswith(".pkl") for e in group)
            what: Msg
            if len(names) == 1:
                code, what = (
                    "duplicate-entry",
                    msg_n(
                        "{name} appears {n} time", "{name} appears {n} times", len(group), name=names[0], n=len(group)
                    ),
                )
            else:
                code, what = "case-collision", Msg("names equal ignoring case ({names})", names=", ".join(names[:4]))
            self.add(
                "dangerous" if pkl else "suspicious",
                code,
                Msg(
                    "{what}: torch looks names up ignoring case and {which} (which one depends on the number of entries), other zip readers pick another",
                    what=what,
                    which=which,
                ),
                prefix + group[0].name,
            )
        if zv.trailing_bytes:
            self.add(
                "suspicious",
                "trailing-bytes",
                Msg("{trailing_bytes} after the end of the zip", trailing_bytes=Bytes(zv.trailing_bytes)),
            )
        if any(e.name == base + "constants.pkl" or e.name.startswith(base + "code/") for e in zv.entries):
            self.format = "torchscript"
            self.add(
                "dangerous",
                "torchscript",
                Msg(
                    "TorchScript archive (constants.pkl / code/): torch.load sends it to torch.jit.load, which runs its code (CVE-2025-32434)"
                ),
                prefix + base,
            )
        outside = 0
        for e in zv.entries:
            member = prefix + e.name
            if base and not e.name.startswith(base):
                outside += 1
                if outside <= 3:
                    self.add(
                        "suspicious",
                        "outside-archive",
                        Msg("entry outside the archive directory {arch!r}", arch=arch),
                        member,
                    )
            if e.local_name != e.name:
                self.add(
                    "suspicious",
                    "name-mismatch",
                    Msg(
                        "local header names it {local_name!r} (CVE-2025-1944: Python's zipfile refuses, torch loads)",
                        local_name=e.local_name,
                    ),
                    member,
                )
            if e.flags & 0x41:
                self.add(
                    "suspicious",
                    "encrypted-flag",
                    Msg("general-purpose flags {flags:#06x} mark it encrypted (CVE-2025-1945)", flags=e.flags),
                    member,
                )
            if e.flags & 0x20:
                self.add(
                    "suspicious",
                    "patched-flag",
                    Msg("general-purpose flag 0x20 (patched data) on {name}", name=e.name),
                    member,
                )
            if e.method == 8 and e.name.endswith(".pkl"):
                self.add("info", "compressed", Msg("deflate-compressed pickle (torch never writes one)"), member)
            if e.method not in (0, 8):
                self.add("suspicious", "compression", Msg("compression method {method}", method=e.method), member)
        data_entry = zv.find(base + "data.pkl")
        used: dict[str, StorageRef] = {}
        referenced: set[int] = set()
        if data_entry is None:
            if self.format != "torchscript":
                self.add(
                    "suspicious", "no-data-pkl", Msg("no {base}data.pkl: torch.load cannot read this zip", base=base)
                )
        else:
            raw = self.read_member(zv, data_entry, prefix)
            if raw is not None:
                self.check_crc(data_entry, raw, prefix)
                member = prefix + data_entry.name
                res = self.pickle(raw, 0, member, self.storage_checker(zv, base, used, referenced, member))
                if not res.complete and data_entry.flags & 0x41:
                    self.add("error", "encrypted", Msg("data.pkl is encrypted: unscannable"), member)
                self.after_stop(raw, res, member)
        self.check_records(zv, base, prefix)
        scanned = 0
        for n, e in enumerate(zv.entries):
            if e is data_entry or n in referenced:
                continue  # raw tensor data referenced by data.pkl
            if scanned >= MAX_MEMBERS_SCANNED:
                self.add(
                    "suspicious",
                    "limit-exceeded",
                    Msg(
                        "more than {max_members_scanned} unreferenced entries; the rest were not inspected",
                        max_members_scanned=MAX_MEMBERS_SCANNED,
                    ),
                )
                break
            scanned += 1
            self.scan_member(zv, e, prefix)

    def storage_checker(
        self, zv: ZipView, base: str, used: dict[str, StorageRef], referenced: set[int], member: str
    ) -> Any:
        """persistent_load for data.pkl: the VM checks views against the declared numel; this checks
        the declaration against the record torch would read (CVE-2026-24747: numel larger than the
        record). Adds the index of each record read to ``referenced``."""

        def persistent_load(pid: Any) -> StorageRef:
            ref = parse_storage_pid(pid)
            key = ref.key
            if key in used:
                if used[key].dtype != ref.dtype or used[key].numel != ref.numel:
                    self.add(
                        "suspicious",
                        "storage-reuse",
                        Msg(
                            "storage {key!r} declared twice with different types or sizes ({type_name}, {type_name2})",
                            key=key,
                            type_name=used[key].type_name,
                            type_name2=ref.type_name,
                        ),
                        member,
                    )
                return ref
            used[key] = ref
            if not re.fullmatch(r"[0-9]{1,18}", key):
                self.add(
                    "suspicious", "storage-key", Msg("storage key {key!r} is not a decimal number", key=key), member
                )
            index = zv.locate(f"{base}data/{key}")
            entry = None if index is None else zv.entries[index]
            if index is not None:
                referenced.add(index)
            if entry is None:
                self.add(
                    "suspicious",
                    "missing-storage",
                    Msg("storage {key!r} has no data/{key} record (torch.load fails)", key=key),
                    member,
                )
            elif entry.size < ref.nbytes:
                self.add(
                    "dangerous",
                    "storage-overrun",
                    Msg(
                        "storage {key!r} claims {numel} elements ({nbytes}) but its record holds {size}: out-of-bounds access in torch < 2.10 (CVE-2026-24747)",
                        key=key,
                        numel=ref.numel,
                        nbytes=Bytes(ref.nbytes),
                        size=Bytes(entry.size),
                    ),
                    member,
                )
            elif entry.size > ref.nbytes:
                self.add(
                    "suspicious",
                    "storage-size",
                    Msg(
                        "record data/{key} holds {size}, the storage declares {nbytes}",
                        key=key,
                        size=Bytes(entry.size),
                        nbytes=ref.nbytes,
                    ),
                    member,
                )
            return ref

        return persistent_load

    def check_crc(self, e: ZipEntry, raw: bytes, prefix: str) -> None:
        if zlib.crc32(raw) != e.crc32:
            self.add(
                "suspicious",
                "crc-mismatch",
                Msg("CRC-32 mismatch: torch ignores it (CVE-2025-10156), Python's zipfile refuses"),
                prefix + e.name,
            )

    def check_records(self, zv: ZipView, base: str, prefix: str) -> None:
        for rec in ("byteorder", "version", ".data/version"):
            e = zv.find(base + rec)
            if e is None or e.size > 64:
                if e is not None:
                    self.add(
                        "suspicious",
                        "odd-record",
                        Msg("{rec} record of {size}", rec=rec, size=Bytes(e.size)),
                        prefix + e.name,
                    )
                continue
            raw = self.read_member(zv, e, prefix)
            if raw is None:
                continue
            text = raw.decode("latin-1").strip()
            if rec == "byteorder":
                if text not in ("little", "big"):
                    self.add(
                        "suspicious", "byteorder", Msg("byteorder record says {text!r}", text=text), prefix + e.name
                    )
                elif text == "big":
                    self.add("info", "byteorder", Msg("big-endian data"), prefix + e.name)
            elif not text.isdigit() or not 1 <= int(text) <= MAX_TORCH_VERSION:
                self.add(
                    "suspicious", "version", Msg("{rec} record says {text!r}", rec=rec, text=text), prefix + e.name
                )

    def scan_member(self, zv: ZipView, e: ZipEntry, prefix: str) -> None:
        """Any other entry, whatever its name or first bytes (a protocol 0-1 pickle starts with an
        ordinary opcode): run the VM on it; report it when it is a pickle."""
        member = prefix + e.name
        named = e.name.lower().endswith((".pkl", ".pickle"))
        if e.method == 0 and not named and e.size > MEMBER_PROBE:
            zv.f.seek(zv.local(e).data_offset)
            res = run_pickle(zv.f.read(MEMBER_PROBE), member=member, strict=False)
            if res.complete or res.end < MEMBER_PROBE - 1:
                return  # not a pickle: the VM stopped inside the probe (a complete one would fit)
        if e.size > MAX_MEMBER:
            self.add(
                "suspicious",
                "limit-exceeded",
                Msg("pickle-like entry of {size} not scanned", size=Bytes(e.size)),
                member,
            )
            return
        raw = self.read_member(zv, e, prefix)
        if raw is None:
            return
        res = interpret(raw, 0, member)
        if named or res.complete or res.globals or res.calls:
            if not e.name.endswith("constants.pkl"):
                self.add(
                    "suspicious",
                    "extra-pickle",
                    Msg("a pickle besides data.pkl (torch does not load it; other tools may)"),
                    member,
                )
            self.check_crc(e, raw, prefix)
            self.absorb(res, member)

    # ---- other containers

    def scan_tar(self, f: BinaryIO) -> None:
        """The pre-1.0 tar checkpoint: obsolete, but torch.load(weights_only=False) still runs it.
        torch (``serialization.py: legacy_load``) unpickles every pickle of the ``storages`` and
        ``tensors`` members (a count, then one pickle per item between raw data) before ``pickle``;
        they are walked the same way."""
        self.add("suspicious", "legacy-tar", Msg("obsolete tar-format checkpoint, still executable by torch.load"))
        f.seek(0)
        try:
            with tarfile.open(fileobj=f, mode="r:") as tar:
                for n, m in enumerate(tar):
                    if n >= MAX_TAR_MEMBERS:
                        self.add(
                            "suspicious",
                            "limit-exceeded",
                            Msg("more than {max_tar_members} tar members", max_tar_members=MAX_TAR_MEMBERS),
                        )
                        break
                    if not m.isfile():
                        continue
                    if m.size > MAX_MEMBER:
                        self.add(
                            "suspicious",
                            "limit-exceeded",
                            Msg("member of {size} not scanned", size=Bytes(m.size)),
                            m.name,
                        )
                        continue
                    fh = tar.extractfile(m)
                    raw = fh.read() if fh is not None else b""
                    if m.name in ("storages", "tensors"):
                        self.scan_tar_records(raw, m.name)
                    elif m.name in ("pickle", "sys_info") or _pickle_start(raw[:2]):
                        self.after_stop(raw, self.pickle(raw, 0, m.name), m.name)
        except tarfile.TarError as e:
            self.add("error", "bad-tar", Msg("unreadable tar archive: {reason}", reason=error_message(e)))

    def scan_tar_records(self, raw: bytes, member: str) -> None:
        """A count pickle, then per item an argument pickle followed by raw data: storages
        (int64 element count + data, element size from the storage type), tensors (int32 ndim, 4
        bytes, sizes and strides as int64, int64 offset); storages end with a views pickle."""
        res = self.pickle(raw, 0, member)
        count = res.value if res.complete and type(res.value) is int else 0
        pos = res.end
        for n in range(min(count, MAX_STORAGES)):
            res = self.pickle(raw, pos, f"{member} #{n + 2}")
            args, pos = res.value, res.end
            if not res.complete or type(args) is not tuple or len(args) != 3:
                break
            if member == "storages":
                itemsize = _storage_itemsize(args[2])
                if itemsize is None or pos + 8 > len(raw):
                    break
                (numel,) = struct.unpack_from("<q", raw, pos)
                pos += 8 + max(numel, 0) * itemsize
            else:
                if pos + 8 > len(raw):
                    break
                (ndim,) = struct.unpack_from("<i", raw, pos)
                pos += 8 + 16 * max(ndim, 0) + 8
            if pos > len(raw):
                break
        else:
            if pos < len(raw):
                self.after_stop(raw, self.pickle(raw, pos, f"{member} views"), member)
            return
        self.add(
            "suspicious",
            "legacy-tar-layout",
            Msg("{member} member is not laid out as torch writes it", member=member),
            member,
            pos,
        )

    def scan_npy(self, f: BinaryIO, head: bytes, size: int) -> None:
        major = head[6] if len(head) > 6 else 0
        if major == 1 and len(head) >= 10:
            (hlen,) = struct.unpack("<H", head[8:10])
            start = 10
        elif major in (2, 3) and len(head) >= 12:
            (hlen,) = struct.unpack("<I", head[8:12])
            start = 12
        else:
            self.add("error", "bad-npy", Msg("unknown .npy version {major}", major=major))
            return
        if hlen > 1 << 20:
            self.add("error", "bad-npy", Msg(".npy header of {hlen}", hlen=Bytes(hlen)))
            return
        f.seek(start)
        text = f.read(hlen).decode("latin-1")
        try:
            header = ast.literal_eval(text)
            descr = header["descr"]
        except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
            self.add("error", "bad-npy", Msg(".npy header is not a valid dict literal"))
            return
        if "O" not in str(descr):
            return
        self.add(
            "suspicious",
            "object-array",
            Msg("object array: numpy.load(allow_pickle=True) unpickles it"),
            "array",
            start + hlen,
        )
        f.seek(start + hlen)
        data = f.read(min(size - start - hlen, PICKLE_WINDOW))
        res = self.pickle(data, 0, "array")
        self.after_stop(data, res, "array", size - start - hlen)

    def scan_safetensors(self) -> None:
        try:
            src = SafetensorsSource(self.path)
        except ModelReadError as e:
            problem = _problem(e)
            if e.code == "trailing-bytes":
                self.add(
                    "suspicious", "trailing-bytes", Msg("{problem}: they could hide another format", problem=problem)
                )
            else:
                self.add("error", "bad-safetensors", Msg("invalid safetensors file: {problem}", problem=problem))
            return
        with src:
            for note in src.notes:
                self.add("suspicious" if note.code == "duplicate-names" else "info", note.code, note.message)
            self.check_quantized(src)

    def scan_gguf(self) -> None:
        """GGUF holds no code, but malformed headers have crashed loaders: the structural checks
        of the reader (counts, lengths, types, offsets, overlaps) and of the quantized blocks."""
        try:
            src = GGUFSource(self.path)
        except ModelReadError as e:
            self.add("error", "bad-gguf", Msg("invalid GGUF file: {problem}", problem=_problem(e)))
            return
        with src:
            if src.architecture is None:
                self.add("info", "gguf-no-architecture", Msg("no general.architecture key: loaders may refuse it"))
            self.check_quantized(src)

    def check_quantized(self, src: Any) -> None:
        """Quantized storage a loader would trip on (a comfy_quant that is not JSON, a scale of
        the wrong dtype, packed data of the wrong size): suspicious, with the problem named."""
        try:
            layout = analyze(src)
        except ModelReadError as e:
            self.add("suspicious", "bad-quant-state", _problem(e))
            return
        for p in layout.problems:
            crashes = p.code in ("packed-shape", "quant-weight-missing", "quant-state")
            self.add("suspicious" if crashes else "info", p.code, p.message)

    def scan_yaml(self, path: Path, member: str | None) -> None:
        if path.stat().st_size > MAX_YAML:
            self.add(
                "suspicious",
                "limit-exceeded",
                Msg("config larger than {value} KB not scanned", value=MAX_YAML >> 10),
                member,
            )
            return
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
        except yaml.YAMLError as e:
            self.add(
                "suspicious",
                "bad-yaml",
                Msg("config is not valid YAML: {reason}", reason=str(e).splitlines()[0]),
                member,
            )
            return
        stack, seen = [doc], 0
        while stack and seen < 100_000:
            node = stack.pop()
            seen += 1
            if isinstance(node, dict):
                for k, v in node.items():
                    if k == "target":
                        if not isinstance(v, str):
                            self.add("suspicious", "yaml-target", Msg("target: {v!r} is not a class path", v=v), member)
                        elif not target_allowed(v):
                            self.add(
                                "dangerous",
                                "yaml-target",
                                Msg(
                                    "target: {v} is not a model class A1111 configs use; UIs import and call it (the .yaml names code)",
                                    v=v,
                                ),
                                member,
                            )
                    stack.append(v)
            elif isinstance(node, list):
                stack.extend(node)


def interpret(data: bytes, start: int, member: str, persistent_load: Any = None) -> PickleResult:
    """Scan-mode VM run graded by the worse of CPython's two readings: when frames and opcodes
    disagree, the pickle is read again as the C unpickler reads a stream without ``peek()``
    (``torch.load``'s ``io.BytesIO``), and that reading's findings, globals and calls are added."""
    res = run_pickle(data, start=start, member=member, strict=False, persistent_load=persistent_load)
    if not any(f.code == "frame-mismatch" for f in res.findings):
        return res
    alt = run_pickle(data, start=start, member=member, strict=False, persistent_load=persistent_load, stream=True)
    seen = {(f.severity, f.code, str(f.message), f.offset) for f in res.findings}
    for f in alt.findings:
        if (f.severity, f.code, str(f.message), f.offset) not in seen:
            f.message = Msg("as torch.load reads it from io.BytesIO: {message}", message=f.message)
            res.findings.append(f)
    known = {(g.module, g.name, g.offset) for g in res.globals}
    res.globals.extend(g for g in alt.globals if (g.module, g.name, g.offset) not in known)
    calls = {(c.opcode, c.offset) for c in res.calls}
    res.calls.extend(c for c in alt.calls if (c.opcode, c.offset) not in calls)
    return res


def _storage_itemsize(stype: Any) -> int | None:
    """Element size of an allow-listed storage type placeholder, else None."""
    if isinstance(stype, GlobalObj) and stype.rule.role == "storage-type" and stype.rule.dtype:
        return ITEMSIZE[stype.rule.dtype]
    return None


def _is_tar(head: bytes) -> bool:
    """Whether ``tarfile.open`` (what torch tries first) accepts the first header: a valid
    checksum is enough, the ``ustar`` magic is optional (old V7 archives have none)."""
    if len(head) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _foreign(head: bytes) -> str | None:
    for magic, offset, what in _FOREIGN:
        if head[offset : offset + len(magic)] == magic:
            return what
    return None


def _looks_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= 100_000_000 and head[8:9] in (b"{", b" ", b"\t", b"\n", b"\r")


def _pickle_start(head: bytes) -> bool:
    """Whether bytes start like a pickle: PROTO 0-5, or a protocol 0/1 GLOBAL/MARK/dict/list."""
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return True
    return head[:1] in (b"c", b"(", b"}", b"]")
