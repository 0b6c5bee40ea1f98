"""The full report on one model file: identity, parts, precision, EMA, CLIP ids, junk, advice."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.advice import advise
from sdmodel.formats import open_model
from sdmodel.formats.base import TensorSource
from sdmodel.identify import Identity, identify
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
from sdmodel.plan import loader_position_ids
from sdmodel.sidecars import find_sidecars, needs_config
from sdmodel.vaes import identify_vae

# Kinds that are a single part (named as the kind): every tensor of such a file belongs to it.
SINGLE_PART_KINDS = frozenset(
    {"unet", "vae", "text_encoder", "lora", "lycoris", "embedding", "controlnet", "t2i_adapter"}
)


@dataclass
class Component:
    tensors: int = 0
    params: int = 0
    bytes: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)


@dataclass
class ModelReport:
    """Everything ``sdmodel info`` says about a file. ``to_dict`` is the JSON form."""

    path: str
    format: str
    size_bytes: int
    identity: Identity
    components: dict[str, Component]
    ema: dict[str, Any]
    clip_position_ids: dict[str, Any]
    junk: dict[str, Any]
    markers: list[str]
    unknown_keys: list[str]
    vae: dict[str, Any]
    metadata: dict[str, str]
    extras: dict[str, Any]
    notes: list[str]
    sidecars: list[dict[str, str]]
    advice: dict[str, Any] = field(default_factory=dict)

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
            "prediction": ident.prediction,
            "prediction_source": ident.prediction_source,
            "signature": ident.signature,
            "tensors": self.tensor_count,
            "components": {k: asdict(v) for k, v in self.components.items()},
            "ema": self.ema,
            "clip_position_ids": self.clip_position_ids,
            "junk": self.junk,
            "markers": self.markers,
            "unknown_keys": self.unknown_keys,
            "vae": self.vae,
            "a1111_config": ident.a1111_config,
            "modelspec_architecture": ident.modelspec_architecture,
            "resolution": ident.resolution,
            "hints": ident.hints,
            "metadata": self.metadata,
            "extras": self.extras,
            "notes": self.notes,
            "sidecars": self.sidecars,
            "advice": self.advice,
        }


def tensor_parts(source: TensorSource, ident: Identity) -> dict[str, str]:
    """Part of every tensor. A file that is one network (a VAE, a LoRA, a bare UNet) is one part;
    a checkpoint, or a network stored under its single-file prefix, is split by prefix."""
    by_prefix = ident.kind == "checkpoint" or ident.root in (UNET_PREFIX, "control_model.")
    whole = ident.kind if not by_prefix and ident.kind in SINGLE_PART_KINDS else None
    return {name: part_of(name, whole) for name in source.tensors}


def components(source: TensorSource, parts: dict[str, str]) -> dict[str, Component]:
    out: dict[str, Component] = {}
    for name, info in source.tensors.items():
        comp = out.setdefault(parts[name], Component())
        comp.tensors += 1
        comp.params += info.numel
        comp.bytes += info.nbytes
        comp.dtypes[info.dtype] = comp.dtypes.get(info.dtype, 0) + 1
    return out


def ema_report(source: TensorSource) -> dict[str, Any]:
    names = source.tensors
    ema = [k for k in names if k.startswith(EMA_PREFIX)]
    unet = [k for k in names if k.startswith(UNET_PREFIX) and k not in MARKER_KEYS]
    covered = sum(1 for k in unet if ema_key(k) in names)
    return {
        "present": bool(ema),
        "tensors": len(ema),
        "bytes": sum(names[k].nbytes for k in ema),
        "unet_covered": covered,
        "unet_total": len(unet),
        "complete": bool(unet) and covered == len(unet),
    }


def clip_report(source: TensorSource) -> dict[str, Any]:
    """CLIP-L position ids as a loader sees them (cast to int64, truncating)."""
    key = next((k for k in CLIP_L_POSITION_IDS if k in source.tensors), None)
    if key is None:
        has_clip_l = any(k.startswith(CLIP_L_PREFIXES) for k in source.tensors)
        return {"status": "missing" if has_clip_l else "absent", "key": None, "broken": []}
    raw = np.asarray(source.read(key))
    values = raw.astype(np.float64).reshape(-1)
    seen = loader_position_ids(raw).reshape(-1)  # float values truncated (75.9975 -> 75)
    expected = np.arange(seen.size)
    bad = np.nonzero(seen != expected)[0]
    broken = [{"position": int(i), "value": float(values[i]), "loader_sees": int(seen[i])} for i in bad]
    status = "broken" if broken or seen.size != 77 else "ok"
    return {"status": status, "key": key, "dtype": source.tensors[key].dtype, "broken": broken}


def inspect_source(source: TensorSource, *, read_values: bool = True) -> ModelReport:
    """Report on an already opened source. ``read_values=False`` reads only names, shapes and the
    few small tensors every report needs (no VAE metric)."""
    ident = identify(source)
    parts = tensor_parts(source, ident)
    junk_keys = [k for k, p in parts.items() if p == "junk"]
    junk_groups = Counter(junk_reason(k) for k in junk_keys)
    report = ModelReport(
        path=str(source.path),
        format=source.format,
        size_bytes=source.size_bytes,
        identity=ident,
        components=components(source, parts),
        ema=ema_report(source),
        clip_position_ids=clip_report(source)
        if source.read_data
        else {"status": "not-read", "key": None, "broken": []},
        junk={
            "tensors": len(junk_keys),
            "bytes": sum(source.tensors[k].nbytes for k in junk_keys),
            "groups": dict(junk_groups),
            "keys": junk_keys,
        },
        markers=[k for k in source.tensors if k in MARKER_KEYS],
        unknown_keys=[k for k, p in parts.items() if p == "other"],
        vae=identify_vae(source, read_values=read_values)
        if ident.kind in ("checkpoint", "vae") and source.read_data
        else {"present": False},
        metadata=dict(source.metadata),
        extras=dict(source.extras),
        notes=[n.message for n in source.notes],
        sidecars=find_sidecars(source.path),
    )
    if needs_config(ident.kind, ident.family) and not any(s["kind"] == "config" for s in report.sidecars):
        report.notes.append(
            "A1111 needs a config .yaml beside this SD2 checkpoint; 'sdmodel convert --prediction v|epsilon' writes one"
        )
    if not source.read_data:
        report.notes.append(
            "remote file: tensor values not fetched, so no VAE fingerprint and no CLIP position-id check "
            "(--read-data fetches only those tensors)"
        )
    report.advice = advise(report, source)
    return report


def inspect(path: str | Path, *, read_values: bool = True) -> ModelReport:
    """Open, identify and report on a model file or diffusers folder. Raises ModelReadError.
    ``read_values=False`` skips what reads tensor values in bulk (the baked VAE's metric)."""
    with open_model(path) as source:
        return inspect_source(source, read_values=read_values)
