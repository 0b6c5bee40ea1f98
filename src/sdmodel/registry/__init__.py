"""The model-family registry: one declarative ``Family`` record per family and the ``Signature``
rows that recognise its networks (ComfyUI's comfy/supported_models.py is the model). Adding a family
is one ``Family`` entry, its signatures and a test layout.

Detection walks ``SIGNATURES`` in order and takes the first whose probes all match under one of its
key roots (``model.diffusion_model.`` for a checkpoint's UNet, ``""`` for a standalone file...).
Nothing here reads files.
"""

from __future__ import annotations

import re
from functools import cache

from sdmodel.registry import encoders, image, upscalers, video
from sdmodel.registry.adapters import (
    ADAPTER_FAMILY_KEYS,
    ADAPTER_MODELSPEC,
    CONTEXT_WIDTH_KEY,
    EMBEDDING_KEYS,
    LORA_KEY,
    LYCORIS_KEY,
)
from sdmodel.registry.image import UNET_ROOTS
from sdmodel.registry.model import NO_NAMES, Component, Family, Naming, Probe, Signature, Variant

__all__ = [
    "ADAPTER_FAMILY_KEYS",
    "ADAPTER_MODELSPEC",
    "CONTEXT_WIDTH_KEY",
    "DIFFUSION_SIGNATURES",
    "EMBEDDING_KEYS",
    "FAMILIES",
    "LORA_KEY",
    "LYCORIS_KEY",
    "SIGNATURES",
    "UNET_ROOTS",
    "V_NAME_HINT",
    "Component",
    "Family",
    "Naming",
    "Probe",
    "Signature",
    "Variant",
    "family",
    "family_by_context_width",
    "family_by_embedding_width",
    "family_from_diffusers_config",
    "family_from_metadata",
    "label",
    "match",
    "naming",
    "needs_yaml",
    "probe_suffixes",
    "signature",
]

FAMILIES: tuple[Family, ...] = (*image.FAMILIES, *video.FAMILIES)

# First match wins: ControlNets before the diffusion networks whose input blocks they copy; the
# upscalers last (their loosest probes must never shadow a more specific network).
SIGNATURES: tuple[Signature, ...] = (
    *encoders.CONTROLNETS,
    *video.EARLY_SIGNATURES,
    *image.SIGNATURES,
    *video.SIGNATURES,
    *encoders.T2I_ADAPTERS,
    *encoders.IP_ADAPTERS,
    *encoders.VAES,
    *encoders.TEXT_ENCODERS,
    *encoders.IMAGE_ENCODERS,
    *upscalers.UPSCALERS,
)

DIFFUSION_SIGNATURES: tuple[Signature, ...] = tuple(s for s in SIGNATURES if s.network == "diffusion")

_BY_ID: dict[str, Family] = {f.id: f for f in FAMILIES}
_SIG_BY_ID: dict[str, Signature] = {s.id: s for s in SIGNATURES}

# File-name fragments that hint at v-prediction (e.g. "768-v-ema", "noobai-vpred").
V_NAME_HINT = re.compile(r"(^|[-_. ])(v[-_]?pred(iction)?|768-v|v-?param(eterization)?)([-_. ]|$)", re.IGNORECASE)


def family(family_id: str | None) -> Family | None:
    """The family record of an id (``None`` for an unknown id)."""
    return _BY_ID.get(family_id) if family_id is not None else None


def match(tensors: dict, signatures: tuple[Signature, ...] = SIGNATURES) -> tuple[Signature, str] | None:
    """The first signature whose probes all match under one of its roots, with that root."""
    for sig in signatures:
        for root in sig.roots:
            if sig.matches(tensors, root):
                return sig, root
    return None


def naming(family_id: str | None, variant: str | None, prediction: str | None) -> Naming:
    fam = family(family_id)
    if fam is None or variant is None:
        return NO_NAMES
    return fam.naming(variant, prediction)


def needs_yaml(family_id: str | None) -> bool:
    """Whether A1111 needs a config yaml beside a checkpoint of this family."""
    fam = family(family_id)
    return fam is not None and fam.needs_yaml


def signature(signature_id: str | None) -> Signature | None:
    return _SIG_BY_ID.get(signature_id) if signature_id is not None else None


def label(family_id: str | None, variant: str | None) -> str:
    """Human label: ``SD 1.x inpaint``, ``SDXL``..."""
    if family_id is None:
        return "-"
    fam = family(family_id)
    text = fam.label if fam is not None else family_id
    return f"{text} {variant}" if variant and variant != "base" else text


def family_by_context_width(width: int) -> str | None:
    """The UNet family whose cross-attention (text context) has this width."""
    return next((f.id for f in FAMILIES if f.context_width == width), None)


def family_from_diffusers_config(config: dict) -> Family | None:
    """The family of a diffusers UNet / transformer config (class name and cross-attention width),
    for when names and shapes do not decide."""
    cls = config.get("_class_name", "UNet2DConditionModel")
    width = config.get("cross_attention_dim")
    if isinstance(width, list):
        width = width[0] if width else None
    found = [f for f in FAMILIES if cls in f.diffusers_classes and f.context_width == width]
    return found[0] if len(found) == 1 else None


def family_by_embedding_width(width: int) -> str | None:
    """The family whose textual-inversion vectors have this width."""
    return next((f.id for f in FAMILIES if f.embedding_width == width), None)


@cache
def _aliases() -> tuple[tuple[str, str], ...]:
    # Longest first, so "sdxl_refiner" wins over "sdxl".
    pairs = [(alias, f.id) for f in FAMILIES for alias in f.metadata_aliases]
    return tuple(sorted(pairs, key=lambda p: -len(p[0])))


def family_from_metadata(value: str) -> str | None:
    """The family a kohya ``ss_base_model_version`` or ModelSpec architecture value starts with."""
    value = value.lower()
    return next((fid for alias, fid in _aliases() if value.startswith(alias)), None)


@cache
def probe_suffixes() -> tuple[str, ...]:
    """Every probed key (without roots): shape-carrying tensors test fixtures must keep real."""
    probes = [p for s in SIGNATURES for p in s.probes]
    probes += [p for s in SIGNATURES for v in s.variants for p in v.probes]
    return tuple(sorted({p.key for p in probes if not p.key.endswith("*")}))
