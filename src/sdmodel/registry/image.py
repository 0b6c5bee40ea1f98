"""Image families: one ``Family`` record each, and the signatures that recognise their diffusion
networks. Facts from ComfyUI comfy/supported_models.py and comfy/model_detection.py, diffusers'
single-file loader (diffusers/loaders/single_file_utils.py) and the ModelSpec / A1111 config names."""

from __future__ import annotations

from sdmodel.registry.model import Component, Family, Naming, Probe, Signature, Variant

# Single-file prefixes of whole checkpoints (LDM / SGM / SD3 names).
UNET = "model.diffusion_model."
VAE = "first_stage_model."

UNET_ROOTS = ("model.diffusion_model.", "", "unet.", "model.")

SD_TO_K = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
IN_CONV = "input_blocks.0.0.weight"


def unet_variants(channels: dict[int, str]) -> tuple[Variant, ...]:
    """Variants told by the UNet's input channels (9 = inpaint, 8 = pix2pix, 5 = depth)."""
    return tuple(Variant(name, (Probe(IN_CONV, (None, ch, 3, 3)),)) for ch, name in channels.items())


SD1 = Family(
    "sd1",
    "SD 1.x",
    "image",
    names=(
        Naming("base", None, "v1-inference.yaml", "stable-diffusion-v1", "512x512"),
        Naming("inpaint", None, "v1-inpainting-inference.yaml", "stable-diffusion-v1-inpainting", "512x512"),
        Naming("pix2pix", None, "instruct-pix2pix.yaml", "stable-diffusion-v1-instruct-pix2pix", "512x512"),
    ),
    modelspec="stable-diffusion-v1",
    context_width=768,
    embedding_width=768,
    metadata_aliases=("sd_v1", "sd_1", "stable-diffusion-v1"),
    components=(
        Component("unet", UNET, "unet"),
        Component("vae", VAE, "vae"),
        Component("text_encoder", "cond_stage_model.transformer.", "clip_l"),
    ),
    resolution="512x512",
    gguf_arch="sd1",
    text_encoders=("clip_l",),
    vae="4ch",
    diffusers_classes=("UNet2DConditionModel",),
)

SD2 = Family(
    "sd2",
    "SD 2.x",
    "image",
    names=(
        Naming("base", "v", "v2-inference-v.yaml", "stable-diffusion-v2-768-v", "768x768"),
        Naming("base", "epsilon", "v2-inference.yaml", "stable-diffusion-v2-512", "512x512"),
        Naming("inpaint", None, "v2-inpainting-inference.yaml", "stable-diffusion-v2-inpainting", "512x512"),
        Naming("depth", None, "v2-midas-inference.yaml", "stable-diffusion-v2-depth", "512x512"),
        Naming("unclip", None, None, "stable-diffusion-v2-unclip", "768x768"),
    ),
    modelspec="stable-diffusion-v2",
    needs_yaml=True,
    context_width=1024,
    embedding_width=1024,
    metadata_aliases=("sd_v2", "sd_2", "stable-diffusion-v2"),
    components=(
        Component("unet", UNET, "unet"),
        Component("vae", VAE, "vae"),
        Component("text_encoder", "cond_stage_model.model.", "openclip"),
    ),
    resolution="768x768",
    text_encoders=("openclip_h",),
    vae="4ch",
    diffusers_classes=("UNet2DConditionModel",),
)

SDXL = Family(
    "sdxl",
    "SDXL",
    "image",
    names=(
        Naming("base", "v", "sd_xl_v.yaml", "stable-diffusion-xl-v1-base", "1024x1024"),
        Naming("base", None, "sd_xl_base.yaml", "stable-diffusion-xl-v1-base", "1024x1024"),
        Naming("inpaint", None, "sd_xl_inpaint.yaml", "stable-diffusion-xl-v1-inpainting", "1024x1024"),
    ),
    modelspec="stable-diffusion-xl-v1-base",
    context_width=2048,
    embedding_width=1280,
    metadata_aliases=("sdxl", "stable-diffusion-xl"),
    components=(
        Component("unet", UNET, "unet"),
        Component("vae", VAE, "vae"),
        Component("text_encoder", "conditioner.embedders.0.transformer.", "clip_l"),
        Component("text_encoder_2", "conditioner.embedders.1.model.", "openclip"),
    ),
    resolution="1024x1024",
    gguf_arch="sdxl",
    text_encoders=("clip_l", "clip_g"),
    vae="4ch",
    diffusers_classes=("UNet2DConditionModel",),
)

SDXL_REFINER = Family(
    "sdxl_refiner",
    "SDXL refiner",
    "image",
    names=(Naming("base", None, "sd_xl_refiner.yaml", "stable-diffusion-xl-v1-refiner", "1024x1024"),),
    modelspec="stable-diffusion-xl-v1-refiner",
    metadata_aliases=("sdxl_refiner", "stable-diffusion-xl-v1-refiner"),
    components=(
        Component("unet", UNET, "unet"),
        Component("vae", VAE, "vae"),
        Component("text_encoder_2", "conditioner.embedders.0.model.", "openclip"),
    ),
    resolution="1024x1024",
    text_encoders=("clip_g",),
    vae="4ch",
    diffusers_classes=("UNet2DConditionModel",),
)

SD3 = Family(
    "sd3",
    "SD 3",
    "image",
    names=(
        Naming("medium", None, None, "stable-diffusion-v3-medium", "1024x1024"),
        Naming("large", None, None, "stable-diffusion-v3.5-large", "1024x1024"),
    ),
    modelspec="stable-diffusion-v3",
    prediction="flow",
    metadata_aliases=("sd3", "stable-diffusion-3", "stable-diffusion-v3"),
    components=(
        Component("transformer", UNET),
        Component("vae", VAE),
        Component("text_encoder", "text_encoders.clip_l.transformer."),
        Component("text_encoder_2", "text_encoders.clip_g.transformer."),
        Component("text_encoder_3", "text_encoders.t5xxl.transformer."),
    ),
    resolution="1024x1024",
    gguf_arch="sd3",
    text_encoders=("clip_l", "clip_g", "t5xxl"),
    vae="16ch",
    diffusers_classes=("SD3Transformer2DModel",),
)

FLUX = Family(
    "flux",
    "Flux.1",
    "image",
    names=(
        Naming("dev", None, None, "flux-1-dev", "1024x1024"),
        Naming("schnell", None, None, "flux-1-schnell", "1024x1024"),
    ),
    modelspec="flux-1",
    prediction="flow",
    metadata_aliases=("flux",),
    components=(Component("transformer", UNET), Component("vae", "vae.")),
    resolution="1024x1024",
    gguf_arch="flux",
    text_encoders=("t5xxl", "clip_l"),
    vae="16ch",
    diffusers_classes=("FluxTransformer2DModel",),
)

FAMILIES: tuple[Family, ...] = (SD1, SD2, SDXL, SDXL_REFINER, SD3, FLUX)

SD_VARIANTS = unet_variants({9: "inpaint", 8: "pix2pix", 5: "depth"})

SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "sdxl_refiner",
        "diffusion",
        SDXL_REFINER,
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1536, 2560)),),
        description="SDXL refiner",
    ),
    Signature(
        "sdxl",
        "diffusion",
        SDXL,
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1280, 2816)),),
        unet_variants({9: "inpaint", 8: "pix2pix"}),
        description="SDXL base",
    ),
    Signature(
        "sd2_unclip_l",
        "diffusion",
        SD2,
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1280, 1536)), Probe(SD_TO_K, (320, 1024))),
        default_variant="unclip",
        description="SD 2.1 unCLIP (CLIP-L image encoder)",
        a1111_config="v2-1-stable-unclip-l-inference.yaml",
    ),
    Signature(
        "sd2_unclip_h",
        "diffusion",
        SD2,
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1280, 2048)), Probe(SD_TO_K, (320, 1024))),
        default_variant="unclip",
        description="SD 2.1 unCLIP (OpenCLIP-H image encoder)",
        a1111_config="v2-1-stable-unclip-h-inference.yaml",
    ),
    Signature("sd2", "diffusion", SD2, UNET_ROOTS, (Probe(SD_TO_K, (320, 1024)),), SD_VARIANTS, description="SD 2.x"),
    Signature("sd1", "diffusion", SD1, UNET_ROOTS, (Probe(SD_TO_K, (320, 768)),), SD_VARIANTS, description="SD 1.x"),
    Signature(
        "sd3",
        "diffusion",
        SD3,
        UNET_ROOTS,
        (Probe("x_embedder.proj.weight"), Probe("joint_blocks.*")),
        (Variant("large", (Probe("joint_blocks.37.*"),)),),
        default_variant="medium",
        description="SD 3 / 3.5 (MMDiT)",
    ),
    Signature(
        "flux",
        "diffusion",
        FLUX,
        UNET_ROOTS,
        (Probe("double_blocks.0.img_attn.norm.key_norm.scale"), Probe("img_in.weight")),
        (Variant("dev", (Probe("guidance_in.in_layer.weight"),)),),
        default_variant="schnell",
        description="Flux.1",
    ),
)
