"""The SQLite catalog: one row per model file with its report, scan verdict and hashes, the roots
it was found under, and the batch-conversion plan with each item's state.

Every thread or process opens its own ``Catalog``; WAL mode lets the web page read while a scan or
a batch conversion writes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sdmodel.dtypes import ITEMSIZE, PRECISION_NAMES, is_float
from sdmodel.errors import SdmodelError
from sdmodel.i18n import Msg
from sdmodel.parts import NON_WEIGHT_PARTS

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (
    path TEXT PRIMARY KEY,
    ui TEXT NOT NULL DEFAULT '',
    added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    root TEXT NOT NULL,
    folder TEXT NOT NULL,
    category TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    is_dir INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    format TEXT,
    kind TEXT,
    family TEXT,
    variant TEXT,
    prediction TEXT,
    precision TEXT,
    ema INTEGER NOT NULL DEFAULT 0,
    clip TEXT,
    junk_bytes INTEGER NOT NULL DEFAULT 0,
    verdict TEXT,
    error TEXT,
    sidecars TEXT NOT NULL DEFAULT '[]',
    report TEXT,
    scan TEXT,
    hashes TEXT,
    sha256 TEXT,
    autov3 TEXT,
    fingerprint TEXT,
    fingerprint_bf16 TEXT,
    sketch TEXT,
    scanned_at REAL NOT NULL,
    report_version INTEGER,
    title TEXT,
    version_name TEXT,
    base_model TEXT,
    creator TEXT,
    triggers TEXT,
    preview TEXT,
    thumbnail INTEGER
);
CREATE INDEX IF NOT EXISTS files_name ON files (name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS files_kind ON files (kind, name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS files_family ON files (family, name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS files_folder ON files (folder);
CREATE INDEX IF NOT EXISTS files_root ON files (root);
CREATE INDEX IF NOT EXISTS files_precision ON files (precision);
CREATE INDEX IF NOT EXISTS files_verdict ON files (verdict);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
CREATE INDEX IF NOT EXISTS files_autov3 ON files (autov3);
CREATE INDEX IF NOT EXISTS files_fingerprint ON files (fingerprint);
CREATE INDEX IF NOT EXISTS files_fingerprint_bf16 ON files (fingerprint_bf16);
CREATE INDEX IF NOT EXISTS files_base_model ON files (base_model);
CREATE INDEX IF NOT EXISTS files_creator ON files (creator);
CREATE TABLE IF NOT EXISTS plan_items (
    id INTEGER PRIMARY KEY,
    src TEXT NOT NULL UNIQUE,
    dst TEXT NOT NULL,
    root TEXT NOT NULL,
    mode TEXT NOT NULL,
    dtype TEXT NOT NULL,
    ema TEXT NOT NULL,
    target TEXT NOT NULL,
    src_size INTEGER NOT NULL,
    src_mtime_ns INTEGER NOT NULL,
    before_bytes INTEGER NOT NULL,
    after_bytes INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    step TEXT NOT NULL DEFAULT '',
    error TEXT,
    trashed_to TEXT,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS plan_status ON plan_items (status);
"""

# The columns of ``files``, in schema order.
FILE_COLUMNS = [
    "id", "path", "root", "folder", "category", "name", "is_dir", "size", "mtime_ns", "format", "kind", "family",
    "variant", "prediction", "precision", "ema", "clip", "junk_bytes", "verdict", "error", "sidecars", "report",
    "scan", "hashes", "sha256", "autov3", "fingerprint", "fingerprint_bf16", "sketch", "scanned_at",
    "report_version", "title", "version_name", "base_model", "creator", "triggers", "preview", "thumbnail",
]  # fmt: skip
# The card columns (sidecars.ModelCard), refreshed on every scan: sidecars change beside unchanged files.
CARD_COLUMNS = ["title", "version_name", "base_model", "creator", "triggers", "preview", "thumbnail"]
# The columns the list filters on exactly, and those it can count values of.
EXACT_FILTERS = ("kind", "family", "category", "precision", "verdict", "base_model", "creator")
USAGE_COLUMNS = ("family", "kind", "precision")
# What the list page shows: no stored JSON, hashes or bookkeeping.
LIST_COLUMNS = [
    c
    for c in FILE_COLUMNS
    if c
    not in {
        "mtime_ns",
        "prediction",
        "junk_bytes",
        "sidecars",
        "report",
        "report_version",
        "scan",
        "hashes",
        "sha256",
        "autov3",
        "fingerprint",
        "fingerprint_bf16",
        "sketch",
        "scanned_at",
        "triggers",
    }
]

# Parts whose dtype says nothing about the model's precision.


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/sdmodel/library.db``, or ``~/.local/share/sdmodel/library.db``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "sdmodel" / "library.db"


def precision_of(report: dict[str, Any]) -> str | None:
    """The model's storage precision (``fp16``, ``fp32``, ``bf16``...; for quantized storage its
    form: ``Q4_K``, ``fp8_scaled``, ``nf4``...), ``mixed`` when no float dtype holds 90% of the
    weight bytes, None when the file holds no float weights."""
    quant = report.get("quantization") or {}
    if quant.get("quantized") and quant.get("precision"):
        return str(quant["precision"])
    by_dtype: dict[str, float] = {}
    for part, comp in (report.get("components") or {}).items():
        if part in NON_WEIGHT_PARTS:
            continue
        dtypes = {d: n for d, n in (comp.get("dtypes") or {}).items() if is_float(d)}
        if not dtypes:
            continue
        weight = sum(n * ITEMSIZE[d] for d, n in dtypes.items()) or 1
        for d, n in dtypes.items():
            by_dtype[d] = by_dtype.get(d, 0.0) + comp.get("bytes", 0) * n * ITEMSIZE[d] / weight
    total = sum(by_dtype.values())
    if not total:
        return None
    dtype, share = max(by_dtype.items(), key=lambda kv: kv[1])
    if share < 0.9 * total:
        return "mixed"
    return PRECISION_NAMES.get(dtype, dtype.lower())


class PlanRow(Protocol):
    """What ``store_plan`` keeps of a proposed conversion (savings.PlanItem)."""

    @property
    def src(self) -> str: ...

    @property
    def dst(self) -> str: ...

    @property
    def root(self) -> str: ...

    @property
    def mode(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def ema(self) -> str: ...

    @property
    def target(self) -> str | Msg: ...  # stored in English

    @property
    def src_size(self) -> int: ...

    @property
    def src_mtime_ns(self) -> int: ...

    @property
    def before_bytes(self) -> int: ...

    @property
    def after_bytes(self) -> int: ...


@dataclass
class Filters:
    """What the list shows: exact kind/family/folder/precision/verdict/base model/creator, a text
    search on the path, a text search in the trigger words."""

    kind: str = ""
    family: str = ""
    category: str = ""
    precision: str = ""
    verdict: str = ""
    base_model: str = ""
    creator: str = ""
    text: str = ""
    trigger: str = ""

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for col in EXACT_FILTERS:
            value = getattr(self, col)
            if value == "-":
                clauses.append(f"({col} IS NULL OR {col} = '')")
            elif value:
                clauses.append(f"{col} = ?")
                args.append(value)
        for col, text in (("path", self.text), ("triggers", self.trigger)):
            if text:
                clauses.append(f"{col} LIKE ? ESCAPE '\\'")
                escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                args.append(f"%{escaped}%")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


class Catalog:
    """A connection to the catalog database (created on first use)."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_file():
            raise SdmodelError(Msg("{path}: no catalog here (run 'sdmodel library scan' first)", path=self.path))
        self.db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        with self.db:
            self._add_missing_columns()
            self.db.executescript(SCHEMA)
            self.db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _add_missing_columns(self) -> None:
        """Catalogs written by an earlier version lack the columns added since (schema 1 had no
        ``fingerprint_bf16``, schema 2 no ``sketch`` nor ``report_version``): add them so that the
        schema's indexes can be created. Rows without a report version hold a report of version 1.
        Schema 3 had no card columns: they stay empty until the next scan fills them."""
        have = {r[1] for r in self.db.execute("PRAGMA table_info(files)")}
        added = [("fingerprint_bf16", "TEXT"), ("sketch", "TEXT"), ("report_version", "INTEGER")]
        added += [(c, "INTEGER" if c == "thumbnail" else "TEXT") for c in CARD_COLUMNS]
        for column, kind in added:
            if have and column not in have:
                self.db.execute(f"ALTER TABLE files ADD COLUMN {column} {kind}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta and roots ------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def roots(self) -> list[Path]:
        return [Path(r[0]) for r in self.db.execute("SELECT path FROM roots ORDER BY path")]

    def add_root(self, path: Path, ui: str = "") -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO roots (path, ui, added) VALUES (?, ?, ?) ON CONFLICT(path) DO UPDATE SET ui = "
                "CASE WHEN excluded.ui != '' THEN excluded.ui ELSE roots.ui END",
                (str(path), ui, time.time()),
            )

    def remove_roots_inside(self, root: Path) -> None:
        """Forget roots (and their files) that a new, wider root now covers."""
        prefix = str(root).rstrip(os.sep) + os.sep
        with self.db:
            for (r,) in self.db.execute("SELECT path FROM roots").fetchall():
                if r.startswith(prefix):
                    self.db.execute("DELETE FROM roots WHERE path = ?", (r,))
                    self.db.execute("UPDATE files SET root = ? WHERE root = ?", (str(root), r))

    # -- files -----------------------------------------------------------------------------------
    def snapshot(self, root: Path, report_version: int) -> dict[str, tuple[int, int, bool, bool]]:
        """path -> (size, mtime_ns, has hashes, examined by this ``report_version``) of every file
        catalogued under ``root``."""
        rows = self.db.execute(
            "SELECT path, size, mtime_ns, hashes IS NOT NULL, report_version IS ? FROM files WHERE root = ?",
            (report_version, str(root)),
        )
        return {r[0]: (r[1], r[2], bool(r[3]), bool(r[4])) for r in rows}

    def upsert_many(self, rows: Iterable[dict[str, Any]]) -> None:
        cols = [c for c in FILE_COLUMNS if c != "id"]
        sql = (
            f"INSERT INTO files ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT(path) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in cols if c != 'path')}"
        )
        with self.db:
            self.db.executemany(sql, ([row.get(c) for c in cols] for row in rows))

    def update_sidecars(self, items: Iterable[tuple[str, list[str], dict[str, Any]]]) -> None:
        """New sidecar lists and cards (CARD_COLUMNS values) of unchanged files: (path, names, card)."""
        sets = ", ".join(f"{c} = ?" for c in CARD_COLUMNS)
        with self.db:
            self.db.executemany(
                f"UPDATE files SET sidecars = ?, {sets} WHERE path = ?",
                ((json.dumps(s), *(card.get(c) for c in CARD_COLUMNS), p) for p, s, card in items),
            )

    def metadata_of(self, root: Path, keys: tuple[str, ...]) -> dict[str, dict[str, str]]:
        """path -> the metadata ``keys`` of each file catalogued under ``root`` (what its card is read
        from; long values cut to 64 characters: a card needs only to know a thumbnail is there)."""
        picks = ", ".join("substr(json_extract(report, '$.metadata.\"' || ? || '\"'), 1, 64)" for _ in keys)
        rows = self.db.execute(
            f"SELECT path, {picks} FROM files WHERE root = ? AND report IS NOT NULL", (*keys, str(root))
        )
        return {r[0]: {k: v for k, v in zip(keys, r[1:], strict=True) if isinstance(v, str)} for r in rows}

    def delete_paths(self, paths: Iterable[str]) -> int:
        with self.db:
            cur = self.db.executemany("DELETE FROM files WHERE path = ?", ((p,) for p in paths))
            return cur.rowcount

    def count(self, filters: Filters | None = None) -> int:
        where, args = (filters or Filters()).where()
        return self.db.execute(f"SELECT COUNT(*) FROM files{where}", args).fetchone()[0]

    def list_files(self, filters: Filters | None = None, *, offset: int = 0, limit: int = 50) -> list[dict]:
        """One page of the list, sorted by name (paginated in SQL)."""
        where, args = (filters or Filters()).where()
        rows = self.db.execute(
            f"SELECT {', '.join(LIST_COLUMNS)} FROM files{where} ORDER BY name COLLATE NOCASE, id LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        return [dict(r) for r in rows]

    def facet(self, column: str) -> list[tuple[str, int]]:
        """Distinct values of a filter column with their counts."""
        if column not in EXACT_FILTERS:
            raise ValueError(column)
        rows = self.db.execute(f"SELECT {column}, COUNT(*) FROM files GROUP BY {column} ORDER BY {column}")
        return [(r[0] or "", r[1]) for r in rows]

    def usage(self, column: str) -> list[tuple[str, int, int]]:
        """(value, files, bytes) of one column (family, kind, precision), the biggest first."""
        if column not in USAGE_COLUMNS:
            raise ValueError(column)
        rows = self.db.execute(
            f"SELECT COALESCE({column}, ''), COUNT(*), COALESCE(SUM(size), 0) AS b FROM files "
            f"GROUP BY COALESCE({column}, '') ORDER BY b DESC, 1"
        )
        return [(r[0], int(r[1]), int(r[2])) for r in rows]

    def totals(self) -> tuple[int, int]:
        """(number of files, their bytes)."""
        count, size = self.db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM files").fetchone()
        return int(count), int(size)

    def names_in_folder(self, root: str, folder: str) -> set[str]:
        """Names of the files in one folder of one root (the folder alone may repeat under another root)."""
        rows = self.db.execute("SELECT name FROM files WHERE root = ? AND folder = ?", (root, folder))
        return {r[0] for r in rows}

    def hashed_files(self) -> list[dict[str, Any]]:
        """The rows duplicates are found from: files with a hash or a content fingerprint."""
        rows = self.db.execute(
            "SELECT id, path, size, kind, family, sha256, autov3, fingerprint, fingerprint_bf16, sketch FROM files "
            "WHERE sha256 IS NOT NULL OR autov3 IS NOT NULL OR fingerprint IS NOT NULL"
        )
        return [dict(r) for r in rows.fetchall()]

    def ids_by_path(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.execute("SELECT path, id FROM files")}

    def get(self, file_id: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return _decode(row) if row else None

    def get_by_path(self, path: str | Path) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM files WHERE path = ?", (str(path),)).fetchone()
        return _decode(row) if row else None

    def all_files(self) -> Iterator[dict[str, Any]]:
        """Every file, with its decoded report, scan, hashes and sidecars."""
        for row in self.db.execute("SELECT * FROM files ORDER BY path"):
            yield _decode(row)

    # -- plan ------------------------------------------------------------------------------------
    def store_plan(self, items: Iterable[PlanRow]) -> None:
        """Replace the plan's unfinished items (pending, failed) with ``items``; items being run or
        in the middle of a step stay, so an interrupted run can resume."""
        cols = [
            "src", "dst", "root", "mode", "dtype", "ema", "target", "src_size", "src_mtime_ns", "before_bytes",
            "after_bytes",
        ]  # fmt: skip
        with self.db:
            self.db.execute("DELETE FROM plan_items WHERE status IN ('pending', 'failed', 'skipped')")
            self.db.executemany(
                f"INSERT OR IGNORE INTO plan_items ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                ([str(v) if isinstance(v, Msg) else v for v in (getattr(it, c) for c in cols)] for it in items),
            )

    def plan_items(self, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        if statuses:
            marks = ", ".join("?" * len(statuses))
            rows = self.db.execute(f"SELECT * FROM plan_items WHERE status IN ({marks}) ORDER BY id", statuses)
        else:
            rows = self.db.execute("SELECT * FROM plan_items ORDER BY id")
        return [dict(r) for r in rows]

    def update_item(self, item_id: int, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.db:
            self.db.execute(f"UPDATE plan_items SET {sets} WHERE id = ?", [*values.values(), item_id])

    def clear_finished_plan(self) -> None:
        with self.db:
            self.db.execute("DELETE FROM plan_items WHERE status IN ('done', 'skipped')")


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("report", "scan", "hashes", "sidecars"):
        if key in d and isinstance(d[key], str):
            d[key] = json.loads(d[key])
    return d
