"""What a LoRA is: naming, algorithms, base family, what it trains, ranks, alphas and the trainer's
metadata (kohya sd-scripts ``ss_*`` keys, musubi-tuner, ModelSpec)."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sdmodel.errors import ConversionError
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.i18n import N_, Msg
from sdmodel.lora.delta import read_alpha
from sdmodel.lora.families import MUSUBI_VERSIONS, Probe, family_from_keys, family_from_metadata
from sdmodel.lora.keys import LoraKeys, Target, parse, rank_of, read_peft_alphas
from sdmodel.lora.names import locate

COMPONENT_LABELS = {
    "diffusion": N_("diffusion model"),
    "prior": N_("diffusion model"),
    "te1": N_("text encoder 1"),
    "te2": N_("text encoder 2"),
    "te3": N_("text encoder 3"),
    "prior_te": N_("text encoder 1"),
}
LYCORIS_ALGORITHMS = frozenset({"loha", "lokr", "full", "oft", "boft", "glora", "ia3", "norm", "set"})
TRIGGER_WORDS = 10  # most frequent training tags shown


@dataclass
class LoraInfo:
    """The LoRA part of the inspection report (``info --json`` key ``lora``)."""

    format: str  # kohya | musubi-tuner | diffusers | peft | comfy | onetrainer | simpletuner | bare | mixed
    algorithms: dict[str, int]  # lora locon loha lokr full oft boft glora ia3 -> targets
    dora: int  # targets with a DoRA magnitude (LyCORIS dora_scale or PEFT lora_magnitude_vector)
    family: str | None
    family_source: str | Msg  # key names | metadata (KEY) | unknown; translated where shown
    candidates: list[str]
    trains: dict[str, int]  # "diffusion model" / "text encoder 1"... -> targets
    targets: int
    ranks: list[int]
    alphas: list[float]
    other_keys: list[str]
    trigger_words: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)  # base model name/version/hashes, resolution, steps...
    notes: list[str | Msg] = field(default_factory=list)

    @property
    def kind(self) -> Literal["lora", "lycoris"]:
        """``lycoris`` when any target uses a LyCORIS-only algorithm, else ``lora``."""
        return "lycoris" if LYCORIS_ALGORITHMS & set(self.algorithms) else "lora"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"notes": [str(n) for n in self.notes], "family_source": str(self.family_source)}


def _widths(t: Target, tensors: dict[str, TensorInfo]) -> tuple[int | None, int | None]:
    """(in, out) width of the weight a target changes, from its tensor shapes."""
    r = t.tensors

    def shape(role: str) -> tuple[int, ...]:
        return tensors[r[role]].shape

    try:
        if t.algorithm in ("lora", "locon"):
            return shape("down")[1], shape("up")[0]
        if t.algorithm == "loha":
            return shape("hada_w1_b")[1], shape("hada_w1_a")[1 if "hada_t1" in r else 0]
        if t.algorithm == "lokr":
            w1 = shape("lokr_w1") if "lokr_w1" in r else (shape("lokr_w1_a")[0], shape("lokr_w1_b")[1])
            w2 = (
                shape("lokr_w2")
                if "lokr_w2" in r
                else (shape("lokr_w2_a")[1 if "lokr_t2" in r else 0], shape("lokr_w2_b")[1])
            )
            return w1[1] * w2[1], w1[0] * w2[0]
        if t.algorithm == "full":
            d = shape("diff")
            return (d[1] if len(d) > 1 else None), d[0]
        if t.algorithm == "glora":
            return shape("a1")[0], shape("b1")[0]
    except (KeyError, IndexError):
        pass
    return None, None


def probes(keys: LoraKeys, tensors: dict[str, TensorInfo]) -> list[Probe]:
    out = []
    for t in keys.targets.values():
        w_in, w_out = _widths(t, tensors)
        out.append(Probe(locate(t.stem).key, w_in, w_out))
    return out


def _format(keys: LoraKeys, metadata: dict[str, str], family: str | None) -> str:
    namings = Counter(locate(stem).naming for stem in keys.targets)
    if not namings:
        return "unknown"
    top = [n for n, _c in namings.most_common()]
    naming = top[0] if len(top) == 1 or namings[top[0]] > 0.9 * sum(namings.values()) else "mixed"
    version = metadata.get("ss_base_model_version", "").lower()
    if naming == "kohya" and (version in MUSUBI_VERSIONS or family in ("wan", "hunyuan_video")):
        return "musubi-tuner"
    return naming


def trigger_words(metadata: dict[str, str], limit: int = TRIGGER_WORDS) -> list[str]:
    """Most frequent tags of the training captions (kohya ``ss_tag_frequency``), summed over folders."""
    raw = metadata.get("ss_tag_frequency")
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except ValueError:
        return []
    counts: Counter[str] = Counter()
    if isinstance(data, dict):
        for folder in data.values():
            if isinstance(folder, dict):
                for tag, n in folder.items():
                    if isinstance(n, int | float):
                        counts[str(tag).strip()] += int(n)
    return [t for t, _n in counts.most_common(limit) if t]


# How ``info`` names each training fact (the --json keys stay the names above).
TRAINING_LABELS = {
    "base_model": N_("base model"),
    "base_model_version": N_("base model version"),
    "base_model_hash": N_("base model hash"),
    "base_model_hash_new": N_("base model hash (new)"),
    "resolution": N_("resolution"),
    "steps": N_("steps"),
    "max_steps": N_("max steps"),
    "epochs": N_("epochs"),
    "network_module": N_("network module"),
    "network_dim": N_("network dim"),
    "network_alpha": N_("network alpha"),
    "output_name": N_("output name"),
    "training_comment": N_("training comment"),
    "architecture": N_("architecture"),
    "title": N_("title"),
    "trigger_phrase": N_("trigger phrase"),
}
TRAINING_KEYS: tuple[tuple[str, str], ...] = (
    ("base_model", "ss_sd_model_name"),
    ("base_model_version", "ss_base_model_version"),
    ("base_model_hash", "ss_sd_model_hash"),
    ("base_model_hash_new", "ss_new_sd_model_hash"),
    ("resolution", "ss_resolution"),
    ("steps", "ss_steps"),
    ("max_steps", "ss_max_train_steps"),
    ("epochs", "ss_epoch"),
    ("network_module", "ss_network_module"),
    ("network_dim", "ss_network_dim"),
    ("network_alpha", "ss_network_alpha"),
    ("output_name", "ss_output_name"),
    ("training_comment", "ss_training_comment"),
    ("architecture", "modelspec.architecture"),
    ("title", "modelspec.title"),
    ("trigger_phrase", "modelspec.trigger_phrase"),
)


def training(metadata: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key in TRAINING_KEYS:
        value = metadata.get(key)
        if value not in (None, "", "None"):
            out[name] = value
    return out


def _alphas(keys: LoraKeys, source: TensorSource) -> list[float]:
    """Distinct alpha values (scalars: a few bytes each). Unreadable ones are skipped."""
    seen: set[float] = set()
    for t in keys.targets.values():
        try:
            value = read_alpha(t, source.read)
        except Exception:
            continue
        if value is None:
            continue
        if math.isfinite(value):
            seen.add(round(value, 6))
    return sorted(seen)


def describe(source: TensorSource, keys: LoraKeys | None = None, read_alphas: bool = True) -> LoraInfo | None:
    """The LoRA report of an open file, or None when it has no LoRA target. ``read_alphas`` False
    leaves ``alphas`` empty (names and shapes only, no tensor read)."""
    tensors = source.tensors
    keys = keys if keys is not None else parse(tensors)
    if not keys.targets:
        return None
    notes: list[str | Msg] = []
    try:
        read_peft_alphas(keys, source.metadata)
    except ConversionError as e:
        notes.append(e.message)
    found, candidates = family_from_keys(probes(keys, tensors))
    meta_family, meta_key = family_from_metadata(source.metadata)
    how: str | Msg = N_("key names") if found else N_("unknown")
    family = found
    if found is None and meta_family is not None:
        family, how = meta_family, Msg("metadata ({key})", key=meta_key)
    elif found == "sdxl" and meta_family == "kolors":
        family, how = "kolors", Msg("metadata ({key}); SDXL-shaped keys", key=meta_key)
    elif found is not None and meta_family is not None and meta_family != found:
        notes.append(
            Msg(
                "metadata ({key}) says {meta_family}, the keys say {found}",
                key=meta_key,
                meta_family=meta_family,
                found=found,
            )
        )
    algorithms = Counter(t.algorithm for t in keys.targets.values())
    trains = Counter(COMPONENT_LABELS.get(locate(s).component, locate(s).component) for s in keys.targets)
    ranks = sorted({r for t in keys.targets.values() if (r := rank_of(t, tensors)) is not None})
    return LoraInfo(
        format=_format(keys, source.metadata, family),
        algorithms=dict(algorithms),
        dora=sum(1 for t in keys.targets.values() if t.dora),
        family=family,
        family_source=how,
        candidates=list(candidates) if family is None else [],
        trains=dict(trains),
        targets=len(keys.targets),
        ranks=ranks,
        alphas=_alphas(keys, source) if read_alphas else [],
        other_keys=keys.other,
        trigger_words=trigger_words(source.metadata),
        training=training(source.metadata),
        notes=notes,
    )
