"""``sdmodel info`` and ``sdmodel hash``."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from rich.progress import TaskID
from rich.table import Table
from rich.text import Text

from sdmodel.advice import Advice
from sdmodel.cli.batch import as_paths, batch_options, run_batch, wants_batch
from sdmodel.cli.common import byte_progress, console, print_error, print_json
from sdmodel.errors import SdmodelError, error_text
from sdmodel.files import iter_model_files
from sdmodel.hashing import hash_file
from sdmodel.i18n import _
from sdmodel.identify import family_label
from sdmodel.inspection import ModelReport, inspect
from sdmodel.lora.info import LoraInfo
from sdmodel.parts import part_rank
from sdmodel.placement import UI_LABELS, clip_loader_text, companion_label
from sdmodel.remote import as_path, is_remote, measure
from sdmodel.units import human_bytes, human_count, plural
from sdmodel.vaes import VaeReport


def _collect(paths: Iterable[Any]) -> list[Path]:
    files = list(iter_model_files(paths))
    if not files:
        raise click.UsageError(_("no model files found in {paths}").format(paths=", ".join(paths)))
    return files


def _single(paths: tuple[str, ...], files: list[Path]) -> bool:
    """One path naming one model (a file or a diffusers folder): JSON is an object, not a list."""
    return len(paths) == 1 and files == [as_path(paths[0])]


def _vae_line(vae: VaeReport) -> str:
    fingerprint = f"fingerprint {(vae.fingerprint or '')[:16]}"
    if vae.metric is None:
        return f"inside ({fingerprint})"
    if vae.name in (None, "unknown"):
        return f"no known VAE matches (Model Toolkit metric {vae.metric:04}, {fingerprint})"
    return f"{vae.name} (Model Toolkit metric {vae.metric:04}, {fingerprint})"


@click.command("info")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file (a list for several).")
@click.option("--keys", is_flag=True, help="Also list unknown and junk keys in full.")
@click.option(
    "--read-data",
    is_flag=True,
    help="For URLs: also fetch the few tensors the VAE fingerprint and CLIP check need (their ranges only).",
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
    """Say what model files are: family, parts, precision, EMA, CLIP, junk, hints and advice.
    PATHS may be URLs (https://..., hf://OWNER/REPO[@REV]/FILE or a diffusers repo folder): only
    headers and directories are fetched, and the report says how much."""
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
                console.print(meter.summary(report.size_bytes), style="dim", highlight=False)
    if as_json:
        print_json(results[0] if _single(paths, files) else results)
    if failed:
        sys.exit(2)


def _dtypes(d: dict[str, int]) -> str:
    return ", ".join(f"{k}×{v}" if len(d) > 1 else k for k, v in sorted(d.items(), key=lambda kv: -kv[1]))


def render_report(report: ModelReport, show_keys: bool = False) -> None:
    d = report.to_dict()
    ident = report.identity
    title = Text()
    title.append(Path(d["path"]).name, style="bold")
    title.append(f"  {family_label(ident.family, ident.variant)} {ident.kind}", style="cyan")
    title.append(f"  ({d['format']}, {human_bytes(d['size_bytes'])}, {plural(d['tensors'], 'tensor')})")
    console.print()
    console.print(title)

    quantized = bool(report.quantization.get("quantized"))
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    cols = ("part", "tensors", "params", "size", "storage" if quantized else "dtypes")
    for col in cols:
        table.add_column(col, justify="right" if col in ("tensors", "params", "size") else "left")
    for part, comp in sorted(report.components.items(), key=lambda kv: part_rank(kv[0])):
        kind = _dtypes(comp.dtypes)
        if quantized and comp.bits_per_weight is not None:
            kind = f"{comp.storage}, {comp.bits_per_weight:.2f} bits/weight"
        table.add_row(part, str(comp.tensors), human_count(comp.params), human_bytes(comp.bytes), kind)
    console.print(table)

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    if ident.candidates:
        facts.add_row("could also be", ", ".join(ident.candidates) + " (same names and shapes)")
    if ident.needs_text_encoders or ident.needs_vae:
        needs = [*ident.needs_text_encoders, *([f"VAE {ident.needs_vae}"] if ident.needs_vae else [])]
        facts.add_row("needs beside it", ", ".join(needs))
    pred = ident.prediction + (f" (from {ident.prediction_source})" if ident.prediction_source else "")
    # For adapters the prediction matters only when a hint names it (e.g. a v-prediction LoRA).
    if ident.kind in ("checkpoint", "unet") or ident.prediction != "unknown":
        facts.add_row("prediction", pred)
    ema = report.ema
    if ident.kind in ("checkpoint", "unet"):
        if ema.present:
            cover = "complete" if ema.complete else f"covers {ema.unet_covered} of {ema.unet_total} UNet tensors"
            facts.add_row("EMA", f"present: {ema.tensors} tensors, {human_bytes(ema.bytes)}, {cover}")
        else:
            facts.add_row("EMA", "no separate EMA set (one UNet weight set: ema-only or no-ema, same structure)")
    clip = report.clip_position_ids
    if clip.status == "broken":
        shown = ", ".join(f"{b.position}→{b.loader_sees} ({b.value:g})" for b in clip.broken[:8])
        more = f" and {len(clip.broken) - 8} more" if len(clip.broken) > 8 else ""
        facts.add_row(
            "CLIP position ids",
            Text(f"BROKEN at {len(clip.broken)} positions: {shown}{more}; --fix-clip repairs", style="red"),
        )
    elif clip.status == "missing":
        facts.add_row("CLIP position ids", "not stored (normal for files saved by newer transformers)")
    elif clip.status == "ok":
        facts.add_row("CLIP position ids", f"ok ({clip.dtype})")
    junk = report.junk
    if junk.tensors:
        groups = "; ".join(f"{why}: {n}" for why, n in junk.groups.items())
        text = f"{plural(junk.tensors, 'tensor')}, {human_bytes(junk.bytes)} ({groups})"
        facts.add_row("junk", Text(text, style="yellow"))
    if d["markers"]:
        facts.add_row("markers", ", ".join(d["markers"]))
    if d["unknown_keys"]:
        facts.add_row("unknown keys", f"{len(d['unknown_keys'])} (kept; --keys lists them)")
    if report.vae is not None and report.vae.present:
        facts.add_row("VAE", _vae_line(report.vae))
    for label, key in (
        ("A1111 config", "a1111_config"),
        ("ModelSpec", "modelspec_architecture"),
        ("resolution", "resolution"),
    ):
        if d[key]:
            facts.add_row(label, d[key])
    for hint in d["hints"]:
        facts.add_row("hint", hint)
    if report.lora is not None:
        _lora_facts(facts, report.lora)
    _placement_facts(facts, report)
    if d["extras"]:
        facts.add_row("other entries", ", ".join(f"{k}={_short(v)}" for k, v in list(d["extras"].items())[:8]))
    if d["metadata"]:
        facts.add_row(
            "metadata",
            ", ".join(f"{k}={_short(v)}" for k, v in list(d["metadata"].items())[:10])
            + (f" (+{len(d['metadata']) - 10} more)" if len(d["metadata"]) > 10 else ""),
        )
    for s in d["sidecars"]:
        facts.add_row("sidecar", f"{Path(s['path']).name} ({s['kind']})")
    for note in d["notes"]:
        facts.add_row("note", Text(note, style="yellow"))
    console.print(facts)
    if show_keys:
        for k in d["unknown_keys"]:
            console.print(f"  unknown: {k}", highlight=False)
        for k in junk.keys:
            console.print(f"  junk: {k}", highlight=False)
    if report.advice is not None:
        _render_advice(report.advice)


def _placement_facts(facts: Table, report: ModelReport) -> None:
    """Lineage (with where each answer came from) and where the file goes in each UI."""
    lin = report.lineage
    if lin is not None:
        if lin.base:
            facts.add_row("lineage", f"{lin.base} (from {lin.base_source})")
        if lin.v_prediction is not None:
            pred = "v-prediction" if lin.v_prediction else "epsilon"
            facts.add_row("trained as", f"{pred} (from {lin.v_source})")
        if lin.zsnr:
            facts.add_row("ZSNR", f"yes (from {lin.zsnr_source})")
        for setting in lin.settings:
            facts.add_row("sampler", setting)
    placement = report.placement
    if placement is None:
        return
    for t in placement.targets:
        if t.folder is None:
            facts.add_row(UI_LABELS[t.ui], Text(f"cannot load it: {t.reason}", style="yellow"))
            continue
        how = f", {t.loader_label}" if t.loader_label else ""
        how += f" type {t.clip_type}" if t.clip_type else ""
        how += f" (custom node {t.custom_node})" if t.custom_node else ""
        facts.add_row(UI_LABELS[t.ui], f"{t.folder}{how}")
    comp = placement.companions
    if comp is not None:
        for c in (*comp.text_encoders, *([comp.vae] if comp.vae else [])):
            where = comp.path_of(c)
            facts.add_row("companion", f"{c}: {companion_label(c)}" + (f" (found: {where})" if where else ""))
        loader = clip_loader_text(comp, placement.storage)
        if loader:
            facts.add_row("text encoders", f"ComfyUI {loader}")
    for note in placement.notes:
        facts.add_row("placement", note)


def _lora_facts(facts: Table, lora: LoraInfo) -> None:
    algos = ", ".join(f"{a} {n}" if len(lora.algorithms) > 1 else a for a, n in lora.algorithms.items())
    dora = f", DoRA on {lora.dora}" if lora.dora else ""
    facts.add_row("LoRA", f"{lora.format} naming, {algos}{dora}, {plural(lora.targets, 'target')}")
    if lora.family:
        facts.add_row("trained for", f"{family_label(lora.family, None)} (from {lora.family_source})")
    elif lora.candidates:
        facts.add_row("trained for", "unknown: one of " + ", ".join(family_label(c, None) for c in lora.candidates))
    else:
        facts.add_row("trained for", "unknown")
    facts.add_row("trains", ", ".join(f"{part} ({n})" for part, n in lora.trains.items()))
    if lora.ranks:
        facts.add_row("rank", ", ".join(map(str, lora.ranks)))
    if lora.alphas:
        facts.add_row("alpha", ", ".join(f"{a:g}" for a in lora.alphas))
    if lora.trigger_words:
        facts.add_row("trigger words", ", ".join(lora.trigger_words))
    for key, value in lora.training.items():
        facts.add_row(key.replace("_", " "), _short(value, 80))
    for note in lora.notes:
        facts.add_row("note", Text(note, style="yellow"))


def _short(v: object, width: int = 40) -> str:
    s = str(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def _render_advice(advice: Advice) -> None:
    gen, train = advice.generate, advice.train
    for note in advice.notes or []:
        if gen or note.startswith("this is a"):
            console.print(f"[green]advice:[/green] {note}", highlight=False)
    if not gen:
        return
    if gen.already_optimal:
        console.print("[green]advice:[/green] already the file you want for generating")
    else:
        console.print(
            f"[green]for generating:[/green] {gen.target}, {human_bytes(gen.bytes_after)} "
            f"(saves {human_bytes(gen.saves_bytes)}):  [dim]{gen.command}[/dim]",
            highlight=False,
        )
    for why in gen.why:
        console.print(f"  • {why}", highlight=False)
    _render_smaller(advice)
    if train and train.target:
        console.print(
            f"[green]for training:[/green] {train.target}, {human_bytes(train.bytes_after)}:  "
            f"[dim]{train.command}[/dim]",
            highlight=False,
        )
    elif train:
        console.print("[green]for training:[/green] not this file", highlight=False)
    if train:
        for why in train.why:
            console.print(f"  • {why}", highlight=False)


def _render_smaller(advice: Advice) -> None:
    """The GGUF / scaled-fp8 forms offered beside the generating advice."""
    if not advice.smaller:
        return
    console.print("[green]smaller, for generating on less GPU memory:[/green]", highlight=False)
    for o in advice.smaller:
        console.print(
            f"  • {o.target}: {human_bytes(o.bytes_after)}, {'; '.join(o.why)}:  [dim]{o.command}[/dim]",
            highlight=False,
        )


@click.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file (a list for several).")
@click.option("--no-cache", is_flag=True, help="Re-read the file even if a cached result matches.")
def hash_command(paths: tuple[str, ...], as_json: bool, no_cache: bool) -> None:
    """AutoV1, AutoV2, SHA256, AutoV3, BLAKE3 and CRC32 of model files, in one read pass."""
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
