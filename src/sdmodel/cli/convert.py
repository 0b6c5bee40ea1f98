"""``sdmodel convert``, ``sdmodel extract`` and ``sdmodel diff``: thin layers over the Python API."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from sdmodel.cli.common import byte_progress, console, print_error, print_json
from sdmodel.conversion import ConvertOptions, ConvertResult, convert, convert_tree
from sdmodel.diffing import DiffResult, diff
from sdmodel.dtypes import PRECISIONS
from sdmodel.engine import Progress
from sdmodel.files import is_diffusers_dir, iter_model_files
from sdmodel.formats import open_model
from sdmodel.formats.writers import OUTPUT_FORMATS
from sdmodel.i18n import N_, Msg, _, format_number, format_size, ngettext, tr
from sdmodel.lora.merge import LoraSpec
from sdmodel.lora.names import LORA_FORMATS
from sdmodel.parts import part_rank
from sdmodel.quant.fp8_quantize import FP8_FORMATS
from sdmodel.quant.gguf_policy import GGUF_QUANTS
from sdmodel.remote import as_path
from sdmodel.vocab import EXTRACT_PARTS, PREDICTIONS, ExtractPart

PRECISION = click.Choice([p for p in PRECISIONS if p != "fp64"])
BIG = 256 * 1000 * 1000  # show a progress bar for outputs at least this big


def _dtypes(d: dict[str, int]) -> str:
    items = sorted(d.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k}×{v}" if len(d) > 1 else k for k, v in items) or "-"


def render_result(r: ConvertResult, show_dropped: int = 5) -> None:
    """The plan per part (before -> after), dropped keys, notes, and what was written."""
    console.print()
    console.print(f"[bold]{r.source.name}[/bold] -> [bold]{r.output}[/bold] ({r.format})", highlight=False)
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    for col in (N_("part"), N_("dtype"), N_("tensors"), N_("size"), N_("dropped"), N_("actions")):
        table.add_column(_(col), justify="right" if col in ("tensors", "size", "dropped") else "left")
    for p in sorted(r.parts, key=lambda p: part_rank(p["part"])):
        actions = ", ".join(f"{k} {v}" for k, v in sorted(p["actions"].items()))
        table.add_row(
            p["part"],
            f"{_dtypes(p['dtypes_before'])} -> {_dtypes(p['dtypes_after'])}",
            f"{p['tensors_before']} -> {p['tensors_after']}",
            f"{format_size(p['bytes_before'])} -> {format_size(p['bytes_after'])}",
            str(p["dropped"] or ""),
            actions,
        )
    total = f"{format_size(r.bytes_before)} -> {format_size(r.bytes_after)}"
    label = escape(_("total"))
    table.add_row(f"[bold]{label}[/bold]", "", "", total, "", "")
    console.print(table)
    _render_dropped(r, show_dropped)
    if r.vae_before != r.vae_after:
        console.print(f"VAE: {r.vae_before} -> {r.vae_after}", highlight=False)
    else:
        console.print(f"VAE: {r.vae_before}", highlight=False)
    for note in r.notes:
        console.print(f"- {tr(note)}", highlight=False, markup=False)
    if r.tensors and r.dry_run:
        render_tensors(r.tensors)
    if r.write is not None:
        w = r.write
        if w.verified:
            text = _("wrote {size} in {seconds} s, verified bit for bit with the reference reader")
        else:
            text = _("wrote {size} in {seconds} s, structure checked")
        console.print(text.format(size=format_size(w.bytes), seconds=format_number(w.seconds, 1)), highlight=False)
    elif r.dry_run:
        console.print(_("dry run: nothing written"), highlight=False)


def _render_dropped(r: ConvertResult, show: int) -> None:
    """The dropped tensors, grouped by why (a few names of each group)."""
    names: dict[str, list[str]] = {}
    reasons: dict[str, Msg] = {}
    for d in r.dropped:
        names.setdefault(str(d["reason"]), []).append(d["name"])
        reasons.setdefault(str(d["reason"]), d["reason"])
    for reason, group in names.items():
        why = tr(reasons[reason])
        listed = ", ".join(group[:show])
        more = len(group) > show
        text = _("dropped ({why}): {names}, ... ({n} in all)") if more else _("dropped ({why}): {names}")
        console.print(text.format(why=why, names=listed, n=len(group)), highlight=False, markup=False)


def render_tensors(rows: list[dict]) -> None:
    """Per output tensor: stored type, shape, bytes and why (GGUF quants, scaled fp8)."""
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    for col in (N_("tensor"), N_("type"), N_("shape"), N_("bytes"), N_("why")):
        table.add_column(_(col), justify="right" if col == "bytes" else "left")
    for row in rows:
        table.add_row(
            row["name"],
            row["type"],
            str(list(row["shape"])),
            format_size(row["bytes"]),
            tr(row["reason"]) if row["reason"] else "",
        )
    console.print(table)


@contextmanager
def _bar(enabled: bool) -> Iterator[Callable[[str], Progress | None]]:
    """Yields ``make(description) -> progress callback`` (``make`` returns None when disabled)."""
    if not enabled:
        yield lambda _desc: None
        return
    with byte_progress(transient=True) as progress:

        def make(desc: str) -> Progress:
            task = progress.add_task(desc, total=None)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            return update

        yield make


def _common(f: Callable[..., None]) -> Callable[..., None]:
    """The options ``convert`` and ``extract`` share; the command receives them as ConvertOptions
    fields (plus ``out`` and ``as_json``)."""
    options = [
        click.option(
            "-o", "--output", "out", type=click.Path(dir_okay=True), help=_("Output file (folder with --recursive).")
        ),
        click.option(
            "--format",
            type=click.Choice(list(OUTPUT_FORMATS)),
            default="safetensors",
            show_default=True,
            help=_("ckpt: a PyTorch zip checkpoint (written without PyTorch); gguf: ComfyUI-GGUF's, with --quant."),
        ),
        click.option(
            "--quant",
            metavar="TYPE",
            help=_("GGUF type mix with --format gguf, per tensor as ComfyUI-GGUF's tools choose: {types}.").format(
                types=" ".join(GGUF_QUANTS)
            ),
        ),
        click.option(
            "--dtype",
            type=click.Choice([*PRECISION.choices, *FP8_FORMATS]),
            help=_("Precision of every floating tensor; fp8_*_scaled: ComfyUI's scaled fp8 for the diffusion model."),
        ),
        click.option(
            "--legacy-scaled-fp8",
            is_flag=True,
            help=_("With --dtype fp8_*_scaled: the older scaled_fp8/scale_weight form (older ComfyUI, Forge)."),
        ),
        click.option("--unet-dtype", type=PRECISION, help=_("Precision of the UNet (and its EMA).")),
        click.option("--vae-dtype", type=PRECISION, help=_("Precision of the VAE.")),
        click.option("--te-dtype", type=PRECISION, help=_("Precision of the text encoders.")),
        click.option(
            "--fix-clip",
            is_flag=True,
            help=_("Write CLIP position ids 0..76 (default: keep them as loaders see them)."),
        ),
        click.option("--prediction", type=click.Choice(PREDICTIONS), help=_("Prediction type (SD2 yaml, ModelSpec).")),
        click.option("--meta", multiple=True, metavar="KEY=VALUE", help=_("Set a metadata entry (repeatable).")),
        click.option(
            "--no-meta", is_flag=True, help=_("Write no metadata except --meta (no ModelSpec, source's dropped).")
        ),
        click.option("--overwrite", is_flag=True, help=_("Replace an existing output file.")),
        click.option(
            "--verify", is_flag=True, help=_("Re-read the output with the reference reader, compare bit for bit.")
        ),
        click.option("--dry-run", is_flag=True, help=_("Show the plan and write nothing.")),
        click.option("--json", "as_json", is_flag=True, help=_("Print the result as JSON.")),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def _run_one(src: str, out: str | None, as_json: bool, options: ConvertOptions) -> None:
    big = False
    if not options.dry_run and not as_json:
        try:
            with open_model(src) as s:
                big = s.size_bytes >= BIG
        except Exception:  # only a probe for the progress bar: convert() reports the real error
            pass
    with _bar(big and sys.stderr.isatty()) as make:
        result = convert(src, out, options, progress=make(Path(src).name))
    if as_json:
        print_json(result.to_dict())
    else:
        render_result(result)


def _run_tree(src: str, out: str | None, as_json: bool, options: ConvertOptions) -> None:
    """Every model under ``src``: a bar per file and one for all the bytes; exit status 2 if any failed."""
    show = sys.stderr.isatty() and not as_json and not options.dry_run
    grand = sum(p.stat().st_size for p in iter_model_files([src]) if p.is_file()) if show else 0
    with _bar(show) as make:
        overall = make("all files")
        state = {"base": 0, "current": 0}  # bytes of the files done, size of the current one

        def on_file(path: Path, index: int, count: int) -> None:
            state["base"] += state["current"]
            state["current"] = path.stat().st_size if path.is_file() else 0

        def file_progress(path: Path) -> Progress:
            per_file = make(path.name)

            def both(done: int, total: int) -> None:  # only called with bars shown: make() gave callbacks
                assert per_file is not None and overall is not None
                per_file(done, total)
                if total:
                    overall(state["base"] + state["current"] * done // total, grand)

            return both

        results = convert_tree(src, out, options, on_file=on_file, file_progress=file_progress if show else None)
    failed = [r for r in results if r.error]
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            if r.skipped:
                text = _("skipped {path}: {why}").format(path=r.source, why=tr(r.skipped))
                console.print(text, highlight=False, markup=False)
            elif r.error:
                print_error(tr(r.error))
            else:
                render_result(r)
        done = sum(1 for r in results if not r.skipped and not r.error)
        skipped = sum(1 for r in results if r.skipped)
        summary = _("{done} converted, {skipped} skipped, {failed} failed")
        console.print("\n" + summary.format(done=done, skipped=skipped, failed=len(failed)), highlight=False)
    if failed:
        sys.exit(2)


@click.command(
    "convert",
    help=_(
        "Convert a model: format, precision per part, EMA, junk, CLIP ids, VAE, metadata, yaml.\n"
        "\n"
        "Writes beside the source as <stem>-<what changed>.safetensors unless -o is given; never\n"
        "overwrites without --overwrite; writes a temp file and renames it only when checked."
    ),
)
@click.argument("src", type=click.Path(exists=True))
@_common
@click.option(
    "--ema",
    type=click.Choice(["keep", "drop", "only"]),
    default="keep",
    show_default=True,
    help=_("Keep both weight sets, drop the EMA, or write only the EMA under the UNet names."),
)
@click.option("--allow-partial-ema", is_flag=True, help=_("With --ema only: keep normal weights where EMA is missing."))
@click.option("--prune", is_flag=True, help=_("Drop known junk (training leftovers); marker tensors are kept."))
@click.option(
    "--drop", multiple=True, metavar="PREFIX", help=_("Drop tensors whose names start with PREFIX (repeatable).")
)
@click.option("--vae", type=click.Path(exists=True), help=_("Bake in (or replace with) this VAE file."))
@click.option("--remove-vae", is_flag=True, help=_("Remove the VAE."))
@click.option(
    "--lora-format",
    type=click.Choice(LORA_FORMATS),
    help=_("SRC is a LoRA: write its targets in kohya, diffusers (PEFT) or ComfyUI naming."),
)
@click.option("-r", "--recursive", is_flag=True, help=_("SRC is a folder: convert every model in it."))
def convert_command(src: str, out: str | None, as_json: bool, recursive: bool, **kw: Any) -> None:
    options = ConvertOptions(**kw)
    if Path(src).is_dir() and not is_diffusers_dir(Path(src)):
        if not recursive:
            raise click.UsageError(_("{src} is a folder: add --recursive to convert every model in it").format(src=src))
        _run_tree(src, out, as_json, options)
        return
    _run_one(src, out, as_json, options)


@click.command(
    "extract",
    help=_(
        "Write one part as a file A1111 and ComfyUI load on its own: vae (VAE folder), unet\n"
        "(diffusion_models), text_encoder / text_encoder_2 (text_encoders). CLIP-L text encoders get\n"
        "transformers names (text_model.*); OpenCLIP ones (SD2 ViT-H, SDXL bigG) keep OpenCLIP names."
    ),
)
@click.argument("src", type=click.Path(exists=True))
@click.option(
    "--part", type=click.Choice(EXTRACT_PARTS), required=True, help=_("The part to write as a standalone file.")
)
@_common
@click.option(
    "--ema",
    type=click.Choice(["keep", "only"]),
    default="keep",
    show_default=True,
    help=_("With --part unet: 'only' extracts the EMA weights (default: the normal ones)."),
)
@click.option("--allow-partial-ema", is_flag=True, help=_("With --ema only: keep normal weights where EMA is missing."))
def extract_command(src: str, out: str | None, as_json: bool, part: ExtractPart, **kw: Any) -> None:
    _run_one(src, out, as_json, ConvertOptions(part=part, **kw))


def render_diff(r: DiffResult, all_tensors: bool, limit: int = 25) -> None:
    console.print(f"[bold]A[/bold] {r.a}\n[bold]B[/bold] {r.b}")
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    for col in (
        N_("part"),
        N_("tensors"),
        N_("identical"),
        N_("dtype changed"),
        N_("shape changed"),
        N_("max abs"),
        N_("max rel"),
        N_("only in A"),
        N_("only in B"),
    ):
        table.add_column(_(col), justify="left" if col == "part" else "right")
    for p in r.parts:
        table.add_row(
            p.part,
            str(p.tensors),
            str(p.identical),
            str(p.changed_dtype),
            str(p.changed_shape),
            f"{p.max_abs:.3g}",
            f"{p.max_rel:.3g}",
            str(p.missing),
            str(p.extra),
        )
    console.print(table)
    rows = [t for t in r.tensors if all_tensors or t.status not in ("identical", "equal values")]
    rows.sort(key=lambda t: -(t.max_rel if t.max_rel is not None else float("inf")))
    if rows:
        t2 = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        for col in (
            N_("tensor"),
            N_("dtype A"),
            N_("dtype B"),
            N_("shape"),
            N_("max abs"),
            N_("max rel"),
            N_("status"),
        ):
            t2.add_column(_(col), justify="right" if col in ("max abs", "max rel") else "left")
        for t in rows if all_tensors else rows[:limit]:
            shape = str(list(t.shape_a)) if t.shape_a == t.shape_b else f"{list(t.shape_a)} -> {list(t.shape_b)}"
            t2.add_row(
                t.name,
                t.dtype_a,
                t.dtype_b,
                shape,
                "-" if t.max_abs is None else f"{t.max_abs:.3g}",
                "-" if t.max_rel is None else f"{t.max_rel:.3g}",
                t.status,
            )
        console.print(t2)
        if not all_tensors and len(rows) > limit:
            n = len(rows) - limit
            text = ngettext(
                "... {n} more differing tensor (--all to list them)",
                "... {n} more differing tensors (--all to list them)",
                n,
            )
            console.print(text.format(n=n), highlight=False)
    for label, names in ((N_("only in A"), r.missing), (N_("only in B"), r.extra)):
        if names:
            console.print(
                f"{_(label)}: {', '.join(names[:limit])}" + (" ..." if len(names) > limit else ""),
                highlight=False,
                markup=False,
            )
    console.print(_("same values") if r.same else _("different"), style="bold")


@click.command(
    "diff",
    help=_(
        "Per part and per tensor: largest absolute and relative difference, missing and extra keys,\n"
        "dtype and shape changes. A or B may be a URL (with --read-data). Exit status 0 when the values\n"
        "are the same, 1 when they differ."
    ),
)
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help=_("Print the result as JSON."))
@click.option("--all", "all_tensors", is_flag=True, help=_("List every tensor, not only the differing ones."))
@click.option("--read-data", is_flag=True, help=_("Allow fetching the tensor values of URLs (their ranges only)."))
def diff_command(a: str, b: str, as_json: bool, all_tensors: bool, read_data: bool) -> None:
    r = diff(as_path(a, read_data), as_path(b, read_data))
    if as_json:
        print_json(r.to_dict())
    else:
        render_diff(r, all_tensors)
    sys.exit(0 if r.same else 1)


@click.command(
    "merge",
    help=_(
        "Bake LoRAs into MODEL: every weight a LoRA targets becomes W + weight * delta (computed in\n"
        "fp32, cast once), written by the same streaming engine as convert. WEIGHT defaults to 1.0.\n"
        "Every target must land on a weight of its shape (see sdmodel lora check), else nothing is written."
    ),
)
@click.argument("model", type=click.Path(exists=True))
@click.argument("loras", nargs=-1, required=True, metavar="LORA[:WEIGHT]...")
@_common
@click.option(
    "--ema",
    type=click.Choice(["keep", "drop", "only"]),
    default="keep",
    show_default=True,
    help=_("Keep both weight sets, drop the EMA, or write only the EMA (the LoRAs change the weights written)."),
)
@click.option("--allow-missing", is_flag=True, help=_("Merge the targets the model has; report the others."))
def merge_command(model: str, loras: tuple[str, ...], out: str | None, as_json: bool, **kw: Any) -> None:
    specs = [LoraSpec.parse(text) for text in loras]
    for spec in specs:
        if not spec.path.exists():
            raise click.UsageError(_("{path}: no such file").format(path=spec.path))
    _run_one(model, out, as_json, ConvertOptions(loras=tuple((s.path, s.weight) for s in specs), **kw))


COMMANDS = [convert_command, extract_command, diff_command, merge_command]
