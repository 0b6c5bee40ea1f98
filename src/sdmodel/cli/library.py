"""``sdmodel library``: catalog a model folder, report, plan and apply savings, serve the web page."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import JustifyMethod
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from sdmodel.cli.common import byte_progress, console, err_console, print_json
from sdmodel.errors import error_text
from sdmodel.library.catalog import Catalog, default_db_path
from sdmodel.library.report import DUPLICATE_LEVELS, PROBLEM_TITLES, build_report
from sdmodel.units import human_bytes, plural

if TYPE_CHECKING:
    from sdmodel.library.savings import SmallerOffer

DB_HELP = "Catalog database (default: $XDG_DATA_HOME/sdmodel/library.db or ~/.local/share/sdmodel/library.db)."


def _db_option(f: Callable[..., None]) -> Callable[..., None]:
    return click.option("--db", "db", type=click.Path(dir_okay=False), default=None, help=DB_HELP)(f)


def _db_path(db: str | None) -> Path:
    return Path(db) if db else default_db_path()


def _open(db: str | None) -> Catalog:
    return Catalog(_db_path(db), create=False)


@click.group("library")
def library_group() -> None:
    """Catalog a whole A1111 / Forge / ComfyUI model folder: duplicates, problems, savings, web page."""


@library_group.command("scan")
@click.argument("dirs", nargs=-1, type=click.Path(file_okay=False))
@_db_option
@click.option(
    "--hash",
    "do_hash",
    is_flag=True,
    help="Also compute every hash and the content fingerprint (reads every byte; needed for duplicates).",
)
@click.option(
    "--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Worker processes (default: one per core)."
)
@click.option("--force", is_flag=True, help="Re-read every file, even unchanged ones.")
@click.option("--json", "as_json", is_flag=True, help="Print the scan statistics as JSON.")
def scan_command(
    dirs: tuple[str, ...], db: str | None, do_hash: bool, jobs: int | None, force: bool, as_json: bool
) -> None:
    """Catalog the model files under DIRS (default: the UI installs found nearby and the roots already
    catalogued). Looks in the current folder and its parents, then ~/stable-diffusion-webui,
    ~/stable-diffusion-webui-forge, ~/stable-diffusion-webui-reForge, ~/sd-webui-forge, ~/webui,
    ~/ComfyUI, ~/comfyui, ~/ComfyUI_windows_portable/ComfyUI, ~/Documents/ComfyUI."""
    from sdmodel.library.scanning import scan_library  # noqa: PLC0415 - start-up time: loaded only by this command
    from sdmodel.library.walk import scan_roots  # noqa: PLC0415 - start-up time: loaded only by this command

    with Catalog(_db_path(db)) as cat:
        roots = scan_roots(
            [Path(d) for d in dirs],
            cat.roots(),
            on_install=lambda inst: err_console.print(f"found {inst.ui} install: {inst.path}", highlight=False),
        )
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[name]}", style="dim"),
            console=err_console,
            transient=True,
            disable=as_json,
        )
        with progress:
            task = progress.add_task("walking", total=None, name="")

            def on_progress(stage: str, done: int, total: int, path: str) -> None:
                if stage == "walk":
                    progress.update(task, completed=done, name=os.path.basename(path))
                else:
                    progress.update(
                        task,
                        description="reading" if not do_hash else "reading + hashing",
                        total=total,
                        completed=done,
                        name=os.path.basename(path)[-48:],
                    )

            stats = scan_library(cat, roots, hashes=do_hash, jobs=jobs, force=force, progress=on_progress)
    if as_json:
        print_json(stats.to_dict())
        return
    console.print(
        f"{plural(stats.files, 'model file')} under {plural(len(stats.roots), 'root')}: "
        f"{stats.examined} read, {stats.unchanged} unchanged, {stats.removed} removed, "
        f"{stats.errors} unreadable ({stats.seconds:.1f} s). Catalog: {cat.path}",
        highlight=False,
    )
    for r in stats.roots:
        console.print(f"  root {r}", highlight=False)
    for name in stats.skipped_names:
        console.print(f"  [yellow]skipped[/yellow] {name}: file name is not valid UTF-8 (rename it)", highlight=False)


@library_group.command("report")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="JSON: totals, problems and a duplicates list.")
def report_command(db: str | None, as_json: bool) -> None:
    """Totals per folder, kind, family and precision; problems; duplicates."""
    with _open(db) as cat:
        rep = build_report(cat)
    if as_json:
        print_json(rep)
        return
    console.print(
        f"[bold]{rep['files']} files, {human_bytes(rep['bytes'])}[/bold] in {len(rep['roots'])} roots "
        f"({rep['hashed_files']} hashed)",
        highlight=False,
    )
    for dim in ("folder", "kind", "family", "precision"):
        t = Table(title=f"by {dim}", title_justify="left", show_edge=False)
        t.add_column(dim)
        t.add_column("files", justify="right")
        t.add_column("size", justify="right")
        for row in rep["totals"][dim]:
            t.add_row(row["name"], str(row["files"]), human_bytes(row["bytes"]))
        console.print(t)
    if rep["problems"]:
        t = Table(title=f"problems ({len(rep['problems'])})", title_justify="left", show_edge=False)
        t.add_column("problem")
        t.add_column("file", overflow="fold")
        t.add_column("what", overflow="fold")
        for p in rep["problems"]:
            style = "red" if p["code"] in ("dangerous", "unreadable") else "yellow" if p["code"] == "suspicious" else ""
            t.add_row(
                f"[{style}]{PROBLEM_TITLES.get(p['code'], p['code'])}[/{style}]"
                if style
                else PROBLEM_TITLES.get(p["code"], p["code"]),
                p["path"],
                p["message"],
            )
        console.print(t)
    else:
        console.print("no problems found")
    if rep["duplicates"]:
        console.print(
            f"[bold]duplicates[/bold] ({len(rep['duplicates'])} groups, exact copies waste "
            f"{human_bytes(rep['duplicate_bytes'])})",
            highlight=False,
        )
        for g in rep["duplicates"]:
            console.print(f"  {DUPLICATE_LEVELS[g['level']]}:", highlight=False)
            for p in g["files"]:
                console.print(f"    {p}", highlight=False)
    elif rep["hashed_files"] < rep["files"]:
        console.print("duplicates: run 'sdmodel library scan --hash' to find them", style="dim")
    else:
        console.print("no duplicates")


@library_group.command("plan")
@_db_option
@click.option(
    "--train-folder",
    "train_folders",
    multiple=True,
    type=click.Path(file_okay=False),
    help="A folder whose models are kept for training (fp32, EMA kept). Repeatable; remembered.",
)
@click.option("--no-train-folders", is_flag=True, help="Forget the remembered training folders.")
@click.option(
    "--smaller",
    metavar="TARGET",
    help="For generating, convert the models ComfyUI loads in this GGUF or scaled-fp8 form to it: "
    "Q8_0, fp8_e4m3fn_scaled, Q5_K_S or Q4_K_S (remembered; 'none' forgets it).",
)
@click.option("--json", "as_json", is_flag=True, help="The plan as JSON.")
def plan_command(
    db: str | None, train_folders: tuple[str, ...], no_train_folders: bool, smaller: str | None, as_json: bool
) -> None:
    """Propose per file the conversion that saves space (fp16 safetensors without EMA or junk for
    generating; safetensors keeping fp32 and EMA in training folders) and store it for 'apply'."""
    from sdmodel.library.savings import (  # noqa: PLC0415 - start-up time: loaded only by this command
        check_smaller,
        compute_plan,
    )

    with _open(db) as cat:
        if no_train_folders:
            cat.set_meta("train_folders", [])
        if train_folders:
            cat.set_meta("train_folders", [os.path.abspath(f) for f in train_folders])
        if smaller is not None:
            try:
                cat.set_meta("smaller", None if smaller == "none" else check_smaller(smaller))
            except ValueError as e:
                raise click.BadParameter(error_text(e)) from None
        plan = compute_plan(cat)
        cat.clear_finished_plan()
        cat.store_plan(plan.items)
    if as_json:
        print_json(plan.to_dict())
        return
    if plan.items:
        t = Table(show_edge=False)
        just: JustifyMethod
        for col, just in (
            ("file", "left"),
            ("for", "left"),
            ("convert to", "left"),
            ("before", "right"),
            ("after", "right"),
            ("saves", "right"),
        ):
            t.add_column(col, justify=just, overflow="fold")
        for i in plan.items:
            name = i.name if os.path.basename(i.dst) == i.name else f"{i.name} -> {os.path.basename(i.dst)}"
            t.add_row(
                name,
                i.mode,
                i.target,
                human_bytes(i.before_bytes),
                human_bytes(i.after_bytes),
                human_bytes(i.saves_bytes),
            )
        console.print(t)
    console.print(f"[bold]{plan.summary()}[/bold]", highlight=False)
    if plan.skipped:
        n_opt = sum(s.reason == "already optimal" for s in plan.skipped)
        console.print(
            f"{n_opt} files already optimal, {len(plan.skipped) - n_opt} skipped for another reason",
            style="dim",
        )
        for s in plan.skipped:
            if s.reason != "already optimal":
                console.print(f"  skipped {s.path}: {s.reason}", style="dim", highlight=False)
    _print_offers(plan.offers)
    if plan.items:
        console.print("run it with: sdmodel library apply", style="dim")


def _print_offers(offers: list[SmallerOffer]) -> None:
    """The GGUF / scaled-fp8 forms the plan could use instead, for generating."""
    for o in offers:
        console.print(
            f"smaller for generating: {o.target} for {o.files} files, {human_bytes(o.before_bytes)} -> "
            f"{human_bytes(o.after_bytes)} (sdmodel library plan --smaller {o.target})",
            style="dim",
            highlight=False,
        )


@library_group.command("apply")
@_db_option
@click.option(
    "--delete-originals",
    is_flag=True,
    help="Delete each original after its output is verified (default: move it to <root>/.sdmodel-trash/).",
)
@click.option("--retry-failed", is_flag=True, help="Also retry the items that failed last time.")
def apply_command(db: str | None, delete_originals: bool, retry_failed: bool) -> None:
    """Run the stored plan (or a fresh one): convert, verify, keep sidecars, move originals to the
    trash. Resumes an interrupted run."""
    from sdmodel.library.apply import (  # noqa: PLC0415 - start-up time: loaded only by this command
        ApplyEvent,
        ApplyStarted,
        BytesWritten,
        ItemFinished,
        ItemStarted,
        apply_plan,
    )
    from sdmodel.library.savings import compute_plan  # noqa: PLC0415 - start-up time: loaded only by this command

    with _open(db) as cat:
        if not cat.plan_items(("pending", "running") + (("failed",) if retry_failed else ())):
            cat.clear_finished_plan()
            cat.store_plan(compute_plan(cat).items)
        progress = byte_progress(transient=False)
        tasks: dict[str, TaskID] = {}

        def on_event(ev: ApplyEvent) -> None:
            if isinstance(ev, ApplyStarted):
                tasks["all"] = progress.add_task(f"{ev.items} files", total=ev.bytes_total or None)
            elif isinstance(ev, ItemStarted):
                if "file" in tasks:
                    progress.remove_task(tasks["file"])
                tasks["file"] = progress.add_task(os.path.basename(ev.src)[-40:], total=ev.bytes_total)
            elif isinstance(ev, BytesWritten):
                progress.update(tasks["file"], completed=ev.done, total=ev.total)
                progress.update(tasks["all"], completed=ev.overall_done)
            elif isinstance(ev, ItemFinished):
                name = os.path.basename(ev.src)
                if ev.status == "done":
                    progress.console.print(f"[green]done[/green] {name}", highlight=False)
                elif ev.status == "failed":
                    progress.console.print(f"[red]failed[/red] {name}: {ev.error}", highlight=False)

        with progress:
            stats = apply_plan(cat, delete_originals=delete_originals, retry_failed=retry_failed, on_event=on_event)
    saved = stats.before_bytes - stats.after_bytes
    console.print(
        f"{stats.done} converted, {stats.failed} failed: {human_bytes(stats.before_bytes)} -> "
        f"{human_bytes(stats.after_bytes)} (saved {human_bytes(saved)})",
        highlight=False,
    )
    if not delete_originals and stats.done:
        console.print("originals are in .sdmodel-trash/ inside each root; delete them when you are happy", style="dim")
    if stats.failed:
        sys.exit(1)


@library_group.command("serve")
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (keep it local).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port (0: any free).")
def serve_command(db: str | None, host: str, port: int) -> None:
    """Show the catalog on a local web page: models, duplicates, problems, the savings plan."""
    from sdmodel.web.server import make_server  # noqa: PLC0415 - start-up time: loaded only by this command

    server = make_server(_db_path(db), host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"warning: listening on {host}: anyone who can reach it can browse the catalog and run the plan",
            style="yellow",
        )
    console.print(f"serving {server.db_path} on {server.url} (Ctrl-C to stop)", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = [library_group]
