"""The record types of the registry: a ``Family`` says everything about one model family, a
``Signature`` says how to recognise one network (of a family, or a family-neutral VAE / text encoder)
from tensor names and shapes. Pure data and matching; nothing here reads files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

Network = Literal[
    "diffusion", "controlnet", "t2i_adapter", "ip_adapter", "vae", "text_encoder", "image_encoder", "upscaler"
]
Prediction = Literal["epsilon", "v", "flow"]
Area = Literal["image", "video", "encoder"]
# How the diffusers reader renames a component to its single-file names (formats/diffusers_map.py).
Mapping = Literal["unet", "vae", "clip_l", "openclip"]
ComfyClipLoader = Literal["CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader", "QuadrupleCLIPLoader"]


def _check(value: object, allowed: Any, what: str) -> None:
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"{what} {value!r}: expected one of {', '.join(map(str, choices))}")


@dataclass(frozen=True)
class Probe:
    """A tensor that must exist under the root, with an optional shape (``None`` = any size).
    ``key`` ending in ``*`` matches any key starting with the rest. ``absent``: the tensor must not
    exist (e.g. a block SSD-1B drops); ``absolute``: the key is not under the root (a tensor beside
    the diffusion model, e.g. Zero123's camera projection)."""

    key: str
    shape: tuple[int | None, ...] | None = None
    absent: bool = False
    absolute: bool = False

    def matches(self, tensors: dict, root: str) -> bool:
        return self._found(tensors, "" if self.absolute else root) != self.absent

    def _found(self, tensors: dict, root: str) -> bool:
        if self.key.endswith("*"):
            prefix = root + self.key[:-1]
            return any(k.startswith(prefix) for k in tensors)
        info = tensors.get(root + self.key)
        if info is None:
            return False
        if self.shape is None:
            return True
        shape = info.shape
        if len(shape) != len(self.shape):
            return False
        return all(w is None or w == d for w, d in zip(self.shape, shape, strict=True))


@dataclass(frozen=True)
class Variant:
    """A variant of a family, told by its probes all matching (e.g. 9 UNet input channels = inpaint).
    ``candidates``: other variants with the same names and shapes (said, never guessed)."""

    name: str
    probes: tuple[Probe, ...]
    candidates: tuple[str, ...] = ()
    label: str = ""  # human description when it says more than the name (e.g. "klein 4B")

    def matches(self, tensors: dict, root: str) -> bool:
        return all(p.matches(tensors, root) for p in self.probes)


@dataclass(frozen=True)
class Naming:
    """What other programs call one variant (at one prediction; ``None`` = whatever the prediction)."""

    variant: str
    prediction: Prediction | None = None
    a1111_config: str | None = None
    modelspec: str | None = None
    resolution: str | None = None
    # where this variant's lone diffusion model needs other companions than its family's:
    text_encoders: tuple[str, ...] | None = None
    vae: str | None = None
    comfy_clip_type: str | None = None


NO_NAMES = Naming("")


@dataclass(frozen=True)
class Component:
    """One part of a whole checkpoint: its diffusers folder (``role``), its single-file key prefix and
    how the diffusers reader renames it (``None``: diffusers names are kept under ``<role>.``)."""

    role: str
    prefix: str
    mapping: Mapping | None = None


@dataclass(frozen=True)
class Family:
    """Everything about one model family. Identification finds a ``Signature``; the rest is here."""

    id: str
    label: str
    area: Area
    # Names other programs use, per variant (and prediction); the first entry is the family's base.
    names: tuple[Naming, ...] = ()
    modelspec: str | None = None  # ModelSpec architecture when only the family is known (adapters)
    prediction: Prediction | None = None  # fixed by the architecture (rectified flow), else from hints
    needs_yaml: bool = False  # A1111 cannot load a checkpoint without a yaml beside it (names say which)
    context_width: int | None = None  # cross-attention (text context) width of the UNet
    embedding_width: int | None = None  # textual-inversion vector width
    metadata_aliases: tuple[str, ...] = ()  # kohya ss_base_model_version / ModelSpec prefixes
    components: tuple[Component, ...] = ()  # of a whole checkpoint, in presentation order
    resolution: str | None = None  # native resolution
    gguf_arch: str | None = None  # ComfyUI-GGUF general.architecture
    # What a lone diffusion model needs beside it: text-encoder and VAE signature variants.
    text_encoders: tuple[str, ...] = ()
    vae: str | None = None
    diffusers_classes: tuple[str, ...] = ()  # UNet / transformer class names in diffusers configs
    # How ComfyUI loads the text encoders of a lone diffusion model: the node (ComfyUI nodes.py
    # CLIPLoader / DualCLIPLoader / TripleCLIPLoader, comfy_extras/nodes_hidream.py
    # QuadrupleCLIPLoader) and its ``type`` value (None: the node has no type input). No node:
    # ComfyUI has no text-encoder loader type for this family (it loads whole checkpoints only).
    comfy_clip_loader: ComfyClipLoader | None = None
    comfy_clip_type: str | None = None

    def __post_init__(self) -> None:
        _check(self.area, Area, f"family {self.id}: area")
        if self.prediction is not None:
            _check(self.prediction, Prediction, f"family {self.id}: prediction")
        if self.comfy_clip_loader is not None:
            _check(self.comfy_clip_loader, ComfyClipLoader, f"family {self.id}: comfy_clip_loader")
        for c in self.components:
            if c.mapping is not None:
                _check(c.mapping, Mapping, f"family {self.id}: component {c.role} mapping")

    def naming(self, variant: str, prediction: str | None) -> Naming:
        for want in (prediction, None):
            for n in self.names:
                if n.variant == variant and n.prediction == want:
                    return n
        return NO_NAMES

    def companions(self, variant: str | None) -> tuple[tuple[str, ...], str | None, str | None]:
        """(text encoders, VAE, ComfyUI CLIP type) a lone diffusion model of this variant needs."""
        own = self.naming(variant, None) if variant else NO_NAMES
        return (
            own.text_encoders if own.text_encoders is not None else self.text_encoders,
            own.vae or self.vae,
            own.comfy_clip_type or self.comfy_clip_type,
        )

    def component(self, role: str) -> Component | None:
        return next((c for c in self.components if c.role == role), None)


@dataclass(frozen=True)
class Signature:
    """One architecture: what it is called and how to recognise it from names and shapes.
    ``roots``: key prefixes the probes are tried under (``""`` = standalone)."""

    id: str
    network: Network
    family: Family | None
    roots: tuple[str, ...]
    probes: tuple[Probe, ...]
    variants: tuple[Variant, ...] = ()
    default_variant: str | None = "base"  # None: the variant cannot be told when no variant matches
    description: str = ""
    candidates: tuple[str, ...] = ()  # other variants the default cannot be told from
    a1111_config: str | None = None  # overrides the family's (told by this signature, e.g. unCLIP)

    def __post_init__(self) -> None:
        _check(self.network, Network, f"signature {self.id}: network")

    def matches(self, tensors: dict, root: str) -> bool:
        return all(p.matches(tensors, root) for p in self.probes)

    def variant(self, tensors: dict, root: str) -> Variant:
        for v in self.variants:
            if v.matches(tensors, root):
                return v
        return Variant(self.default_variant or "", (), self.candidates)
