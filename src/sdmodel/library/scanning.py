"""``library scan``: walk the roots, examine new or changed files on every core, update the catalog.

Incremental on (path, size, mtime_ns): an unchanged file is not opened again (its sidecar list is
refreshed from the directory listing, which costs nothing); files gone from disk leave the catalog.
A file that cannot be read is stored with its error and the walk goes on.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdmodel.errors import ConversionError, SdmodelError
from sdmodel.formats import open_model
from sdmodel.formats.base import TensorSource
from sdmodel.hashing import content_fingerprints, hash_file
from sdmodel.inspection import REPORT_VERSION, inspect
from sdmodel.library.catalog import Catalog, precision_of
from sdmodel.library.walk import FoundFile, category_of, walk_root
from sdmodel.quant.sketch import precision_sketch
from sdmodel.quant.storage import analyze
from sdmodel.quant.view import DequantizedSource
from sdmodel.security.scanner import scan
from sdmodel.sidecars import CARD_METADATA, preview_of, read_card

# progress(stage, done, total, path): stage is "walk" (total unknown: 0) or "examine".
Progress = Callable[[str, int, int, str], None]

BATCH_FILES = 32
HASH_BATCH_BYTES = 256 << 20
WRITE_EVERY = 200


@dataclass
class ScanStats:
    roots: list[str] = field(default_factory=list)
    files: int = 0
    examined: int = 0
    unchanged: int = 0
    removed: int = 0
    errors: int = 0
    seconds: float = 0.0
    skipped_names: list[str] = field(default_factory=list)  # paths that are not valid UTF-8

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _storable(path: str) -> bool:
    """The catalog and the web page store paths as UTF-8 text: a file name with other bytes (a
    surrogate-escaped str) cannot be catalogued; it is listed as skipped instead."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def default_jobs() -> int:
    """Worker processes: one per core (inspect is header I/O plus a little CPU per file)."""
    return max(1, min(os.cpu_count() or 1, 8))


def examine(path: str, want_hashes: bool) -> dict[str, Any]:
    """Report, scan verdict and (optionally) hashes and content fingerprint of one file. Never
    raises: failures are returned as text (runs in a worker process)."""
    out: dict[str, Any] = {
        "path": path,
        "report": None,
        "scan": None,
        "hashes": None,
        "fingerprint": None,
        "fingerprint_bf16": None,
        "sketch": None,
        "error": None,
    }
    try:
        out["report"] = inspect(path, read_values=want_hashes).to_dict()
    except SdmodelError as e:
        out["error"] = str(e)
    except Exception as e:  # a reader bug must not stop a library scan
        out["error"] = f"internal error: {type(e).__name__}: {e}"
    try:
        out["scan"] = scan(path).to_dict()
    except Exception as e:
        out["scan"] = {"path": path, "verdict": "error", "findings": [], "error": f"{type(e).__name__}: {e}"}
    if want_hashes:
        try:
            if not os.path.isdir(path):
                out["hashes"] = hash_file(path)
            if out["error"] is None:
                with open_model(path) as source:
                    found, sketch = model_prints(source)
                out["fingerprint"], out["fingerprint_bf16"] = found["fp16"], found["bf16"]
                out["sketch"] = sketch
        except Exception as e:
            out["hash_error"] = f"{type(e).__name__}: {e}"
    return out


def model_prints(source: TensorSource) -> tuple[dict[str, str], str | None]:
    """The content fingerprints (exact: fp32/fp16/bf16 copies) and the precision sketch (fp8 and
    8-bit block copies too) of a model; a quantized file is fingerprinted as the model it holds."""
    layout = analyze(source)
    sketch = precision_sketch(source, layout)
    model = source
    if layout.quantized:
        try:
            model = DequantizedSource(source, "F32", layout)
        except ConversionError:  # not dequantizable (Nunchaku...): its stored bytes, then
            model = source
    return content_fingerprints(model), sketch.encode() if sketch is not None else None


def examine_batch(paths: list[str], want_hashes: bool) -> list[dict[str, Any]]:
    return [examine(p, want_hashes) for p in paths]


def card_row(path: Path, sidecars: list[str], metadata: dict[str, str]) -> dict[str, Any]:
    """The catalog's card columns of a model: what its sidecars and metadata say, its picture."""
    card = read_card(path, sidecars, metadata)
    return {
        "title": card.title,
        "version_name": card.version,
        "base_model": card.base_model,
        "creator": card.creator,
        "triggers": "\n".join(card.triggers) or None,
        "preview": preview_of(path.name, sidecars),
        "thumbnail": int(card.thumbnail),
    }


def make_row(found: FoundFile, result: dict[str, Any]) -> dict[str, Any]:
    """The catalog row of a file from its walk entry and its examination."""
    rep = result.get("report") or {}
    scan = result.get("scan") or {}
    hashes = result.get("hashes")
    folder = os.path.relpath(found.path.parent, found.root.parent)
    return {
        "path": str(found.path),
        "root": str(found.root),
        "folder": folder,
        "category": category_of(found.path, found.root),
        "name": found.path.name,
        "is_dir": int(found.is_dir),
        "size": found.size,
        "mtime_ns": found.mtime_ns,
        "format": rep.get("format"),
        "kind": rep.get("kind"),
        "family": rep.get("family"),
        "variant": rep.get("variant"),
        "prediction": rep.get("prediction"),
        "precision": precision_of(rep) if rep else None,
        "ema": int(bool((rep.get("ema") or {}).get("present"))),
        "clip": (rep.get("clip_position_ids") or {}).get("status"),
        "junk_bytes": int((rep.get("junk") or {}).get("bytes") or 0),
        "verdict": scan.get("verdict"),
        "error": result.get("error"),
        "sidecars": json.dumps(found.sidecars),
        "report": json.dumps(rep, default=str) if rep else None,
        "report_version": REPORT_VERSION,  # of the examiner, for errors too: a newer one may read the file
        "scan": json.dumps(scan, default=str) if scan else None,
        "hashes": json.dumps(hashes) if hashes else None,
        "sha256": (hashes or {}).get("sha256"),
        "autov3": (hashes or {}).get("autov3"),
        "fingerprint": result.get("fingerprint"),
        "fingerprint_bf16": result.get("fingerprint_bf16"),
        "sketch": result.get("sketch"),
        "scanned_at": time.time(),
        **card_row(found.path, found.sidecars, rep.get("metadata") or {}),
    }


def _batches(todo: list[FoundFile], jobs: int, want_hashes: bool) -> list[list[FoundFile]]:
    """Small enough batches to keep every worker busy; when hashing, about 256 MiB each."""
    size = max(1, min(BATCH_FILES, math.ceil(len(todo) / (jobs * 4))))
    out: list[list[FoundFile]] = []
    cur: list[FoundFile] = []
    cur_bytes = 0
    for f in todo:
        if cur and (len(cur) >= size or (want_hashes and cur_bytes + f.size > HASH_BATCH_BYTES)):
            out.append(cur)
            cur, cur_bytes = [], 0
        cur.append(f)
        cur_bytes += f.size
    if cur:
        out.append(cur)
    return out


def scan_library(
    catalog: Catalog,
    roots: list[tuple[Path, str]],
    *,
    hashes: bool = False,
    jobs: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> ScanStats:
    """Bring the catalog up to date with ``roots`` (``(path, ui)`` pairs, ui may be ``""``)."""
    started = time.perf_counter()
    jobs = jobs or default_jobs()
    stats = ScanStats(roots=[str(r) for r, _ in roots])
    todo: list[FoundFile] = []
    sidecar_updates: list[tuple[str, list[str], dict[str, Any]]] = []
    for root, ui in roots:
        root = Path(os.path.abspath(root))
        catalog.remove_roots_inside(root)
        catalog.add_root(root, ui)
        known = catalog.snapshot(root, REPORT_VERSION)
        metadata = catalog.metadata_of(root, CARD_METADATA)
        seen: set[str] = set()
        if root.is_dir():
            for found in walk_root(root):
                key = str(found.path)
                if not _storable(key):
                    stats.skipped_names.append(os.fsencode(key).decode("utf-8", "backslashreplace"))
                    continue
                seen.add(key)
                stats.files += 1
                if progress and stats.files % 500 == 0:
                    progress("walk", stats.files, 0, key)
                old = known.get(key)
                unchanged = old is not None and old[0] == found.size and old[1] == found.mtime_ns
                # a row an older sdmodel wrote is examined again: it may read or name the file better
                if unchanged and old is not None and old[3] and not force and (old[2] or not hashes):
                    stats.unchanged += 1
                    card = card_row(found.path, found.sidecars, metadata.get(key, {}))
                    sidecar_updates.append((key, found.sidecars, card))
                else:
                    todo.append(found)
        gone = [p for p in known if p not in seen]
        stats.removed += catalog.delete_paths(gone) if gone else 0
    catalog.update_sidecars(sidecar_updates)

    rows: list[dict[str, Any]] = []

    def collect(batch: list[FoundFile], results: list[dict[str, Any]]) -> None:
        for found, result in zip(batch, results, strict=True):
            rows.append(make_row(found, result))
            stats.examined += 1
            stats.errors += result.get("error") is not None
            if progress:
                progress("examine", stats.examined, len(todo), str(found.path))
        if len(rows) >= WRITE_EVERY:
            catalog.upsert_many(rows)
            rows.clear()

    try:
        if progress:
            progress("examine", 0, len(todo), "")
        if jobs == 1 or len(todo) <= 4:
            for found in todo:
                collect([found], [examine(str(found.path), hashes)])
        else:
            _run_pool(todo, jobs, hashes, collect)
    finally:
        if rows:
            catalog.upsert_many(rows)
    stats.seconds = time.perf_counter() - started
    return stats


def _run_pool(todo: list[FoundFile], jobs: int, hashes: bool, collect: Callable) -> None:
    # forkserver: workers never inherit the threads of the parent (progress bar, web server).
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context(method))
    try:
        batches = iter(_batches(todo, jobs, hashes))
        running: dict = {}
        for batch in batches:
            running[pool.submit(examine_batch, [str(f.path) for f in batch], hashes)] = batch
            if len(running) >= jobs * 3:
                break
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                batch = running.pop(fut)
                collect(batch, fut.result())
                nxt = next(batches, None)
                if nxt is not None:
                    running[pool.submit(examine_batch, [str(f.path) for f in nxt], hashes)] = nxt
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
