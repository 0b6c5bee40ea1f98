"""A conversion is a plan: for every output tensor, where it comes from, its name and its dtype.

``initial_plan`` keeps every tensor of a source as it is; each option of ``sdmodel convert`` is a
step, a function that changes the plan (drops, renames, replaces, casts). ``engine.execute`` writes
any plan in one streaming pass; ``Plan.table`` is what ``--dry-run`` shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.dtypes import FP8_DTYPES, ITEMSIZE, PRECISION_NAMES, PRECISIONS, cast_target, is_float
from sdmodel.errors import ConversionError
from sdmodel.formats.base import DictSource, TensorInfo, TensorSource
from sdmodel.formats.diffusers_map import vae_table_for
from sdmodel.formats.gguf_writer import KVValue
from sdmodel.formats.writers import OUTPUT_FORMATS
from sdmodel.i18n import Msg, OneOf, Size, msg_n
from sdmodel.lora.keys import parse as parse_lora_keys
from sdmodel.lora.names import LORA_FORMATS
from sdmodel.parts import (
    CLIP_L_POSITION_IDS,
    EMA_PREFIX,
    EMA_SCALARS,
    PART_PREFIXES,
    SCHEDULE_KEYS,
    UNET_PREFIX,
    ema_key,
    junk_reason,
    part_of,
)
from sdmodel.quant import fp8_quantize, gguf_policy
from sdmodel.quant.dequant import OUT_DTYPES
from sdmodel.quant.ggml_quantize import QuantType, row_bytes
from sdmodel.quant.storage import QuantLayout, analyze, describe, label_of
from sdmodel.quant.view import DequantizedSource
from sdmodel.vocab import (
    EMA_MODES,
    EXTRACT_PARTS,
    PREDICTIONS,
    EmaMode,
    ExtractPart,
    OutputFormat,
    Precision,
    Prediction,
)

MAIN = "model"  # name of the main source in Plan.sources
VAE_SOURCE = "vae"  # name of a VAE file baked in (apply_vae)

TE_PARTS = ("text_encoder", "text_encoder_2", "text_encoder_3")
VAE_PREFIXES = PART_PREFIXES["vae"]


@dataclass
class Step:
    """One output tensor: read ``name`` from ``plan.sources[source]``, optionally ``fix`` the values,
    cast to ``out_dtype`` and write it as ``out`` with ``shape``."""

    out: str
    source: str
    name: str
    dtype: str
    shape: tuple[int, ...]
    out_dtype: str
    part: str
    fix: Callable[[np.ndarray], np.ndarray] | None = None
    fix_bytes: int = 0  # memory the fix holds beyond the read and the output (the engine's budget counts it)
    pinned: bool = False  # dtype decided by a step (CLIP ids, markers): dtype options leave it alone
    stored_as: str | None = None  # the quantized storage this weight is dequantized from
    encoding: QuantType | None = None  # GGML type the sink stores the cast values as (GGUF)

    @property
    def action(self) -> str:
        """keep, cast, clamp-cast, rename, replace, fix, dequantize, quantize or store (the dry-run table)."""
        if self.encoding is not None:
            return "quantize" if self.encoding not in ("F32", "F16", "BF16") else "store"
        if self.fix is not None:
            return "fix"
        if self.stored_as is not None:
            return "dequantize"
        if self.source != MAIN:
            return "replace"
        if self.out_dtype in FP8_DTYPES and self.out_dtype != self.dtype:
            return "clamp-cast"
        if self.out_dtype != self.dtype:
            return "cast"
        if self.out != self.name:
            return "rename"
        return "keep"

    @property
    def numel(self) -> int:
        return self.out_info.numel

    @property
    def in_bytes(self) -> int:
        return TensorInfo(self.name, self.dtype, self.shape).nbytes

    @property
    def out_bytes(self) -> int:
        """Bytes in the output file (quantized blocks when the step has an encoding)."""
        if self.encoding is not None:
            numel = math.prod(self.shape)
            return row_bytes(self.encoding, self.shape[-1]) * (numel // self.shape[-1]) if numel else 0
        return self.out_info.nbytes

    @property
    def out_info(self) -> TensorInfo:
        """The tensor as the engine hands it to the sink (after the cast)."""
        return TensorInfo(self.out, self.out_dtype, self.shape)

    @property
    def stored_dtype(self) -> str:
        """The dtype (or GGML type) the output file records for the tensor."""
        return self.encoding or self.out_dtype


@dataclass
class Drop:
    """A source tensor left out of the output, and why (the dry run lists them)."""

    name: str
    part: str
    dtype: str
    shape: tuple[int, ...]
    reason: Msg

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * ITEMSIZE[self.dtype]


@dataclass
class Plan:
    """The output tensors (``steps``, in source order), what was dropped, the notes for the user
    and the tags of the default output name. ``sources`` are the open files the steps read."""

    sources: dict[str, TensorSource]
    steps: list[Step] = field(default_factory=list)
    dropped: list[Drop] = field(default_factory=list)
    notes: list[str | Msg] = field(default_factory=list)  # Msg: translated where shown
    tags: list[str] = field(default_factory=list)  # what changed, for the default output name
    stored: TensorSource | None = None  # the file as stored, when the steps read a dequantizing view
    format_meta: dict[str, KVValue] = field(default_factory=dict)  # typed key-values a step decided (GGUF)
    reasons: dict[str, Msg] = field(default_factory=dict)  # output name -> why it is stored so (dry run)
    metadata: dict[str, str | None] = field(default_factory=dict)  # entries the output needs (None removes)
    parts: dict[str, str] = field(default_factory=dict)  # source tensor -> part, where not part_of(name)

    @property
    def source(self) -> TensorSource:
        return self.sources[MAIN]

    @property
    def file(self) -> TensorSource:
        """The main file as stored (the source itself, or what a dequantizing view reads)."""
        return self.stored or self.source

    def drop(self, step: Step, reason: Msg) -> None:
        self.dropped.append(Drop(step.name, step.part, step.dtype, step.shape, reason))

    def keep_only(self, keep: Callable[[Step], bool], reason: Callable[[Step], Msg]) -> list[Step]:
        """Drop the steps ``keep`` rejects (with ``reason``); returns the dropped steps."""
        kept: list[Step] = []
        gone: list[Step] = []
        for s in self.steps:
            (kept if keep(s) else gone).append(s)
        for s in gone:
            self.drop(s, reason(s))
        self.steps = kept
        return gone

    def tag(self, text: str) -> None:
        if text not in self.tags:
            self.tags.append(text)

    @property
    def in_bytes(self) -> int:
        return sum(t.nbytes for t in self.file.tensors.values())

    @property
    def out_bytes(self) -> int:
        return sum(s.out_bytes for s in self.steps)

    def summary(self) -> list[dict]:
        """Per part: tensors, dtypes and bytes before -> after, and how many were dropped."""
        rows: dict[str, dict] = {}

        def row(part: str) -> dict:
            return rows.setdefault(
                part,
                {
                    "part": part,
                    "tensors_before": 0,
                    "tensors_after": 0,
                    "bytes_before": 0,
                    "bytes_after": 0,
                    "dtypes_before": {},
                    "dtypes_after": {},
                    "dropped": 0,
                    "actions": {},
                },
            )

        for name, info in self.file.tensors.items():
            r = row(self.parts.get(name) or part_of(name))
            r["tensors_before"] += 1
            r["bytes_before"] += info.nbytes
            r["dtypes_before"][info.dtype] = r["dtypes_before"].get(info.dtype, 0) + 1
        for s in self.steps:
            r = row(s.part)
            r["tensors_after"] += 1
            r["bytes_after"] += s.out_bytes
            r["dtypes_after"][s.stored_dtype] = r["dtypes_after"].get(s.stored_dtype, 0) + 1
            r["actions"][s.action] = r["actions"].get(s.action, 0) + 1
        for d in self.dropped:
            if d.name in self.file.tensors:
                row(d.part)["dropped"] += 1
        return list(rows.values())

    def stored_table(self) -> list[dict]:
        """Per output tensor: name, stored type, shape, bytes and the reason of its type (a Msg or
        None; ConvertResult.to_dict gives its English form)."""
        return [
            {
                "name": s.out,
                "type": s.stored_dtype,
                "shape": list(s.shape),
                "bytes": s.out_bytes,
                "reason": self.reasons.get(s.out),
            }
            for s in self.steps
        ]

    def dropped_dicts(self) -> list[dict]:
        """``reason`` stays a Msg where it is one (ConvertResult.to_dict gives its English form)."""
        return [{"name": d.name, "part": d.part, "reason": d.reason, "bytes": d.nbytes} for d in self.dropped]


def initial_plan(source: TensorSource) -> Plan:
    """Every tensor of ``source`` kept as it is."""
    plan = Plan({MAIN: source})
    if _is_lora_file(source):
        plan.parts = dict.fromkeys(source.tensors, "lora")
    for name, info in source.tensors.items():
        part = plan.parts.get(name) or part_of(name)
        plan.steps.append(Step(name, MAIN, name, info.dtype, info.shape, info.dtype, part, pinned=part == "marker"))
    return plan


# --- quantized storage -----------------------------------------------------------------------


def _is_lora_file(source: TensorSource) -> bool:
    """Most tensors belong to LoRA targets: the file is a LoRA, so ``lora_unet_...`` names are its
    weights, not the leftovers ``--prune`` drops from a checkpoint."""
    keys = parse_lora_keys(source.tensors)
    return bool(keys.targets) and 2 * len(keys.other) < len(source.tensors)


def _dtype_part(part: str) -> str:
    """The --unet/--vae/--te-dtype a tensor of ``part`` follows."""
    return "te" if part in TE_PARTS else ("unet" if part == "ema" else part)


def dequantized_plan(
    source: TensorSource, layout: QuantLayout, default: str | None, per_part: dict[str, str | None]
) -> Plan:
    """The plan of a file with quantized storage: every weight read through its exact
    dequantization (``sdmodel.quant``) to the precision asked for, scales, quantization state and
    markers consumed. The only thing a conversion does with quantized storage: without a float
    precision to dequantize to (fp32, bf16, fp16), it refuses."""
    what = describe(source, layout, source.tensors).label
    targets = {
        per_part.get(_dtype_part(part_of(q.name))) or default for q in layout.tensors.values() if not q.unsupported
    }
    if None in targets or not targets:
        raise ConversionError(
            Msg(
                "{path}: holds quantized weights ({what}): sdmodel convert only dequantizes them, with --dtype fp32, bf16 or fp16 (keep the file as it is otherwise)",
                path=source.path,
                what=what,
            )
        )
    if not targets <= set(OUT_DTYPES):
        raise ConversionError(
            Msg(
                "{path}: holds quantized weights ({what}): re-quantizing them to fp8 would round twice; dequantize with --dtype bf16 (or convert the original release)",
                path=source.path,
                what=what,
            )
        )
    if len(targets) > 1:
        raise ConversionError(
            Msg("{path}: holds quantized weights ({what}): give them one precision", path=source.path, what=what)
        )
    (target,) = targets
    view = DequantizedSource(source, str(target), layout)
    plan = initial_plan(view)
    plan.stored = source
    for s in plan.steps:
        q = layout.tensors.get(view.inner_names[s.name])
        if q is not None:
            s.stored_as = label_of(q)
    for name in sorted(layout.consumed):
        info = source.tensors[name]
        why = (
            Msg("marker of the quantized storage: consumed by dequantizing")
            if name in layout.markers
            else Msg("scale/state of a quantized weight: consumed by dequantizing")
        )
        plan.dropped.append(Drop(name, part_of(name), info.dtype, info.shape, why))
    plan.notes.append(
        Msg(
            "dequantize: {weights} weights stored as {what} -> {precision} (the reference loader's math); "
            "{consumed} scale/state/marker tensors consumed",
            weights=len(layout.tensors),
            what=what,
            precision=PRECISION_NAMES[str(target)],
            consumed=len(layout.consumed),
        )
    )
    plan.tag("dequant")
    return plan


# --- EMA ---------------------------------------------------------------------------------------


def apply_ema(plan: Plan, mode: str, allow_partial: bool = False) -> None:
    """``keep``: nothing. ``drop``: remove ``model_ema.*``. ``only``: the EMA values under the UNet
    names, and an error if the file has no EMA or only part of it (unless ``allow_partial``)."""
    if mode == "keep":
        return
    if mode not in ("drop", "only"):
        raise ConversionError(Msg("--ema must be keep, drop or only, not {mode!r}", mode=mode))
    src = plan.source
    ema_steps = [s for s in plan.steps if s.name.startswith(EMA_PREFIX)]
    if mode == "drop":
        if not ema_steps:
            plan.notes.append(Msg("EMA: none in the file, nothing to drop"))
            return
        plan.keep_only(lambda s: not s.name.startswith(EMA_PREFIX), lambda s: Msg("EMA weights (--ema drop)"))
        n = len(ema_steps)
        plan.notes.append(msg_n("EMA: dropped {n} tensor", "EMA: dropped {n} tensors", n, n=n))
        plan.tag("noema")
        return
    unet = [s for s in plan.steps if s.name.startswith(UNET_PREFIX) and s.part == "unet"]
    if not unet:
        raise ConversionError(
            Msg("{path}: no UNet (model.diffusion_model.*): --ema only has nothing to do", path=src.path)
        )
    covered = [s for s in unet if ema_key(s.name) in src.tensors]
    if not covered:
        raise ConversionError(
            Msg(
                "{path}: the file has no EMA weights (model_ema.*): cannot make an EMA-only file (copying the normal weights would only rename them)",
                path=src.path,
            )
        )
    if len(covered) < len(unet) and not allow_partial:
        raise ConversionError(
            Msg(
                "{path}: EMA covers only {covered_count} of {unet_count} UNet tensors; use --allow-partial-ema to keep the normal weights for the others",
                path=src.path,
                covered_count=len(covered),
                unet_count=len(unet),
            )
        )
    for s in covered:
        info = src.tensors[ema_key(s.name)]
        if info.shape != s.shape:
            raise ConversionError(
                Msg(
                    "{path}: EMA tensor {name} has shape {shape}, UNet {name2} has {shape2}",
                    path=src.path,
                    name=info.name,
                    shape=list(info.shape),
                    name2=s.name,
                    shape2=list(s.shape),
                )
            )
        s.name, s.dtype, s.out_dtype = info.name, info.dtype, info.dtype
    plan.keep_only(
        lambda s: not s.name.startswith(EMA_PREFIX) or s.out.startswith(UNET_PREFIX),
        lambda s: Msg("EMA bookkeeping") if s.name in EMA_SCALARS else Msg("EMA weights (now under the UNet names)"),
    )
    if len(covered) < len(unet):
        msg = Msg(
            "EMA: the UNet is the EMA set ({covered} of {total} tensors); {rest} UNet tensors keep their "
            "normal weights (--allow-partial-ema)",
            covered=len(covered),
            total=len(unet),
            rest=len(unet) - len(covered),
        )
    else:
        msg = Msg("EMA: the UNet is the EMA set ({covered} of {total} tensors)", covered=len(covered), total=len(unet))
    plan.notes.append(msg)
    plan.tag("emaonly")


# --- junk and user drops -----------------------------------------------------------------------


def apply_prune(plan: Plan) -> None:
    """Drop known junk (parts.JUNK_PREFIXES), one report line per group. Markers are never junk, nor
    are a LoRA file's own weights (their part is ``lora``)."""
    gone = plan.keep_only(
        lambda s: s.part != "junk",
        lambda s: Msg("junk: {why}", why=Msg(junk_reason(s.name) or "")),
    )
    groups: dict[str, list[Step]] = {}
    for s in gone:
        groups.setdefault(junk_reason(s.name) or "", []).append(s)
    for why, steps in groups.items():
        size = sum(s.in_bytes for s in steps)
        plan.notes.append(
            msg_n(
                "prune: dropped {n} tensor ({size}): {why}",
                "prune: dropped {n} tensors ({size}): {why}",
                len(steps),
                n=len(steps),
                size=Size(size),
                why=Msg(why),
            )
        )
    if not gone:
        plan.notes.append(Msg("prune: no known junk found"))
    unknown = [s.name for s in plan.steps if s.part == "other"]
    if unknown:
        plan.notes.append(
            msg_n(
                "prune: {n} unknown key kept (use --drop PREFIX to remove it): {example}",
                "prune: {n} unknown keys kept (use --drop PREFIX to remove them), e.g. {example}",
                len(unknown),
                n=len(unknown),
                example=unknown[0],
            )
        )
    if gone:
        plan.tag("pruned")


def apply_drop(plan: Plan, prefixes: Iterable[str]) -> None:
    """Drop every tensor whose name starts with one of ``prefixes``, except marker tensors."""
    prefixes = tuple(p for p in prefixes if p)
    if not prefixes:
        return
    markers = [s.name for s in plan.steps if s.part == "marker" and s.name.startswith(prefixes)]
    gone = plan.keep_only(
        lambda s: s.part == "marker" or not s.name.startswith(prefixes),
        lambda s: Msg("--drop {prefix}", prefix=next(p for p in prefixes if s.name.startswith(p))),
    )
    for p in prefixes:
        n = sum(1 for s in gone if s.name.startswith(p))
        if n:
            plan.notes.append(msg_n("drop {prefix}: {n} tensor", "drop {prefix}: {n} tensors", n, prefix=p, n=n))
        else:
            plan.notes.append(Msg("drop {prefix}: no tensor has this prefix", prefix=p))
    if markers:
        plan.notes.append(Msg("kept marker tensors loaders read: {names}", names=", ".join(markers)))
    if gone:
        plan.tag("dropped")


# --- CLIP position ids -------------------------------------------------------------------------


def loader_position_ids(values: np.ndarray) -> np.ndarray:
    """What a loader sees: int64, float values truncated toward zero (A1111 casts with .to(int64))."""
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    return np.trunc(values.astype(np.float64)).astype(np.int64)


def apply_clip(plan: Plan, fix: bool = False) -> None:
    """Keep CLIP-L position ids as loaders see them (int64, truncated), or write 0..n-1 with ``fix``.
    Never adds the key (transformers >= 4.31 files and OpenCLIP lack it, which is normal)."""
    src = plan.source
    for s in plan.steps:
        if s.name not in CLIP_L_POSITION_IDS or s.source != MAIN:
            continue
        s.out_dtype, s.pinned = "I64", True
        if not src.read_data:  # a remote file read without --read-data: sizes are known, values not
            continue
        seen = loader_position_ids(src.read(s.name))
        want = np.arange(seen.size, dtype=np.int64).reshape(seen.shape)
        bad = np.flatnonzero(seen.reshape(-1) != want.reshape(-1)).tolist()
        if fix and bad:
            s.fix = lambda _a, v=want: v
            plan.notes.append(
                msg_n(
                    "CLIP: fixed position ids at {n} position {positions} ({key})",
                    "CLIP: fixed position ids at {n} positions {positions} ({key})",
                    len(bad),
                    n=len(bad),
                    positions=_positions(bad),
                    key=s.name,
                )
            )
            plan.tag("clipfix")
        elif bad:
            s.fix = lambda _a, v=seen: v
            plan.notes.append(
                msg_n(
                    "CLIP: position ids broken at {n} position {positions}: kept as loaders see them "
                    "(use --fix-clip to write 0..76)",
                    "CLIP: position ids broken at {n} positions {positions}: kept as loaders see them "
                    "(use --fix-clip to write 0..76)",
                    len(bad),
                    n=len(bad),
                    positions=_positions(bad),
                )
            )
        elif s.dtype != "I64":
            s.fix = lambda _a, v=seen: v
            plan.notes.append(
                Msg("CLIP: position ids stored as {dtype}: written as int64 (values are correct)", dtype=s.dtype)
            )
        elif fix:
            plan.notes.append(Msg("CLIP: position ids are correct, nothing to fix"))


def _positions(idx: list[int]) -> str:
    return "[" + ", ".join(map(str, idx[:10])) + (", ...]" if len(idx) > 10 else "]")


# --- VAE ---------------------------------------------------------------------------------------


def vae_prefix_of(plan: Plan) -> str | None:
    """The prefix the checkpoint's VAE uses, or None if it has no VAE."""
    for s in plan.steps:
        if s.part == "vae":
            return next(p for p in VAE_PREFIXES if s.name.startswith(p))
    return None


def standalone_vae_names(vae: TensorSource) -> dict[str, str]:
    """Bare LDM VAE name (``encoder.conv_in.weight``) -> name in the VAE file.

    Accepts keys with or without ``first_stage_model.``/``vae.`` and a diffusers-layout VAE (via
    ``sdmodel.formats.diffusers_map``). Training leftovers (``loss.*``, ``model_ema.*``) are ignored.
    """
    names = list(vae.tensors)
    diffusers = any(n.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for n in names)
    mapping: dict[str, str] = {}
    if diffusers:
        table = vae_table_for(names)  # the attention linears become 1x1 convs by a reshape (apply_vae)
        for n in names:
            ldm = table.to_ldm(n)
            if ldm is not None:
                mapping[ldm] = n
        return mapping
    for n in names:
        bare = n
        for p in VAE_PREFIXES:
            if n.startswith(p):
                bare = n[len(p) :]
                break
        if bare.startswith(("loss.", EMA_PREFIX)):
            continue
        mapping[bare] = n
    return mapping


def _reshape_ok(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Same values in another shape: only trailing 1s differ (linear [o,i] vs 1x1 conv [o,i,1,1])."""

    def strip(s: tuple[int, ...]) -> tuple[int, ...]:
        while s and s[-1] == 1:
            s = s[:-1]
        return s

    return strip(tuple(a)) == strip(tuple(b))


def apply_vae(plan: Plan, vae: TensorSource) -> None:
    """Bake the VAE of ``vae`` into the checkpoint (replacing the one inside). Names and shapes must
    match the checkpoint's VAE; the replaced tensors keep the checkpoint's dtype."""
    mapping = standalone_vae_names(vae)
    if not any(k.startswith(("encoder.", "decoder.")) for k in mapping):
        raise ConversionError(Msg("{path}: not a VAE (no encoder.*/decoder.* tensors)", path=vae.path))
    plan.sources[VAE_SOURCE] = vae
    prefix = vae_prefix_of(plan)
    if prefix is None:
        if not any(s.part == "unet" for s in plan.steps):
            raise ConversionError(
                Msg("{path}: has neither a VAE nor a UNet: refusing to bake a VAE into it", path=plan.source.path)
            )
        prefix = VAE_PREFIXES[0]
        for bare, name in mapping.items():
            info = vae.tensors[name]
            plan.steps.append(Step(prefix + bare, VAE_SOURCE, name, info.dtype, info.shape, info.dtype, "vae"))
        plan.notes.append(
            Msg("VAE: baked {n} tensors from {file} (the checkpoint had none)", n=len(mapping), file=vae.path.name)
        )
        plan.tag("vae")
        return
    inside = {s.name[len(prefix) :]: s for s in plan.steps if s.part == "vae" and s.name.startswith(prefix)}
    extra = sorted(set(mapping) - set(inside))
    missing = sorted(set(inside) - set(mapping))
    if extra or missing:
        lacks = (
            Msg("{count} checkpoint VAE tensors missing from it (e.g. {name})", count=len(missing), name=missing[0])
            if missing
            else None
        )
        adds = (
            Msg("{count} tensors the checkpoint's VAE lacks (e.g. {name})", count=len(extra), name=extra[0])
            if extra
            else None
        )
        what = Msg("{first}; {second}", first=lacks, second=adds) if lacks and adds else lacks or adds
        raise ConversionError(Msg("{path}: VAE does not match the checkpoint's: {what}", path=vae.path, what=what))
    for bare, s in inside.items():
        info = vae.tensors[mapping[bare]]
        if not _reshape_ok(info.shape, s.shape):
            raise ConversionError(
                Msg(
                    "{path}: VAE tensor {bare} has shape {shape}, the checkpoint's has {shape2}",
                    path=vae.path,
                    bare=bare,
                    shape=list(info.shape),
                    shape2=list(s.shape),
                )
            )
    for bare, s in inside.items():
        info = vae.tensors[mapping[bare]]
        s.source, s.name, s.dtype = VAE_SOURCE, info.name, info.dtype
    plan.notes.append(Msg("VAE: replaced {n} tensors with {file}", n=len(inside), file=vae.path.name))
    plan.tag("vae")


def apply_remove_vae(plan: Plan) -> None:
    """Drop every VAE tensor (--remove-vae)."""
    gone = plan.keep_only(lambda s: s.part != "vae", lambda s: Msg("VAE (--remove-vae)"))
    if gone:
        plan.notes.append(msg_n("VAE: removed {n} tensor", "VAE: removed {n} tensors", len(gone), n=len(gone)))
    else:
        plan.notes.append(Msg("VAE: none in the file"))
    if gone:
        plan.tag("novae")


# --- precision ---------------------------------------------------------------------------------


def parse_precision(name: str | None) -> str | None:
    """A precision as the CLI names it (``fp16``) -> its safetensors dtype (``F16``)."""
    if name is None:
        return None
    try:
        return PRECISIONS[name]
    except KeyError:
        raise ConversionError(
            Msg("unknown precision {name!r} (use one of {precisions})", name=name, precisions=", ".join(PRECISIONS))
        ) from None


def apply_dtypes(plan: Plan, default: str | None = None, per_part: dict[str, str | None] | None = None) -> None:
    """Cast floating tensors: ``default`` for all, ``per_part`` (unet/vae/te) wins for its part.

    Integer tensors, markers and pinned tensors stay; noise-schedule buffers stay fp32 (only an
    explicit fp32 up-casts them); fp8 applies to tensors with 2 or more dimensions and puts 1-D
    tensors in fp16.
    """
    chosen = {k: v for k, v in (per_part or {}).items() if v}
    if not default and not chosen:
        return
    for s in plan.steps:
        if s.pinned or not is_float(s.out_dtype):
            continue
        part = "te" if s.part in TE_PARTS else ("unet" if s.part == "ema" else s.part)
        target = chosen.get(part, default)
        if not target:
            continue
        if s.name in SCHEDULE_KEYS and s.part == "schedule":
            if target == "F32" and s.out_dtype != "F32":
                s.out_dtype = "F32"
            continue
        s.out_dtype = cast_target(target, s.out_dtype, len(s.shape))
    if default:
        plan.tag(PRECISION_NAMES[default])
    for part, dt in sorted(chosen.items()):
        plan.tag(f"{part}_{PRECISION_NAMES[dt]}")


# --- extract -----------------------------------------------------------------------------------

_OLD_CLIP = ("embeddings.", "encoder.", "final_layer_norm.")


def extract_name(name: str, part: str) -> str:
    """Name of a tensor in a standalone file of its part (see ``apply_extract``)."""
    if part == "unet":
        return name[len(UNET_PREFIX) :] if name.startswith(UNET_PREFIX) else name
    prefix = next((p for p in PART_PREFIXES[part] if name.startswith(p)), "")
    rest = name[len(prefix) :]
    if part == "vae":
        return rest
    if rest.startswith("transformer.text_model."):
        return rest[len("transformer.") :]
    if rest.startswith("transformer.") and rest[len("transformer.") :].startswith(_OLD_CLIP):
        return "text_model." + rest[len("transformer.") :]
    if rest.startswith("model."):
        return rest[len("model.") :]
    return rest


def apply_extract(plan: Plan, part: str) -> None:
    """Keep one part under the names standalone loaders use: VAE without ``first_stage_model.``,
    UNet without ``model.diffusion_model.`` (ComfyUI diffusion_models), CLIP text encoders as
    transformers ``text_model.*``, OpenCLIP (SD2 ViT-H, SDXL bigG) under their OpenCLIP names."""
    if part not in EXTRACT_PARTS:
        raise ConversionError(
            Msg(
                "--part must be one of {extract_parts}, not {part!r}", extract_parts=", ".join(EXTRACT_PARTS), part=part
            )
        )

    def belongs(s: Step) -> bool:
        if s.part == part:
            return True
        return part == "unet" and s.part == "marker" and s.out.startswith(UNET_PREFIX)

    plan.keep_only(belongs, lambda s: Msg("not part of the {part}", part=part))
    if not plan.steps:
        raise ConversionError(Msg("{path}: has no {part} to extract", path=plan.source.path, part=part))
    seen: dict[str, str] = {}
    for s in plan.steps:
        new = extract_name(s.out, part)
        if new in seen:
            raise ConversionError(
                Msg(
                    "{path}: {out} and {seen} would both be written as {new}",
                    path=plan.source.path,
                    out=s.out,
                    seen=seen[new],
                    new=new,
                )
            )
        seen[new] = s.out
        s.out = new
    n = len(plan.steps)
    plan.notes.append(msg_n("extract: {n} {part} tensor", "extract: {n} {part} tensors", n, n=n, part=part))
    plan.tags = [t for t in plan.tags if t != "noema"]  # every extract leaves the EMA behind
    plan.tag({"text_encoder": "te1", "text_encoder_2": "te2"}.get(part, part))


# --- quantized outputs (quant/) ----------------------------------------------------------------


def apply_gguf(plan: Plan, quant: str) -> None:
    """The diffusion model as ComfyUI-GGUF loads it (quant/gguf_policy.py): GGUF names, each
    tensor's GGML type (the engine's sink quantizes), rows reshaped where convert.py does; the
    other parts of a full checkpoint are left out (ComfyUI-GGUF loads the diffusion model alone)."""
    if quant not in gguf_policy.FILE_TYPES:
        raise ConversionError(
            Msg(
                "unknown GGUF quantization {quant!r}; known: {gguf_quants}",
                quant=quant,
                gguf_quants=", ".join(gguf_policy.GGUF_QUANTS),
            )
        )
    tensors = {s.out: (s.shape, s.out_dtype) for s in plan.steps}
    names = gguf_policy.strip_prefix(list(tensors))
    arch = gguf_policy.detect_architecture(list(names.values()))
    choices = {c.source: c for c in gguf_policy.choose_types(arch, {k: tensors[k] for k in names}, quant)}
    kept = []
    for s in plan.steps:
        c = choices.get(s.out)
        if c is None:
            if s.out in names:
                why = Msg("ignored by ComfyUI-GGUF's convert.py")
            else:
                why = Msg("not part of the diffusion model")
            plan.drop(s, why)
            continue
        s.out, s.shape, s.encoding = c.name, c.shape, c.qtype
        if c.reason is not None:
            plan.reasons[c.name] = c.reason
        if c.orig_shape is not None:
            plan.format_meta[f"comfy.gguf.orig_shape.{c.name}"] = c.orig_shape
        kept.append(s)
    plan.steps = kept
    _, file_type = gguf_policy.FILE_TYPES[quant]
    plan.format_meta.update(
        {"general.architecture": arch.name, "general.quantization_version": 2, "general.file_type": file_type}
    )
    plan.tag(quant)
    plan.notes.append(
        Msg(
            "gguf: architecture {arch}, {quant} (ComfyUI-GGUF's rules: README, GGUF quants)",
            arch=arch.name,
            quant=quant,
        )
    )


FP8_SCALES = "fp8-scales"  # the source of the computed scales (apply_fp8_scaled)
FP8_CONSTANTS = "fp8-constants"  # comfy_quant tensors and the legacy marker


def apply_fp8_scaled(plan: Plan, fmt: str, legacy: bool) -> None:
    """Scaled fp8 as ComfyUI loads it (quant/fp8_quantize.py): the diffusion model's Linear
    weights quantized with a float32 scale each, plus a ``comfy_quant`` tensor per layer (or, with
    ``legacy``, ``scale_weight`` per layer and one ``scaled_fp8`` marker); the family's sensitive
    layers and every other part stay as they are."""
    if fmt not in fp8_quantize.FP8_FORMATS:
        raise ConversionError(
            Msg(
                "unknown scaled fp8 format {fmt!r}; known: {fp8_formats}",
                fmt=fmt,
                fp8_formats=", ".join(fp8_quantize.FP8_FORMATS),
            )
        )
    tensors = {s.out: (s.shape, s.out_dtype) for s in plan.steps}
    names = gguf_policy.strip_prefix(list(tensors))
    arch = gguf_policy.detect_architecture(list(names.values()))
    keep = arch.keep_containing + tuple(f"{n}." for n in arch.keep_named)
    stripped = {names[k]: tensors[k] for k in names}
    choice = {c.name: c for c in fp8_quantize.choose_fp8(stripped, keep, legacy)}
    storage = fp8_quantize.storage_dtype(fmt)
    scales: dict[str, Callable[[], np.ndarray]] = {}
    constants: dict[str, np.ndarray] = {}
    steps: list[Step] = []
    prefix = ""
    for s in plan.steps:
        steps.append(s)
        c = choice.get(names.get(s.out, ""))
        if c is None:
            continue
        prefix = s.out[: len(s.out) - len(names[s.out])]
        if not c.quantized:
            if c.reason is not None:
                plan.reasons[s.out] = c.reason
            continue
        scales[s.out[: -len("weight")] + ("scale_weight" if legacy else "weight_scale")] = _loader(plan, s)
        s.fix = _then(s.fix, lambda a: fp8_quantize.quantize_fp8(a, fmt)[0])
        s.out_dtype, s.pinned = storage, True
        layer = s.out[: -len("weight")]
        scale = layer + ("scale_weight" if legacy else "weight_scale")
        steps.append(Step(scale, FP8_SCALES, scale, "F32", (), "F32", s.part, pinned=True))
        if not legacy:
            constants[layer + "comfy_quant"] = fp8_quantize.comfy_quant(fmt)
            n = len(constants[layer + "comfy_quant"])
            steps.append(
                Step(layer + "comfy_quant", FP8_CONSTANTS, layer + "comfy_quant", "U8", (n,), "U8", s.part, pinned=True)
            )
    if not scales:
        raise ConversionError(
            Msg("scaled fp8: no Linear weight of the {name} diffusion model to quantize", name=arch.name)
        )
    if legacy:
        marker = prefix + "scaled_fp8"
        constants[marker] = fp8_quantize.legacy_marker(fmt)
        steps.append(Step(marker, FP8_CONSTANTS, marker, storage, (0,), storage, "marker", pinned=True))
    plan.steps = steps
    plan.sources[FP8_SCALES] = fp8_quantize.ScaleSource(plan.source, scales, fmt)
    plan.sources[FP8_CONSTANTS] = DictSource(constants)
    plan.tag(fmt.replace("_scaled", "-scaled"))
    kept = sum(1 for c in choice.values() if c.reason == fp8_quantize.KEPT_BY_FAMILY)
    form = "legacy scaled_fp8/scale_weight" if legacy else "comfy_quant + weight_scale"
    plan.notes.append(
        Msg(
            "scaled fp8 ({form}): {quantized} Linear weights quantized, {kept} kept by the {arch} list",
            form=form,
            quantized=len(scales),
            kept=kept,
            arch=arch.name,
        )
    )


def _loader(plan: Plan, step: Step) -> Callable[[], np.ndarray]:
    """The values of ``step`` as planned so far (read and fixed), read again when called."""
    source, name, fix = plan.sources[step.source], step.name, step.fix
    return lambda: fix(source.read(name)) if fix is not None else source.read(name)


def _then(
    first: Callable[[np.ndarray], np.ndarray] | None, second: Callable[[np.ndarray], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    return second if first is None else (lambda a: second(first(a)))


# --- options and the plan they make ---------------------------------------------------------


@dataclass(frozen=True)
class ConvertOptions:
    """Everything a conversion can be asked to do, named as the CLI flags are.

    Checked and normalised when made: every choice (format, precisions, EMA mode, part,
    prediction) is validated with the allowed values in the message, ``drop`` becomes a tuple,
    ``meta`` (``KEY=VALUE`` strings or a dict) a dict, ``vae`` a Path."""

    format: OutputFormat = "safetensors"
    # what happens to the tensors (build_plan)
    dtype: Precision | None = None
    unet_dtype: Precision | None = None
    vae_dtype: Precision | None = None
    te_dtype: Precision | None = None
    ema: EmaMode = "keep"
    allow_partial_ema: bool = False
    prune: bool = False
    drop: tuple[str, ...] = ()
    fix_clip: bool = False
    vae: Path | None = None  # a VAE file to bake in
    remove_vae: bool = False
    part: ExtractPart | None = None  # write only this part (extract)
    quant: str | None = None  # GGUF type mix (--format gguf)
    legacy_scaled_fp8: bool = False  # --dtype fp8_*_scaled in the older scaled_fp8/scale_weight form
    loras: tuple[tuple[Path, float], ...] = ()  # LoRA files to bake in, each at its weight (sdmodel merge)
    allow_missing: bool = False  # merge the LoRA targets the model has, report the others
    lora_format: str | None = None  # rename a LoRA's targets: kohya | diffusers | comfy
    # what is written around them and how
    prediction: Prediction | None = None
    meta: dict[str, str] = field(default_factory=dict)
    no_meta: bool = False
    title: str | None = None  # ModelSpec title when the source has none (default: the output's name)
    overwrite: bool = False
    verify: bool = False
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.format not in OUTPUT_FORMATS:
            raise ConversionError(
                Msg(
                    "--format must be {output_formats}, not {format!r}",
                    output_formats=OneOf(tuple(OUTPUT_FORMATS)),
                    format=self.format,
                )
            )
        if self.prediction not in (None, *PREDICTIONS):
            raise ConversionError(
                Msg(
                    "--prediction must be {predictions}, not {prediction!r}",
                    predictions=OneOf(PREDICTIONS),
                    prediction=self.prediction,
                )
            )
        for flag, value in (
            ("dtype", self.dtype),
            ("unet-dtype", self.unet_dtype),
            ("vae-dtype", self.vae_dtype),
            ("te-dtype", self.te_dtype),
        ):
            if (
                value is not None
                and value not in PRECISIONS
                and not (flag == "dtype" and value in fp8_quantize.FP8_FORMATS)
            ):
                raise ConversionError(
                    Msg(
                        "--{flag}: unknown precision {value!r} (use one of {precisions})",
                        flag=flag,
                        value=value,
                        precisions=", ".join(PRECISIONS),
                    )
                )
        if self.ema not in EMA_MODES:
            raise ConversionError(Msg("--ema must be keep, drop or only, not {ema!r}", ema=self.ema))
        if self.part is not None and self.part not in EXTRACT_PARTS:
            raise ConversionError(
                Msg(
                    "--part must be one of {extract_parts}, not {part!r}",
                    extract_parts=", ".join(EXTRACT_PARTS),
                    part=self.part,
                )
            )
        if (self.format == "gguf") != (self.quant is not None):
            raise ConversionError(Msg("--format gguf and --quant TYPE go together"))
        if self.quant is not None and self.quant not in gguf_policy.FILE_TYPES:
            raise ConversionError(
                Msg(
                    "unknown --quant {quant!r}; known: {gguf_quants}",
                    quant=self.quant,
                    gguf_quants=", ".join(gguf_policy.GGUF_QUANTS),
                )
            )
        dtypes = (self.dtype, self.unet_dtype, self.vae_dtype, self.te_dtype)
        if self.format == "gguf" and any(dtypes):
            raise ConversionError(Msg("--format gguf takes --quant TYPE, not a --dtype"))
        if self.dtype in fp8_quantize.FP8_FORMATS and (self.format != "safetensors" or any(dtypes[1:])):
            raise ConversionError(
                Msg("--dtype {dtype} writes safetensors and takes no per-part dtype", dtype=self.dtype)
            )
        if self.legacy_scaled_fp8 and self.dtype not in fp8_quantize.FP8_FORMATS:
            raise ConversionError(Msg("--legacy-scaled-fp8 goes with --dtype fp8_e4m3fn_scaled or fp8_e5m2_scaled"))
        object.__setattr__(self, "drop", tuple(self.drop))
        object.__setattr__(self, "meta", parse_meta(self.meta))
        if self.vae is not None:
            object.__setattr__(self, "vae", Path(self.vae))
        if self.lora_format not in (None, *LORA_FORMATS):
            raise ConversionError(
                Msg(
                    "--lora-format must be one of {lora_formats}, not {lora_format!r}",
                    lora_formats=", ".join(LORA_FORMATS),
                    lora_format=self.lora_format,
                )
            )
        if self.lora_format is not None and self.loras:
            raise ConversionError(Msg("--lora-format renames a LoRA file; merging LoRAs into a model is another task"))
        object.__setattr__(self, "loras", tuple((Path(p), float(w)) for p, w in self.loras))


def with_changes(options: ConvertOptions | None, changes: dict[str, Any]) -> ConvertOptions:
    """``options`` (default: the defaults) with the fields in ``changes`` replaced; an unknown name
    is a TypeError, as for any keyword argument."""
    if options is None:
        return ConvertOptions(**changes)
    return replace(options, **changes) if changes else options


def parse_meta(items: Iterable[str] | dict[str, str] | None) -> dict[str, str]:
    """``--meta KEY=VALUE`` items (or a dict) as a dict of strings."""
    if not items:
        return {}
    if isinstance(items, dict):
        return {str(k): str(v) for k, v in items.items()}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConversionError(Msg("--meta {item!r}: expected KEY=VALUE", item=item))
        out[key] = value
    return out


def build_plan(
    source: TensorSource,
    options: ConvertOptions | None = None,
    *,
    vae: TensorSource | None = None,
    steps: Sequence[Callable[[Plan], None]] = (),
    **changes: Any,
) -> Plan:
    """The plan for ``source`` with ``options`` (or their fields as keywords; precisions as
    ``fp16``, ``bf16``, ``fp32``, ``fp8_e4m3fn``, ``fp8_e5m2``). ``vae`` is the opened VAE file to
    bake in (``options.vae`` only names it). ``steps`` are further plan steps (baking LoRAs,
    renaming a LoRA's targets), run on the model's names before ``--part`` and the precisions.
    Raises ConversionError when the options cannot be done."""
    options = with_changes(options, changes)
    if options.vae is not None and vae is None:
        raise TypeError("build_plan: open options.vae and pass it as vae=")
    if vae is not None and options.remove_vae:
        raise ConversionError(Msg("--vae and --remove-vae contradict each other"))
    per_part = {
        "unet": parse_precision(options.unet_dtype),
        "vae": parse_precision(options.vae_dtype),
        "te": parse_precision(options.te_dtype),
    }
    scaled = options.dtype if options.dtype in fp8_quantize.FP8_FORMATS else None
    default = None if scaled else parse_precision(options.dtype)
    layout = analyze(source)
    plan = dequantized_plan(source, layout, default, per_part) if layout.quantized else initial_plan(source)
    apply_ema(plan, options.ema, options.allow_partial_ema)
    if options.prune:
        apply_prune(plan)
    apply_drop(plan, options.drop)
    if vae is not None:
        apply_vae(plan, vae)
    if options.remove_vae:
        apply_remove_vae(plan)
    apply_clip(plan, options.fix_clip)
    for step in steps:
        step(plan)
    if options.part is not None:
        apply_extract(plan, options.part)
    apply_dtypes(plan, default, per_part)
    if scaled is not None:
        apply_fp8_scaled(plan, scaled, options.legacy_scaled_fp8)
    if options.quant is not None:
        apply_gguf(plan, options.quant)
    return plan
