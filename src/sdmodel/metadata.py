"""Show and edit a model file's metadata without rewriting gigabytes.

safetensors keeps ``__metadata__`` (string to string) in its JSON header, and the tensor offsets in
that header are relative to the end of the header. So a new header that fits in the old header's
length (padded with spaces, as the reference writer pads) is written in place and no tensor byte
moves; a larger one needs a streamed copy of the data section behind a new header, byte for byte
(AutoV3, the SHA-256 of the data section, stays the same). GGUF key-values sit before the tensor
table; tensor offsets are relative to the aligned data section, so an edit rewrites the header and
copies the data section unchanged.

Both edits are atomic. In place: the new header is first written to a journal beside the file and
synced, then over the old one; an interrupted edit is finished from the journal on the next
``meta`` call (``recover``), so the file is the old one or the new one, never a mix. Rewrite: a
temporary file beside the target, synced, then renamed over it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sdmodel.atomic import sync, sync_dir, temp_path
from sdmodel.errors import ModelReadError, SdmodelError
from sdmodel.formats import sniff
from sdmodel.formats.gguf import GGUFSource
from sdmodel.formats.safetensors import MAX_HEADER
from sdmodel.i18n import N_, Bytes, Msg, Number

EditMode = Literal["unchanged", "in-place", "rewrite"]
Severity = Literal["error", "warning"]

# Loaders that read the header in full: huggingface_hub's header reader stops at 25,000,000 bytes
# (huggingface_hub `parse_safetensors_file_metadata`); ComfyUI (comfy/utils.py
# `safetensors_header`) and the reference reader refuse more than 100 MB.
HUB_HEADER_LIMIT = 25_000_000

# ModelSpec (Stability-AI/ModelSpec; written by kohya sd-scripts library/sai_model_spec.py): keys
# whose values have a defined form, and that form.
MODELSPEC_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "modelspec.sai_model_spec": (re.compile(r"\d+\.\d+\.\d+"), N_("a version such as 1.0.0")),
    "modelspec.date": (
        re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?"),
        N_("an ISO-8601 date such as 2024-05-01 or 2024-05-01T12:00:00"),
    ),
    "modelspec.hash_sha256": (re.compile(r"0x[0-9a-fA-F]{64}"), N_("0x followed by 64 hex digits")),
    "modelspec.resolution": (re.compile(r"\d+x\d+"), N_("WIDTHxHEIGHT such as 1024x1024")),
    "modelspec.prediction_type": (re.compile(r"epsilon|v|flow"), N_("epsilon, v or flow")),
    "modelspec.timestep_range": (re.compile(r"\d+,\d+"), N_("two integers such as 0,1000")),
    "modelspec.encoder_layer": (re.compile(r"-?\d+"), N_("an integer")),
    "modelspec.is_negative_embedding": (re.compile(r"true|false"), N_("true or false")),
    "modelspec.thumbnail": (
        re.compile(r"data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=\s]+"),
        N_("a data URI: data:image/jpeg;base64,..."),
    ),
}

JOURNAL_SUFFIX = ".sdmodel-journal"
_JOURNAL_MAGIC = b"SDMODEL-META-JOURNAL-1\n"
_COPY_CHUNK = 64 << 20


@dataclass(frozen=True)
class MetaProblem:
    """Something wrong with a metadata value: ``error`` refuses the edit, ``warning`` is reported."""

    severity: Severity
    key: str
    message: Msg


@dataclass
class FileMetadata:
    """A file's metadata as stored. safetensors values are strings; GGUF values keep their type."""

    path: Path
    format: Literal["safetensors", "gguf"]
    entries: dict[str, object]
    header_bytes: int  # the header's length on disk (safetensors: the JSON; GGUF: up to the data)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "format": self.format,
            "header_bytes": self.header_bytes,
            "metadata": self.entries,
        }


@dataclass
class MetaEditResult:
    """What an edit did: how the file was written and whether the tensor data moved."""

    path: Path
    format: Literal["safetensors", "gguf"]
    mode: EditMode
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[MetaProblem] = field(default_factory=list)
    header_before: int = 0
    header_after: int = 0
    data_unchanged: bool = True  # the data section is byte-identical (AutoV3 unchanged)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "format": self.format,
            "mode": self.mode,
            "changed": self.changed,
            "removed": self.removed,
            "warnings": [{"key": w.key, "message": str(w.message)} for w in self.warnings],
            "header_before": self.header_before,
            "header_after": self.header_after,
            "data_unchanged": self.data_unchanged,
        }


class MetadataError(SdmodelError):
    """An edit was refused (invalid value, header too large, unsupported file)."""


def check_entries(entries: Mapping[str, object], header_size: int | None = None) -> list[MetaProblem]:
    """Problems with metadata values: non-string values (safetensors allows only strings), ModelSpec
    keys in the wrong form, and a header larger than the loaders read."""
    problems: list[MetaProblem] = []
    for key, value in entries.items():
        if not isinstance(value, str):
            problems.append(
                MetaProblem(
                    "error",
                    key,
                    Msg("{key}: value must be a string, not {type}", key=key, type=type(value).__name__),
                )
            )
            continue
        form = MODELSPEC_FORMATS.get(key)
        if form is not None and not form[0].fullmatch(value.strip()):
            problems.append(
                MetaProblem(
                    "warning",
                    key,
                    Msg(
                        "{key}: ModelSpec wants {form}, got {value!r}", key=key, form=Msg(form[1]), value=_short(value)
                    ),
                )
            )
    if header_size is not None:
        if header_size > MAX_HEADER:
            problems.append(
                MetaProblem(
                    "error",
                    "",
                    Msg(
                        "header would be {size}: ComfyUI and the safetensors reader refuse more than {limit}",
                        size=Bytes(header_size),
                        limit=Number(MAX_HEADER),
                    ),
                )
            )
        elif header_size > HUB_HEADER_LIMIT:
            problems.append(
                MetaProblem(
                    "warning",
                    "",
                    Msg(
                        "header would be {size}: Hugging Face's header reader stops at {limit}",
                        size=Bytes(header_size),
                        limit=Number(HUB_HEADER_LIMIT),
                    ),
                )
            )
    return problems


def _short(value: str) -> str:
    return value if len(value) <= 40 else value[:37] + "..."


# --- reading ------------------------------------------------------------------------------------


def read_metadata(path: str | Path) -> FileMetadata:
    """The metadata of a safetensors or GGUF file (finishing an interrupted edit first)."""
    path = Path(path)
    recover(path)
    kind = _kind(path)
    if kind == "gguf":
        with closing(GGUFSource(path)) as src:
            return FileMetadata(path, "gguf", dict(src.fields), src.data_start)
    header = _SafetensorsHeader.read(path)
    return FileMetadata(path, "safetensors", dict(header.metadata), header.length)


def _kind(path: Path) -> Literal["safetensors", "gguf"]:
    if not path.is_file():
        raise ModelReadError(Msg("{path}: no such file", path=path))
    with open(path, "rb") as f:
        if f.read(4) == b"GGUF":
            return "gguf"
    if sniff(path) == "safetensors":
        return "safetensors"
    raise MetadataError(Msg("{path}: metadata can be edited in safetensors and GGUF files only", path=path))


@dataclass
class _SafetensorsHeader:
    length: int  # JSON length (the 8-byte prefix not included)
    metadata: dict[str, str]
    tensors: dict[str, object]  # the rest of the header, kept as read (order included)

    @classmethod
    def read(cls, path: Path) -> _SafetensorsHeader:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            head = f.read(8)
            if len(head) < 8:
                raise ModelReadError(Msg("{path}: not a safetensors file (shorter than 8 bytes)", path=path))
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise ModelReadError(
                    Msg(
                        "{path}: safetensors header length {n} is impossible for a file of {size}",
                        path=path,
                        n=n,
                        size=Bytes(size),
                    )
                )
            raw = f.read(n)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelReadError(Msg("{path}: safetensors header is not valid UTF-8 JSON", path=path)) from None
        if not isinstance(doc, dict):
            raise ModelReadError(Msg("{path}: safetensors header is not a JSON object", path=path))
        meta = doc.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise ModelReadError(Msg("{path}: __metadata__ must map strings to strings", path=path))
        return cls(n, dict(meta), doc)

    def encode(self, metadata: Mapping[str, str]) -> bytes:
        """The JSON of the header with ``metadata`` (none of the reference writer's padding)."""
        doc: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
        doc.update(self.tensors)
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- editing -----------------------------------------------------------------------------------


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (from ``--set``) to a dict; the first ``=`` splits."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MetadataError(Msg("--set wants KEY=VALUE, got {item!r}", item=item))
        out[key.strip()] = value
    return out


def edit_metadata(
    path: str | Path,
    set_values: Mapping[str, str] | None = None,
    unset: Iterable[str] = (),
    *,
    checkpoint: Callable[[str], None] | None = None,
) -> MetaEditResult:
    """Set and remove metadata keys of a safetensors or GGUF file, atomically.

    safetensors: in place when the new header fits in the old one's length, else a streamed rewrite
    whose data section is byte-identical. GGUF: string values, always a streamed rewrite (the data
    section is copied unchanged). Raises MetadataError when a value is refused. ``checkpoint`` is
    called with the name of each step (tests use it to interrupt the edit at every step).
    """
    path = Path(path)
    step = checkpoint or (lambda _name: None)
    recover(path)
    set_values = dict(set_values or {})
    unset = [k for k in unset if k]
    if _kind(path) == "gguf":
        return _edit_gguf(path, set_values, unset, step)
    header = _SafetensorsHeader.read(path)
    new_meta = {k: v for k, v in header.metadata.items() if k not in unset}
    new_meta.update(set_values)
    result = MetaEditResult(path, "safetensors", "unchanged", header_before=header.length)
    result.changed = sorted(k for k, v in set_values.items() if header.metadata.get(k) != v)
    result.removed = sorted(k for k in unset if k in header.metadata)
    raw = header.encode(new_meta)
    problems = check_entries({k: new_meta[k] for k in set_values}, len(raw))
    _refuse_errors(path, problems)
    result.warnings = problems
    if not result.changed and not result.removed:
        result.header_after = header.length
        return result
    if len(raw) <= header.length:
        prefix = struct.pack("<Q", header.length) + raw + b" " * (header.length - len(raw))
        _write_in_place(path, prefix, step)
        result.mode, result.header_after = "in-place", header.length
        return result
    padded = raw + b" " * (-len(raw) % 8)
    _rewrite(path, struct.pack("<Q", len(padded)) + padded, 8 + header.length, step)
    result.mode, result.header_after = "rewrite", len(padded)
    return result


def _refuse_errors(path: Path, problems: list[MetaProblem]) -> None:
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise MetadataError(Msg("{path}: {message}", path=path, message=errors[0].message))


def journal_path(path: Path) -> Path:
    return path.parent / f".{path.name}{JOURNAL_SUFFIX}"


def _write_in_place(path: Path, prefix: bytes, step: Callable[[str], None]) -> None:
    """Overwrite the first ``len(prefix)`` bytes through a synced journal (see ``recover``)."""
    journal = journal_path(path)
    body = struct.pack("<Q", len(prefix)) + prefix
    digest = _checksum(body)
    with open(journal, "wb") as j:
        j.write(_JOURNAL_MAGIC + body)
        step("journal-partial")
        j.write(digest)
        sync(j)
    sync_dir(path.parent)
    step("journal-written")
    _apply_prefix(path, prefix, step)
    step("header-written")
    journal.unlink()
    sync_dir(path.parent)


def _apply_prefix(path: Path, prefix: bytes, step: Callable[[str], None]) -> None:
    with open(path, "r+b") as f:
        half = len(prefix) // 2
        f.write(prefix[:half])
        f.flush()
        step("header-partial")
        f.write(prefix[half:])
        sync(f)


def _checksum(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def recover(path: str | Path) -> bool:
    """Finish an edit that was interrupted. In place: a complete journal is applied (the file becomes
    the new one), an incomplete one is discarded (the file was not touched yet). Rewrite: the
    temporary file is removed (the rename had not happened). True if the file was repaired."""
    path = Path(path)
    temp_path(path).unlink(missing_ok=True)  # an interrupted rewrite: the file itself is the old one
    journal = journal_path(path)
    if not journal.is_file():
        return False
    data = journal.read_bytes()
    body = data[len(_JOURNAL_MAGIC) : -32]
    complete = (
        data.startswith(_JOURNAL_MAGIC)
        and len(data) >= len(_JOURNAL_MAGIC) + 8 + 32
        and _checksum(body) == data[-32:]
        and struct.unpack("<Q", body[:8])[0] == len(body) - 8
    )
    if complete:
        _apply_prefix(path, body[8:], lambda _name: None)
    journal.unlink()
    sync_dir(path.parent)
    return complete


def _rewrite(path: Path, new_prefix: bytes, data_start: int, step: Callable[[str], None]) -> None:
    """A new file with ``new_prefix`` then the old file's bytes from ``data_start``, renamed over."""
    tmp = temp_path(path)
    try:
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            dst.write(new_prefix)
            src.seek(data_start)
            step("rewrite-header")
            while chunk := src.read(_COPY_CHUNK):
                dst.write(chunk)
            sync(dst)
        step("rewrite-written")
        os.replace(tmp, path)
        sync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- GGUF --------------------------------------------------------------------------------------

_GGUF_STRING = 8  # GGUF value type of a string (ggml docs/gguf.md)


def _gguf_string_kv(key: str, value: str) -> bytes:
    k, v = key.encode("utf-8"), value.encode("utf-8")
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", _GGUF_STRING) + struct.pack("<Q", len(v)) + v


def _edit_gguf(path: Path, set_values: dict[str, str], unset: list[str], step: Callable[[str], None]) -> MetaEditResult:
    with closing(GGUFSource(path)) as src:
        old, spans, table, alignment = dict(src.fields), src.field_spans, src.tensor_table, src.alignment
        version, tensor_count, data_start = src.version, len(src.tensors), src.data_start
    result = MetaEditResult(path, "gguf", "unchanged", header_before=data_start)
    for key in [*set_values, *unset]:
        if key == "general.alignment" or (key == "general.architecture" and key in unset):
            raise MetadataError(
                Msg("{path}: {key} is needed to read the file and cannot be changed or removed", path=path, key=key)
            )
    for key in set_values:
        if key in old and not isinstance(old[key], str):
            raise MetadataError(
                Msg(
                    "{path}: {key} holds a {type_name}; only string values can be set",
                    path=path,
                    key=key,
                    type_name=type(old[key]).__name__,
                )
            )
    result.changed = sorted(k for k, v in set_values.items() if old.get(k) != v)
    result.removed = sorted(k for k in unset if k in old)
    result.warnings = check_entries(set_values)
    if not result.changed and not result.removed:
        result.header_after = data_start
        return result
    with open(path, "rb") as f:
        head = f.read(data_start)
    parts: list[bytes] = []
    for key, (begin, end) in spans.items():
        if key in unset:
            continue
        parts.append(_gguf_string_kv(key, set_values[key]) if key in set_values else head[begin:end])
    parts += [_gguf_string_kv(k, v) for k, v in set_values.items() if k not in spans]
    prefix = b"GGUF" + struct.pack("<IQQ", version, tensor_count, len(parts))
    body = prefix + b"".join(parts) + head[table[0] : table[1]]
    body += b"\0" * (-len(body) % alignment)
    _rewrite(path, body, data_start, step)
    result.mode, result.header_after = "rewrite", len(body)
    return result
