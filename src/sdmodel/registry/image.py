"""Image families: one ``Family`` record each, and the signatures that recognise their diffusion
networks. Facts from ComfyUI comfy/supported_models.py and comfy/model_detection.py, diffusers'
single-file loader (diffusers/loaders/single_file_utils.py) and the ModelSpec / A1111 config names."""

from __future__ import annotations

from sdmodel.registry.model import Component, Family, Naming, Probe, Signature, Variant

# Single-file prefixes of whole checkpoints (LDM / SGM / SD3 names).
UNET = "model.diffusion_model."
VAE = "first_stage_model."

UNET_ROOTS = ("model.diffusion_model.", "diffusion_model.", "", "unet.", "model.")
# Transformers: whole checkpoint, ComfyUI / BFL lone model, bare, diffusers pipeline key prefix.
DIT_ROOTS = ("model.diffusion_model.", "diffusion_model.", "", "model.", "transformer.")

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
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="stable_diffusion",
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
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="stable_diffusion",
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
    comfy_clip_loader="DualCLIPLoader",
    comfy_clip_type="sdxl",
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
        Naming("3.5-medium", None, None, "stable-diffusion-v3.5-medium", "1024x1024"),
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
    comfy_clip_loader="TripleCLIPLoader",
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
        Naming("fill", None, None, None, "1024x1024"),
        Naming("canny", None, None, None, "1024x1024"),
        Naming("depth", None, None, None, "1024x1024"),
    ),
    modelspec="flux-1",
    prediction="flow",
    metadata_aliases=("flux",),
    components=(
        Component("transformer", UNET),
        Component("vae", "vae."),
        Component("text_encoder", "text_encoders.clip_l.transformer."),
        Component("text_encoder_2", "text_encoders.t5xxl.transformer."),
    ),
    resolution="1024x1024",
    gguf_arch="flux",
    text_encoders=("t5xxl", "clip_l"),
    comfy_clip_loader="DualCLIPLoader",
    comfy_clip_type="flux",
    vae="16ch",
    diffusers_classes=("FluxTransformer2DModel",),
)


# --- FLUX.1 relatives and successors (BFL / ComfyUI single-file names; diffusers names) ----------
# Sources: ComfyUI comfy/model_detection.py (Flux, Chroma, Chroma Radiance), diffusers
# single_file_utils.py (CHECKPOINT_KEY_NAMES "flux2", "chroma") and the diffusers model classes.

FLUX2 = Family(
    "flux2",
    "FLUX.2",
    "image",
    names=(
        Naming("dev", None, None, "Flux.2-dev", "1024x1024"),
        Naming("klein-4b", None, None, "Flux.2-klein-4b", "1024x1024", text_encoders=("qwen3_4b",)),
        Naming("klein-9b", None, None, "Flux.2-klein-9b", "1024x1024", text_encoders=("qwen3_8b",)),
    ),
    modelspec="Flux.2",
    prediction="flow",
    metadata_aliases=("flux.2", "flux2", "flux-2"),
    resolution="1024x1024",
    text_encoders=("mistral_small",),
    # ComfyUI's comfy/sd.py loads the Mistral encoder of dev, and the Qwen3 encoders of klein, as
    # FLUX.2 encoders only with CLIPLoader type flux2 (a Qwen3-4B with another type is Z-Image's).
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="flux2",
    vae="32ch",
    diffusers_classes=("Flux2Transformer2DModel",),
)

CHROMA = Family(
    "chroma",
    "Chroma",
    "image",
    names=(Naming("base", None, None, "chroma", "1024x1024"), Naming("radiance", None, None, None, "1024x1024")),
    modelspec="chroma",
    prediction="flow",
    metadata_aliases=("chroma",),
    resolution="1024x1024",
    gguf_arch="flux",  # ComfyUI-GGUF files Chroma under Flux (tools/convert.py)
    text_encoders=("t5xxl",),
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="chroma",
    vae="16ch",
    diffusers_classes=("ChromaTransformer2DModel",),
)

AURAFLOW = Family(
    "auraflow",
    "AuraFlow",
    "image",
    prediction="flow",
    metadata_aliases=("auraflow", "aura-flow"),
    resolution="1024x1024",
    gguf_arch="aura",
    text_encoders=("pile_t5xl",),
    vae="4ch",
    diffusers_classes=("AuraFlowTransformer2DModel",),
)

PIXART = Family(
    "pixart",
    "PixArt",
    "image",
    metadata_aliases=("pixart",),
    resolution="1024x1024",
    text_encoders=("t5xxl",),
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="pixart",
    vae="4ch",
    diffusers_classes=("PixArtTransformer2DModel",),
)

SANA = Family(
    "sana",
    "Sana",
    "image",
    prediction="flow",
    metadata_aliases=("sana",),
    resolution="1024x1024",
    text_encoders=("gemma2_2b",),
    vae="dc-ae",
    diffusers_classes=("SanaTransformer2DModel",),
)

HUNYUAN_DIT = Family(
    "hunyuan_dit",
    "Hunyuan-DiT",
    "image",
    metadata_aliases=("hunyuan-dit", "hunyuan_dit", "hunyuandit"),
    resolution="1024x1024",
    text_encoders=("hydit_clip", "mt5xl"),
    vae="4ch",
    diffusers_classes=("HunyuanDiT2DModel",),
)

LUMINA2 = Family(
    "lumina2",
    "Lumina Image 2.0",
    "image",
    names=(Naming("base", None, None, "lumina-2", "1024x1024"),),
    modelspec="lumina-2",
    prediction="flow",
    metadata_aliases=("lumina",),
    resolution="1024x1024",
    gguf_arch="lumina2",
    text_encoders=("gemma2_2b",),
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="lumina2",
    vae="16ch",
    diffusers_classes=("Lumina2Transformer2DModel",),
)

Z_IMAGE = Family(
    "z_image",
    "Z-Image",
    "image",
    names=(Naming("base", None, None, "Z-Image", "1024x1024"),),
    modelspec="Z-Image",
    prediction="flow",
    metadata_aliases=("z-image", "z_image", "zimage"),
    resolution="1024x1024",
    gguf_arch="lumina2",  # ComfyUI-GGUF: a Lumina 2 (NextDiT) design
    text_encoders=("qwen3_4b",),
    # ComfyUI has no z_image CLIP type: comfy/sd.py gives a Qwen3-4B file Z-Image's encoder for any
    # type but flux/flux2; ComfyUI's own Z-Image templates pick lumina2.
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="lumina2",
    vae="16ch",
    diffusers_classes=("ZImageTransformer2DModel",),
)

HIDREAM = Family(
    "hidream",
    "HiDream",
    "image",
    prediction="flow",
    metadata_aliases=("hidream",),
    resolution="1024x1024",
    gguf_arch="hidream",
    text_encoders=("clip_l", "clip_g", "t5xxl", "llama3_8b"),
    comfy_clip_loader="QuadrupleCLIPLoader",
    vae="16ch",
    diffusers_classes=("HiDreamImageTransformer2DModel",),
)

QWEN_IMAGE = Family(
    "qwen_image",
    "Qwen-Image",
    "image",
    names=(Naming("base", None, None, "Qwen-Image", "1328x1328"), Naming("edit", None, None, "Qwen-Image-Edit")),
    modelspec="Qwen-Image",
    prediction="flow",
    metadata_aliases=("qwen-image", "qwen_image", "qwenimage"),
    resolution="1328x1328",
    gguf_arch="qwen_image",
    text_encoders=("qwen25vl_7b",),
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="qwen_image",
    vae="qwen_image",
    diffusers_classes=("QwenImageTransformer2DModel", "QwenImage21Transformer2DModel"),
)

STABLE_CASCADE = Family(
    "stable_cascade",
    "Stable Cascade",
    "image",
    metadata_aliases=("stable-cascade", "stable_cascade"),
    resolution="1024x1024",
    text_encoders=("clip_g",),
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="stable_cascade",
    vae="stage_a",
    diffusers_classes=("StableCascadeUNet",),
)

KOLORS = Family(
    "kolors",
    "Kolors",
    "image",
    metadata_aliases=("kolors",),
    resolution="1024x1024",
    text_encoders=("chatglm3_6b",),
    vae="4ch",
    diffusers_classes=("UNet2DConditionModel",),
)

STABLE_ZERO123 = Family(
    "stable_zero123",
    "Stable Zero123",
    "image",
    resolution="256x256",
    text_encoders=(),  # conditioned on a CLIP image embedding, not text
    vae="4ch",
)

X4_UPSCALER = Family(
    "x4_upscaler",
    "SD x4 upscaler",
    "image",
    context_width=None,
    resolution=None,  # four times its input
    text_encoders=("openclip_h",),
    vae="x4",
    diffusers_classes=("UNet2DConditionModel",),
)

FAMILIES: tuple[Family, ...] = (
    SD1,
    SD2,
    SDXL,
    SDXL_REFINER,
    SD3,
    FLUX,
    FLUX2,
    CHROMA,
    AURAFLOW,
    PIXART,
    SANA,
    HUNYUAN_DIT,
    LUMINA2,
    Z_IMAGE,
    HIDREAM,
    QWEN_IMAGE,
    STABLE_CASCADE,
    KOLORS,
    STABLE_ZERO123,
    X4_UPSCALER,
)

SD_VARIANTS = unet_variants({9: "inpaint", 8: "pix2pix", 5: "depth"})


def _absent(key: str) -> Probe:
    return Probe(key, absent=True)


# SDXL-shaped UNets with fewer blocks (ComfyUI supported_models.py SSD1B, Segmind_Vega, KOALA_*):
# told by which transformer blocks exist. KOALA keeps one ResNet per level, so its first downsample
# is input block 2 (SDXL's is 3).
SDXL_VARIANTS = (
    Variant("koala", (Probe("input_blocks.2.0.op.weight"),), label="KOALA (distilled SDXL)"),
    Variant(
        "vega",
        (Probe("input_blocks.4.1.transformer_blocks.0.*"), _absent("input_blocks.4.1.transformer_blocks.1.*")),
        label="Segmind Vega",
    ),
    Variant(
        "ssd-1b",
        (Probe("input_blocks.7.1.transformer_blocks.3.*"), _absent("input_blocks.7.1.transformer_blocks.4.*")),
        label="Segmind SSD-1B",
    ),
    *unet_variants({9: "inpaint", 8: "pix2pix"}),
)

# Flux.1: variants by the image input width (ComfyUI / diffusers: 64 latent channels x 2x2 patches,
# 384 with Fill's mask and image, 128 with Canny's or Depth's control image) and the guidance input.
GUIDANCE = Probe("guidance_in.in_layer.weight")
FLUX_VARIANTS = (
    Variant("fill", (GUIDANCE, Probe("img_in.weight", (3072, 384)))),
    Variant("canny", (GUIDANCE, Probe("img_in.weight", (3072, 128))), candidates=("depth",)),
    Variant("dev", (GUIDANCE, Probe("img_in.weight", (3072, 64))), candidates=("kontext",)),
    Variant("schnell", (_absent("guidance_in.*"), Probe("img_in.weight", (3072, 64)))),
)
D_GUIDANCE = Probe("time_text_embed.guidance_embedder.linear_1.weight")
FLUX_DIFFUSERS_VARIANTS = (
    Variant("fill", (D_GUIDANCE, Probe("x_embedder.weight", (3072, 384)))),
    Variant("canny", (D_GUIDANCE, Probe("x_embedder.weight", (3072, 128))), candidates=("depth",)),
    Variant("dev", (D_GUIDANCE, Probe("x_embedder.weight", (3072, 64))), candidates=("kontext",)),
    Variant("schnell", (_absent("time_text_embed.guidance_embedder.*"), Probe("x_embedder.weight", (3072, 64)))),
)


def _flux2_variants(key: str) -> tuple[Variant, ...]:
    """FLUX.2 sizes by the model width (dev 6144, klein 4B 3072, klein 9B 4096; 128 input channels)."""
    sizes = {6144: ("dev", "FLUX.2 dev"), 3072: ("klein-4b", "klein 4B"), 4096: ("klein-9b", "klein 9B")}
    return tuple(Variant(name, (Probe(key, (w, 128)),), label=label) for w, (name, label) in sizes.items())


SIGNATURES: tuple[Signature, ...] = (
    # --- UNets (LDM / SGM names; diffusers UNet names are mapped to these before matching) ---
    Signature(
        "stable_cascade_c",
        "diffusion",
        STABLE_CASCADE,
        DIT_ROOTS,
        (Probe("clf.1.weight"), Probe("clip_txt_mapper.weight")),
        (Variant("stage_c", (Probe("clip_txt_mapper.weight", (2048, None)),)),),
        default_variant="stage_c",
        description="Stable Cascade stage C (prior)",
    ),
    Signature(
        "stable_cascade_b",
        "diffusion",
        STABLE_CASCADE,
        DIT_ROOTS,
        (Probe("clf.1.weight"), Probe("clip_mapper.weight"), Probe("effnet_mapper.*")),
        default_variant="stage_b",
        description="Stable Cascade stage B (decoder)",
    ),
    Signature(
        "sdxl_refiner",
        "diffusion",
        SDXL_REFINER,
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1536, 2560)),),
        description="SDXL refiner",
    ),
    Signature(
        "kolors",
        "diffusion",
        KOLORS,
        UNET_ROOTS,
        # pooled ChatGLM (4096) + 6 x 256 size/crop embeddings (diffusers Kolors UNet config)
        (Probe("label_emb.0.0.weight", (1280, 5632)),),
        description="Kolors (SDXL UNet, ChatGLM3 text encoder)",
    ),
    Signature(
        "sdxl",
        "diffusion",
        SDXL,
        UNET_ROOTS,
        (Probe("label_emb.0.0.weight", (1280, 2816)),),
        SDXL_VARIANTS,
        description="SDXL",
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
    Signature(
        "x4_upscaler",
        "diffusion",
        X4_UPSCALER,
        UNET_ROOTS,
        # 4 latent + 3 image channels in, 256 wide (ComfyUI supported_models.py SD_X4Upscaler)
        (Probe(IN_CONV, (256, 7, 3, 3)), Probe("out.2.weight", (4, 256, 3, 3))),
        description="Stable Diffusion x4 upscaler",
    ),
    Signature(
        "stable_zero123",
        "diffusion",
        STABLE_ZERO123,
        UNET_ROOTS,
        # an SD1-shaped UNet with 8 input channels plus the camera projection beside it
        (
            Probe(SD_TO_K, (320, 768)),
            Probe(IN_CONV, (320, 8, 3, 3)),
            Probe("cc_projection.weight", (768, 772), absolute=True),
        ),
        description="Stable Zero123 (novel views)",
    ),
    Signature("sd2", "diffusion", SD2, UNET_ROOTS, (Probe(SD_TO_K, (320, 1024)),), SD_VARIANTS, description="SD 2.x"),
    Signature("sd1", "diffusion", SD1, UNET_ROOTS, (Probe(SD_TO_K, (320, 768)),), SD_VARIANTS, description="SD 1.x"),
    # --- MMDiT: SD3 ---
    Signature(
        "sd3",
        "diffusion",
        SD3,
        DIT_ROOTS,
        (Probe("x_embedder.proj.weight"), Probe("joint_blocks.*")),
        (
            Variant("large", (Probe("joint_blocks.37.*"),), label="3.5 large"),
            # MMDiT-X: self-attention in the image blocks (ComfyUI x_block_self_attn_layers)
            Variant("3.5-medium", (Probe("joint_blocks.0.x_block.attn2.qkv.weight"),), label="3.5 medium"),
        ),
        default_variant="medium",
        description="SD 3 / 3.5 (MMDiT)",
    ),
    Signature(
        "sd3_diffusers",
        "diffusion",
        SD3,
        DIT_ROOTS,
        (
            Probe("pos_embed.proj.weight", (None, 16, 2, 2)),
            Probe("transformer_blocks.0.attn.add_q_proj.weight"),
            Probe("time_text_embed.text_embedder.linear_1.weight", (None, 2048)),
        ),
        (
            Variant("large", (Probe("transformer_blocks.37.*"),), label="3.5 large"),
            Variant("3.5-medium", (Probe("transformer_blocks.0.attn2.to_q.weight"),), label="3.5 medium"),
        ),
        default_variant="medium",
        description="SD 3 / 3.5 (MMDiT, diffusers names)",
    ),
    # --- Flux family: FLUX.2 and Chroma before Flux.1 (they share the double/single blocks) ---
    Signature(
        "flux2",
        "diffusion",
        FLUX2,
        DIT_ROOTS,
        (Probe("single_stream_modulation.lin.weight"), Probe("double_blocks.0.img_attn.qkv.weight")),
        _flux2_variants("img_in.weight"),
        default_variant=None,
        description="FLUX.2",
    ),
    Signature(
        "flux2_diffusers",
        "diffusion",
        FLUX2,
        DIT_ROOTS,
        (Probe("single_stream_modulation.linear.weight"), Probe("transformer_blocks.0.attn.to_q.weight")),
        _flux2_variants("x_embedder.weight"),
        default_variant=None,
        description="FLUX.2 (diffusers names)",
    ),
    Signature(
        "chroma",
        "diffusion",
        CHROMA,
        DIT_ROOTS,
        (Probe("distilled_guidance_layer.in_proj.weight"), Probe("double_blocks.0.img_attn.norm.key_norm.scale")),
        # Chroma Radiance works in pixels: a 16x16 patch input and NeRF-style head, no img_in
        (Variant("radiance", (Probe("img_in_patch.weight"),)),),
        description="Chroma (Flux.1 schnell derived, no CLIP)",
    ),
    Signature(
        "chroma_diffusers",
        "diffusion",
        CHROMA,
        DIT_ROOTS,
        (Probe("distilled_guidance_layer.in_proj.weight"), Probe("transformer_blocks.0.attn.norm_added_k.weight")),
        description="Chroma (diffusers names)",
    ),
    Signature(
        "flux",
        "diffusion",
        FLUX,
        DIT_ROOTS,
        (
            Probe("double_blocks.0.img_attn.norm.key_norm.scale"),
            Probe("img_in.weight", (3072, None)),
            Probe("vector_in.in_layer.weight", (3072, 768)),  # pooled CLIP-L: not in Chroma or FLUX.2
        ),
        FLUX_VARIANTS,
        default_variant=None,
        description="Flux.1",
    ),
    Signature(
        "flux_diffusers",
        "diffusion",
        FLUX,
        DIT_ROOTS,
        (
            Probe("transformer_blocks.0.attn.norm_added_k.weight"),
            Probe("x_embedder.weight", (3072, None)),
            Probe("time_text_embed.text_embedder.linear_1.weight", (3072, 768)),
        ),
        FLUX_DIFFUSERS_VARIANTS,
        default_variant=None,
        description="Flux.1 (diffusers names)",
    ),
    # --- other DiTs ---
    Signature(
        "auraflow",
        "diffusion",
        AURAFLOW,
        DIT_ROOTS,
        (Probe("double_layers.0.attn.w1q.weight"), Probe("cond_seq_linear.weight")),
        description="AuraFlow",
    ),
    Signature(
        "auraflow_diffusers",
        "diffusion",
        AURAFLOW,
        DIT_ROOTS,
        (Probe("joint_transformer_blocks.0.attn.add_q_proj.weight"), Probe("register_tokens")),
        description="AuraFlow (diffusers names)",
    ),
    Signature(
        "pixart",
        "diffusion",
        PIXART,
        DIT_ROOTS,
        (Probe("t_block.1.weight"), Probe("blocks.0.mlp.fc1.weight"), Probe("y_embedder.y_embedding", (None, 4096))),
        # caption length: 120 T5 tokens for alpha, 300 for sigma (ComfyUI model_detection.py)
        (
            Variant("alpha", (Probe("y_embedder.y_embedding", (120, 4096)),)),
            Variant("sigma", (Probe("y_embedder.y_embedding", (300, 4096)),)),
        ),
        default_variant=None,
        description="PixArt",
    ),
    Signature(
        "pixart_diffusers",
        "diffusion",
        PIXART,
        DIT_ROOTS,
        (
            Probe("adaln_single.linear.weight"),
            Probe("pos_embed.proj.weight"),
            Probe("caption_projection.linear_1.weight", (None, 4096)),
            Probe("transformer_blocks.0.ff.net.0.proj.weight"),
        ),
        # diffusers drops the caption length: only 1024px alpha's size conditioning tells
        (Variant("alpha", (Probe("adaln_single.emb.resolution_embedder.linear_1.weight"),)),),
        default_variant="sigma",
        candidates=("alpha",),
        description="PixArt (diffusers names)",
    ),
    Signature(
        "sana",
        "diffusion",
        SANA,
        DIT_ROOTS,
        (Probe("blocks.0.mlp.inverted_conv.conv.weight"), Probe("blocks.0.cross_attn.q_linear.weight")),
        description="Sana",
    ),
    Signature(
        "sana_diffusers",
        "diffusion",
        SANA,
        DIT_ROOTS,
        (Probe("transformer_blocks.0.ff.conv_inverted.weight"), Probe("caption_norm.weight")),
        description="Sana (diffusers names)",
    ),
    Signature(
        "hunyuan_dit",
        "diffusion",
        HUNYUAN_DIT,
        DIT_ROOTS,
        (Probe("mlp_t5.0.weight"), Probe("extra_embedder.0.weight"), Probe("pooler.q_proj.weight")),
        description="Hunyuan-DiT",
    ),
    Signature(
        "hunyuan_dit_diffusers",
        "diffusion",
        HUNYUAN_DIT,
        DIT_ROOTS,
        (Probe("time_extra_emb.pooler.q_proj.weight"), Probe("text_embedder.linear_1.weight")),
        description="Hunyuan-DiT (diffusers names)",
    ),
    # Lumina 2 and Z-Image share the NextDiT design: Z-Image's modulation has no SiLU in front
    # (adaLN_modulation.0), Lumina's has (adaLN_modulation.1).
    Signature(
        "z_image",
        "diffusion",
        Z_IMAGE,
        DIT_ROOTS,
        (Probe("cap_embedder.1.weight"), Probe("layers.0.adaLN_modulation.0.weight"), Probe("x_pad_token")),
        description="Z-Image",
    ),
    Signature(
        "z_image_diffusers",
        "diffusion",
        Z_IMAGE,
        DIT_ROOTS,
        (Probe("all_x_embedder.2-1.weight"), Probe("layers.0.adaLN_modulation.0.weight")),
        description="Z-Image (diffusers names)",
    ),
    Signature(
        "lumina2",
        "diffusion",
        LUMINA2,
        DIT_ROOTS,
        (Probe("cap_embedder.1.weight"), Probe("layers.0.adaLN_modulation.1.weight"), Probe("context_refiner.*")),
        description="Lumina Image 2.0",
    ),
    Signature(
        "lumina2_diffusers",
        "diffusion",
        LUMINA2,
        DIT_ROOTS,
        (
            Probe("time_caption_embed.caption_embedder.1.weight"),
            Probe("x_embedder.weight", (2304, None)),
            Probe("context_refiner.*"),
        ),
        description="Lumina Image 2.0 (diffusers names)",
    ),
    # HiDream and Qwen-Image: ComfyUI keeps the diffusers names.
    Signature(
        "hidream",
        "diffusion",
        HIDREAM,
        DIT_ROOTS,
        (Probe("caption_projection.0.linear.weight"), Probe("double_stream_blocks.0.block.adaLN_modulation.1.weight")),
        default_variant="i1",
        candidates=("e1",),
        description="HiDream-I1",
    ),
    Signature(
        "qwen_image_2_1",
        "diffusion",
        QWEN_IMAGE,
        DIT_ROOTS,
        (Probe("txt_in.text_norm.weight"), Probe("img_in.weight")),
        default_variant="2.1",
        description="Qwen-Image 2.1",
    ),
    Signature(
        "qwen_image",
        "diffusion",
        QWEN_IMAGE,
        DIT_ROOTS,
        (Probe("txt_norm.weight"), Probe("img_in.weight"), Probe("transformer_blocks.0.img_mod.1.weight")),
        # Edit models have the same names and shapes (ComfyUI tells them by the workflow)
        candidates=("edit",),
        description="Qwen-Image",
    ),
)
