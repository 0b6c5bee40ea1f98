"""The model-family registry: each family a small declarative description (DOMAIN.md section 4).

Detection (sdmodel.identify) walks ``SIGNATURES`` in order and takes the first whose probes all
match; a signature is tried under each of its key roots (``model.diffusion_model.`` for a
checkpoint's UNet, ``""`` for a standalone file...). Nothing here reads files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Probe:
    """A tensor that must exist under the root, with an optional shape (``None`` = any size).
    ``key`` ending in ``*`` matches any key starting with the rest."""

    key: str
    shape: tuple[int | None, ...] | None = None

    def matches(self, tensors: dict, root: str) -> bool:
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
    """A variant of a family, told by one probe (e.g. 9 UNet input channels = inpaint)."""

    name: str
    probe: Probe


@dataclass(frozen=True)
class Signature:
    """One architecture: what it is called and how to recognise it from names and shapes."""

    id: str
    network: str  # diffusion | controlnet | t2i_adapter | vae | text_encoder
    family: str | None
    roots: tuple[str, ...]
    probes: tuple[Probe, ...]
    variants: tuple[Variant, ...] = ()
    default_variant: str = "base"
    description: str = ""


UNET_ROOTS = ("model.diffusion_model.", "", "unet.", "model.")
CONTROL_ROOTS = ("control_model.", "", "controlnet.")
STANDALONE = ("",)

SD_TO_K = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
IN_CONV = "input_blocks.0.0.weight"


def _unet_variants(channels: dict[int, str]) -> tuple[Variant, ...]:
    return tuple(Variant(name, Probe(IN_CONV, (None, ch, 3, 3))) for ch, name in channels.items())


SD_VARIANTS = _unet_variants({9: "inpaint", 8: "pix2pix", 5: "depth"})

SIGNATURES: tuple[Signature, ...] = (
    # --- ControlNet first: a stripped ControlNet has UNet input blocks at the root too ---
    # (LDM names, with or without control_model.; diffusers names)
    Signature(
        "controlnet_sdxl",
        "controlnet",
        "sdxl",
        CONTROL_ROOTS,
        (
            Probe("input_hint_block.0.weight"),
            Probe("input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", (640, 2048)),
        ),
    ),
    Signature(
        "controlnet_sd2",
        "controlnet",
        "sd2",
        CONTROL_ROOTS,
        (Probe("input_hint_block.0.weight"), Probe(SD_TO_K, (320, 1024))),
    ),
    Signature(
        "controlnet_sd1",
        "controlnet",
        "sd1",
        CONTROL_ROOTS,
        (Probe("input_hint_block.0.weight"), Probe(SD_TO_K, (320, 768))),
    ),
    Signature(
        "controlnet_sdxl_diffusers",
        "controlnet",
        "sdxl",
        STANDALONE,
        (
            Probe("controlnet_cond_embedding.conv_in.weight"),
            Probe("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight", (640, 2048)),
        ),
    ),
    Signature(
        "controlnet_sd2_diffusers",
        "controlnet",
        "sd2",
        STANDALONE,
        (
            Probe("controlnet_cond_embedding.conv_in.weight"),
            Probe("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", (320, 1024)),
        ),
    ),
    Signature(
        "controlnet_sd1_diffusers",
        "controlnet",
        "sd1",
        STANDALONE,
        (
            Probe("controlnet_cond_embedding.conv_in.weight"),
            Probe("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", (320, 768)),
        ),
    ),
    # --- diffusion networks (UNet / DiT) ---
    Signature(
        "sdxl_refiner",
        "diffusion",
        "sdxl_refiner",
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1536, 2560)),),
        description="SDXL refiner",
    ),
    Signature(
        "sdxl",
        "diffusion",
        "sdxl",
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1280, 2816)),),
        _unet_variants({9: "inpaint", 8: "pix2pix"}),
        description="SDXL base",
    ),
    Signature(
        "sd2_unclip_l",
        "diffusion",
        "sd2",
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1280, 1536)), Probe(SD_TO_K, (320, 1024))),
        default_variant="unclip",
        description="SD 2.1 unCLIP (CLIP-L image encoder)",
    ),
    Signature(
        "sd2_unclip_h",
        "diffusion",
        "sd2",
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1280, 2048)), Probe(SD_TO_K, (320, 1024))),
        default_variant="unclip",
        description="SD 2.1 unCLIP (OpenCLIP-H image encoder)",
    ),
    Signature("sd2", "diffusion", "sd2", UNET_ROOTS, (Probe(SD_TO_K, (320, 1024)),), SD_VARIANTS, description="SD 2.x"),
    Signature("sd1", "diffusion", "sd1", UNET_ROOTS, (Probe(SD_TO_K, (320, 768)),), SD_VARIANTS, description="SD 1.x"),
    Signature(
        "sd3",
        "diffusion",
        "sd3",
        UNET_ROOTS,
        (Probe("x_embedder.proj.weight"), Probe("joint_blocks.*")),
        (Variant("large", Probe("joint_blocks.37.*")),),
        default_variant="medium",
        description="SD 3 / 3.5 (MMDiT)",
    ),
    Signature(
        "flux",
        "diffusion",
        "flux",
        UNET_ROOTS,
        (Probe("double_blocks.0.img_attn.norm.key_norm.scale"), Probe("img_in.weight")),
        (Variant("dev", Probe("guidance_in.in_layer.weight")),),
        default_variant="schnell",
        description="Flux.1",
    ),
    # --- T2I-Adapter: pixel-unshuffled input (8x8 for full, 4x4 for light/style) ---
    Signature(
        "t2i_adapter_sdxl",
        "t2i_adapter",
        "sdxl",
        ("", "adapter."),
        (Probe("conv_in.weight", (None, 768, None, None)), Probe("body.*")),
    ),
    Signature(
        "t2i_adapter_sdxl_light",
        "t2i_adapter",
        "sdxl",
        ("", "adapter."),
        (Probe("conv_in.weight", (None, 256, None, None)), Probe("body.*")),
    ),
    Signature(
        "t2i_adapter_sd1",
        "t2i_adapter",
        "sd1",
        ("", "adapter."),
        (Probe("conv_in.weight", (None, 192, None, None)), Probe("body.*")),
    ),
    Signature(
        "t2i_adapter_sd1_light",
        "t2i_adapter",
        "sd1",
        ("", "adapter."),
        (Probe("conv_in.weight", (None, 64, None, None)), Probe("body.*")),
    ),
    # --- standalone VAE (LDM and diffusers names share these two) ---
    Signature(
        "vae_16ch",
        "vae",
        None,
        STANDALONE,
        (Probe("encoder.conv_in.weight", (128, 3, 3, 3)), Probe("decoder.conv_in.weight", (512, 16, 3, 3))),
        default_variant="16ch",
        description="16-channel VAE (SD3 / Flux)",
    ),
    Signature(
        "vae",
        "vae",
        None,
        STANDALONE,
        (Probe("encoder.conv_in.weight", (128, 3, 3, 3)), Probe("decoder.conv_in.weight", (512, 4, 3, 3))),
        default_variant="4ch",
        description="4-channel VAE (SD1 / SD2 / SDXL)",
    ),
    # --- standalone text encoders ---
    Signature(
        "clip_g",
        "text_encoder",
        None,
        ("", "text_model.", "transformer."),
        (Probe("text_model.encoder.layers.31.self_attn.q_proj.weight", (1280, 1280)),),
        default_variant="clip_g",
        description="OpenCLIP bigG (HF names)",
    ),
    Signature(
        "clip_g_openclip",
        "text_encoder",
        None,
        ("", "model."),
        (Probe("transformer.resblocks.31.attn.in_proj_weight", (3840, 1280)),),
        default_variant="clip_g",
        description="OpenCLIP bigG (OpenCLIP names)",
    ),
    Signature(
        "openclip_h",
        "text_encoder",
        None,
        ("", "model."),
        (Probe("transformer.resblocks.22.attn.in_proj_weight", (3072, 1024)),),
        default_variant="openclip_h",
        description="OpenCLIP ViT-H (OpenCLIP names)",
    ),
    Signature(
        "openclip_h_hf",
        "text_encoder",
        None,
        ("", "transformer."),
        (Probe("text_model.encoder.layers.22.self_attn.q_proj.weight", (1024, 1024)),),
        default_variant="openclip_h",
        description="OpenCLIP ViT-H (HF names)",
    ),
    Signature(
        "clip_l",
        "text_encoder",
        None,
        ("", "transformer.", "cond_stage_model.transformer."),
        (Probe("text_model.encoder.layers.11.self_attn.q_proj.weight", (768, 768)),),
        default_variant="clip_l",
        description="CLIP ViT-L/14",
    ),
    Signature(
        "t5xxl",
        "text_encoder",
        None,
        ("", "text_encoders.t5xxl.transformer."),
        (Probe("encoder.block.23.layer.0.SelfAttention.q.weight"),),
        default_variant="t5xxl",
        description="T5-XXL encoder",
    ),
)

# What a matched network makes of the whole file: (network, has other parts) -> kind.
KIND_OF_NETWORK: dict[str, str] = {
    "controlnet": "controlnet",
    "t2i_adapter": "t2i_adapter",
    "vae": "vae",
    "text_encoder": "text_encoder",
}

# --- adapters: LoRA, LyCORIS, textual inversion ---------------------------------------------

# A key that marks a file as an adapter, regardless of base family.
LORA_KEY = re.compile(r"(^lora_(unet|te\d?|transformer)_.*\.lora_(down|up)\.weight$)|(\.lora_[AB]\.weight$)")
LYCORIS_KEY = re.compile(
    r"\.(hada_w1_a|hada_w2_a|lokr_w1|lokr_w1_a|lokr_w2|lokr_w2_a|oft_blocks|oft_diag|diff|diff_b)$"
)
EMBEDDING_KEYS: tuple[str, ...] = ("string_to_param.*", "emb_params", "clip_l", "clip_g")

# Base family from the width of a cross-attention key projection (the text embedding width).
CONTEXT_WIDTH_FAMILY: dict[int, str] = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
# Adapter keys whose last dimension is that width.
CONTEXT_WIDTH_KEY = re.compile(
    r"attn2[._]to_k[._.]*.*\.(lora_down\.weight|lora_A\.weight|hada_w1_b|hada_w2_b|lokr_w2|lokr_w2_b)$"
)
# Adapter key patterns that name the base family directly.
ADAPTER_FAMILY_KEYS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^lora_te[12]_"), "sdxl"),
    (re.compile(r"double_blocks|single_blocks"), "flux"),
    (re.compile(r"joint_blocks"), "sd3"),
    (re.compile(r"^lora_te_text_model_encoder_layers_(1[2-9]|2\d)_"), "sd2"),
)
# Embedding vector width -> family.
EMBEDDING_WIDTH_FAMILY: dict[int, str] = {768: "sd1", 1024: "sd2", 1280: "sdxl"}

# kohya ss_base_model_version / modelspec architecture prefixes -> family.
METADATA_FAMILY: tuple[tuple[str, str], ...] = (
    ("sdxl_refiner", "sdxl_refiner"),
    ("stable-diffusion-xl-v1-refiner", "sdxl_refiner"),
    ("sdxl", "sdxl"),
    ("stable-diffusion-xl", "sdxl"),
    ("sd_v2", "sd2"),
    ("sd_2", "sd2"),
    ("stable-diffusion-v2", "sd2"),
    ("sd_v1", "sd1"),
    ("sd_1", "sd1"),
    ("stable-diffusion-v1", "sd1"),
    ("sd3", "sd3"),
    ("stable-diffusion-3", "sd3"),
    ("flux", "flux"),
)

# --- names other programs use -----------------------------------------------------------------


@dataclass(frozen=True)
class Naming:
    a1111_config: str | None
    modelspec: str | None
    resolution: str | None


# (family, variant, prediction) -> names; prediction None = whatever the prediction.
NAMES: dict[tuple[str, str, str | None], Naming] = {
    ("sd1", "base", None): Naming("v1-inference.yaml", "stable-diffusion-v1", "512x512"),
    ("sd1", "inpaint", None): Naming("v1-inpainting-inference.yaml", "stable-diffusion-v1-inpainting", "512x512"),
    ("sd1", "pix2pix", None): Naming("instruct-pix2pix.yaml", "stable-diffusion-v1-instruct-pix2pix", "512x512"),
    ("sd2", "base", "v"): Naming("v2-inference-v.yaml", "stable-diffusion-v2-768-v", "768x768"),
    ("sd2", "base", "epsilon"): Naming("v2-inference.yaml", "stable-diffusion-v2-512", "512x512"),
    ("sd2", "base", None): Naming(None, None, None),
    ("sd2", "inpaint", None): Naming("v2-inpainting-inference.yaml", "stable-diffusion-v2-inpainting", "512x512"),
    ("sd2", "depth", None): Naming("v2-midas-inference.yaml", "stable-diffusion-v2-depth", "512x512"),
    ("sd2", "unclip", None): Naming(None, "stable-diffusion-v2-unclip", "768x768"),
    ("sdxl", "base", None): Naming("sd_xl_base.yaml", "stable-diffusion-xl-v1-base", "1024x1024"),
    ("sdxl", "base", "v"): Naming("sd_xl_v.yaml", "stable-diffusion-xl-v1-base", "1024x1024"),
    ("sdxl", "inpaint", None): Naming("sd_xl_inpaint.yaml", "stable-diffusion-xl-v1-inpainting", "1024x1024"),
    ("sdxl_refiner", "base", None): Naming("sd_xl_refiner.yaml", "stable-diffusion-xl-v1-refiner", "1024x1024"),
    ("sd3", "medium", None): Naming(None, "stable-diffusion-v3-medium", "1024x1024"),
    ("sd3", "large", None): Naming(None, "stable-diffusion-v3.5-large", "1024x1024"),
    ("flux", "dev", None): Naming(None, "flux-1-dev", "1024x1024"),
    ("flux", "schnell", None): Naming(None, "flux-1-schnell", "1024x1024"),
}
# unCLIP config depends on the image encoder: told by the signature id.
UNCLIP_CONFIG: dict[str, str] = {
    "sd2_unclip_l": "v2-1-stable-unclip-l-inference.yaml",
    "sd2_unclip_h": "v2-1-stable-unclip-h-inference.yaml",
}
# ModelSpec suffixes for adapters (kohya's sai_model_spec convention: "<base>/<adapter>").
ADAPTER_MODELSPEC: dict[str, str] = {
    "lora": "lora",
    "lycoris": "lora",
    "embedding": "textual-inversion",
    "controlnet": "controlnet",
    "t2i_adapter": "t2i-adapter",
}

# Families whose checkpoints A1111 cannot load without a yaml beside them.
NEEDS_YAML: frozenset[str] = frozenset({"sd2"})


def naming(family: str | None, variant: str | None, prediction: str | None) -> Naming:
    if family is None or variant is None:
        return Naming(None, None, None)
    for key in ((family, variant, prediction), (family, variant, None)):
        if key in NAMES:
            return NAMES[key]
    return Naming(None, None, None)


@cache
def probe_suffixes() -> tuple[str, ...]:
    """Every probed key (without roots): shape-carrying tensors test fixtures must keep real."""
    keys = {p.key for s in SIGNATURES for p in s.probes if not p.key.endswith("*")}
    keys |= {v.probe.key for s in SIGNATURES for v in s.variants if not v.probe.key.endswith("*")}
    return tuple(sorted(keys))


# Base ModelSpec architecture of a family, for adapters when the exact variant is not known.
FAMILY_MODELSPEC: dict[str, str] = {
    "sd1": "stable-diffusion-v1",
    "sd2": "stable-diffusion-v2",
    "sdxl": "stable-diffusion-xl-v1-base",
    "sdxl_refiner": "stable-diffusion-xl-v1-refiner",
    "sd3": "stable-diffusion-v3",
    "flux": "flux-1",
}

# Families whose prediction is fixed by the architecture (rectified flow), not by hints.
FLOW_FAMILIES: frozenset[str] = frozenset({"sd3", "flux"})

# File-name fragments that hint at v-prediction (e.g. "768-v-ema", "noobai-vpred").
V_NAME_HINT = re.compile(r"(^|[-_. ])(v[-_]?pred(iction)?|768-v|v-?param(eterization)?)([-_. ]|$)", re.IGNORECASE)
