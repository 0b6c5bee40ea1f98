"""``sdmodel.convert`` / ``sdmodel.extract``: any model file into exactly the file the user needs.

    >>> import sdmodel
    >>> r = sdmodel.convert("model.ckpt", dtype="fp16", ema="drop")   # -> model-fp16-noema.safetensors
    >>> r = sdmodel.extract("model.safetensors", "vae")               # -> model-vae.safetensors
    >>> plan = build_plan(source, dtype="fp8_e4m3fn")                  # what a dry run shows

Every function takes its options as one ``ConvertOptions`` or as its fields given as keywords.
Options become plan steps (sdmodel.plan); one streaming engine writes the plan (sdmodel.engine).
"""

from __future__ import annotations

import datetime as _dt
import functools
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sdmodel import __version__, sidecars
from sdmodel.atomic import TEMP_SUFFIX, check_target
from sdmodel.dtypes import PRECISIONS
from sdmodel.engine import Progress, WriteResult, execute
from sdmodel.errors import ConversionError, OutputExistsError, SdmodelError
from sdmodel.files import iter_model_files
from sdmodel.formats import open_model, sniff
from sdmodel.formats.base import TensorSource
from sdmodel.formats.safetensors import SafetensorsSource
from sdmodel.formats.safetensors_writer import HASH_KEY, HASH_PLACEHOLDER
from sdmodel.formats.sd_configs import CONFIGS, config_yaml
from sdmodel.formats.writers import OUTPUT_FORMATS
from sdmodel.i18n import Msg, msg_n
from sdmodel.identify import Identity, identify, resolve_names
from sdmodel.lora.convert import apply_lora_format
from sdmodel.lora.info import describe as describe_lora
from sdmodel.lora.merge import apply_loras
from sdmodel.plan import ConvertOptions, Plan, build_plan, with_changes
from sdmodel.provenance import SOURCE_KEY, SourceHasher, pending_hashes, provenance_entries, start_source_hasher
from sdmodel.sidecars import config_beside, needs_config
from sdmodel.vaes import identify_vae


@dataclass
class ConvertResult:
    """What a conversion did (or, with ``dry_run``, would do)."""

    source: Path
    output: Path | None
    format: str
    dry_run: bool
    parts: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    notes: list[str | Msg] = field(default_factory=list)  # Msg: translated where shown
    bytes_before: int = 0
    bytes_after: int = 0
    metadata: dict[str, str] = field(default_factory=dict)
    vae_before: str = "none"
    vae_after: str = "none"
    yaml: Path | None = None
    write: WriteResult | None = None
    tensors: list[dict] = field(default_factory=list)  # quantized outputs: each tensor's type and why
    skipped: str | Msg | None = None  # --recursive: why this file was not converted
    error: str | Msg | None = None  # --recursive: the one-line error of this file

    @property
    def clamped(self) -> dict[str, int]:
        return self.write.clamped if self.write else {}

    def to_dict(self) -> dict[str, Any]:
        w = self.write
        return {
            "source": str(self.source),
            "output": str(self.output) if self.output else None,
            "format": self.format,
            "dry_run": self.dry_run,
            "parts": self.parts,
            "dropped": [dict(d, reason=str(d["reason"])) for d in self.dropped],
            "notes": [str(n) for n in self.notes],
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "metadata": self.metadata,
            "vae_before": self.vae_before,
            "vae_after": self.vae_after,
            "yaml": str(self.yaml) if self.yaml else None,
            "written": None
            if w is None
            else {
                "bytes": w.bytes,
                "tensors": w.tensors,
                "seconds": round(w.seconds, 3),
                "sha256_data": w.sha256_data,
                "clamped": w.clamped,
                "verified": w.verified,
            },
            "tensors": [dict(t, reason=str(t["reason"] or "")) for t in self.tensors],
            "skipped": None if self.skipped is None else str(self.skipped),
            "error": None if self.error is None else str(self.error),
        }


# --- sources ---------------------------------------------------------------------------------


@contextmanager
def open_sources(src: str | Path, options: ConvertOptions) -> Iterator[tuple[TensorSource, TensorSource | None]]:
    """The model and, if ``options.vae`` names one, the VAE file to bake in, both open."""
    with ExitStack() as stack:
        source = stack.enter_context(open_model(src))
        vae = stack.enter_context(open_model(options.vae)) if options.vae is not None else None
        yield source, vae


@contextmanager
def lora_steps(source: TensorSource, options: ConvertOptions) -> Iterator[list[Callable[[Plan], None]]]:
    """The plan steps of ``options.loras`` (baked in at their weights, the LoRA files open while
    the plan is written) and ``options.lora_format`` (the file itself renamed)."""
    with ExitStack() as stack:
        steps: list[Callable[[Plan], None]] = []
        if options.loras:
            loras = [(stack.enter_context(open_model(p)), w) for p, w in options.loras]
            family = _identify(source)
            steps.append(
                lambda plan: apply_loras(plan, loras, family.family if family else None, options.allow_missing)
            )
        if options.lora_format is not None:
            fmt = options.lora_format
            info = describe_lora(source, read_alphas=False)
            if info is None:
                raise ConversionError(Msg("{path}: not a LoRA: --lora-format has nothing to rename", path=source.path))
            steps.append(lambda plan: plan.metadata.update(apply_lora_format(plan, fmt, info.family)))
        yield steps


# --- names, identity, metadata, yaml ------------------------------------------------------------


def stem_of(path: Path) -> str:
    """The name without its last suffix (``a.b.safetensors`` -> ``a.b``); folders keep their name."""
    path = Path(path)
    return path.name if path.is_dir() else sidecars.stem_of(path.name)


def default_output(src: Path, tags: list[str], fmt: str) -> Path:
    """``<stem>-<what changed>.<ext>`` beside the source."""
    src = Path(src)
    ext = OUTPUT_FORMATS[fmt]
    stem = stem_of(src)
    tags = sorted(tags, key=lambda t: 0 if _is_precision_tag(t) else 1)  # precision first
    if tags:
        return src.parent / f"{stem}-{'-'.join(tags)}{ext}"
    if src.is_dir() or src.suffix.lower() != ext:
        return src.parent / f"{stem}{ext}"
    return src.parent / f"{stem}-converted{ext}"


def _is_precision_tag(tag: str) -> bool:
    """``fp16``, ``fp8_e4m3fn`` or a per-part one such as ``unet_bf16`` / ``te_fp8_e5m2``."""
    return tag in PRECISIONS or tag.partition("_")[2] in PRECISIONS


def _identify(source: TensorSource) -> Identity | None:
    try:
        return identify(source)
    except SdmodelError:
        return None


def _names(ident: Identity | None, prediction: str | None) -> tuple[str | None, str | None, str | None]:
    """(A1111 config, ModelSpec architecture, resolution), with ``prediction`` forced if given."""
    if ident is None:
        return None, None, None
    if prediction is None or ident.kind not in ("checkpoint", "unet"):
        return ident.a1111_config, ident.modelspec_architecture, ident.resolution
    forced = replace(ident, prediction=prediction)
    resolve_names(forced)
    return forced.a1111_config, forced.modelspec_architecture or ident.modelspec_architecture, forced.resolution


def vae_name(source: TensorSource) -> str:
    """Which VAE a model holds: a known name, ``unknown``, or ``none``."""
    try:
        found = identify_vae(source)
    except SdmodelError:
        return "unknown"
    if not found.present:
        return "none"
    return found.name or "unknown"


def build_metadata(
    source: TensorSource,
    out: Path,
    ident: Identity | None,
    *,
    prediction: str | None,
    extract: bool,
    no_meta: bool,
    meta: dict[str, str],
    plan_metadata: dict[str, str | None] | None = None,
    title: str | None = None,
) -> dict[str, str]:
    """The source's metadata kept, ModelSpec added (hash placeholder filled in while writing),
    then the user's ``--meta``. ``no_meta`` starts from nothing and adds only ``--meta``."""
    if no_meta:
        return dict(meta)
    md = dict(source.metadata)
    if extract:  # the source's architecture and title describe the whole model, not this part
        md = {k: v for k, v in md.items() if not k.startswith("modelspec.")}
    _config, arch, resolution = _names(ident, prediction)
    md.setdefault("modelspec.sai_model_spec", "1.0.0")
    md.setdefault("modelspec.implementation", "sgm")
    md.setdefault("modelspec.title", title or stem_of(out))
    if not extract:
        if arch and "modelspec.architecture" not in md:
            md["modelspec.architecture"] = arch
        if resolution and "modelspec.resolution" not in md:
            md["modelspec.resolution"] = resolution
        pred = prediction or (ident.prediction if ident is not None and ident.prediction in ("v", "epsilon") else None)
        if pred:
            md["modelspec.prediction_type"] = pred
    md["modelspec.date"] = _dt.date.today().isoformat()
    md.update(provenance_entries(source))
    md["sdmodel.version"] = __version__
    md[HASH_KEY] = HASH_PLACEHOLDER
    for key, value in (plan_metadata or {}).items():
        if value is None:
            md.pop(key, None)
        else:
            md[key] = value
    md.update(meta)
    return md


def write_yaml(
    source: TensorSource,
    out: Path,
    ident: Identity | None,
    prediction: str | None,
    overwrite: bool,
    notes: list[str | Msg],
) -> Path | None:
    """Copy ``<src stem>.yaml`` beside the output, or write the A1111 config SD2 needs."""
    src_yaml, out_yaml = config_beside(source.path), config_beside(out)
    if src_yaml.is_file():
        if out_yaml.exists() and not overwrite:
            if out_yaml.read_bytes() != src_yaml.read_bytes():
                notes.append(
                    Msg(
                        "yaml: {out} exists and differs from {src}: not replaced (use --overwrite)",
                        out=out_yaml.name,
                        src=src_yaml.name,
                    )
                )
                return None
            return out_yaml
        shutil.copyfile(src_yaml, out_yaml)
        notes.append(Msg("yaml: copied {src} to {out}", src=src_yaml.name, out=out_yaml.name))
        return out_yaml
    if ident is None or not needs_config(ident.kind, ident.family):
        return None
    config, _arch, _res = _names(ident, prediction)
    if config is None:
        notes.append(
            Msg(
                "yaml: A1111 needs a config beside this SD2 model and its prediction type is unknown: rerun with "
                "--prediction v (768-v models, e.g. 2.0-768, 2.1) or --prediction epsilon (512-base models)"
            )
        )
        return None
    if config not in CONFIGS:
        notes.append(
            Msg(
                "yaml: A1111 needs {config} beside this model (from Stability's stablediffusion repo, "
                "configs/), saved as {out}",
                config=config,
                out=out_yaml.name,
            )
        )
        return None
    if out_yaml.exists() and not overwrite:
        notes.append(Msg("yaml: {out} exists: not replaced (use --overwrite)", out=out_yaml.name))
        return None
    out_yaml.write_text(config_yaml(config), encoding="utf-8")
    notes.append(Msg("yaml: wrote {config} as {out}", config=config, out=out_yaml.name))
    return out_yaml


# --- convert -----------------------------------------------------------------------------------


def convert(
    src: str | Path,
    out: str | Path | None = None,
    options: ConvertOptions | None = None,
    *,
    progress: Progress | None = None,
    **changes: Any,
) -> ConvertResult:
    """Convert one model file (or diffusers folder) ``src`` into ``out`` (default: beside the
    source, named after what changed), with ``options`` or their fields as keywords
    (``convert(src, dtype="fp16", ema="drop")``). ``progress(bytes_done, bytes_total)`` reports
    writing. Raises ConversionError / ModelReadError with a one-line message; never touches the
    source and never leaves a partial file under the output name."""
    src = Path(src)
    options = with_changes(options, changes)
    with open_sources(src, options) as (source, vae_source), lora_steps(source, options) as steps:
        hasher = _early_hasher(source, options)
        try:
            return _convert(source, vae_source, steps, src, out, options, hasher, progress)
        finally:
            if hasher is not None:
                hasher.stop()


def _early_hasher(source: TensorSource, options: ConvertOptions) -> SourceHasher | None:
    """The source's hashes, started before the plan is made when the output will record them."""
    if options.dry_run or options.no_meta or options.format not in ("safetensors", "gguf"):
        return None
    return start_source_hasher(source)


def _convert(
    source: TensorSource,
    vae_source: TensorSource | None,
    steps: list[Callable[[Plan], None]],
    src: Path,
    out: str | Path | None,
    options: ConvertOptions,
    hasher: SourceHasher | None,
    progress: Progress | None,
) -> ConvertResult:
    """convert() with its sources open and the source's hasher running (if any)."""
    plan = build_plan(source, options, vae=vae_source, steps=steps)
    out_path = Path(out) if out is not None else default_output(src, plan.tags, options.format)
    ident = _identify(source)
    notes = list(plan.notes)
    before = vae_name(source)
    if options.part is not None:
        after = before if options.part == "vae" else "none"
    elif options.remove_vae:
        after = "none"
    elif vae_source is not None:
        after = vae_name(vae_source)
    else:
        after = before
    if options.format in ("safetensors", "gguf"):
        metadata = build_metadata(
            plan.source,  # a dequantizing view leaves out what describes the quantization
            out_path,
            ident,
            prediction=options.prediction,
            extract=options.part is not None,
            no_meta=options.no_meta,
            meta=options.meta,
            plan_metadata=plan.metadata,
            title=options.title,
        )
        if options.format == "gguf" and not options.no_meta:
            metadata.pop(HASH_KEY, None)  # GGUF records no data hash
    else:
        metadata = {}
        if source.metadata or options.meta:
            notes.append(Msg("metadata: not written (a PyTorch checkpoint has no place for it)"))
    result = ConvertResult(
        source=src,
        output=out_path,
        format=options.format,
        dry_run=options.dry_run,
        parts=plan.summary(),
        dropped=plan.dropped_dicts(),
        notes=notes,
        bytes_before=plan.in_bytes,
        bytes_after=plan.out_bytes,
        tensors=plan.stored_table() if plan.reasons or plan.format_meta else [],
        metadata=metadata,
        vae_before=before,
        vae_after=after,
    )
    if options.dry_run:
        try:
            check_target(out_path, [s.path for s in plan.sources.values()], options.overwrite)
        except ConversionError as e:
            notes.append(Msg("would fail: {error}", error=e.message))
        return result
    keys = pending_hashes(metadata)
    written = execute(
        plan,
        out_path,
        fmt=options.format,
        metadata=metadata or None,
        overwrite=options.overwrite,
        verify=options.verify,
        progress=progress,
        late=functools.partial(hasher.values, keys) if hasher is not None and keys else None,
    )
    result.write = written
    result.metadata = dict(metadata, **written.filled)
    if written.sha256_data and metadata:
        result.metadata[HASH_KEY] = "0x" + written.sha256_data
    for name, n in written.clamped.items():
        notes.append(
            msg_n(
                "fp8: clamped {n} value of {name} to the format's range",
                "fp8: clamped {n} values of {name} to the format's range",
                n,
                n=n,
                name=name,
            )
        )
    if options.part is None:
        result.yaml = write_yaml(source, out_path, ident, options.prediction, options.overwrite, notes)
    return result


def extract(
    src: str | Path,
    part: str,
    out: str | Path | None = None,
    options: ConvertOptions | None = None,
    *,
    progress: Progress | None = None,
    **changes: Any,
) -> ConvertResult:
    """A standalone file of one part (vae, unet, text_encoder, text_encoder_2); see plan.apply_extract."""
    return convert(src, out, with_changes(options, {**changes, "part": part}), progress=progress)


# --- folders -----------------------------------------------------------------------------------


def _is_our_output(path: Path) -> bool:
    if path.name.endswith(TEMP_SUFFIX):
        return True
    if path.is_file() and sniff(path) == "safetensors":
        try:
            with SafetensorsSource(path) as s:
                return SOURCE_KEY in s.metadata
        except SdmodelError:
            return False
    return False


def convert_tree(
    root: str | Path,
    out_dir: str | Path | None = None,
    options: ConvertOptions | None = None,
    *,
    on_file: Callable[[Path, int, int], None] | None = None,
    file_progress: Callable[[Path], Progress | None] | None = None,
    **changes: Any,
) -> list[ConvertResult]:
    """Convert every model under ``root`` (recursively), skipping outputs of earlier runs (our
    metadata marker or a name this run would write). ``out_dir`` mirrors the tree elsewhere.
    ``on_file(path, index, count)`` announces each file; errors are recorded per file."""
    options = with_changes(options, changes)
    root = Path(root)
    if not root.is_dir():
        raise ConversionError(Msg("{root}: not a directory", root=root))
    files = [p for p in iter_model_files([root]) if p != root]
    fmt, dry = options.format, options.dry_run
    results: list[ConvertResult] = []
    planned: dict[Path, Path | SdmodelError] = {}
    for p in files:
        if _is_our_output(p):
            continue
        try:
            planned[p] = default_output(p, _tags_for(p, options), fmt)
        except SdmodelError as e:
            planned[p] = e
    outputs = {v for v in planned.values() if isinstance(v, Path)}
    todo = [p for p in planned if p not in outputs]
    skipped = set(files) - set(todo)
    for p in files:
        if p in skipped:
            results.append(ConvertResult(p, None, fmt, dry, skipped=Msg("output of an earlier run")))
    for i, p in enumerate(todo):
        if on_file is not None:
            on_file(p, i, len(todo))
        r = ConvertResult(p, None, fmt, dry)
        target = planned[p]
        if isinstance(target, SdmodelError):
            r.error = target.message
            results.append(r)
            continue
        out = None
        if out_dir is not None:
            out_sub = Path(out_dir) / p.relative_to(root).parent
            out_sub.mkdir(parents=True, exist_ok=True)
            out = out_sub / target.name
        try:
            progress = file_progress(p) if file_progress is not None else None
            results.append(convert(p, out, options, progress=progress))
        except OutputExistsError as e:
            r.skipped = e.message
            results.append(r)
        except SdmodelError as e:
            r.error = e.message
            results.append(r)
    return results


def _tags_for(path: Path, options: ConvertOptions) -> list[str]:
    """The tags a conversion of ``path`` would add to its name (builds the plan, reads no data
    beyond CLIP position ids)."""
    with open_sources(path, options) as (source, vae), lora_steps(source, options) as steps:
        return build_plan(source, options, vae=vae, steps=steps).tags
