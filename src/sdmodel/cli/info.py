"""``sdmodel info`` and ``sdmodel hash``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import TaskID
from rich.table import Table
from rich.text import Text

from sdmodel.advice import Advice
from sdmodel.cli.batch import as_paths, batch_options, run_batch, wants_batch
from sdmodel.cli.common import byte_progress, console, print_error, print_json
from sdmodel.errors import SdmodelError, error_text
from sdmodel.files import iter_model_files
from sdmodel.hashing import hash_file
from sdmodel.i18n import N_, _, format_count, format_number, format_size, ngettext, tr
from sdmodel.identify import family_label
from sdmodel.inspection import ModelReport, inspect
from sdmodel.lora.info import TRAINING_LABELS, LoraInfo
from sdmodel.parts import part_rank
from sdmodel.placement import UI_LABELS, Target, clip_loader_text, companion_label
from sdmodel.remote import as_path, is_remote, measure
from sdmodel.vaes import VaeReport


def _collect(paths: Iterable[Any]) -> list[Path]:
    files = list(iter_model_files(paths))
    if not files:
        raise click.UsageError(_("no model files found in {paths}").format(paths=", ".join(map(str, paths))))
    return files


def _single(paths: tuple[str, ...], files: list[Path]) -> bool:
    """One path naming one model (a file or a diffusers folder): JSON is an object, not a list."""
    return len(paths) == 1 and files == [as_path(paths[0])]


def _vae_line(vae: VaeReport) -> str:
    fingerprint = (vae.fingerprint or "")[:16]
    if vae.metric is None:
        return _("inside (fingerprint {fingerprint})").format(fingerprint=fingerprint)
    if vae.name in (None, "unknown"):
        return _("no known VAE matches (Model Toolkit metric {metric:04}, fingerprint {fingerprint})").format(
            metric=vae.metric, fingerprint=fingerprint
        )
    return _("{name} (Model Toolkit metric {metric:04}, fingerprint {fingerprint})").format(
        name=vae.name, metric=vae.metric, fingerprint=fingerprint
    )


@click.command(
    "info",
    help=_(
        "Say what model files are: family, parts, precision, EMA, CLIP, junk, hints and advice.\n"
        "PATHS may be URLs (https://..., hf://OWNER/REPO[@REV]/FILE or a diffusers repo folder): only\n"
        "headers and directories are fetched, and the report says how much."
    ),
)
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help=_("One JSON object per file (a list for several)."))
@click.option("--keys", is_flag=True, help=_("Also list unknown and junk keys in full."))
@click.option(
    "--read-data",
    is_flag=True,
    help=_("For URLs: also fetch the few tensors the VAE fingerprint and CLIP check need (their ranges only)."),
)
@batch_options
def info_command(
    paths: tuple[str, ...],
    as_json: bool,
    keys: bool,
    read_data: bool,
    from_file: str | None,
    jobs: int,
    json_lines: bool,
    ray_address: str | None,
    output: str | None,
) -> None:
    if wants_batch(from_file, jobs, json_lines, ray_address, output):
        sys.exit(run_batch("info", paths, iter_model_files, from_file, jobs, ray_address, output, read_data))
    if not paths:
        raise click.UsageError(_("give files, folders or URLs (or --from FILE)"))
    files = _collect(as_paths(paths, read_data))
    results: list[dict] = []
    failed = 0
    for f in files:
        try:
            with measure() as meter:
                report = inspect(f)
        except SdmodelError as e:
            failed += 1
            results.append({"path": str(f), "error": str(e)})
            print_error(error_text(e))
            continue
        results.append(report.to_dict())
        if is_remote(f):
            results[-1]["remote"] = {
                "bytes_read": meter.bytes_read,
                "requests": meter.requests,
                "data_bytes": meter.data_bytes,
            }
        if not as_json:
            render_report(report, keys)
            if is_remote(f):
                console.print(tr(meter.summary(report.size_bytes)), style="dim", highlight=False)
    if as_json:
        print_json(results[0] if _single(paths, files) else results)
    if failed:
        sys.exit(2)


def _dtypes(d: dict[str, int]) -> str:
    return ", ".join(f"{k}×{v}" if len(d) > 1 else k for k, v in sorted(d.items(), key=lambda kv: -kv[1]))


def _tensors(n: int) -> str:
    return ngettext("{n} tensor", "{n} tensors", n).format(n=n)


def render_report(report: ModelReport, show_keys: bool = False) -> None:
    d = report.to_dict()
    ident = report.identity
    title = Text()
    title.append(Path(d["path"]).name, style="bold")
    title.append(f"  {family_label(ident.family, ident.variant)} {ident.kind}", style="cyan")
    title.append(f"  ({d['format']}, {format_size(d['size_bytes'])}, {_tensors(d['tensors'])})")
    console.print()
    console.print(title)

    quantized = bool(report.quantization.get("quantized"))
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    cols = (N_("part"), N_("tensors"), N_("params"), N_("size"), N_("storage") if quantized else N_("dtypes"))
    for col in cols:
        table.add_column(_(col), justify="right" if col in ("tensors", "params", "size") else "left")
    for part, comp in sorted(report.components.items(), key=lambda kv: part_rank(kv[0])):
        kind = _dtypes(comp.dtypes)
        if quantized and comp.bits_per_weight is not None:
            kind = _("{storage}, {bits} bits/weight").format(
                storage=tr(comp.storage), bits=format_number(comp.bits_per_weight, 2)
            )
        table.add_row(part, str(comp.tensors), format_count(comp.params), format_size(comp.bytes), kind)
    console.print(table)

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    if ident.candidates:
        facts.add_row(_("could also be"), _("{ids} (same names and shapes)").format(ids=", ".join(ident.candidates)))
    if ident.needs_text_encoders or ident.needs_vae:
        needs = [*ident.needs_text_encoders, *([f"VAE {ident.needs_vae}"] if ident.needs_vae else [])]
        facts.add_row(_("needs beside it"), ", ".join(needs))
    pred = _("unknown") if ident.prediction == "unknown" else ident.prediction
    if ident.prediction_source:
        pred = _("{prediction} (from {source})").format(prediction=ident.prediction, source=tr(ident.prediction_source))
    # For adapters the prediction matters only when a hint names it (e.g. a v-prediction LoRA).
    if ident.kind in ("checkpoint", "unet") or ident.prediction != "unknown":
        facts.add_row(_("prediction"), pred)
    ema = report.ema
    if ident.kind in ("checkpoint", "unet"):
        if ema.present:
            if ema.complete:
                text = _("present: {tensors}, {size}, complete")
            else:
                text = _("present: {tensors}, {size}, covers {covered} of {total} UNet tensors")
            text = text.format(
                tensors=_tensors(ema.tensors),
                size=format_size(ema.bytes),
                covered=ema.unet_covered,
                total=ema.unet_total,
            )
            facts.add_row("EMA", text)
        else:
            facts.add_row("EMA", _("no separate EMA set (one UNet weight set: ema-only or no-ema, same structure)"))
    _clip_facts(facts, report)
    junk = report.junk
    if junk.tensors:
        groups = "; ".join(f"{tr(why or '')}: {n}" for why, n in junk.groups.items())
        text = f"{_tensors(junk.tensors)}, {format_size(junk.bytes)} ({groups})"
        facts.add_row(_("junk"), Text(text, style="yellow"))
    if d["markers"]:
        facts.add_row(_("markers"), ", ".join(d["markers"]))
    if d["unknown_keys"]:
        n = len(d["unknown_keys"])
        facts.add_row(_("unknown keys"), _("{n} (kept; --keys lists them)").format(n=n))
    if report.vae is not None and report.vae.present:
        facts.add_row("VAE", _vae_line(report.vae))
    for label, key in (
        (N_("A1111 config"), "a1111_config"),
        ("ModelSpec", "modelspec_architecture"),
        (N_("resolution"), "resolution"),
    ):
        if d[key]:
            facts.add_row(_(label), d[key])
    for hint in d["hints"]:
        facts.add_row(_("hint"), tr(hint))
    if report.lora is not None:
        _lora_facts(facts, report.lora)
    _placement_facts(facts, report)
    if d["extras"]:
        facts.add_row(_("other entries"), ", ".join(f"{k}={_short(v)}" for k, v in list(d["extras"].items())[:8]))
    if d["metadata"]:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in list(d["metadata"].items())[:10])
        if len(d["metadata"]) > 10:
            shown = _("{shown} (+{n} more)").format(shown=shown, n=len(d["metadata"]) - 10)
        facts.add_row(_("metadata"), shown)
    for s in d["sidecars"]:
        facts.add_row(_("sidecar"), f"{Path(s['path']).name} ({s['kind']})")
    for note in report.notes:
        facts.add_row(_("note"), Text(tr(note), style="yellow"))
    console.print(facts)
    if show_keys:
        for k in d["unknown_keys"]:
            console.print(_("  unknown: {key}").format(key=k), highlight=False)
        for k in junk.keys:
            console.print(_("  junk: {key}").format(key=k), highlight=False)
    if report.advice is not None:
        _render_advice(report.advice)


def _clip_facts(facts: Table, report: ModelReport) -> None:
    clip = report.clip_position_ids
    label = _("CLIP position ids")
    if clip.status == "broken":
        shown = ", ".join(f"{b.position}→{b.loader_sees} ({b.value:g})" for b in clip.broken[:8])
        n = len(clip.broken)
        if n > 8:
            text = ngettext(
                "BROKEN at {n} position: {shown} and {more} more; --fix-clip repairs",
                "BROKEN at {n} positions: {shown} and {more} more; --fix-clip repairs",
                n,
            )
        else:
            text = ngettext(
                "BROKEN at {n} position: {shown}; --fix-clip repairs",
                "BROKEN at {n} positions: {shown}; --fix-clip repairs",
                n,
            )
        facts.add_row(label, Text(text.format(n=n, shown=shown, more=n - 8), style="red"))
    elif clip.status == "missing":
        facts.add_row(label, _("not stored (normal for files saved by newer transformers)"))
    elif clip.status == "ok":
        facts.add_row(label, _("ok ({dtype})").format(dtype=clip.dtype))


def _placement_facts(facts: Table, report: ModelReport) -> None:
    """Lineage (with where each answer came from) and where the file goes in each UI."""
    lin = report.lineage
    if lin is not None:
        if lin.base:
            facts.add_row(_("lineage"), _("{base} (from {source})").format(base=lin.base, source=lin.base_source))
        if lin.v_prediction is not None:
            pred = "v-prediction" if lin.v_prediction else "epsilon"
            facts.add_row(
                _("trained as"), _("{prediction} (from {source})").format(prediction=pred, source=lin.v_source)
            )
        if lin.zsnr:
            facts.add_row("ZSNR", _("yes (from {source})").format(source=lin.zsnr_source))
        for setting in lin.settings:
            facts.add_row(_("sampler"), tr(setting))
    placement = report.placement
    if placement is None:
        return
    for t in placement.targets:
        if t.folder is None:
            reason = tr(t.reason) if t.reason is not None else ""
            facts.add_row(UI_LABELS[t.ui], Text(_("cannot load it: {reason}").format(reason=reason), style="yellow"))
            continue
        facts.add_row(UI_LABELS[t.ui], _target_text(t))
    comp = placement.companions
    if comp is not None:
        for c in (*comp.text_encoders, *([comp.vae] if comp.vae else [])):
            where = comp.path_of(c)
            name = companion_label(c)
            found = _("{id}: {name} (found: {path})") if where else "{id}: {name}"
            text = found.format(id=c, name=name, path=where)
            facts.add_row(_("companion"), text)
        loader = clip_loader_text(comp, placement.storage)
        if loader:
            facts.add_row(_("text encoders"), f"ComfyUI {tr(loader)}")
    for note in placement.notes:
        facts.add_row(_("placement"), tr(note))


def _target_text(t: Target) -> str:
    """``models/checkpoints, Load Checkpoint``: the folder and what loads the file from it."""
    if t.loader_label is None:
        return t.folder or ""
    loader = tr(t.loader_label)
    if t.clip_type and t.custom_node:
        text = _("{folder}, {loader} type {type} (custom node {repo})")
    elif t.clip_type:
        text = _("{folder}, {loader} type {type}")
    elif t.custom_node:
        text = _("{folder}, {loader} (custom node {repo})")
    else:
        text = "{folder}, {loader}"
    return text.format(folder=t.folder, loader=loader, type=t.clip_type, repo=t.custom_node)


def _lora_facts(facts: Table, lora: LoraInfo) -> None:
    algos = ", ".join(f"{a} {n}" if len(lora.algorithms) > 1 else a for a, n in lora.algorithms.items())
    targets = ngettext("{n} target", "{n} targets", lora.targets).format(n=lora.targets)
    if lora.dora:
        text = _("{format} naming, {algorithms}, DoRA on {dora}, {targets}")
    else:
        text = _("{format} naming, {algorithms}, {targets}")
    facts.add_row("LoRA", text.format(format=lora.format, algorithms=algos, dora=lora.dora, targets=targets))
    trained_for = _("trained for")
    if lora.family:
        family = family_label(lora.family, None)
        facts.add_row(trained_for, _("{family} (from {source})").format(family=family, source=tr(lora.family_source)))
    elif lora.candidates:
        families = ", ".join(family_label(c, None) for c in lora.candidates)
        facts.add_row(trained_for, _("unknown: one of {families}").format(families=families))
    else:
        facts.add_row(trained_for, _("unknown"))
    facts.add_row(_("trains"), ", ".join(f"{tr(part)} ({n})" for part, n in lora.trains.items()))
    if lora.ranks:
        facts.add_row(_("rank"), ", ".join(map(str, lora.ranks)))
    if lora.alphas:
        facts.add_row(_("alpha"), ", ".join(f"{a:g}" for a in lora.alphas))
    if lora.trigger_words:
        facts.add_row(_("trigger words"), ", ".join(lora.trigger_words))
    for key, value in lora.training.items():
        facts.add_row(tr(TRAINING_LABELS.get(key, key.replace("_", " "))), _short(value, 80))
    for note in lora.notes:
        facts.add_row(_("note"), Text(tr(note), style="yellow"))


def _short(v: object, width: int = 40) -> str:
    s = str(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def _render_advice(advice: Advice) -> None:
    gen, train = advice.generate, advice.train
    head = escape(_("advice:"))
    for note in advice.notes or []:
        if gen or str(note).startswith("this is a"):
            console.print(f"[green]{head}[/green] {escape(tr(note))}", highlight=False)
    if not gen:
        return
    if gen.already_optimal:
        text = escape(_("already the file you want for generating"))
        console.print(f"[green]{head}[/green] {text}", highlight=False)
    else:
        head = _("for generating:")
        text = _("{target}, {size} (saves {saves})").format(
            target=tr(gen.target or ""), size=format_size(gen.bytes_after), saves=format_size(gen.saves_bytes)
        )
        console.print(
            f"[green]{escape(head)}[/green] {escape(text)}:  [dim]{escape(gen.command or '')}[/dim]", highlight=False
        )
    for why in gen.why:
        console.print(f"  • {escape(tr(why))}", highlight=False)
    _render_smaller(advice)
    head = escape(_("for training:"))
    if train and train.target:
        text = f"{tr(train.target)}, {format_size(train.bytes_after)}"
        console.print(
            f"[green]{head}[/green] {escape(text)}:  [dim]{escape(train.command or '')}[/dim]", highlight=False
        )
    elif train:
        text = escape(_("not this file"))
        console.print(f"[green]{head}[/green] {text}", highlight=False)
    if train:
        for why in train.why:
            console.print(f"  • {escape(tr(why))}", highlight=False)


def _render_smaller(advice: Advice) -> None:
    """The GGUF / scaled-fp8 forms offered beside the generating advice."""
    if not advice.smaller:
        return
    head = _("smaller, for generating on less GPU memory:")
    console.print(f"[green]{escape(head)}[/green]", highlight=False)
    for o in advice.smaller:
        why = "; ".join(tr(w) for w in o.why)
        text = f"{tr(o.target or '')}: {format_size(o.bytes_after)}, {why}"
        console.print(f"  • {escape(text)}:  [dim]{escape(o.command or '')}[/dim]", highlight=False)


@click.command("hash", help=_("AutoV1, AutoV2, SHA256, AutoV3, BLAKE3 and CRC32 of model files, in one read pass."))
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help=_("One JSON object per file (a list for several)."))
@click.option("--no-cache", is_flag=True, help=_("Re-read the file even if a cached result matches."))
def hash_command(paths: tuple[str, ...], as_json: bool, no_cache: bool) -> None:
    if any(is_remote(p) for p in paths):
        raise click.UsageError(_("hashes need every byte of a file: download it, then hash the copy"))
    files = [f for f in _collect(paths) if f.is_file()]
    results: list[dict] = []
    failed = 0
    with byte_progress() as progress:
        for f in files:
            task = progress.add_task(f.name, total=None)
            try:

                def show(done: int, total: int, t: TaskID = task) -> None:
                    progress.update(t, completed=done, total=total)

                value = hash_file(
                    f,
                    show,
                    use_cache=not no_cache,
                )
            except OSError as e:
                failed += 1
                results.append({"path": str(f), "error": e.strerror or str(e)})
                print_error(f"{f}: {e.strerror or e}")
                continue
            finally:
                progress.remove_task(task)
            results.append({"path": str(f), **value})
    if as_json:
        print_json(results[0] if _single(paths, files) else results)
    else:
        for r in results:
            if "error" in r:
                continue
            table = Table.grid(padding=(0, 2))
            table.add_column(style="bold")
            table.add_column()
            for label, key in (
                ("AutoV1", "autov1"),
                ("AutoV2", "autov2"),
                ("SHA256", "sha256"),
                ("AutoV3", "autov3"),
                ("BLAKE3", "blake3"),
                ("CRC32", "crc32"),
                ("CRC32 (Civitai)", "crc32_civitai"),
            ):
                table.add_row(label, r[key] or "-")
            console.print(Text(Path(r["path"]).name, style="bold"))
            console.print(table)
    if failed:
        sys.exit(2)


COMMANDS = [info_command, hash_command]
