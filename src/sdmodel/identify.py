"""What a model is, from tensor names and shapes (driven by sdmodel.registry) plus hints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from sdmodel import registry
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.formats.diffusers_map import with_ldm_unet_names
from sdmodel.i18n import N_, Msg
from sdmodel.lora.info import describe as describe_lora
from sdmodel.parts import MARKER_KEYS, PART_PREFIXES
from sdmodel.sidecars import existing_config
from sdmodel.vocab import MODEL_KINDS, ModelKind

BASE_PARTS = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3")


@dataclass
class Identity:
    """The verdict of identification, with the names other programs use."""

    kind: ModelKind
    family: str | None = None
    variant: str | None = None
    prediction: str = "unknown"  # epsilon | v | flow | unknown
    prediction_source: str | Msg | None = None  # translated where shown
    signature: str | None = None
    root: str | None = None  # key prefix the network was found under ("" = standalone)
    a1111_config: str | None = None
    modelspec_architecture: str | None = None
    resolution: str | None = None
    description: str = ""
    hints: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)  # other variants names and shapes cannot rule out
    # What a lone diffusion model needs beside it (registry text-encoder and VAE ids).
    needs_text_encoders: list[str] = field(default_factory=list)
    needs_vae: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind {self.kind!r}: expected one of {', '.join(MODEL_KINDS)}")

    def to_dict(self) -> dict:
        return asdict(self)


def match_signature(tensors: dict[str, TensorInfo]) -> tuple[registry.Signature, str, dict[str, TensorInfo]] | None:
    """The first registry signature whose probes all match under one of its roots, with the root and
    the names it matched (a lone diffusers UNet is matched under its LDM names)."""
    found = registry.match(tensors)
    if found is not None:
        return found[0], found[1], tensors
    if "conv_in.weight" in tensors:
        unet = with_ldm_unet_names(tensors)
        found = registry.match(unet, registry.DIFFUSION_SIGNATURES)
        if found is not None:
            return found[0], found[1], unet
    return None


def _has_part(tensors: dict[str, TensorInfo], part: str) -> bool:
    prefixes = PART_PREFIXES[part]
    return any(k.startswith(prefixes) for k in tensors)


def _embedding_family(tensors: dict[str, TensorInfo]) -> str | None:
    if "clip_g" in tensors:
        return "sdxl"
    for name, info in tensors.items():
        if (name.startswith("string_to_param.") or name == "emb_params") and info.shape:
            return registry.family_by_embedding_width(info.shape[-1])
    return None


def _adapter_kind(tensors: dict[str, TensorInfo]) -> str | None:
    if any(registry.Probe(k).matches(tensors, "") for k in registry.EMBEDDING_KEYS):
        return "embedding"
    return None


def _yaml_parameterization(path: Path) -> str | None:
    """``model.params.parameterization`` of a sidecar config, read as data (never instantiated)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError):
        return None
    params = doc.get("model", {}).get("params", {}) if isinstance(doc, dict) else {}
    if not isinstance(params, dict):
        return None
    value = params.get("parameterization", "eps")
    return {"v": "v", "eps": "epsilon", "epsilon": "epsilon"}.get(str(value))


SCHEDULER_PREDICTION = {"v_prediction": "v", "epsilon": "epsilon"}


def prediction_hint(
    tensors: dict[str, TensorInfo], metadata: dict[str, str], path: Path | None, extras: dict | None = None
) -> tuple[str, str | Msg] | None:
    """(prediction, where it came from), from markers, metadata, a diffusers scheduler config,
    a sidecar yaml or the file name."""
    if "v_pred" in tensors or "edm_vpred.sigma_max" in tensors:
        return "v", N_("v_pred marker tensor")
    scheduler = SCHEDULER_PREDICTION.get(str((extras or {}).get("prediction_type")))
    if scheduler:
        return scheduler, N_("diffusers scheduler config")
    spec = metadata.get("modelspec.prediction_type", "").lower()
    if spec in ("v", "epsilon"):
        return spec, N_("modelspec.prediction_type metadata")
    if metadata.get("ss_v_parameterization", "").lower() == "true":
        return "v", N_("kohya ss_v_parameterization metadata")
    if path is not None:
        yaml_path = existing_config(path)
        if yaml_path is not None:
            value = _yaml_parameterization(yaml_path)
            if value:
                return value, Msg("sidecar {name}", name=yaml_path.name)
        if registry.V_NAME_HINT.search(path.stem):
            return "v", N_("file name")
    return None


def identify(source: TensorSource) -> Identity:
    """Identify a model from its tensors (names and shapes only) and the hints around it."""
    tensors = source.tensors
    path = source.path if source.path.exists() else None
    found = match_signature(tensors)
    if found is not None:
        sig, root, names = found
        variant = sig.variant(names, root)
        kind: ModelKind = sig.network if sig.network != "diffusion" else "unet"
        # a diffusion model under the checkpoint root with any base part beside it is a checkpoint
        in_checkpoint = sig.network == "diffusion" and root == registry.UNET_ROOTS[0]
        if in_checkpoint and any(_has_part(tensors, p) for p in BASE_PARTS):
            kind = "checkpoint"
        ident = Identity(
            kind=kind,
            family=sig.family.id if sig.family else None,
            variant=variant.name or None,
            signature=sig.id,
            root=root,
            description=f"{sig.description} ({variant.label})" if variant.label else sig.description,
            candidates=list(variant.candidates),
        )
    elif (lora := describe_lora(source, read_alphas=False)) is not None:
        # LoRA / LyCORIS: kind and base family from sdmodel.lora (family rules scoped per family)
        how = lora.family_source
        ident = Identity(kind=lora.kind, family=lora.family, variant=None, root="", description=f"{lora.kind} ({how})")
    else:
        if _adapter_kind(tensors) != "embedding":
            return Identity(kind="unknown")
        family = _embedding_family(tensors)
        ident = Identity(kind="embedding", family=family, variant=None, root="", description="embedding (vector width)")
    _resolve_prediction(ident, source, path)
    resolve_names(ident)
    return ident


def _resolve_prediction(ident: Identity, source: TensorSource, path: Path | None) -> None:
    tensors = source.tensors
    if ident.kind in ("vae", "text_encoder", "image_encoder", "upscaler", "unknown"):
        return  # a VAE, an encoder or an upscaler predicts nothing, whichever family it serves
    fam = registry.family(ident.family)
    if fam is not None and fam.prediction is not None:
        ident.prediction, ident.prediction_source = fam.prediction, N_("architecture")
        return
    hint = prediction_hint(tensors, source.metadata, path, source.extras)
    if hint:
        ident.prediction, ident.prediction_source = hint
    if "ztsnr" in tensors:
        ident.hints.append(N_("ztsnr marker: trained with zero terminal SNR"))
    if any(k.startswith("edm_") for k in tensors if k in MARKER_KEYS):
        ident.hints.append(N_("EDM markers: sampler settings stored in the file"))


def resolve_names(ident: Identity) -> None:
    """Fill in the A1111 config, ModelSpec architecture and resolution from family, variant and
    prediction."""
    if ident.family is None:
        return
    pred = ident.prediction if ident.prediction in ("v", "epsilon") else None
    variant = ident.variant or "base"
    names = registry.naming(ident.family, variant, pred)
    ident.resolution = names.resolution
    if ident.kind in ("checkpoint", "unet"):
        sig = registry.signature(ident.signature)
        ident.a1111_config = (sig.a1111_config if sig else None) or names.a1111_config
        ident.modelspec_architecture = names.modelspec
        fam = registry.family(ident.family)
        if ident.kind == "unet" and fam is not None:
            encoders, vae, _clip_type = fam.companions(ident.variant)
            ident.needs_text_encoders, ident.needs_vae = list(encoders), vae
        return
    suffix = registry.ADAPTER_MODELSPEC.get(ident.kind)
    if suffix:
        fam = registry.family(ident.family)
        base = registry.naming(ident.family, "base", pred).modelspec or (fam.modelspec if fam else None)
        ident.modelspec_architecture = f"{base}/{suffix}" if base else None


def family_label(family: str | None, variant: str | None) -> str:
    """Human label: ``SD 1.x inpaint``, ``SDXL``..."""
    return registry.label(family, variant)
