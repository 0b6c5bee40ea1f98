"""The full report on one model file: identity, parts, precision, EMA, CLIP ids, junk, advice."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sdmodel.advice import Advice, advise
from sdmodel.companions import find_companions
from sdmodel.formats import open_model
from sdmodel.formats.base import TensorSource
from sdmodel.i18n import Msg
from sdmodel.identify import Identity, identify
from sdmodel.lineage import Lineage, lineage
from sdmodel.lora.info import LoraInfo
from sdmodel.lora.info import describe as describe_lora
from sdmodel.parts import (
    CLIP_L_POSITION_IDS,
    CLIP_L_PREFIXES,
    EMA_PREFIX,
    MARKER_KEYS,
    UNET_PREFIX,
    ema_key,
    junk_reason,
    part_of,
)
from sdmodel.placement import Placement, place, storage_of
from sdmodel.plan import loader_position_ids
from sdmodel.quant.storage import QuantLayout, analyze, describe
from sdmodel.quant.view import DequantizedSource
from sdmodel.remote import is_remote
from sdmodel.sidecars import find_sidecars, needs_config
from sdmodel.vaes import VaeReport, identify_vae

# Kinds that are a single part (named as the kind): every tensor of such a file belongs to it.
SINGLE_PART_KINDS = frozenset(
    {
        "unet",
        "vae",
        "text_encoder",
        "lora",
        "lycoris",
        "embedding",
        "controlnet",
        "t2i_adapter",
        "ip_adapter",
        "image_encoder",
        "upscaler",
    }
)


# The shape of ModelReport.to_dict(): the catalog stores it beside each report; raise it when a
# key is added, renamed or changes meaning, so that stored reports can be told apart.
REPORT_VERSION = 2


@dataclass
class Component:
    tensors: int = 0
    params: int = 0
    bytes: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)
    storage: str | Msg = ""  # how the weights are stored: "bf16", "GGUF Q4_K (mix: ...)", "NF4 (... block 64)"
    bits_per_weight: float | None = None  # every stored byte of the part (scales included) per weight


@dataclass(frozen=True)
class EmaReport:
    """EMA weights (``model_ema.*``) and how much of the UNet they cover."""

    present: bool
    tensors: int
    bytes: int
    unet_covered: int
    unet_total: int
    complete: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ClipStatus = Literal["ok", "broken", "missing", "absent", "not-read"]


@dataclass(frozen=True)
class BrokenPosition:
    position: int
    value: float  # as stored
    loader_sees: int  # after the cast to int64


@dataclass(frozen=True)
class ClipReport:
    """CLIP-L position ids as a loader sees them: ``absent`` (no CLIP-L), ``missing`` (CLIP-L
    without the ids), ``ok`` or ``broken``."""

    status: ClipStatus
    key: str | None = None
    dtype: str | None = None
    broken: list[BrokenPosition] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "key": self.key}
        if self.key is not None:
            out["dtype"] = self.dtype
        out["broken"] = [asdict(b) for b in self.broken]
        return out


@dataclass(frozen=True)
class JunkReport:
    """Tensors no loader uses (parts.JUNK_PREFIXES), grouped by why they are there."""

    tensors: int
    bytes: int
    groups: dict[str | None, int]
    keys: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelReport:
    """Everything ``sdmodel info`` says about a file. ``to_dict`` is the JSON form."""

    path: str
    format: str
    size_bytes: int
    identity: Identity
    components: dict[str, Component]
    ema: EmaReport
    clip_position_ids: ClipReport
    junk: JunkReport
    markers: list[str]
    unknown_keys: list[str]
    vae: VaeReport | None  # None: not a checkpoint or a VAE
    metadata: dict[str, str]
    extras: dict[str, Any]
    notes: list[str | Msg]  # readers' notes (English) and this module's (Msg)
    sidecars: list[dict[str, str]]
    advice: Advice | None = None  # set by advise() once the rest is known
    quantization: dict[str, Any] = field(default_factory=dict)  # see quantization_report
    lora: LoraInfo | None = None  # what a LoRA / LyCORIS file is (sdmodel.lora)
    placement: Placement | None = None  # where it goes in each UI (sdmodel.placement)
    lineage: Lineage | None = None  # SDXL-shaped files: Pony / Illustrious / NoobAI, v-pred, ZSNR

    @property
    def kind(self) -> str:
        return self.identity.kind

    @property
    def tensor_count(self) -> int:
        return sum(c.tensors for c in self.components.values())

    def to_dict(self) -> dict[str, Any]:
        ident = self.identity
        return {
            "path": self.path,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "kind": ident.kind,
            "family": ident.family,
            "variant": ident.variant,
            "candidates": ident.candidates,
            "needs": {"text_encoders": ident.needs_text_encoders, "vae": ident.needs_vae},
            "prediction": ident.prediction,
            "prediction_source": None if ident.prediction_source is None else str(ident.prediction_source),
            "signature": ident.signature,
            "tensors": self.tensor_count,
            "components": {k: {**asdict(v), "storage": str(v.storage)} for k, v in self.components.items()},
            "ema": self.ema.to_dict(),
            "clip_position_ids": self.clip_position_ids.to_dict(),
            "junk": self.junk.to_dict(),
            "markers": self.markers,
            "unknown_keys": self.unknown_keys,
            "vae": self.vae.to_dict() if self.vae is not None else {"present": False},
            "a1111_config": ident.a1111_config,
            "modelspec_architecture": ident.modelspec_architecture,
            "resolution": ident.resolution,
            "hints": ident.hints,
            "metadata": self.metadata,
            "extras": self.extras,
            "notes": [str(n) for n in self.notes],
            "sidecars": self.sidecars,
            "advice": self.advice.to_dict() if self.advice is not None else {},
            "quantization": self.quantization,
            "lora": self.lora.to_dict() if self.lora else None,
            "placement": self.placement.to_dict() if self.placement else None,
            "lineage": self.lineage.to_dict() if self.lineage else None,
        }


def tensor_parts(source: TensorSource, ident: Identity) -> dict[str, str]:
    """Part of every tensor. A file that is one network (a VAE, a LoRA, a bare UNet) is one part;
    a checkpoint, or a network stored under its single-file prefix, is split by prefix."""
    by_prefix = ident.kind == "checkpoint" or ident.root in (UNET_PREFIX, "control_model.")
    whole = ident.kind if not by_prefix and ident.kind in SINGLE_PART_KINDS else None
    return {name: part_of(name, whole) for name in source.tensors}


def components(source: TensorSource, parts: dict[str, str], layout: QuantLayout | None = None) -> dict[str, Component]:
    layout = layout if layout is not None else QuantLayout()
    out: dict[str, Component] = {}
    members: dict[str, list[str]] = {}
    for name, info in source.tensors.items():
        comp = out.setdefault(parts[name], Component())
        members.setdefault(parts[name], []).append(name)
        comp.tensors += 1
        comp.params += info.numel
        comp.bytes += info.nbytes
        comp.dtypes[info.dtype] = comp.dtypes.get(info.dtype, 0) + 1
    for part, names in members.items():
        st = describe(source, layout, names)
        out[part].storage = st.text or st.label
        out[part].bits_per_weight = None if st.bits_per_weight is None else round(st.bits_per_weight, 2)
    return out


def quantization_report(source: TensorSource, layout: QuantLayout) -> dict[str, Any]:
    """Whether the file holds quantized storage, its form, and what would keep it from loading."""
    if not layout.quantized and not layout.problems:
        return {"quantized": False, "storage": None, "bits_per_weight": None, "problems": []}
    st = describe(source, layout, source.tensors)
    unsupported = layout.unsupported()
    return {
        "quantized": layout.quantized,
        "storage": st.label,
        "precision": st.short or None,
        "scheme": st.scheme,
        "bits_per_weight": None if st.bits_per_weight is None else round(st.bits_per_weight, 2),
        "weights": len(layout.tensors),
        "dequantizable": not unsupported,
        "needs": str(unsupported[0].unsupported) if unsupported else None,
        "problems": [{"code": p.code, "tensor": p.name, "message": str(p.message)} for p in layout.problems],
    }


def ema_report(source: TensorSource) -> EmaReport:
    names = source.tensors
    ema = [k for k in names if k.startswith(EMA_PREFIX)]
    unet = [k for k in names if k.startswith(UNET_PREFIX) and k not in MARKER_KEYS]
    covered = sum(1 for k in unet if ema_key(k) in names)
    return EmaReport(
        present=bool(ema),
        tensors=len(ema),
        bytes=sum(names[k].nbytes for k in ema),
        unet_covered=covered,
        unet_total=len(unet),
        complete=bool(unet) and covered == len(unet),
    )


def clip_report(source: TensorSource) -> ClipReport:
    """CLIP-L position ids as a loader sees them (cast to int64, truncating)."""
    key = next((k for k in CLIP_L_POSITION_IDS if k in source.tensors), None)
    if key is None:
        has_clip_l = any(k.startswith(CLIP_L_PREFIXES) for k in source.tensors)
        return ClipReport("missing" if has_clip_l else "absent")
    raw = np.asarray(source.read(key))
    values = raw.astype(np.float64).reshape(-1)
    seen = loader_position_ids(raw).reshape(-1)  # float values truncated (75.9975 -> 75)
    expected = np.arange(seen.size)
    bad = np.nonzero(seen != expected)[0]
    broken = [BrokenPosition(int(i), float(values[i]), int(seen[i])) for i in bad]
    return ClipReport("broken" if broken or seen.size != 77 else "ok", key, source.tensors[key].dtype, broken)


def inspect_source(source: TensorSource, *, read_values: bool = True) -> ModelReport:
    """Report on an already opened source. ``read_values=False`` reads only names, shapes and the
    few small tensors every report needs (no VAE metric)."""
    layout = analyze(source)
    # Identification sees the model the file stands for: shapes before packing, loader names.
    ident = identify(DequantizedSource(source, "F32", layout, strict=False) if layout.quantized else source)
    parts = tensor_parts(source, ident)
    junk_keys = [k for k, p in parts.items() if p == "junk"]
    junk_groups = Counter(junk_reason(k) for k in junk_keys)
    report = ModelReport(
        path=str(source.path),
        format=source.format,
        size_bytes=source.size_bytes,
        identity=ident,
        components=components(source, parts, layout),
        ema=ema_report(source),
        clip_position_ids=clip_report(source) if source.read_data else ClipReport("not-read"),
        junk=JunkReport(
            tensors=len(junk_keys),
            bytes=sum(source.tensors[k].nbytes for k in junk_keys),
            groups=dict(junk_groups),
            keys=junk_keys,
        ),
        markers=[k for k in source.tensors if k in MARKER_KEYS],
        unknown_keys=[k for k, p in parts.items() if p == "other"],
        vae=identify_vae(source, read_values=read_values)
        if ident.kind in ("checkpoint", "vae") and source.read_data
        else None,
        metadata=dict(source.metadata),
        extras=dict(source.extras),
        notes=[n.message for n in source.notes],
        sidecars=find_sidecars(source.path),
        quantization=quantization_report(source, layout),
    )
    for p in layout.problems:
        report.notes.append(Msg("will not load as intended: {problem}", problem=p.message))
    if needs_config(ident.kind, ident.family) and not any(s["kind"] == "config" for s in report.sidecars):
        report.notes.append(
            Msg(
                "A1111 needs a config .yaml beside this SD2 checkpoint; "
                "'sdmodel convert --prediction v|epsilon' writes one"
            )
        )
    if ident.kind in ("lora", "lycoris"):
        # Alphas are tensor values: not fetched from a remote file without --read-data.
        report.lora = describe_lora(source, read_alphas=source.read_data)
    if not source.read_data:
        report.notes.append(
            Msg(
                "remote file: tensor values not fetched, so no VAE fingerprint and no CLIP position-id check "
                "(--read-data fetches only those tensors)"
            )
        )
    _place(report, source)
    report.advice = advise(report, source)
    return report


# Families whose fine-tunes share the base's shapes, so that only metadata and names tell them apart.
LINEAGE_FAMILIES = frozenset({"sdxl"})


def _place(report: ModelReport, source: TensorSource) -> None:
    """Where the file goes (every identified kind) and, for SDXL-shaped files, its lineage. Companions
    and sidecars are looked for on local disk only: a remote file has no folder to search."""
    ident = report.identity
    local = not is_remote(source.path) and source.path.is_file()
    storage = storage_of(report.format, report.quantization.get("scheme"))
    placement = place(ident.kind, ident.family, ident.variant, storage)
    if placement.companions is not None and local:
        placement = replace(placement, companions=find_companions(source.path, placement.companions))
    report.placement = placement
    if ident.family in LINEAGE_FAMILIES and ident.kind in ("checkpoint", "unet", "lora", "lycoris"):
        path = source.path if local else None
        report.lineage = lineage(source.metadata, source.tensors, path)


def inspect(path: str | Path, *, read_values: bool = True) -> ModelReport:
    """Open, identify and report on a model file or diffusers folder. Raises ModelReadError.
    ``read_values=False`` skips what reads tensor values in bulk (the baked VAE's metric)."""
    with open_model(path) as source:
        return inspect_source(source, read_values=read_values)
