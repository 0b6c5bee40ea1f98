"""The tensors of a LoRA file grouped by the model weight each one changes (its *target*).

A LoRA (or LyCORIS) file stores, for every weight it changes, a few tensors under one stem:
``<stem>.lora_down.weight`` + ``<stem>.lora_up.weight`` + ``<stem>.alpha`` (kohya), ``<stem>.lora_A.weight``
+ ``<stem>.lora_B.weight`` (PEFT/diffusers), ``<stem>.hada_w1_a``... (LyCORIS LoHa) and so on. The suffixes
are those the public loaders read (ComfyUI ``comfy/lora.py`` and ``comfy/weight_adapter/*.py``, LyCORIS
``lycoris/modules/*.py``). Nothing here reads tensor data.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from sdmodel.errors import ConversionError
from sdmodel.formats.base import TensorInfo
from sdmodel.i18n import Msg

# diffusers loaders/lora_base.py LORA_ADAPTER_METADATA_KEY: per component a PEFT LoraConfig
# (``<component>.lora_alpha``, ``<component>.alpha_pattern`` keyed by module path...).
PEFT_METADATA_KEY = "lora_adapter_metadata"

Algorithm = Literal["lora", "locon", "loha", "lokr", "full", "oft", "boft", "glora", "ia3", "norm", "set"]
ALGORITHMS: tuple[str, ...] = ("lora", "locon", "loha", "lokr", "full", "oft", "boft", "glora", "ia3", "norm", "set")

# (suffix, algorithm family, role). Longest suffixes are tried first (see _SORTED).
SUFFIXES: tuple[tuple[str, str, str], ...] = (
    # plain LoRA in its spellings: kohya, PEFT, diffusers attention processors, Mochi, transformers
    (".lora_up.weight", "lora", "up"),
    (".lora_down.weight", "lora", "down"),
    (".lora_mid.weight", "lora", "mid"),
    (".lora_B.weight", "lora", "up"),
    (".lora_A.weight", "lora", "down"),
    (".lora_B.default.weight", "lora", "up"),
    (".lora_A.default.weight", "lora", "down"),
    ("_lora.up.weight", "lora", "up"),
    ("_lora.down.weight", "lora", "down"),
    (".lora.up.weight", "lora", "up"),
    (".lora.down.weight", "lora", "down"),
    (".lora_linear_layer.up.weight", "lora", "up"),
    (".lora_linear_layer.down.weight", "lora", "down"),
    (".lora_B", "lora", "up"),
    (".lora_A", "lora", "down"),
    # LyCORIS
    (".hada_w1_a", "loha", "hada_w1_a"),
    (".hada_w1_b", "loha", "hada_w1_b"),
    (".hada_w2_a", "loha", "hada_w2_a"),
    (".hada_w2_b", "loha", "hada_w2_b"),
    (".hada_t1", "loha", "hada_t1"),
    (".hada_t2", "loha", "hada_t2"),
    (".lokr_w1", "lokr", "lokr_w1"),
    (".lokr_w1_a", "lokr", "lokr_w1_a"),
    (".lokr_w1_b", "lokr", "lokr_w1_b"),
    (".lokr_w2", "lokr", "lokr_w2"),
    (".lokr_w2_a", "lokr", "lokr_w2_a"),
    (".lokr_w2_b", "lokr", "lokr_w2_b"),
    (".lokr_t1", "lokr", "lokr_t1"),
    (".lokr_t2", "lokr", "lokr_t2"),
    (".diff", "full", "diff"),
    (".diff_b", "full", "diff_b"),
    (".oft_blocks", "oft", "blocks"),
    (".rescale", "oft", "rescale"),
    (".a1.weight", "glora", "a1"),
    (".a2.weight", "glora", "a2"),
    (".b1.weight", "glora", "b1"),
    (".b2.weight", "glora", "b2"),
    (".on_input", "ia3", "on_input"),
    (".w_norm", "norm", "w_norm"),
    (".b_norm", "norm", "b_norm"),
    (".set_weight", "set", "set"),
    # shared by all algorithms
    (".alpha", "", "alpha"),
    (".dora_scale", "", "dora_scale"),
    # PEFT's DoRA magnitude: ``lora_magnitude_vector`` as PEFT saves it (the adapter name and the
    # ``.weight`` of its DoraLinearLayer removed), diffusers' kohya conversion (``.weight`` kept) and raw
    # module state dicts (``.default.weight``)
    (".lora_magnitude_vector", "", "magnitude"),
    (".lora_magnitude_vector.weight", "", "magnitude"),
    (".lora_magnitude_vector.default.weight", "", "magnitude"),
    (".lora_magnitude_vector.default", "", "magnitude"),
)
# Suffixes by the name's last dotted segment, longest first: a name is tried against a few only.
_BY_LAST: dict[str, list[tuple[str, str, str]]] = {}
for _entry in sorted(SUFFIXES, key=lambda s: -len(s[0])):
    _BY_LAST.setdefault(_entry[0].rsplit(".", 1)[-1], []).append(_entry)
_ALGO_OF_ROLE = {role: algo for _s, algo, role in SUFFIXES if algo}


@dataclass
class Target:
    """One model weight a LoRA changes: the stem its tensors share and those tensors by role."""

    stem: str
    algorithm: str = ""
    tensors: dict[str, str] = field(default_factory=dict)  # role -> tensor name in the LoRA file
    peft_alpha: float | None = None  # from the file's PEFT metadata, for targets without an alpha tensor

    @property
    def dora(self) -> bool:
        """A DoRA target: LyCORIS ``dora_scale`` or PEFT ``lora_magnitude_vector``."""
        return "dora_scale" in self.tensors or "magnitude" in self.tensors


@dataclass
class LoraKeys:
    """A LoRA file's targets (by stem, in file order) and the tensors that belong to none."""

    targets: dict[str, Target]
    other: list[str]


def split_key(name: str) -> tuple[str, str, str] | None:
    """(stem, algorithm, role) of one LoRA tensor name, or None."""
    last = name.rsplit(".", 1)[-1]
    for suffix, algo, role in _BY_LAST.get(last, ()):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], algo, role
    return None


def _algorithm(t: Target, tensors: dict[str, TensorInfo]) -> str:
    """The algorithm of a target from the roles present (LoCon = LoRA on a conv or with a Tucker mid)."""
    algos = {_ALGO_OF_ROLE[r] for r in t.tensors if r in _ALGO_OF_ROLE}
    roles = t.tensors
    if "loha" in algos:
        return "loha"
    if "lokr" in algos:
        return "lokr"
    if "glora" in algos:
        return "glora"
    if "oft" in algos and "blocks" in roles:
        return "boft" if len(tensors[roles["blocks"]].shape) == 4 else "oft"
    if "lora" in algos and "up" in roles and "down" in roles:
        return "locon" if "mid" in roles or len(tensors[roles["down"]].shape) == 4 else "lora"
    for a in ("full", "set", "norm", "ia3"):
        if a in algos:
            return a
    return ""


def parse(tensors: dict[str, TensorInfo]) -> LoraKeys:
    """Group a LoRA file's tensors by target. A stem with only ``alpha``/a DoRA magnitude or an
    incomplete pair (an ``up`` without its ``down``) is not a target: its tensors go to ``other``."""
    found: dict[str, Target] = {}
    other: list[str] = []
    for name in tensors:
        split = split_key(name)
        if split is None:
            other.append(name)
            continue
        stem, _algo, role = split
        found.setdefault(stem, Target(stem)).tensors[role] = name
    targets: dict[str, Target] = {}
    for stem, t in found.items():
        t.algorithm = _algorithm(t, tensors)
        if t.algorithm:
            targets[stem] = t
        else:
            other.extend(t.tensors.values())
    return LoraKeys(targets, other)


def rank_of(t: Target, tensors: dict[str, TensorInfo]) -> int | None:
    """The rank (inner dimension) of a low-rank target, as loaders compute the alpha scale."""
    roles = t.tensors
    if t.algorithm in ("lora", "locon"):
        return tensors[roles["down"]].shape[0]
    if t.algorithm == "loha":
        return tensors[roles["hada_w1_b"]].shape[0]
    if t.algorithm == "lokr":
        for role in ("lokr_w2_b", "lokr_w1_b"):  # ComfyUI: w2_b's rank wins when both halves are factored
            if role in roles:
                return tensors[roles[role]].shape[0]
        return None
    if t.algorithm == "glora":
        return tensors[roles["a2"]].shape[0]
    return None


def delta_shape(t: Target, tensors: dict[str, TensorInfo]) -> tuple[int, ...] | None:
    """Shape of the weight change a target makes (None for algorithms that change it otherwise)."""
    r = t.tensors

    def shape(role: str) -> tuple[int, ...]:
        return tensors[r[role]].shape

    if t.algorithm in ("lora", "locon"):
        down, up = shape("down"), shape("up")
        if "mid" in r:
            return (up[0], down[1], *shape("mid")[2:])
        return (up[0], *down[1:])
    if t.algorithm == "loha":
        if "hada_t1" in r:
            return (shape("hada_w1_a")[1], shape("hada_w1_b")[1], *shape("hada_t1")[2:])
        return (shape("hada_w1_a")[0], shape("hada_w1_b")[1])
    if t.algorithm == "lokr":
        w1 = shape("lokr_w1") if "lokr_w1" in r else (shape("lokr_w1_a")[0], shape("lokr_w1_b")[1])
        if "lokr_w2" in r:
            w2 = shape("lokr_w2")
        elif "lokr_t2" in r:
            w2 = (shape("lokr_w2_a")[1], shape("lokr_w2_b")[1], *shape("lokr_t2")[2:])
        else:
            w2 = (shape("lokr_w2_a")[0], shape("lokr_w2_b")[1])
        return (w1[0] * w2[0], w1[1] * w2[1], *w2[2:])
    if t.algorithm == "full":
        return shape("diff")
    return None


def read_peft_alphas(keys: LoraKeys, metadata: Mapping[str, str]) -> None:
    """Give each target without an alpha tensor the alpha the file's diffusers/PEFT metadata sets
    for it (the first ``alpha_pattern`` key that matches the end of its path, as PEFT matches them,
    else the component's ``lora_alpha``), as diffusers' loader does."""
    raw = metadata.get(PEFT_METADATA_KEY)
    if not raw:
        return
    try:
        meta = json.loads(raw)
        for stem, t in keys.targets.items():
            component, _dot, path = stem.partition(".")
            pattern = meta.get(f"{component}.alpha_pattern") or {}
            # peft get_pattern_key: the first key that matches the end of the module path (PEFT reads
            # keys as regular expressions; a file's keys are taken literally here, so a hostile
            # pattern cannot make the match run for ever)
            key = next((k for k in pattern if path == k or path.endswith("." + k)), None)
            if key is not None:
                t.peft_alpha = float(pattern[key])
            elif f"{component}.lora_alpha" in meta:
                t.peft_alpha = float(meta[f"{component}.lora_alpha"])
    except (ValueError, TypeError, AttributeError):
        raise ConversionError(Msg("{metadata_key} metadata is not JSON", metadata_key=PEFT_METADATA_KEY)) from None
