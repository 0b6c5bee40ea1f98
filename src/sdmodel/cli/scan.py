"""``sdmodel scan``: static safety verdicts for model files and folders."""

from __future__ import annotations

import sys
from collections import Counter

import click
from rich.table import Table
from rich.text import Text

from sdmodel.cli.batch import as_paths, batch_options, run_batch, wants_batch
from sdmodel.cli.common import console, print_json
from sdmodel.i18n import N_, _, ngettext, tr
from sdmodel.remote import as_path, measure
from sdmodel.security.scanner import ScanReport, scan
from sdmodel.security.selection import iter_scan_files

STYLE = {"safe": "green", "suspicious": "yellow", "dangerous": "bold red", "error": "magenta"}
VERDICT_WORDS = {"safe": N_("safe"), "suspicious": N_("suspicious"), "dangerous": N_("dangerous"), "error": N_("error")}


def _finding_text(report: ScanReport, n: int = 3) -> Text:
    out = Text()
    for k, fd in enumerate(report.main_findings(n)):
        if k:
            out.append("\n")
        where = fd.member or ""
        if fd.offset is not None:
            where += f" @{fd.offset}"
        out.append(f"{fd.code}", style=STYLE.get(fd.severity, "dim"))
        out.append(f" {tr(fd.message)}")
        if where:
            out.append(f" ({where.strip()})", style="dim")
    extra = len(report.findings) - n
    if extra > 0:
        out.append("\n" + _("+{n} more").format(n=extra), style="dim")
    return out


def _summary(reports: list[ScanReport]) -> str:
    counts = Counter(r.verdict for r in reports)
    notes = sum(1 for r in reports if r.verdict == "safe" and r.notes)
    safe = _("{n} safe ({notes} with notes)") if notes else _("{n} safe")
    parts = [safe.format(n=counts["safe"], notes=notes)]
    if counts["suspicious"]:
        parts.append(_("{n} suspicious").format(n=counts["suspicious"]))
    if counts["dangerous"]:
        parts.append(_("{n} dangerous").format(n=counts["dangerous"]))
    if counts["error"]:
        parts.append(_("{n} unscannable").format(n=counts["error"]))
    n = len(reports)
    return ngettext("{n} file: {verdicts}", "{n} files: {verdicts}", n).format(n=n, verdicts=", ".join(parts))


def exit_status(reports: list[ScanReport]) -> int:
    """2 if any file could not be scanned, else 1 if any is suspicious or dangerous, else 0."""
    verdicts = {r.verdict for r in reports}
    if "error" in verdicts:
        return 2
    if verdicts & {"suspicious", "dangerous"}:
        return 1
    return 0


@click.command(
    "scan",
    help=_(
        "Tell safe model files from malicious ones, without running anything from them. PATHS may be\n"
        "URLs (https://..., hf://OWNER/REPO/FILE): only the pickles and headers are fetched.\n"
        "\n"
        "Exit status: 0 all safe, 1 something suspicious or dangerous, 2 a file could not be scanned."
    ),
)
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help=_("One JSON object per file (a list for several)."))
@batch_options
def scan_command(
    paths: tuple[str, ...],
    as_json: bool,
    from_file: str | None,
    jobs: int,
    json_lines: bool,
    ray_address: str | None,
    output: str | None,
) -> None:
    if wants_batch(from_file, jobs, json_lines, ray_address, output):
        sys.exit(run_batch("scan", paths, iter_scan_files, from_file, jobs, ray_address, output, False))
    if not paths:
        raise click.UsageError(_("give files, folders or URLs to scan (or --from FILE)"))
    files = list(iter_scan_files(as_paths(paths, False)))
    if not files:
        raise click.UsageError(_("no model files found in {paths}").format(paths=", ".join(map(str, paths))))
    with measure() as meter:
        reports = [scan(f) for f in files]
    if as_json:
        single = len(paths) == 1 and len(files) == 1 and not as_path(paths[0]).is_dir()
        print_json(reports[0].to_dict() if single else [r.to_dict() for r in reports])
    else:
        table = Table(show_lines=False, header_style="bold")
        table.add_column(_("file"), overflow="fold")
        table.add_column(_("verdict"))
        table.add_column(_("format"))
        table.add_column(_("main findings"), overflow="fold")
        for r in reports:
            word = _(VERDICT_WORDS[r.verdict])
            verdict = Text(_("{verdict} (notes)").format(verdict=word) if r.notes else word, style=STYLE[r.verdict])
            table.add_row(r.path, verdict, r.format, _finding_text(r))
        console.print(table)
        console.print(_summary(reports))
        if meter.requests:
            console.print(tr(meter.summary()), style="dim", highlight=False)
    sys.exit(exit_status(reports))


COMMANDS = [scan_command]
