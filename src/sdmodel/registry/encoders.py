"""Networks that serve a family rather than being one: ControlNets and T2I-Adapters (which point at
their base family), and the family-neutral VAEs and text encoders (``family`` None; the ``variant``
names them, e.g. ``16ch`` or ``t5xxl``)."""

from __future__ import annotations

from sdmodel.registry.image import SD1, SD2, SD_TO_K, SDXL
from sdmodel.registry.model import Probe, Signature

CONTROL_ROOTS = ("control_model.", "", "controlnet.")
STANDALONE = ("",)

# ControlNets come first in the match order: a stripped ControlNet has UNet input blocks at the root.
CONTROLNETS: tuple[Signature, ...] = (
    # LDM names, with or without control_model.
    Signature(
        "controlnet_sdxl",
        "controlnet",
        SDXL,
        CONTROL_ROOTS,
        (
            Probe("input_hint_block.0.weight"),
            Probe("input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight", (640, 2048)),
        ),
    ),
    Signature(
        "controlnet_sd2",
        "controlnet",
        SD2,
        CONTROL_ROOTS,
        (Probe("input_hint_block.0.weight"), Probe(SD_TO_K, (320, 1024))),
    ),
    Signature(
        "controlnet_sd1",
        "controlnet",
        SD1,
        CONTROL_ROOTS,
        (Probe("input_hint_block.0.weight"), Probe(SD_TO_K, (320, 768))),
    ),
    # diffusers names
    Signature(
        "controlnet_sdxl_diffusers",
        "controlnet",
        SDXL,
        STANDALONE,
        (
            Probe("controlnet_cond_embedding.conv_in.weight"),
            Probe("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight", (640, 2048)),
        ),
    ),
    Signature(
        "controlnet_sd2_diffusers",
        "controlnet",
        SD2,
        STANDALONE,
        (
            Probe("controlnet_cond_embedding.conv_in.weight"),
            Probe("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", (320, 1024)),
        ),
    ),
    Signature(
        "controlnet_sd1_diffusers",
        "controlnet",
        SD1,
        STANDALONE,
        (
            Probe("controlnet_cond_embedding.conv_in.weight"),
            Probe("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight", (320, 768)),
        ),
    ),
)

# T2I-Adapter: pixel-unshuffled input (8x8 for full, 4x4 for light/style).
T2I_ADAPTERS: tuple[Signature, ...] = (
    Signature(
        "t2i_adapter_sdxl",
        "t2i_adapter",
        SDXL,
        ("", "adapter."),
        (Probe("conv_in.weight", (None, 768, None, None)), Probe("body.*")),
    ),
    Signature(
        "t2i_adapter_sdxl_light",
        "t2i_adapter",
        SDXL,
        ("", "adapter."),
        (Probe("conv_in.weight", (None, 256, None, None)), Probe("body.*")),
    ),
    Signature(
        "t2i_adapter_sd1",
        "t2i_adapter",
        SD1,
        ("", "adapter."),
        (Probe("conv_in.weight", (None, 192, None, None)), Probe("body.*")),
    ),
    Signature(
        "t2i_adapter_sd1_light",
        "t2i_adapter",
        SD1,
        ("", "adapter."),
        (Probe("conv_in.weight", (None, 64, None, None)), Probe("body.*")),
    ),
)

# Standalone VAEs (LDM and diffusers names share these two keys).
VAES: tuple[Signature, ...] = (
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
)

TEXT_ENCODERS: tuple[Signature, ...] = (
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
