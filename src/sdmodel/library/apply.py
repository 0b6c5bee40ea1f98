"""``library apply``: run the savings plan, one file at a time, resumable.

Each plan item moves through steps recorded in the catalog, so an interrupted run (Ctrl-C, a crash,
a power cut) resumes where it stopped:

1. convert ``src`` to a hidden temporary file beside it (``.<stem>.sdmodel-tmp.safetensors``), with
   the conversion's own verification; step ``converted``;
2. move the original (and a copy of its sidecars) to ``<root>/.sdmodel-trash/<same relative path>``,
   or delete it with ``delete_originals``; sidecars follow the model's new name; step ``trashed``;
3. rename the temporary file to its final name; status ``done``; the catalog row is replaced.

Nothing is moved or deleted before the output was written and verified.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from sdmodel.atomic import staged_path, sync_dir
from sdmodel.conversion import convert
from sdmodel.errors import SdmodelError
from sdmodel.files import is_model_file
from sdmodel.formats import open_model
from sdmodel.i18n import Bytes, Msg
from sdmodel.library.catalog import Catalog
from sdmodel.library.scanning import examine, make_row
from sdmodel.library.walk import TRASH_DIR, FoundFile
from sdmodel.sidecars import assign_sidecars, stem_of

FREE_SPACE_MARGIN = 64 << 20


class Stopped(Exception):
    """Raised inside a conversion when the user asked the run to stop."""


@dataclass
class ApplyStats:
    done: int = 0
    failed: int = 0
    before_bytes: int = 0
    after_bytes: int = 0
    stopped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# Progress of a run, in order: ApplyStarted, then per item ItemStarted, BytesWritten..., ItemFinished,
# and ApplyFinished last. ``type`` names each kind for consumers that dispatch on a string.


@dataclass(frozen=True)
class ApplyStarted:
    type: ClassVar[str] = "start"
    items: int
    bytes_total: int


@dataclass(frozen=True)
class ItemStarted:
    type: ClassVar[str] = "item"
    index: int
    items: int
    src: str
    dst: str
    bytes_total: int


@dataclass(frozen=True)
class BytesWritten:
    type: ClassVar[str] = "bytes"
    done: int  # of the current item
    total: int
    overall_done: int  # of the whole run
    overall_total: int


@dataclass(frozen=True)
class ItemFinished:
    type: ClassVar[str] = "item_done"
    src: str
    status: Literal["done", "failed", "pending"]  # pending: stopped before it finished
    error: str | None


@dataclass(frozen=True)
class ApplyFinished:
    type: ClassVar[str] = "finish"
    stats: ApplyStats


ApplyEvent = ApplyStarted | ItemStarted | BytesWritten | ItemFinished | ApplyFinished
Event = Callable[[ApplyEvent], None]


@contextlib.contextmanager
def apply_lock(db_path: Path) -> Iterator[None]:
    """One batch run per catalog at a time."""
    lock_path = Path(str(db_path) + ".apply-lock")
    with open(lock_path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SdmodelError(
                Msg("{db_path}: another 'library apply' is running on this catalog", db_path=db_path)
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def trash_path_for(src: Path, root: Path) -> Path:
    """``<root>/.sdmodel-trash/<src relative to root>``, numbered if that name is taken."""
    try:
        rel = src.relative_to(root)
    except ValueError:
        rel = Path(src.name)
    base = root / TRASH_DIR / rel
    candidate = base
    n = 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}.{n}")
        n += 1
    return candidate


def sidecars_of(src: Path) -> list[Path]:
    """The files beside ``src`` that the walk counts as its sidecars (yaml, previews, notes,
    .civitai.info, ``.vae.*``): not other models, nor the sidecars of a model with a longer name
    (``a.b.png`` belongs to ``a.b.safetensors``)."""
    try:
        names = [e.name for e in os.scandir(src.parent) if not e.name.startswith(".") and e.is_file()]
    except OSError:
        return []
    models = [n for n in names if is_model_file(n)]
    others = [n for n in names if not is_model_file(n)]
    return [src.parent / n for n in assign_sidecars(models, others).get(src.name, [])]


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dst)
    except OSError:
        shutil.move(str(src), str(dst))


def _convert(item: dict[str, Any], tmp: Path, on_bytes: Callable[[int, int], None]) -> None:
    convert(
        item["src"],
        tmp,
        **_target_options(item["dtype"]),
        ema=item["ema"],
        prune=True,
        verify=True,
        progress=on_bytes,
        title=stem_of(Path(item["dst"]).name),  # not the temporary name it is written under
    )
    if not tmp.is_file():
        raise SdmodelError(Msg("{src}: the conversion wrote no output", src=item["src"]))


def _target_options(dtype: str) -> dict[str, Any]:
    """Convert options of a plan item's ``dtype`` column: a precision, ``keep``, a scaled-fp8
    format, or ``gguf:<TYPE>`` (savings.SMALLER_TARGETS)."""
    if dtype.startswith("gguf:"):
        return {"format": "gguf", "quant": dtype.removeprefix("gguf:")}
    return {"dtype": None if dtype == "keep" else dtype}


def _check_output(tmp: Path) -> None:
    """Reopen the output: it must read as safetensors (or GGUF, for a GGUF item) with tensors in it."""
    expected = "gguf" if tmp.suffix == ".gguf" else "safetensors"
    with open_model(tmp) as source:
        if source.format != expected or not source.tensors:
            raise SdmodelError(
                Msg("{tmp}: the output does not read back as a {expected} model", tmp=tmp, expected=expected)
            )


def _place_sidecars(item: dict[str, Any], tmp: Path, trash: Path | None, delete: bool) -> None:
    """Sidecars follow the model: files the conversion wrote beside the temporary output (a yaml)
    take the final name; the original's sidecars are copied to the trash beside it and renamed
    when the model's name changes."""
    src, dst = Path(item["src"]), Path(item["dst"])
    old_stem, new_stem = stem_of(src.name), stem_of(dst.name)
    tmp_stem = stem_of(tmp.name)
    for f in sorted(tmp.parent.glob(f"{tmp_stem}.*")):
        if f != tmp:
            target = dst.with_name(new_stem + f.name[len(tmp_stem) :])
            if target.exists():
                f.unlink()
            else:
                os.replace(f, target)
    if trash is not None:
        trash.parent.mkdir(parents=True, exist_ok=True)
    for side in sidecars_of(src):
        rest = side.name[len(old_stem) :]
        trash_side = trash.with_name(stem_of(trash.name) + rest) if trash is not None else None
        if trash_side is not None and not is_model_file(side.name):
            shutil.copy2(side, trash_side)
        if new_stem == old_stem:
            continue
        target = side.with_name(new_stem + rest)
        if not target.exists():
            os.replace(side, target)
        elif delete:
            side.unlink()
        elif trash_side is not None:
            _move(side, trash_side)


def apply_plan(
    catalog: Catalog,
    *,
    delete_originals: bool = False,
    retry_failed: bool = False,
    on_event: Event | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ApplyStats:
    """Run every unfinished plan item. Raises SdmodelError if another run holds the catalog."""
    emit: Event = on_event or (lambda e: None)
    stop = should_stop or (lambda: False)
    stats = ApplyStats()
    with apply_lock(catalog.path):
        statuses = ("pending", "running", "failed") if retry_failed else ("pending", "running")
        items = catalog.plan_items(statuses)
        total = sum(i["before_bytes"] for i in items)
        emit(ApplyStarted(len(items), total))
        done_bytes = 0
        for index, item in enumerate(items):
            if stop():
                stats.stopped = True
                break
            emit(ItemStarted(index, len(items), item["src"], item["dst"], item["before_bytes"]))

            def on_bytes(done: int, tot: int, _base: int = done_bytes) -> None:
                if stop():
                    raise Stopped
                emit(BytesWritten(done, tot, _base + done, total))

            try:
                run_item(catalog, item, delete_originals=delete_originals, on_bytes=on_bytes)
            except Stopped:
                stats.stopped = True
                emit(ItemFinished(item["src"], "pending", "stopped"))
                break
            except KeyboardInterrupt:
                stats.stopped = True
                raise
            except Exception as e:
                msg = str(e) if isinstance(e, (SdmodelError, OSError)) else f"{type(e).__name__}: {e}"
                catalog.update_item(item["id"], status="failed", error=msg, finished=time.time())
                stats.failed += 1
                emit(ItemFinished(item["src"], "failed", msg))
            else:
                stats.done += 1
                stats.before_bytes += item["before_bytes"]
                new = catalog.get_by_path(item["dst"])
                stats.after_bytes += new["size"] if new else item["after_bytes"]
                emit(ItemFinished(item["src"], "done", None))
            done_bytes += item["before_bytes"]
        emit(ApplyFinished(stats))
    return stats


def run_item(
    catalog: Catalog,
    item: dict[str, Any],
    *,
    delete_originals: bool = False,
    on_bytes: Callable[[int, int], None] | None = None,
) -> None:
    """Run (or resume) one plan item: see the module docstring."""
    src, dst, root = Path(item["src"]), Path(item["dst"]), Path(item["root"])
    tmp = staged_path(dst)
    step = item["step"]
    if step == "converted" and not tmp.is_file():
        step = ""
    if step == "trashed" and not tmp.is_file():
        if dst.is_file():
            _finish(catalog, item)
            return
        raise SdmodelError(
            Msg(
                "{src}: interrupted after the original was moved and the output is gone; the original is at {place}",
                src=src,
                place=item["trashed_to"] or Msg("its trash folder"),
            )
        )
    if step == "":
        try:
            st = src.stat()
        except FileNotFoundError:
            raise SdmodelError(
                Msg("{src}: no longer exists (run 'sdmodel library scan' and 'plan' again)", src=src)
            ) from None
        if st.st_size != item["src_size"] or st.st_mtime_ns != item["src_mtime_ns"]:
            raise SdmodelError(
                Msg("{src}: changed since the plan was made (run 'sdmodel library scan' and 'plan' again)", src=src)
            )
        if dst != src and dst.exists():
            raise SdmodelError(Msg("{dst}: already exists; not overwritten", dst=dst))
        free = shutil.disk_usage(dst.parent).free
        if free < item["after_bytes"] + FREE_SPACE_MARGIN:
            raise SdmodelError(
                Msg(
                    "{parent}: not enough free space ({free} free, about {after_bytes} needed)",
                    parent=dst.parent,
                    free=Bytes(free),
                    after_bytes=item["after_bytes"],
                )
            )
        catalog.update_item(item["id"], status="running", step="", error=None, started=time.time())
        tmp.unlink(missing_ok=True)
        try:
            _convert(item, tmp, on_bytes or (lambda d, t: None))
            _check_output(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            catalog.update_item(item["id"], status="pending", step="")
            raise
        catalog.update_item(item["id"], step="converted")
        step = "converted"
    if step == "converted":
        trash = None
        if src.exists():
            trash = None if delete_originals else trash_path_for(src, root)
            _place_sidecars(item, tmp, trash, delete_originals)
            if delete_originals:
                src.unlink()
            else:
                assert trash is not None  # trash_path_for gives a path
                _move(src, trash)
        catalog.update_item(item["id"], step="trashed", trashed_to=str(trash) if trash else None)
    os.replace(tmp, dst)
    sync_dir(dst.parent)
    _finish(catalog, item)


def _finish(catalog: Catalog, item: dict[str, Any]) -> None:
    """Mark the item done and replace the original's catalog row by the output's."""
    dst, root = Path(item["dst"]), Path(item["root"])
    catalog.update_item(item["id"], status="done", step="", finished=time.time())
    catalog.delete_paths([item["src"]])
    st = dst.stat()
    found = FoundFile(dst, root, st.st_size, st.st_mtime_ns, sidecars=sorted(p.name for p in sidecars_of(dst)))
    catalog.upsert_many([make_row(found, examine(str(dst), False))])
