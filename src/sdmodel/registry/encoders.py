"""Networks that serve a family rather than being one: ControlNets and T2I-Adapters (which point at
their base family), and the family-neutral VAEs and text encoders (``family`` None; the ``variant``
names them, e.g. ``16ch`` or ``t5xxl``)."""

from __future__ import annotations

from sdmodel.registry.image import FLUX, SD1, SD2, SD3, SD_TO_K, SDXL
from sdmodel.registry.model import Probe, Signature, Variant
from sdmodel.registry.video import COGVIDEOX, COSMOS, HUNYUAN_VIDEO, LTXV, MOCHI, WAN

CONTROL_ROOTS = ("control_model.", "", "controlnet.")
T5_ROOTS = ("", "text_encoders.t5xxl.transformer.", "text_encoder_3.", "text_encoder_2.")
STANDALONE = ("",)

# ControlNets come first in the match order: a stripped ControlNet has UNet input blocks at the root
# (and XLabs' Flux ControlNets have Flux's double blocks).
CONTROLNETS: tuple[Signature, ...] = (
    # Flux: XLabs (Flux's own names plus a hint block), InstantX / diffusers FluxControlNetModel
    # (union = a control-mode embedding), SD3 / 3.5 (diffusers SD3ControlNetModel: a second patch
    # embedding for the control latent).
    Signature(
        "controlnet_flux_xlabs",
        "controlnet",
        FLUX,
        ("", "controlnet."),
        (
            Probe("input_hint_block.0.weight"),
            Probe("controlnet_blocks.0.weight", (3072, 3072)),
            Probe("double_blocks.0.img_attn.norm.key_norm.scale"),
        ),
        default_variant="xlabs",
        description="Flux ControlNet (XLabs)",
    ),
    Signature(
        "controlnet_flux",
        "controlnet",
        FLUX,
        ("", "controlnet."),
        (Probe("controlnet_x_embedder.weight", (3072, None)), Probe("controlnet_blocks.0.weight", (3072, 3072))),
        (Variant("union", (Probe("controlnet_mode_embedder.weight"),)),),
        description="Flux ControlNet (diffusers / InstantX names)",
    ),
    Signature(
        "controlnet_sd3",
        "controlnet",
        SD3,
        ("", "controlnet."),
        (Probe("pos_embed_input.proj.weight", (None, 16, 2, 2)), Probe("controlnet_blocks.0.weight")),
        description="SD3 / SD3.5 ControlNet",
    ),
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
        # xinsir's ControlNet++ union: one network, the control type as an extra embedding
        (Variant("union", (Probe("control_add_embedding.linear_1.weight"),)),),
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

# IP-Adapter (image prompt): an image projection plus per-attention-layer key/value projections;
# the base family by the width of the first one (SD1: 320 x 768, SDXL: 640 x 2048). Plus models
# resample with learned latents, FaceID models project a face embedding through an MLP.
IP_ADAPTER_VARIANTS = (
    Variant("plus", (Probe("image_proj.latents"),)),
    Variant("faceid", (Probe("image_proj.proj.0.weight"),)),
)
IP_ADAPTERS: tuple[Signature, ...] = (
    Signature(
        "ip_adapter_sdxl",
        "ip_adapter",
        SDXL,
        ("",),
        (Probe("image_proj.*"), Probe("ip_adapter.1.to_k_ip.weight", (640, 2048))),
        IP_ADAPTER_VARIANTS,
        description="IP-Adapter (SDXL)",
    ),
    Signature(
        "ip_adapter_sd1",
        "ip_adapter",
        SD1,
        ("",),
        (Probe("image_proj.*"), Probe("ip_adapter.1.to_k_ip.weight", (320, 768))),
        IP_ADAPTER_VARIANTS,
        description="IP-Adapter (SD 1.x)",
    ),
    Signature(
        "ip_adapter_flux_xlabs",
        "ip_adapter",
        FLUX,
        ("",),
        (
            Probe("ip_adapter_proj_model.proj.weight"),
            Probe("double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight", (3072, None)),
        ),
        default_variant="xlabs",
        description="Flux IP-Adapter (XLabs)",
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

# --- video VAEs (variant = the family whose VAE it is; family set when only that family uses it) ---
# Original Wan VAE names (Wan's own wan/modules/vae.py, ComfyUI comfy/ldm/wan/vae.py): the latent
# convs conv1 (2z -> 2z) and conv2 (z -> z) sit at the root.
WAN_VAE_MID = "decoder.middle.0.residual.0.gamma"
VIDEO_VAES: tuple[Signature, ...] = (
    Signature(
        "vae_wan2.2",
        "vae",
        WAN,
        STANDALONE,
        (Probe(WAN_VAE_MID), Probe("conv2.weight", (48, 48, 1, 1, 1))),
        default_variant="wan2.2",
        description="Wan 2.2 VAE (48 channels, Wan 2.2 TI2V 5B)",
    ),
    Signature(
        "vae_wan",
        "vae",
        None,
        STANDALONE,
        (Probe(WAN_VAE_MID), Probe("conv2.weight", (16, 16, 1, 1, 1))),
        default_variant="wan",
        candidates=("qwen_image",),
        description="Wan 2.1 VAE (16 channels; Wan 2.1 / 2.2 14B, Cosmos Predict2; Qwen-Image's has the same shapes)",
    ),
    Signature(
        "vae_wan2.2_diffusers",
        "vae",
        WAN,
        STANDALONE,
        (Probe("decoder.mid_block.resnets.0.norm1.gamma"), Probe("post_quant_conv.weight", (48, 48, 1, 1, 1))),
        default_variant="wan2.2",
        description="Wan 2.2 VAE (diffusers names)",
    ),
    Signature(
        "vae_wan_diffusers",
        "vae",
        None,
        STANDALONE,
        (Probe("decoder.mid_block.resnets.0.norm1.gamma"), Probe("post_quant_conv.weight", (16, 16, 1, 1, 1))),
        default_variant="wan",
        candidates=("qwen_image",),
        description="Wan 2.1 VAE (diffusers names; Qwen-Image's has the same shapes)",
    ),
    Signature(
        "vae_hunyuan_video",
        "vae",
        HUNYUAN_VIDEO,
        STANDALONE,
        (Probe("decoder.conv_in.conv.weight", (512, 16, 3, 3, 3)), Probe("post_quant_conv.weight", (16, 16, 1, 1, 1))),
        default_variant="hunyuan_video",
        description="HunyuanVideo VAE",
    ),
    Signature(
        "vae_hunyuan_video_1.5",
        "vae",
        HUNYUAN_VIDEO,
        STANDALONE,
        (
            Probe("decoder.conv_in.conv.weight", (1024, 32, 3, 3, 3)),
            Probe("encoder.conv_out.conv.weight", (64, 1024, 3, 3, 3)),
        ),
        default_variant="hunyuan_video_1.5",
        description="HunyuanVideo 1.5 VAE (32 channels)",
    ),
    Signature(
        "vae_cogvideox",
        "vae",
        COGVIDEOX,
        STANDALONE,
        (Probe("decoder.conv_in.conv.weight", (512, 16, 3, 3, 3)), Probe("encoder.norm_out.weight", (512,))),
        default_variant="cogvideox",
        description="CogVideoX VAE",
    ),
    Signature(
        "vae_ltxv",
        "vae",
        LTXV,
        ("", "vae."),
        (Probe("decoder.conv_in.conv.weight", (None, 128, 3, 3, 3)), Probe("encoder.conv_in.conv.weight")),
        default_variant="ltxv",
        description="LTX-Video VAE (128 channels)",
    ),
    Signature(
        "vae_ltx2_audio",
        "vae",
        LTXV,
        ("", "audio_vae."),
        (Probe("encoder.conv_in.conv.weight", (128, 2, 3, 3)), Probe("decoder.conv_in.conv.weight", (512, 8, 3, 3))),
        default_variant="ltx2_audio",
        description="LTX-2 audio VAE (mel spectrogram, 8 channels)",
    ),
    Signature(
        "vae_cosmos",
        "vae",
        COSMOS,
        STANDALONE,
        (Probe("decoder.conv_in.conv_s.weight", (512, 16, 1, 3, 3)), Probe("encoder.conv_in.conv_t.weight")),
        default_variant="cosmos",
        description="Cosmos tokenizer CV8x8x8 (Cosmos Predict1; Predict2 uses the Wan 2.1 VAE)",
    ),
    # Stable Cascade stage A (the VQGAN that turns stage B's 4-channel latents into pixels).
    Signature(
        "vae_stable_cascade",
        "vae",
        None,
        STANDALONE,
        (Probe("vquantizer.codebook.weight", (8192, 4)), Probe("down.0.weight")),
        default_variant="stable_cascade",
        description="Stable Cascade stage A (VQGAN)",
    ),
    Signature(
        "vae_mochi",
        "vae",
        MOCHI,
        STANDALONE,
        (Probe("decoder.conv_in.weight", (768, 12, 1, 1, 1)),),
        default_variant="mochi",
        description="Mochi VAE (12 channels)",
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
    Signature(
        "vae_32ch",
        "vae",
        None,
        STANDALONE,
        (Probe("encoder.conv_in.weight", (128, 3, 3, 3)), Probe("decoder.conv_in.weight", (512, 32, 3, 3))),
        default_variant="32ch",
        description="32-channel VAE (FLUX.2)",
    ),
    *VIDEO_VAES,
)

# --- decoder-only LLM text encoders (2025-2026 families) ---
# Roots: a transformers *Model (``layers.``), *ForCausalLM (``model.layers.``), a VL model as saved by
# transformers 5 (``model.language_model.``) or 4 (``model.`` / ``language_model.model.``).
LLM_ROOTS = ("model.", "", "model.language_model.", "language_model.model.")


def _llm(
    sig_id: str, vocab: int, width: int, last_layer: int, kv: int, description: str, variant: str = ""
) -> Signature:
    """An LLM told by its vocabulary and width (``embed_tokens``), depth (its last layer exists) and
    grouped-query key width. ``variant``: the family-neutral id when it differs from ``sig_id``."""
    return Signature(
        sig_id,
        "text_encoder",
        None,
        LLM_ROOTS,
        (
            Probe("embed_tokens.weight", (vocab, width)),
            Probe(f"layers.{last_layer}.self_attn.k_proj.weight", (kv, width)),
        ),
        default_variant=variant or sig_id,
        description=description,
    )


LLM_ENCODERS: tuple[Signature, ...] = (
    _llm("qwen25vl_7b", 152064, 3584, 27, 512, "Qwen2.5-VL 7B (Qwen-Image, HunyuanVideo 1.5, HunyuanImage 2.1)"),
    _llm("qwen25vl_3b", 151936, 2048, 35, 256, "Qwen2.5-VL 3B (OmniGen2)"),
    _llm("qwen3_8b", 151936, 4096, 35, 1024, "Qwen3 8B (FLUX.2 klein 9B)"),
    _llm("qwen3_4b", 151936, 2560, 35, 1024, "Qwen3 4B (Z-Image, FLUX.2 klein 4B)"),
    _llm("qwen3_0.6b", 151936, 1024, 27, 1024, "Qwen3 0.6B (Anima)"),
    _llm("llama3_8b", 128256, 4096, 31, 1024, "Llama 3.1 8B (HiDream)"),
    _llm("llama3_8b_llava", 128320, 4096, 31, 1024, "LLaVA-Llama-3 8B (HunyuanVideo)", "llama3_8b"),
    _llm("gemma2_2b", 256000, 2304, 25, 1024, "Gemma 2 2B (Lumina 2, Sana)"),
    _llm("gemma3_12b", 262208, 3840, 47, 2048, "Gemma 3 12B (LTX-2)"),
    _llm("gemma3_4b", 262208, 2560, 33, 1024, "Gemma 3 4B"),
    # layer 29: ComfyUI also loads a FLUX.2 copy pruned to 30 layers (comfy/sd.py MISTRAL3_24B_PRUNED_FLUX2)
    _llm("mistral_small", 131072, 5120, 29, 1024, "Mistral Small 3.x 24B (FLUX.2 dev)"),
)

# Image encoders (CLIP vision towers, SigLIP): conditioning for image-to-video and image prompts.
VISION_ROOTS = ("vision_model.", "", "model.vision_model.")


def _vision(sig_id: str, width: int, last_layer: int, description: str) -> Signature:
    return Signature(
        sig_id,
        "image_encoder",
        None,
        VISION_ROOTS,
        (
            Probe("embeddings.patch_embedding.weight", (width, 3, 14, 14)),
            Probe(f"encoder.layers.{last_layer}.self_attn.q_proj.weight", (width, width)),
        ),
        default_variant=sig_id,
        description=description,
    )


IMAGE_ENCODERS: tuple[Signature, ...] = (
    _vision("clip_vision_g", 1664, 47, "OpenCLIP ViT-bigG/14 vision (SDXL IP-Adapter)"),
    _vision("clip_vision_h", 1280, 31, "OpenCLIP ViT-H/14 vision (Wan 2.1 I2V, SVD, IP-Adapter)"),
    _vision("clip_vision_l", 1024, 23, "CLIP ViT-L/14 vision (SD 2.1 unCLIP-L, Stable Zero123)"),
    _vision("siglip_so400m", 1152, 26, "SigLIP so400m/14 vision (Flux Redux, HunyuanVideo 1.5)"),
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
    # transformers 5 saves CLIPTextModel without ``text_model.``
    Signature(
        "clip_l_tf5",
        "text_encoder",
        None,
        STANDALONE,
        (
            Probe("encoder.layers.11.self_attn.q_proj.weight", (768, 768)),
            Probe("embeddings.position_embedding.weight", (77, 768)),
        ),
        default_variant="clip_l",
        description="CLIP ViT-L/14 (transformers 5 names)",
    ),
    Signature(
        "clip_g_tf5",
        "text_encoder",
        None,
        STANDALONE,
        (
            Probe("encoder.layers.31.self_attn.q_proj.weight", (1280, 1280)),
            Probe("embeddings.position_embedding.weight", (77, 1280)),
        ),
        default_variant="clip_g",
        description="OpenCLIP bigG (transformers 5 names)",
    ),
    # UMT5 and T5 share every name and most shapes; UMT5 has a relative attention bias in every
    # block (T5 only in the first) and a 256384-token vocabulary (T5: 32128).
    Signature(
        "umt5xxl",
        "text_encoder",
        None,
        T5_ROOTS,
        (
            Probe("encoder.block.23.layer.0.SelfAttention.q.weight", (4096, 4096)),
            Probe("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"),
        ),
        default_variant="umt5xxl",
        description="UMT5-XXL encoder (Wan)",
    ),
    Signature(
        "umt5xxl_vocab",
        "text_encoder",
        None,
        T5_ROOTS,
        (Probe("shared.weight", (256384, 4096)), Probe("encoder.block.23.layer.0.SelfAttention.q.weight")),
        default_variant="umt5xxl",
        description="UMT5-XXL encoder (Wan; told by its vocabulary)",
    ),
    Signature(
        "t5xxl",
        "text_encoder",
        None,
        T5_ROOTS,
        (Probe("encoder.block.23.layer.0.SelfAttention.q.weight", (4096, 4096)),),
        # T5 v1.0 (Cosmos Predict1): one ReLU feed-forward instead of v1.1's gated pair.
        (Variant("t5xxl_v1.0", (Probe("encoder.block.0.layer.1.DenseReluDense.wi.weight"),)),),
        default_variant="t5xxl",
        description="T5-XXL encoder (SD3, Flux, LTX-Video, Mochi, CogVideoX, Chroma...)",
    ),
    Signature(
        "mt5xl",
        "text_encoder",
        None,
        T5_ROOTS,
        (Probe("shared.weight", (250112, 2048)), Probe("encoder.block.23.layer.0.SelfAttention.q.weight")),
        default_variant="mt5xl",
        description="mT5-XL encoder (HunyuanDiT)",
    ),
    # EleutherAI's Pile-T5-XL is a UMT5 (ComfyUI comfy/text_encoders/t5_pile_config_xl.json:
    # model_type umt5, d_model 2048, vocab 32128): a relative attention bias in every block, which
    # T5 v1.1-XL / Flan-T5-XL (same width and vocabulary) have in the first block only.
    Signature(
        "pile_t5xl",
        "text_encoder",
        None,
        T5_ROOTS,
        (
            Probe("shared.weight", (32128, 2048)),
            Probe("encoder.block.23.layer.0.SelfAttention.q.weight", (2048, 2048)),
            Probe("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"),
        ),
        default_variant="pile_t5xl",
        description="Pile-T5-XL encoder (AuraFlow)",
    ),
    Signature(
        "byt5_small",
        "text_encoder",
        None,
        T5_ROOTS,
        (Probe("encoder.block.0.layer.0.SelfAttention.q.weight", (384, 1472)),),
        default_variant="byt5_small",
        description="ByT5-small glyph encoder (HunyuanVideo 1.5, HunyuanImage 2.1)",
    ),
    # HunyuanDiT's "CLIP": a Chinese RoBERTa-large BERT with a 47020-token vocabulary (ComfyUI
    # comfy/text_encoders/hydit_clip.json; ComfyUI's BertModel keeps the ``bert.`` prefix).
    Signature(
        "hydit_clip",
        "text_encoder",
        None,
        ("bert.", ""),
        (
            Probe("embeddings.word_embeddings.weight", (47020, 1024)),
            Probe("encoder.layer.23.attention.self.query.weight", (1024, 1024)),
        ),
        default_variant="hydit_clip",
        description="HunyuanDiT BERT text encoder (Chinese RoBERTa-large)",
    ),
    # Kolors' ChatGLM3-6B (THUDM/chatglm3-6b config.json: 28 layers, hidden 4096, padded vocabulary
    # 65024, multi-query attention with 2 groups of 128: fused qkv 4096 + 2 * 2 * 128 = 4608 rows).
    # ChatGLM2-6B has the same names and shapes.
    Signature(
        "chatglm3_6b",
        "text_encoder",
        None,
        ("transformer.", ""),
        (
            Probe("embedding.word_embeddings.weight", (65024, 4096)),
            Probe("encoder.layers.27.self_attention.query_key_value.weight", (4608, 4096)),
        ),
        default_variant="chatglm3_6b",
        candidates=("chatglm2_6b",),
        description="ChatGLM3-6B (Kolors)",
    ),
    *LLM_ENCODERS,
)
