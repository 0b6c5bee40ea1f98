"""``sdmodel lora check``: does a LoRA (or every LoRA of a folder) apply to a model?"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from sdmodel.cli.common import console, print_error, print_json
from sdmodel.errors import SdmodelError, error_text
from sdmodel.files import iter_model_files
from sdmodel.formats import open_model
from sdmodel.i18n import _, ngettext, tr
from sdmodel.lora.check import CheckResult, ModelTargets, check_sources
from sdmodel.remote import Meter, as_path, is_remote, measure


@click.group("lora", help=_("LoRA tools: check which model a LoRA fits."))
def lora_group() -> None:
    pass  # the subcommands do the work


def render_check(r: CheckResult, verbose: bool) -> None:
    ok = r.targets and r.found == r.targets
    style = "green" if ok else "yellow"
    verdict = escape(tr(r.verdict))
    console.print(f"[bold]{escape(Path(r.lora).name)}[/bold]: [{style}]{verdict}[/{style}]", highlight=False)
    if not verbose:
        return
    for part, row in r.by_part.items():
        text = _("  {part}: {found} found, {missing} missing, {mismatch} other shape")
        console.print(text.format(part=tr(part), **row), highlight=False)
    for stem in r.examples_missing:
        console.print(_("  missing: {target}").format(target=stem), highlight=False)
    for m in r.examples_mismatched:
        text = _("  other shape: {target} changes {lora_shape}, {model_key} is {model_shape}")
        console.print(
            text.format(
                target=m["target"],
                lora_shape=list(m["lora_shape"] or ()),
                model_key=m["model_key"],
                model_shape=list(m["model_shape"] or ()),
            ),
            highlight=False,
        )
    if r.unused_keys:
        n = r.unused_keys
        text = ngettext(
            "  {n} tensor belongs to no target (a loader ignores it)",
            "  {n} tensors belong to no target (a loader ignores them)",
            n,
        )
        console.print(text.format(n=n), highlight=False)


def _remote_cost(lora: Meter | None, model: Meter | None) -> dict[str, dict[str, int]]:
    """Bytes and requests spent on each remote side (the model's once, before the first LoRA)."""
    out = {}
    for side, m in (("lora", lora), ("model", model)):
        if m is not None:
            out[side] = {"bytes_read": m.bytes_read, "requests": m.requests}
    return out


@lora_group.command(
    "check",
    help=_(
        "Match every target of LORA (a file or a folder of LoRAs) to a tensor of MODEL: found, missing\n"
        '("lora key not loaded"), other shape. Either may be a URL or hf://OWNER/REPO/PATH: only the\n'
        "headers are fetched. Exit status 0 when every target of every LoRA applies, 1 when some are\n"
        "missing or do not fit, 2 on bad input."
    ),
)
@click.argument("lora")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help=_("Print the result as JSON (a list for a folder)."))
def check_command(lora: str, model: str, as_json: bool) -> None:
    lpath = as_path(lora)
    folder = lpath.is_dir()
    files = list(iter_model_files([lpath])) if folder else [lpath]
    results: list[CheckResult] = []
    errors: list[dict[str, str]] = []
    try:
        with measure() as model_meter, open_model(as_path(model)) as msrc:
            target = ModelTargets.of(msrc)
            model_size = msrc.size_bytes
    except SdmodelError as e:
        print_error(error_text(e))
        sys.exit(2)
    if is_remote(model) and not as_json:
        console.print(
            _("model: {summary}").format(summary=tr(model_meter.summary(model_size))), style="dim", highlight=False
        )
    for f in files:
        try:
            with measure() as meter, open_model(f) as lsrc:
                r = check_sources(lsrc, target)
                lora_size = lsrc.size_bytes
        except SdmodelError as e:
            errors.append({"lora": str(f), "error": str(e)})
            print_error(error_text(e))
            continue
        if is_remote(f) or is_remote(model):
            r.remote = _remote_cost(meter if is_remote(f) else None, model_meter if is_remote(model) else None)
        results.append(r)
        if not as_json:
            render_check(r, verbose=not folder)
            if is_remote(f):
                console.print(tr(meter.summary(lora_size)), style="dim", highlight=False)
    if as_json:
        out = [r.to_dict() for r in results] + errors
        print_json(out[0] if not folder and out else out)
    if errors:
        sys.exit(2)
    sys.exit(0 if all(r.exit_code == 0 for r in results) else 1)


COMMANDS = [lora_group]
