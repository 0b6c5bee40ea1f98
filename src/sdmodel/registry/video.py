"""Video families: one ``Family`` record each, and the signatures of their diffusion networks in
both namings: the original / ComfyUI single-file names (ComfyUI comfy/model_detection.py) and the
diffusers names (diffusers models/transformers/*, loaders/single_file_utils.py).

Sizes live in the variant (``t2v-14b``), told by the model width; the Wan version (2.1 / 2.2) is in
the variant where shapes tell it, else the likelier one with the other as a candidate.
"""

from __future__ import annotations

from sdmodel.registry.model import Family, Naming, Probe, Signature, Variant

# Single files: a checkpoint's model, ComfyUI's lone diffusion model (with or without the
# ``diffusion_model.`` some tools leave), a bare state dict, diffusers' ``transformer.`` part.
VIDEO_ROOTS = ("model.diffusion_model.", "diffusion_model.", "", "model.")
DIFFUSERS_ROOTS = ("", "transformer.", "model.diffusion_model.", "diffusion_model.", "model.")
# Cosmos' own releases keep the network under ``net.`` (ComfyUI unet_prefix_from_state_dict).
COSMOS_ROOTS = ("net.", *VIDEO_ROOTS)

WAN = Family(
    "wan",
    "Wan",
    "video",
    prediction="flow",
    gguf_arch="wan",
    text_encoders=("umt5xxl",),
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="wan",
    vae="wan",
    diffusers_classes=("WanTransformer3DModel", "WanVACETransformer3DModel", "WanAnimateTransformer3DModel"),
)
HUNYUAN_VIDEO = Family(
    "hunyuan_video",
    "HunyuanVideo",
    "video",
    # ComfyUI's HunyuanVideo 1.5 example: Qwen2.5-VL 7B + ByT5 through DualCLIPLoader type
    # hunyuan_video_15, and its own 32-channel VAE.
    names=(
        Naming(
            "1.5",
            text_encoders=("qwen25vl_7b", "byt5_small"),
            vae="hunyuan_video_1.5",
            comfy_clip_type="hunyuan_video_15",
        ),
    ),
    prediction="flow",
    gguf_arch="hyvid",
    text_encoders=("llama3_8b", "clip_l"),
    comfy_clip_loader="DualCLIPLoader",
    comfy_clip_type="hunyuan_video",
    vae="hunyuan_video",
    diffusers_classes=(
        "HunyuanVideoTransformer3DModel",
        "HunyuanVideo15Transformer3DModel",
        "HunyuanVideoFramepackTransformer3DModel",
    ),
)
LTXV = Family(
    "ltxv",
    "LTX-Video",
    "video",
    prediction="flow",
    gguf_arch="ltxv",
    text_encoders=("t5xxl", "gemma3_12b"),  # LTX-2: Gemma 3 12B
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="ltxv",
    vae="ltxv",
    diffusers_classes=("LTXVideoTransformer3DModel", "LTX2VideoTransformer3DModel"),
)
MOCHI = Family(
    "mochi",
    "Mochi",
    "video",
    prediction="flow",
    text_encoders=("t5xxl",),
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="mochi",
    vae="mochi",
    diffusers_classes=("MochiTransformer3DModel",),
)
COGVIDEOX = Family(
    "cogvideox",
    "CogVideoX",
    "video",
    prediction="v",
    text_encoders=("t5xxl",),
    vae="cogvideox",
    diffusers_classes=("CogVideoXTransformer3DModel",),
)
COSMOS = Family(
    "cosmos",
    "Cosmos",
    "video",
    gguf_arch="cosmos",
    text_encoders=("t5xxl_v1.0", "qwen3_0.6b"),  # Anima: Qwen3 0.6B
    comfy_clip_loader="CLIPLoader",
    comfy_clip_type="cosmos",
    vae="cosmos",  # Predict2 and Anima: the Wan 2.1 VAE
    diffusers_classes=("CosmosTransformer3DModel",),
)
SVD = Family(
    "svd",
    "Stable Video Diffusion",
    "video",
    prediction="v",
    resolution="1024x576",
    diffusers_classes=("UNetSpatioTemporalConditionModel",),
)

FAMILIES: tuple[Family, ...] = (WAN, HUNYUAN_VIDEO, LTXV, MOCHI, COGVIDEOX, COSMOS, SVD)


def _v(name: str, *probes: Probe, candidates: tuple[str, ...] = ()) -> Variant:
    return Variant(name, probes, candidates)


# --- Wan --------------------------------------------------------------------------------------
# ComfyUI tells the kind by one module each and the size by the width (head.modulation's last
# dimension: 1536 = 1.3B, 3072 = 5B, 5120 = 14B). Wan 2.2 14B has Wan 2.1 14B's shapes; its I2V
# drops the CLIP image embedding (img_emb) but keeps 36 input channels.
WAN_ORIGINAL = {
    "width": "head.modulation",
    "patch": "patch_embedding.weight",
    "vace": "vace_patch_embedding.weight",
    "animate": "face_adapter.fuser_blocks.0.k_norm.weight",
    "s2v": "casual_audio_encoder.encoder.final_linear.weight",
    "humo": "audio_proj.audio_proj_glob_1.layer.bias",
    "camera": "control_adapter.conv.weight",
    "flf": "img_emb.emb_pos",
    "img": "img_emb.proj.0.bias",
}
WAN_DIFFUSERS = {
    "width": "scale_shift_table",
    "patch": "patch_embedding.weight",
    "vace": "vace_patch_embedding.weight",
    "animate": "face_adapter.0.norm_k.weight",
    "flf": "condition_embedder.image_embedder.pos_embed",
    "img": "condition_embedder.image_embedder.norm1.bias",
}


def _wan_variants(n: dict[str, str]) -> tuple[Variant, ...]:
    def width(w: int) -> Probe:
        return Probe(n["width"], (1, 2, w))

    def inputs(ch: int) -> Probe:
        return Probe(n["patch"], (None, ch, 1, 2, 2))

    out = [
        _v("2.1-vace-1.3b", Probe(n["vace"]), width(1536)),
        _v("2.1-vace-14b", Probe(n["vace"]), width(5120), candidates=("2.2-vace-fun-14b",)),
        _v("2.2-animate-14b", Probe(n["animate"]), width(5120)),
    ]
    if "s2v" in n:  # only in the reference code's names (no diffusers class)
        out += [
            _v("2.2-s2v-14b", Probe(n["s2v"]), width(5120)),
            _v("humo-14b", Probe(n["humo"]), width(5120)),
            _v("humo-1.7b", Probe(n["humo"]), width(1536)),
            _v("2.1-camera-14b", Probe(n["camera"]), Probe(n["img"]), width(5120)),
            _v("2.1-camera-1.3b", Probe(n["camera"]), Probe(n["img"]), width(1536)),
            _v("2.2-camera-14b", Probe(n["camera"]), width(5120)),
        ]
    out += [
        _v("2.1-flf2v-14b", Probe(n["flf"]), width(5120)),
        _v("2.1-i2v-14b", Probe(n["img"]), width(5120)),
        _v("2.1-i2v-1.3b", Probe(n["img"]), width(1536)),
        _v("2.2-i2v-14b", inputs(36), width(5120)),
        _v("2.2-ti2v-5b", inputs(48), width(3072)),
        _v("2.1-t2v-1.3b", inputs(16), width(1536)),
        _v("2.2-t2v-14b", inputs(16), width(5120), candidates=("2.1-t2v-14b",)),
    ]
    return tuple(out)


# --- HunyuanVideo ------------------------------------------------------------------------------


def _hunyuan_variants(in_key: str, one_five: str) -> tuple[Variant, ...]:
    return (
        _v("1.5", Probe(one_five)),
        _v("i2v", Probe(in_key, (None, 33, 1, 2, 2))),
    )


# --- LTX-Video: 0.9.x sizes by the cross-attention width; LTX-2 adds the audio stream ----------


def _ltxv_variants(audio: str) -> tuple[Variant, ...]:
    return (
        _v("2", Probe(audio)),
        _v("0.9-13b", Probe("transformer_blocks.0.attn2.to_k.weight", (4096, 4096))),
    )


# --- CogVideoX: kind by the patch embedding's input channels, size by the width ----------------


def _cog(kind: str, inputs: int, width: int, size: str) -> Variant:
    return _v(
        f"{kind}-{size}",
        Probe("patch_embed.proj.weight", (width, inputs, 2, 2)),
    )


COG_VARIANTS = (
    _cog("t2v", 16, 1920, "2b"),
    _cog("inpaint", 48, 1920, "2b"),
    _cog("i2v", 32, 3072, "5b"),
    _cog("inpaint", 48, 3072, "5b"),
    # CogVideoX 1.5: temporal patches make the patch embedding a linear layer (channels * 2*2*2).
    _v("1.5-t2v-5b", Probe("patch_embed.proj.weight", (3072, 128))),
    _v("1.5-i2v-5b", Probe("patch_embed.proj.weight", (3072, 256))),
)

# --- Cosmos: x_embedder input = (latent channels + padding mask) * 2*2: 68 = 16 channels,
# 72 = 17 (video2world's conditioning frame) ----------------------------------------------------
COSMOS1_Q = "blocks.block0.blocks.0.block.attn.to_q.0.weight"

SVD_TIME_STACK = "input_blocks.1.1.time_stack.0.attn1.to_q.weight"

# SVD is an SD-2-shaped UNet plus temporal layers: it must be tried before the image UNets
# (the registry puts these first, with the ControlNets).
EARLY_SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "svd",
        "diffusion",
        SVD,
        VIDEO_ROOTS,
        (Probe(SVD_TIME_STACK), Probe("input_blocks.0.0.weight", (320, 8, 3, 3))),
        default_variant="img2vid",
        description="Stable Video Diffusion (UNet with time_stack layers)",
    ),
    Signature(
        "svd_diffusers",
        "diffusion",
        SVD,
        (*DIFFUSERS_ROOTS, "unet."),
        (
            Probe("down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1.to_q.weight"),
            Probe("conv_in.weight", (320, 8, 3, 3)),
        ),
        default_variant="img2vid",
        description="Stable Video Diffusion (diffusers names)",
    ),
)

SIGNATURES: tuple[Signature, ...] = (
    # --- Wan 2.x (ComfyUI: head.modulation) ---
    Signature(
        "wan",
        "diffusion",
        WAN,
        VIDEO_ROOTS,
        (Probe("head.modulation", (1, 2, None)), Probe("patch_embedding.weight", (None, None, 1, 2, 2))),
        _wan_variants(WAN_ORIGINAL),
        default_variant="2.2-t2v-14b",
        candidates=("2.1-t2v-14b",),
        description="Wan 2.x",
    ),
    Signature(
        "wan_diffusers",
        "diffusion",
        WAN,
        DIFFUSERS_ROOTS,
        (
            Probe("condition_embedder.time_proj.weight"),
            Probe("blocks.0.ffn.net.0.proj.weight"),
            Probe("scale_shift_table", (1, 2, None)),
            Probe("patch_embedding.weight", (None, None, 1, 2, 2)),
        ),
        _wan_variants(WAN_DIFFUSERS),
        default_variant="2.2-t2v-14b",
        candidates=("2.1-t2v-14b",),
        description="Wan 2.x (diffusers names)",
    ),
    # --- HunyuanVideo (ComfyUI: txt_in.individual_token_refiner); 3-D patches (HunyuanImage 2.1
    # has the same blocks with 2-D patches and is not video) ---
    Signature(
        "hunyuan_video",
        "diffusion",
        HUNYUAN_VIDEO,
        VIDEO_ROOTS,
        (
            Probe("txt_in.individual_token_refiner.blocks.0.norm1.weight"),
            Probe("img_in.proj.weight", (None, None, None, None, None)),
        ),
        _hunyuan_variants("img_in.proj.weight", "cond_type_embedding.weight"),
        default_variant="t2v",
        description="HunyuanVideo",
    ),
    Signature(
        "hunyuan_video_diffusers",
        "diffusion",
        HUNYUAN_VIDEO,
        DIFFUSERS_ROOTS,
        (
            Probe("context_embedder.token_refiner.refiner_blocks.0.norm1.weight"),
            Probe("x_embedder.proj.weight", (None, None, None, None, None)),
        ),
        _hunyuan_variants("x_embedder.proj.weight", "cond_type_embed.weight"),
        default_variant="t2v",
        description="HunyuanVideo (diffusers names)",
    ),
    # --- LTX-Video (ComfyUI: adaln_single without PixArt's pos_embed; patchify_proj is LTX's) ---
    Signature(
        "ltxv",
        "diffusion",
        LTXV,
        VIDEO_ROOTS,
        (Probe("adaln_single.emb.timestep_embedder.linear_1.bias"), Probe("patchify_proj.weight", (None, 128))),
        _ltxv_variants("audio_adaln_single.linear.weight"),
        default_variant="0.9-2b",
        description="LTX-Video",
    ),
    Signature(
        "ltxv_diffusers",
        "diffusion",
        LTXV,
        DIFFUSERS_ROOTS,
        (
            Probe("time_embed.emb.timestep_embedder.linear_1.bias"),
            Probe("proj_in.weight", (None, 128)),
            Probe("caption_projection.linear_1.weight"),
            Probe("transformer_blocks.0.attn1.norm_q.weight"),
        ),
        _ltxv_variants("audio_time_embed.linear.weight"),
        default_variant="0.9-2b",
        description="LTX-Video (diffusers names)",
    ),
    # --- Mochi (ComfyUI: t5_yproj) ---
    Signature(
        "mochi",
        "diffusion",
        MOCHI,
        VIDEO_ROOTS,
        (Probe("t5_yproj.weight"), Probe("blocks.0.attn.qkv_x.weight")),
        default_variant="preview",
        description="Mochi 1",
    ),
    Signature(
        "mochi_diffusers",
        "diffusion",
        MOCHI,
        DIFFUSERS_ROOTS,
        (Probe("time_embed.pooler.to_kv.weight"), Probe("time_embed.caption_proj.weight")),
        default_variant="preview",
        description="Mochi 1 (diffusers names)",
    ),
    # --- CogVideoX (published in diffusers names; text tokens share the patch embedding) ---
    Signature(
        "cogvideox_diffusers",
        "diffusion",
        COGVIDEOX,
        DIFFUSERS_ROOTS,
        (
            Probe("patch_embed.text_proj.weight", (None, 4096)),
            Probe("transformer_blocks.0.norm1.linear.weight"),
            # CogView3/4 share the text projection but embed time as time_condition_embed
            Probe("time_embedding.linear_1.weight", (512, None)),
            Probe("norm_final.weight"),
        ),
        COG_VARIANTS,
        default_variant="t2v-5b",
        description="CogVideoX",
    ),
    # --- Cosmos (ComfyUI: predict1 blocks.block0..., predict2 blocks.0.mlp.layer1; Anima adds an
    # LLM adapter to predict2 2B) ---
    Signature(
        "cosmos_predict1",
        "diffusion",
        COSMOS,
        COSMOS_ROOTS,
        (Probe(COSMOS1_Q), Probe("x_embedder.proj.1.weight")),
        (
            _v("predict1-t2w-14b", Probe(COSMOS1_Q, (5120, 5120)), Probe("x_embedder.proj.1.weight", (None, 68))),
            _v("predict1-v2w-7b", Probe(COSMOS1_Q, (4096, 4096)), Probe("x_embedder.proj.1.weight", (None, 72))),
        ),
        default_variant="predict1-t2w-7b",
        description="Cosmos Predict1",
    ),
    Signature(
        "cosmos_predict2",
        "diffusion",
        COSMOS,
        COSMOS_ROOTS,
        (Probe("blocks.0.mlp.layer1.weight"), Probe("x_embedder.proj.1.weight")),
        (
            _v("anima", Probe("llm_adapter.*")),
            _v("predict2-v2w-2b", Probe("x_embedder.proj.1.weight", (2048, 72))),
            _v("predict2-t2i-14b", Probe("x_embedder.proj.1.weight", (5120, 68))),
        ),
        default_variant="predict2-t2i-2b",
        description="Cosmos Predict2",
    ),
    Signature(
        "cosmos_diffusers",
        "diffusion",
        COSMOS,
        DIFFUSERS_ROOTS,
        (
            Probe("time_embed.t_embedder.linear_1.weight"),
            Probe("patch_embed.proj.weight", (None, None)),
            Probe("transformer_blocks.0.attn1.to_q.weight"),
        ),
        (_v("predict1-t2w-7b", Probe("learnable_pos_embed.pos_emb_t"), Probe("patch_embed.proj.weight", (4096, 68))),),
        default_variant="predict2-t2i-2b",
        description="Cosmos (diffusers names)",
    ),
)
