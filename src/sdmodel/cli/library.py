"""``sdmodel library``: catalog a model folder, report, plan and apply savings, serve the web page."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import JustifyMethod
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from sdmodel.cli.common import byte_progress, console, err_console, print_json
from sdmodel.errors import error_text
from sdmodel.i18n import N_, _, format_number, format_size, ngettext, tr
from sdmodel.library.catalog import Catalog, default_db_path
from sdmodel.library.fits import find_lora, lora_families, models_fitting
from sdmodel.library.report import DUPLICATE_LEVELS, PROBLEM_TITLES, build_report

if TYPE_CHECKING:
    from sdmodel.library.savings import SmallerOffer

MODE_WORDS = {"generate": N_("generate"), "train": N_("train")}
DB_HELP = _("Catalog database (default: $XDG_DATA_HOME/sdmodel/library.db or ~/.local/share/sdmodel/library.db).")


def _db_option(f: Callable[..., None]) -> Callable[..., None]:
    return click.option("--db", "db", type=click.Path(dir_okay=False), default=None, help=DB_HELP)(f)


def _db_path(db: str | None) -> Path:
    return Path(db) if db else default_db_path()


def _open(db: str | None) -> Catalog:
    return Catalog(_db_path(db), create=False)


@click.group(
    "library", help=_("Catalog a whole A1111 / Forge / ComfyUI model folder: duplicates, problems, savings, web page.")
)
def library_group() -> None:
    pass  # the subcommands do the work


@library_group.command(
    "scan",
    help=_(
        "Catalog the model files under DIRS (default: the UI installs found nearby and the roots already\n"
        "catalogued). Looks in the current folder and its parents, then ~/stable-diffusion-webui,\n"
        "~/stable-diffusion-webui-forge, ~/stable-diffusion-webui-reForge, ~/sd-webui-forge, ~/webui,\n"
        "~/ComfyUI, ~/comfyui, ~/ComfyUI_windows_portable/ComfyUI, ~/Documents/ComfyUI."
    ),
)
@click.argument("dirs", nargs=-1, type=click.Path(file_okay=False))
@_db_option
@click.option(
    "--hash",
    "do_hash",
    is_flag=True,
    help=_("Also compute every hash and the content fingerprint (reads every byte; needed for duplicates)."),
)
@click.option(
    "--jobs", "-j", type=click.IntRange(1, 64), default=None, help=_("Worker processes (default: one per core).")
)
@click.option("--force", is_flag=True, help=_("Re-read every file, even unchanged ones."))
@click.option("--json", "as_json", is_flag=True, help=_("Print the scan statistics as JSON."))
def scan_command(
    dirs: tuple[str, ...], db: str | None, do_hash: bool, jobs: int | None, force: bool, as_json: bool
) -> None:
    from sdmodel.library.scanning import scan_library  # noqa: PLC0415 - start-up time: loaded only by this command
    from sdmodel.library.walk import scan_roots  # noqa: PLC0415 - start-up time: loaded only by this command

    with Catalog(_db_path(db)) as cat:
        roots = scan_roots(
            [Path(d) for d in dirs],
            cat.roots(),
            on_install=lambda inst: err_console.print(
                _("found {ui} install: {path}").format(ui=inst.ui, path=inst.path), highlight=False
            ),
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
            task = progress.add_task(_("walking"), total=None, name="")

            def on_progress(stage: str, done: int, total: int, path: str) -> None:
                if stage == "walk":
                    progress.update(task, completed=done, name=os.path.basename(path))
                else:
                    progress.update(
                        task,
                        description=_("reading") if not do_hash else _("reading + hashing"),
                        total=total,
                        completed=done,
                        name=os.path.basename(path)[-48:],
                    )

            stats = scan_library(cat, roots, hashes=do_hash, jobs=jobs, force=force, progress=on_progress)
    if as_json:
        print_json(stats.to_dict())
        return
    files = ngettext("{n} model file", "{n} model files", stats.files).format(n=stats.files)
    text = ngettext(
        "{files} under {n} root: {read} read, {unchanged} unchanged, {removed} removed, {errors} unreadable "
        "({seconds} s). Catalog: {catalog}",
        "{files} under {n} roots: {read} read, {unchanged} unchanged, {removed} removed, {errors} unreadable "
        "({seconds} s). Catalog: {catalog}",
        len(stats.roots),
    )
    console.print(
        text.format(
            files=files,
            n=len(stats.roots),
            read=stats.examined,
            unchanged=stats.unchanged,
            removed=stats.removed,
            errors=stats.errors,
            seconds=format_number(stats.seconds, 1),
            catalog=cat.path,
        ),
        highlight=False,
        markup=False,
    )
    for r in stats.roots:
        console.print(_("  root {path}").format(path=r), highlight=False, markup=False)
    skipped = escape(_("skipped"))
    for name in stats.skipped_names:
        why = escape(_("{name}: file name is not valid UTF-8 (rename it)").format(name=name))
        console.print(f"  [yellow]{skipped}[/yellow] {why}", highlight=False)


@library_group.command("report", help=_("Totals per folder, kind, family and precision; problems; duplicates."))
@_db_option
@click.option("--json", "as_json", is_flag=True, help=_("JSON: totals, problems and a duplicates list."))
def report_command(db: str | None, as_json: bool) -> None:
    with _open(db) as cat:
        rep = build_report(cat)
    if as_json:
        print_json(rep)
        return
    n = rep["files"]
    head = ngettext("{n} file, {size}", "{n} files, {size}", n).format(n=n, size=format_size(rep["bytes"]))
    roots = ngettext("in {n} root ({hashed} hashed)", "in {n} roots ({hashed} hashed)", len(rep["roots"]))
    tail = roots.format(n=len(rep["roots"]), hashed=rep["hashed_files"])
    console.print(f"[bold]{escape(head)}[/bold] {escape(tail)}", highlight=False)
    for dim, title in (
        ("folder", N_("by folder")),
        ("kind", N_("by kind")),
        ("family", N_("by family")),
        ("precision", N_("by precision")),
    ):
        t = Table(title=_(title), title_justify="left", show_edge=False)
        t.add_column(_(dim))
        t.add_column(_("files"), justify="right")
        t.add_column(_("size"), justify="right")
        for row in rep["totals"][dim]:
            t.add_row(row["name"], str(row["files"]), format_size(row["bytes"]))
        console.print(t)
    if rep["problems"]:
        title = _("problems ({n})").format(n=len(rep["problems"]))
        t = Table(title=title, title_justify="left", show_edge=False)
        t.add_column(_("problem"))
        t.add_column(_("file"), overflow="fold")
        t.add_column(_("what"), overflow="fold")
        for p in rep["problems"]:
            style = "red" if p["code"] in ("dangerous", "unreadable") else "yellow" if p["code"] == "suspicious" else ""
            problem = escape(tr(PROBLEM_TITLES.get(p["code"], p["code"])))
            t.add_row(
                f"[{style}]{problem}[/{style}]" if style else problem,
                escape(p["path"]),
                escape(tr(p["message"])),
            )
        console.print(t)
    else:
        console.print(_("no problems found"))
    if rep["duplicates"]:
        n = len(rep["duplicates"])
        text = ngettext("({n} group, exact copies waste {size})", "({n} groups, exact copies waste {size})", n).format(
            n=n, size=format_size(rep["duplicate_bytes"])
        )
        label = escape(_("duplicates"))
        console.print(f"[bold]{label}[/bold] {escape(text)}", highlight=False)
        for g in rep["duplicates"]:
            console.print(f"  {tr(DUPLICATE_LEVELS[g['level']])}:", highlight=False, markup=False)
            for p in g["files"]:
                console.print(f"    {p}", highlight=False, markup=False)
    elif rep["hashed_files"] < rep["files"]:
        console.print(_("duplicates: run 'sdmodel library scan --hash' to find them"), style="dim")
    else:
        console.print(_("no duplicates"))


@library_group.command(
    "plan",
    help=_(
        "Propose per file the conversion that saves space (fp16 safetensors without EMA or junk for\n"
        "generating; safetensors keeping fp32 and EMA in training folders) and store it for 'apply'."
    ),
)
@_db_option
@click.option(
    "--train-folder",
    "train_folders",
    multiple=True,
    type=click.Path(file_okay=False),
    help=_("A folder whose models are kept for training (fp32, EMA kept). Repeatable; remembered."),
)
@click.option("--no-train-folders", is_flag=True, help=_("Forget the remembered training folders."))
@click.option(
    "--smaller",
    metavar="TARGET",
    help=_(
        "For generating, convert the models ComfyUI loads in this GGUF or scaled-fp8 form to it: "
        "Q8_0, fp8_e4m3fn_scaled, Q5_K_S or Q4_K_S (remembered; 'none' forgets it)."
    ),
)
@click.option("--json", "as_json", is_flag=True, help=_("The plan as JSON."))
def plan_command(
    db: str | None, train_folders: tuple[str, ...], no_train_folders: bool, smaller: str | None, as_json: bool
) -> None:
    from sdmodel.library.savings import (  # noqa: PLC0415 - start-up time: loaded only by this command
        ALREADY_OPTIMAL,
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
            (N_("file"), "left"),
            (N_("for"), "left"),
            (N_("convert to"), "left"),
            (N_("before"), "right"),
            (N_("after"), "right"),
            (N_("saves"), "right"),
        ):
            t.add_column(_(col), justify=just, overflow="fold")
        for i in plan.items:
            name = i.name if os.path.basename(i.dst) == i.name else f"{i.name} -> {os.path.basename(i.dst)}"
            t.add_row(
                escape(name),
                _(MODE_WORDS[i.mode]),
                escape(tr(i.target)),
                format_size(i.before_bytes),
                format_size(i.after_bytes),
                format_size(i.saves_bytes),
            )
        console.print(t)
    console.print(f"[bold]{escape(tr(plan.summary()))}[/bold]", highlight=False)
    if plan.skipped:
        n_opt = sum(s.reason == ALREADY_OPTIMAL for s in plan.skipped)
        text = _("{optimal} files already optimal, {other} skipped for another reason")
        console.print(text.format(optimal=n_opt, other=len(plan.skipped) - n_opt), style="dim")
        for s in plan.skipped:
            if s.reason != ALREADY_OPTIMAL:
                text = _("  skipped {path}: {why}").format(path=s.path, why=tr(s.reason))
                console.print(text, style="dim", highlight=False, markup=False)
    _print_offers(plan.offers)
    if plan.items:
        console.print(_("run it with: sdmodel library apply"), style="dim")


def _print_offers(offers: list[SmallerOffer]) -> None:
    """The GGUF / scaled-fp8 forms the plan could use instead, for generating."""
    for o in offers:
        text = ngettext(
            "smaller for generating: {target} for {n} file, {before} -> {after} (sdmodel library plan --smaller {target})",
            "smaller for generating: {target} for {n} files, {before} -> {after} "
            "(sdmodel library plan --smaller {target})",
            o.files,
        )
        before, after = format_size(o.before_bytes), format_size(o.after_bytes)
        console.print(
            text.format(target=o.target, n=o.files, before=before, after=after),
            style="dim",
            highlight=False,
            markup=False,
        )


@library_group.command(
    "apply",
    help=_(
        "Run the stored plan (or a fresh one): convert, verify, keep sidecars, move originals to the\n"
        "trash. Resumes an interrupted run."
    ),
)
@_db_option
@click.option(
    "--delete-originals",
    is_flag=True,
    help=_("Delete each original after its output is verified (default: move it to <root>/.sdmodel-trash/)."),
)
@click.option("--retry-failed", is_flag=True, help=_("Also retry the items that failed last time."))
def apply_command(db: str | None, delete_originals: bool, retry_failed: bool) -> None:
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
                label = ngettext("{n} file", "{n} files", ev.items).format(n=ev.items)
                tasks["all"] = progress.add_task(label, total=ev.bytes_total or None)
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
                    done = escape(_("done"))
                    progress.console.print(f"[green]{done}[/green] {escape(name)}", highlight=False)
                elif ev.status == "failed":
                    failed = escape(_("failed"))
                    why = escape(tr(ev.error or ""))
                    progress.console.print(f"[red]{failed}[/red] {escape(name)}: {why}", highlight=False)

        with progress:
            stats = apply_plan(cat, delete_originals=delete_originals, retry_failed=retry_failed, on_event=on_event)
    saved = stats.before_bytes - stats.after_bytes
    text = _("{done} converted, {failed} failed: {before} -> {after} (saved {saved})").format(
        done=stats.done,
        failed=stats.failed,
        before=format_size(stats.before_bytes),
        after=format_size(stats.after_bytes),
        saved=format_size(saved),
    )
    console.print(text, highlight=False)
    if not delete_originals and stats.done:
        console.print(
            _("originals are in .sdmodel-trash/ inside each root; delete them when you are happy"), style="dim"
        )
    if stats.failed:
        sys.exit(1)


@library_group.command(
    "fits",
    help=_(
        "The catalogued models a catalogued LoRA fits (by its base family; LORA: a path or a file name). "
        "'sdmodel lora check LORA MODEL' checks one model target by target."
    ),
)
@click.argument("lora")
@_db_option
@click.option("--json", "as_json", is_flag=True, help=_("JSON: the LoRA, its base families and the models it fits."))
def fits_command(lora: str, db: str | None, as_json: bool) -> None:
    with _open(db) as cat:
        row = find_lora(cat, lora)
        fits = models_fitting(cat, row)
    families = lora_families(row)
    if as_json:
        print_json({"lora": row["path"], "families": families, "models": [f.to_dict() for f in fits]})
        return
    base = " | ".join(families) or _("an unknown family")
    console.print(
        "[bold]" + escape(row["name"]) + "[/bold]: " + _("{kind} for {family}").format(kind=row["kind"], family=base),
        highlight=False,
    )
    if not fits:
        console.print(_("no catalogued model of its family"), style="dim")
        return
    t = Table(show_edge=False)
    for col in (_("model"), _("kind"), _("family"), _("fit")):
        t.add_column(col, overflow="fold" if col == _("model") else "ellipsis")
    for f in fits:
        t.add_row(f.path, f.kind, f.family, _("text encoders missing") if f.partial else _("whole"))
    console.print(t)


@library_group.command(
    "serve", help=_("Show the catalog on a local web page: models, duplicates, problems, the savings plan.")
)
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True, help=_("Address to bind (keep it local)."))
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help=_("Port (0: any free)."))
def serve_command(db: str | None, host: str, port: int) -> None:
    from sdmodel.web.server import make_server  # noqa: PLC0415 - start-up time: loaded only by this command

    server = make_server(_db_path(db), host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            _("warning: listening on {host}: anyone who can reach it can browse the catalog and run the plan").format(
                host=host
            ),
            style="yellow",
        )
    text = _("serving {db} on {url} (Ctrl-C to stop)").format(db=server.db_path, url=server.url)
    console.print(text, highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = [library_group]
