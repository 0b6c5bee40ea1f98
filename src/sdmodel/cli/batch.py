"""The options ``scan`` and ``info`` share for many files: ``--from``, ``--jobs``, ``--json-lines``,
``--ray``, ``--output``; the run itself is :mod:`sdmodel.batch`."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from sdmodel import batch
from sdmodel.cli.common import err_console
from sdmodel.i18n import _, format_number, format_size, ngettext
from sdmodel.remote import as_path, is_remote, redact


def batch_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--from",
            "from_file",
            type=click.Path(dir_okay=False),
            help=_("Also check the paths and URLs listed in this file, one a line."),
        ),
        click.option(
            "--jobs", "-j", type=click.IntRange(min=1), default=1, help=_("Processes to run on this machine.")
        ),
        click.option("--json-lines", is_flag=True, help=_("One JSON object per file and line, as each completes.")),
        click.option(
            "--ray",
            "ray_address",
            is_flag=False,
            flag_value=batch.LOCAL_RAY,
            default=None,
            metavar="[ADDRESS]",
            help=_("Run on a Ray cluster (ray://HOST:10001, auto, or none: RAY_ADDRESS or a local Ray)."),
        ),
        click.option(
            "--output",
            "-o",
            type=click.Path(dir_okay=False),
            help=_("Append the JSON lines to this file, skipping files it already holds (resume)."),
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def wants_batch(
    from_file: str | None, jobs: int, json_lines: bool, ray_address: str | None, output: str | None
) -> bool:
    return bool(from_file or json_lines or ray_address or output or jobs > 1)


def run_batch(
    kind: batch.Kind,
    paths: Iterable[str],
    expand: Callable[[Iterable[Any]], Iterator[Any]],
    from_file: str | None,
    jobs: int,
    ray_address: str | None,
    output: str | None,
    read_data: bool,
) -> int:
    """Run, print or append the JSON lines, summarise on stderr; returns the exit status."""
    items = list(paths) + (batch.read_list(Path(from_file)) if from_file else [])
    local = [p for p in items if not is_remote(p)]
    remote_items = [p for p in items if is_remote(p)]
    files = [str(p) for p in expand(local)] + remote_items if local else remote_items
    if not files:
        raise click.UsageError(_("no model files to check"))
    skipped = 0
    if output:
        done = batch.done_items(Path(output))
        todo = [f for f in files if redact(f) not in done]
        skipped = len(files) - len(todo)
        files = todo
    out = batch.open_output(Path(output)) if output else sys.stdout
    options = batch.BatchOptions(kind, read_data)
    read = 0

    def emit(record: dict[str, Any]) -> None:
        nonlocal read
        read += record.get("remote", {}).get("bytes_read", 0)
        batch.write_lines([record], out)

    try:
        summary = batch.run(options, files, emit, jobs=jobs, ray_address=ray_address)
    finally:
        if output:
            out.close()
    if ray_address:
        where = _("Ray ({address})").format(address=ray_address)
    else:
        where = ngettext("{n} process", "{n} processes", jobs).format(n=jobs)
    head = ngettext(
        "{n} file in {seconds} s ({rate}/s, {where})", "{n} files in {seconds} s ({rate}/s, {where})", summary.done
    )
    clauses = [
        head.format(
            n=summary.done,
            seconds=format_number(summary.seconds, 1),
            rate=format_number(summary.rate, 1),
            where=where,
        )
    ]
    if skipped:
        clauses.append(_("{n} already in {output}").format(n=skipped, output=output))
    if summary.failed:
        clauses.append(_("{n} unreadable").format(n=summary.failed))
    if kind == "scan" and summary.flagged:
        clauses.append(_("{n} suspicious or dangerous").format(n=summary.flagged))
    if read:
        clauses.append(_("{size} read remotely").format(size=format_size(read)))
    text = ", ".join(clauses)
    err_console.print(text, highlight=False)
    if summary.failed:
        return 2
    return 1 if summary.flagged else 0


def as_paths(paths: Iterable[str], read_data: bool) -> list[Any]:
    """Paths as given on the command line: URLs as RemotePath (with ``--read-data``), local as Path."""
    return [as_path(p, read_data) for p in paths]
