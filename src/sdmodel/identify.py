"""What a model is, from tensor names and shapes (driven by sdmodel.registry) plus hints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from sdmodel import registry
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.parts import MARKER_KEYS, PART_PREFIXES
from sdmodel.sidecars import existing_config

BASE_PARTS = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3")


@dataclass
class Identity:
    """The verdict of identification, with the names other programs use."""

    kind: str  # checkpoint unet vae text_encoder lora lycoris embedding controlnet t2i_adapter unknown
    family: str | None = None
    variant: str | None = None
    prediction: str = "unknown"  # epsilon | v | flow | unknown
    prediction_source: str | None = None
    signature: str | None = None
    root: str | None = None  # key prefix the network was found under ("" = standalone)
    a1111_config: str | None = None
    modelspec_architecture: str | None = None
    resolution: str | None = None
    description: str = ""
    hints: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def match_signature(tensors: dict[str, TensorInfo]) -> tuple[registry.Signature, str] | None:
    """The first registry signature whose probes all match under one of its roots."""
    for sig in registry.SIGNATURES:
        for root in sig.roots:
            if all(p.matches(tensors, root) for p in sig.probes):
                return sig, root
    return None


def _variant(sig: registry.Signature, tensors: dict[str, TensorInfo], root: str) -> str:
    for v in sig.variants:
        if v.probe.matches(tensors, root):
            return v.name
    return sig.default_variant


def _has_part(tensors: dict[str, TensorInfo], part: str) -> bool:
    prefixes = PART_PREFIXES[part]
    return any(k.startswith(prefixes) for k in tensors)


def _family_from_metadata(metadata: dict[str, str]) -> str | None:
    values = [metadata.get("ss_base_model_version", ""), metadata.get("modelspec.architecture", "")]
    for value in values:
        for prefix, family in registry.METADATA_FAMILY:
            if value.lower().startswith(prefix):
                return family
    if metadata.get("ss_v2", "").lower() == "true":
        return "sd2"
    return None


def _adapter_family(tensors: dict[str, TensorInfo], metadata: dict[str, str]) -> tuple[str | None, str]:
    family = _family_from_metadata(metadata)
    if family:
        return family, "metadata"
    for pattern, fam in registry.ADAPTER_FAMILY_KEYS:
        if any(pattern.search(k) for k in tensors):
            return fam, "key names"
    for name, info in tensors.items():
        if registry.CONTEXT_WIDTH_KEY.search(name) and info.shape:
            fam = registry.CONTEXT_WIDTH_FAMILY.get(info.shape[-1])
            if fam:
                return fam, "cross-attention width"
    return None, "unknown"


def _embedding_family(tensors: dict[str, TensorInfo]) -> str | None:
    if "clip_g" in tensors:
        return "sdxl"
    for name, info in tensors.items():
        if (name.startswith("string_to_param.") or name == "emb_params") and info.shape:
            return registry.EMBEDDING_WIDTH_FAMILY.get(info.shape[-1])
    return None


def _adapter_kind(tensors: dict[str, TensorInfo]) -> str | None:
    if any(registry.LYCORIS_KEY.search(k) for k in tensors):
        return "lycoris"
    if any(registry.LORA_KEY.search(k) for k in tensors):
        return "lora"
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
) -> tuple[str, str] | None:
    """(prediction, where it came from), from markers, metadata, a diffusers scheduler config,
    a sidecar yaml or the file name."""
    if "v_pred" in tensors or "edm_vpred.sigma_max" in tensors:
        return "v", "v_pred marker tensor"
    scheduler = SCHEDULER_PREDICTION.get(str((extras or {}).get("prediction_type")))
    if scheduler:
        return scheduler, "diffusers scheduler config"
    spec = metadata.get("modelspec.prediction_type", "").lower()
    if spec in ("v", "epsilon"):
        return spec, "modelspec.prediction_type metadata"
    if metadata.get("ss_v_parameterization", "").lower() == "true":
        return "v", "kohya ss_v_parameterization metadata"
    if path is not None:
        yaml_path = existing_config(path)
        if yaml_path is not None:
            value = _yaml_parameterization(yaml_path)
            if value:
                return value, f"sidecar {yaml_path.name}"
        if registry.V_NAME_HINT.search(path.stem):
            return "v", "file name"
    return None


def identify(source: TensorSource) -> Identity:
    """Identify a model from its tensors (names and shapes only) and the hints around it."""
    tensors = source.tensors
    path = source.path if source.path.exists() else None
    found = match_signature(tensors)
    if found is not None:
        sig, root = found
        ident = Identity(
            kind="",
            family=sig.family,
            variant=_variant(sig, tensors, root),
            signature=sig.id,
            root=root,
            description=sig.description,
        )
        if sig.network == "diffusion":
            has_base = root == registry.UNET_ROOTS[0] and any(_has_part(tensors, p) for p in BASE_PARTS)
            ident.kind = "checkpoint" if has_base else "unet"
        else:
            ident.kind = registry.KIND_OF_NETWORK[sig.network]
    else:
        kind = _adapter_kind(tensors)
        if kind is None:
            return Identity(kind="unknown")
        if kind == "embedding":
            family, how = _embedding_family(tensors), "vector width"
        else:
            family, how = _adapter_family(tensors, source.metadata)
        ident = Identity(kind=kind, family=family, variant=None, root="", description=f"{kind} ({how})")
    _resolve_prediction(ident, source, path)
    resolve_names(ident)
    return ident


def _resolve_prediction(ident: Identity, source: TensorSource, path: Path | None) -> None:
    tensors = source.tensors
    if ident.family in registry.FLOW_FAMILIES:
        ident.prediction, ident.prediction_source = "flow", "architecture"
        return
    if ident.kind in ("vae", "text_encoder", "unknown"):
        return
    hint = prediction_hint(tensors, source.metadata, path, source.extras)
    if hint:
        ident.prediction, ident.prediction_source = hint
    if "ztsnr" in tensors:
        ident.hints.append("ztsnr marker: trained with zero terminal SNR")
    if any(k.startswith("edm_") for k in tensors if k in MARKER_KEYS):
        ident.hints.append("EDM markers: sampler settings stored in the file")


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
        ident.a1111_config = registry.UNCLIP_CONFIG.get(ident.signature or "", names.a1111_config)
        ident.modelspec_architecture = names.modelspec
        return
    suffix = registry.ADAPTER_MODELSPEC.get(ident.kind)
    if suffix:
        base = registry.naming(ident.family, "base", pred).modelspec or registry.FAMILY_MODELSPEC.get(ident.family)
        ident.modelspec_architecture = f"{base}/{suffix}" if base else None


def family_label(family: str | None, variant: str | None) -> str:
    """Human label: ``SD 1.x inpaint``, ``SDXL base``..."""
    names = {
        "sd1": "SD 1.x",
        "sd2": "SD 2.x",
        "sdxl": "SDXL",
        "sdxl_refiner": "SDXL refiner",
        "sd3": "SD 3",
        "flux": "Flux.1",
    }
    if family is None:
        return "-"
    label = names.get(family, family)
    return f"{label} {variant}" if variant and variant != "base" else label
