"""Many files at once: the per-file work of ``scan`` or ``info`` as one JSON object per line.

The same :func:`check_one` runs in this process (``jobs=1``), in a pool of processes (``jobs>1``) or
as tasks on a Ray cluster (``ray_address``; Ray is the optional extra ``sdmodel[ray]``, imported only
then). Results arrive in completion order, each written and flushed as one line, so an interrupted
run loses nothing already written: :func:`done_items` reads a previous output and the next run skips
what it holds (files that failed to read are tried again; the last line for a path wins).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

from sdmodel import remote
from sdmodel.errors import SdmodelError, error_message
from sdmodel.i18n import Msg
from sdmodel.inspection import inspect
from sdmodel.security.scanner import scan

Kind = Literal["scan", "info"]
KINDS: tuple[str, ...] = get_args(Kind)
LOCAL_RAY = "local"  # ``--ray`` without an address: RAY_ADDRESS if set, else a Ray started here
RAY_CHUNK = 32  # files per Ray task: amortises the per-task overhead of a few milliseconds


@dataclass(frozen=True)
class BatchOptions:
    kind: Kind
    read_data: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")


@dataclass
class BatchSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    flagged: int = 0  # scan: suspicious or dangerous
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def check_one(options: BatchOptions, item: str) -> dict[str, Any]:
    """The record for one path or URL. Never raises for the file: a failure is a record with
    ``error``. Remote reads add ``remote: {bytes_read, requests, data_bytes}``."""
    path = remote.as_path(item, options.read_data)
    started = time.perf_counter()
    with remote.measure() as meter:
        try:
            record = _work(options.kind, path)
        except SdmodelError as e:
            record = {"error": str(e)}
        except OSError as e:
            record = {"error": f"{item}: {e.strerror or e}"}
        finally:
            remote.forget()
    record["path"] = remote.redact(item)
    if remote.is_remote(path):
        record["remote"] = {"bytes_read": meter.bytes_read, "requests": meter.requests, "data_bytes": meter.data_bytes}
    record["seconds"] = round(time.perf_counter() - started, 4)
    return record


def _work(kind: str, path: Any) -> dict[str, Any]:
    if kind == "scan":
        return scan(path).to_dict()
    return inspect(path).to_dict()


def _check_many(options: BatchOptions, items: list[str]) -> list[dict[str, Any]]:
    return [check_one(options, item) for item in items]


def failed(record: dict[str, Any]) -> bool:
    """Whether a record is worth trying again: the file could not be read or scanned."""
    return "error" in record or record.get("verdict") == "error"


def done_items(output: Path) -> set[str]:
    """Paths a previous output already holds a usable record for (a torn last line is ignored)."""
    done: set[str] = set()
    if not output.is_file():
        return done
    with open(output, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("path"), str):
                if failed(record):
                    done.discard(record["path"])
                else:
                    done.add(record["path"])
    return done


def read_list(path: Path) -> list[str]:
    """Paths or URLs, one a line; blank lines and ``#`` comments skipped; duplicates once."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SdmodelError(
            Msg("{path}: cannot read the list of files ({value})", path=path, value=getattr(e, "strerror", None) or e)
        ) from None
    seen: dict[str, None] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            seen.setdefault(line)
    return list(seen)


def run(
    options: BatchOptions,
    items: list[str],
    emit: Callable[[dict[str, Any]], None],
    jobs: int = 1,
    ray_address: str | None = None,
) -> BatchSummary:
    """Check every item, calling ``emit`` with each record as it completes."""
    if jobs < 1:
        raise SdmodelError(Msg("--jobs must be at least 1, not {jobs}", jobs=jobs))
    summary = BatchSummary()
    started = time.perf_counter()
    if ray_address is not None:
        records = _run_ray(options, items, ray_address)
    elif jobs == 1 or len(items) <= 1:
        records = (check_one(options, item) for item in items)
    else:
        records = _run_pool(options, items, jobs)
    for record in records:
        summary.done += 1
        summary.failed += failed(record)
        summary.flagged += record.get("verdict") in ("suspicious", "dangerous")
        emit(record)
    summary.seconds = time.perf_counter() - started
    return summary


def _run_pool(options: BatchOptions, items: list[str], jobs: int) -> Iterator[dict[str, Any]]:
    chunk = max(1, min(64, len(items) // (jobs * 8)))
    # forkserver/spawn, not fork: the parent may hold threads (HTTP pool) that fork would copy mid-state.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(min(jobs, len(items))) as pool:
        yield from pool.imap_unordered(partial(check_one, options), items, chunksize=chunk)


@contextlib.contextmanager
def _quiet_ray_auth_notice() -> Iterator[None]:
    """Ray's own warning when it starts a local instance ("Token authentication is enabled for this
    Ray cluster..."): about Ray's cluster token (kept in ~/.ray, never shown), not about ours, and
    not actionable for an instance that lives as long as the command. Silenced for that start only;
    Ray's default (token authentication on) is kept."""
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _run_ray(options: BatchOptions, items: list[str], address: str) -> Iterator[dict[str, Any]]:
    try:
        import ray  # noqa: PLC0415 - the optional extra sdmodel[ray], only for --ray
    except ImportError:
        raise SdmodelError(Msg("--ray needs Ray: pip install 'sdmodel[ray]'")) from None
    started_here = not ray.is_initialized()
    if started_here:
        try:
            if address == LOCAL_RAY and not os.environ.get("RAY_ADDRESS"):
                with _quiet_ray_auth_notice():
                    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=None if address == LOCAL_RAY else address, log_to_driver=False)
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError... by situation
            raise SdmodelError(
                Msg(
                    "cannot start or reach Ray ({address}): {type_name}: {reason}",
                    address=address,
                    type_name=type(e).__name__,
                    reason=error_message(e),
                )
            ) from None
    try:
        task = ray.remote(num_cpus=1)(_check_many)
        chunks = [items[i : i + RAY_CHUNK] for i in range(0, len(items), RAY_CHUNK)]
        limit = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        pending: list[Any] = []
        next_chunk = 0
        while pending or next_chunk < len(chunks):
            while next_chunk < len(chunks) and len(pending) < limit:
                pending.append(task.remote(options, chunks[next_chunk]))
                next_chunk += 1
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                yield from ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def write_lines(records: Iterable[dict[str, Any]], out: Any) -> None:
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    out.flush()


def open_output(path: Path) -> Any:
    """Append to a previous output; a torn last line (an interrupted run) is closed first."""
    out = open(path, "a+b")  # noqa: SIM115 - the caller closes it
    if out.tell() > 0:
        out.seek(-1, os.SEEK_END)
        if out.read(1) != b"\n":
            out.write(b"\n")
    out.close()
    return open(path, "a", encoding="utf-8")
