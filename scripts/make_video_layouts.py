"""Write the names and shapes of the video families, their VAEs and the text encoders of the
2025-2026 families as small compressed layouts (tests/data/layouts/video/*.json.gz).

Diffusers names come from the diffusers / transformers classes built on the meta device with the
configs of the released models (diffusers scripts/convert_*_to_diffusers.py, the models' config.json).
Original (ComfyUI / reference) names are the inverse of diffusers' single-file converters
(diffusers loaders/single_file_utils.py) applied to those layouts; no weights are read or written.

Run once after changing it: ``python scripts/make_video_layouts.py`` (needs torch, diffusers 0.42,
transformers 5).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "layouts" / "video"
DT = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64"}

Layout = dict[str, tuple[tuple[int, ...], str]]


def meta(build: Callable[[], torch.nn.Module], dtype: str = "BF16") -> Layout:
    with torch.device("meta"):
        model = build()
    return {k: (tuple(v.shape), dtype) for k, v in model.state_dict().items()}


def save(name: str, lay: Layout) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {"tensors": {k: [list(s), d] for k, (s, d) in sorted(lay.items())}}
    raw = json.dumps(data, separators=(",", ":")).encode()
    (OUT / f"{name}.json.gz").write_bytes(gzip.compress(raw, 9, mtime=0))
    print(f"{name}: {len(lay)} tensors")


def rename(lay: Layout, pairs: list[tuple[str, str]]) -> Layout:
    """Apply regex substitutions in order to every key."""
    out: Layout = {}
    for k, v in lay.items():
        for pat, rep in pairs:
            k = re.sub(pat, rep, k)
        out[k] = v
    return out


# --- Wan ------------------------------------------------------------------------------------
# Inverse of diffusers convert_wan_transformer_to_diffusers (TRANSFORMER_KEYS_RENAME_DICT).
WAN_TO_ORIGINAL = [
    (r"condition_embedder\.time_embedder\.linear_1", "time_embedding.0"),
    (r"condition_embedder\.time_embedder\.linear_2", "time_embedding.2"),
    (r"condition_embedder\.text_embedder\.linear_1", "text_embedding.0"),
    (r"condition_embedder\.text_embedder\.linear_2", "text_embedding.2"),
    (r"condition_embedder\.time_proj", "time_projection.1"),
    (r"condition_embedder\.image_embedder\.norm1", "img_emb.proj.0"),
    (r"condition_embedder\.image_embedder\.ff\.net\.0\.proj", "img_emb.proj.1"),
    (r"condition_embedder\.image_embedder\.ff\.net\.2", "img_emb.proj.3"),
    (r"condition_embedder\.image_embedder\.norm2", "img_emb.proj.4"),
    (r"condition_embedder\.image_embedder\.pos_embed", "img_emb.emb_pos"),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.to_([qkv])\.", r".\1."),
    (r"\.add_k_proj\.", ".k_img."),
    (r"\.add_v_proj\.", ".v_img."),
    (r"\.norm_added_k\.", ".norm_k_img."),
    (r"^((?:vace_)?blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    (r"^(vace_blocks\.\d+)\.proj_in\.", r"\1.before_proj."),
    (r"^(vace_blocks\.\d+)\.proj_out\.", r"\1.after_proj."),
]

WAN_14B = dict(num_attention_heads=40, ffn_dim=13824, num_layers=40)
WAN_1_3B = dict(num_attention_heads=12, ffn_dim=8960, num_layers=30)


def wan() -> None:
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    def t(**kw):
        return meta(lambda: WanTransformer3DModel(**kw))

    configs = {
        "wan2.1-t2v-1.3b": t(**WAN_1_3B),
        "wan2.1-t2v-14b": t(**WAN_14B),
        "wan2.1-i2v-14b": t(**WAN_14B, in_channels=36, image_dim=1280, added_kv_proj_dim=5120),
        "wan2.1-flf2v-14b": t(
            **WAN_14B, in_channels=36, image_dim=1280, added_kv_proj_dim=5120, pos_embed_seq_len=257 * 2
        ),
        "wan2.2-i2v-14b": t(**WAN_14B, in_channels=36),
        # Wan2.1-Fun-1.3B-InP: the 1.3B with CLIP image conditioning (VideoX-Fun config.json).
        "wan2.1-i2v-1.3b": t(**WAN_1_3B, in_channels=36, image_dim=1280, added_kv_proj_dim=1536),
        "wan2.2-ti2v-5b": t(num_attention_heads=24, ffn_dim=14336, num_layers=30, in_channels=48, out_channels=48),
        "wan2.1-vace-1.3b": meta(
            lambda: WanVACETransformer3DModel(**WAN_1_3B, vace_layers=list(range(0, 30, 2)), vace_in_channels=96)
        ),
        "wan2.1-vace-14b": meta(
            lambda: WanVACETransformer3DModel(**WAN_14B, vace_layers=list(range(0, 40, 5)), vace_in_channels=96)
        ),
    }
    for name, lay in configs.items():
        save(f"{name}.diffusers", lay)
        save(f"{name}.original", rename(lay, WAN_TO_ORIGINAL))


def wan_extras() -> None:
    """Reference-only Wan variants (diffusers has no class for some): the 14B T2V layout plus the
    telling modules as named in the reference code (ComfyUI comfy/ldm/wan/model.py)."""
    base = rename(meta(lambda: __import__("diffusers").WanTransformer3DModel(**WAN_14B)), WAN_TO_ORIGINAL)
    d = 5120
    s2v = dict(base)
    s2v |= {
        "casual_audio_encoder.encoder.final_linear.weight": ((d, 1024), "BF16"),
        "casual_audio_encoder.encoder.final_linear.bias": ((d,), "BF16"),
        "casual_audio_encoder.weights": ((1, 25, 1, 1), "BF16"),
        "cond_encoder.weight": ((d, 16, 1, 2, 2), "BF16"),
        "frame_packer.proj.weight": ((d, 16, 1, 2, 2), "BF16"),
        "trainable_cond_mask.weight": ((3, d), "BF16"),
    }
    save("wan2.2-s2v-14b.original", s2v)
    camera = rename(
        meta(
            lambda: __import__("diffusers").WanTransformer3DModel(
                **WAN_14B, in_channels=36, image_dim=1280, added_kv_proj_dim=5120
            )
        ),
        WAN_TO_ORIGINAL,
    )
    camera |= {
        "control_adapter.conv.weight": ((d, 24 * 64, 2, 2), "BF16"),
        "control_adapter.conv.bias": ((d,), "BF16"),
        "control_adapter.residual_blocks.0.conv1.weight": ((d, d, 3, 3), "BF16"),
    }
    save("wan2.1-camera-14b.original", camera)


def wan_animate() -> None:
    from diffusers import WanAnimateTransformer3DModel

    lay = meta(lambda: WanAnimateTransformer3DModel())
    save("wan2.2-animate-14b.diffusers", lay)
    # Original: the converter's face adapter and motion encoder renames, inverted.
    pairs = [
        *WAN_TO_ORIGINAL,
        (r"^face_adapter\.(\d+)\.", r"face_adapter.fuser_blocks.\1."),
        (r"^(face_adapter\.fuser_blocks\.\d+)\.norm_k\.", r"\1.k_norm."),
        (r"^(face_adapter\.fuser_blocks\.\d+)\.norm_q\.", r"\1.q_norm."),
        (r"^(face_adapter\.fuser_blocks\.\d+)\.to_out\.", r"\1.linear2."),
        (r"^(face_adapter\.fuser_blocks\.\d+)\.to_q\.", r"\1.linear1_q."),
        (r"^motion_encoder\.motion_synthesis_weight$", "motion_encoder.dec.direction.weight"),
    ]
    orig = rename(lay, pairs)
    for k in [k for k in orig if re.match(r"face_adapter\.fuser_blocks\.\d+\.(to_k|to_v)\.", k)]:
        shape, dt = orig.pop(k)
        kv = re.sub(r"\.to_[kv]\.", ".linear1_kv.", k)
        orig[kv] = ((shape[0] * 2, *shape[1:]), dt)
    save("wan2.2-animate-14b.original", orig)


def wan_vae() -> None:
    from diffusers import AutoencoderKLWan

    save("wan2.1-vae.diffusers", meta(lambda: AutoencoderKLWan(), "F32"))
    save(
        "wan2.2-vae.diffusers",
        meta(
            lambda: AutoencoderKLWan(
                base_dim=160,
                decoder_base_dim=256,
                z_dim=48,
                in_channels=12,
                out_channels=12,
                is_residual=True,
                patch_size=2,
                scale_factor_spatial=16,
                scale_factor_temporal=4,
            ),
            "F32",
        ),
    )


# --- HunyuanVideo ------------------------------------------------------------------------------


def hunyuan_video() -> None:
    from diffusers import HunyuanVideo15Transformer3DModel, HunyuanVideoTransformer3DModel

    t2v = meta(lambda: HunyuanVideoTransformer3DModel())
    save("hunyuan_video-t2v.diffusers", t2v)
    save(
        "hunyuan_video-i2v.diffusers",
        meta(
            lambda: HunyuanVideoTransformer3DModel(
                in_channels=33, guidance_embeds=False, image_condition_type="latent_concat"
            )
        ),
    )
    save("hunyuan_video-1.5.diffusers", meta(lambda: HunyuanVideo15Transformer3DModel()))
    save("hunyuan_video-t2v.original", hunyuan_video_original())
    save("hunyuan_video-i2v.original", hunyuan_video_original(33, guidance=False))


def hunyuan_video_original(in_channels: int = 16, guidance: bool = True, hidden: int = 3072) -> Layout:
    """Tencent / ComfyUI names (the keys diffusers convert_hunyuan_video_transformer_to_diffusers
    reads): fused qkv, 20 double and 40 single blocks, a 2-block token refiner."""
    h, mlp, b = hidden, hidden * 4, "BF16"

    def lin(name: str, out: int, inp: int) -> Layout:
        return {f"{name}.weight": ((out, inp), b), f"{name}.bias": ((out,), b)}

    lay: Layout = {"img_in.proj.weight": ((h, in_channels, 1, 2, 2), b), "img_in.proj.bias": ((h,), b)}
    lay |= lin("time_in.mlp.0", h, 256) | lin("time_in.mlp.2", h, h)
    lay |= lin("vector_in.in_layer", h, 768) | lin("vector_in.out_layer", h, h)
    if guidance:
        lay |= lin("guidance_in.mlp.0", h, 256) | lin("guidance_in.mlp.2", h, h)
    lay |= lin("txt_in.input_embedder", h, 4096) | lin("txt_in.t_embedder.mlp.0", h, 256)
    lay |= lin("txt_in.t_embedder.mlp.2", h, h) | lin("txt_in.c_embedder.linear_1", h, 4096)
    lay |= lin("txt_in.c_embedder.linear_2", h, h)
    for i in range(2):
        r = f"txt_in.individual_token_refiner.blocks.{i}."
        lay |= {r + "norm1.weight": ((h,), b), r + "norm1.bias": ((h,), b)}
        lay |= {r + "norm2.weight": ((h,), b), r + "norm2.bias": ((h,), b)}
        lay |= lin(r + "self_attn_qkv", 3 * h, h) | lin(r + "self_attn_proj", h, h)
        lay |= lin(r + "mlp.fc1", mlp, h) | lin(r + "mlp.fc2", h, mlp) | lin(r + "adaLN_modulation.1", 2 * h, h)
    for i in range(20):
        d = f"double_blocks.{i}."
        for s in ("img", "txt"):
            lay |= lin(d + f"{s}_mod.linear", 6 * h, h) | lin(d + f"{s}_attn_qkv", 3 * h, h)
            lay |= {d + f"{s}_attn_q_norm.weight": ((128,), b), d + f"{s}_attn_k_norm.weight": ((128,), b)}
            lay |= lin(d + f"{s}_attn_proj", h, h) | lin(d + f"{s}_mlp.fc1", mlp, h) | lin(d + f"{s}_mlp.fc2", h, mlp)
    for i in range(40):
        s = f"single_blocks.{i}."
        lay |= (
            lin(s + "linear1", 3 * h + mlp, h) | lin(s + "linear2", h, h + mlp) | lin(s + "modulation.linear", 3 * h, h)
        )
        lay |= {s + "q_norm.weight": ((128,), b), s + "k_norm.weight": ((128,), b)}
    lay |= lin("final_layer.linear", 64, h) | lin("final_layer.adaLN_modulation.1", 2 * h, h)
    return lay


def hunyuan_vae() -> None:
    from diffusers import AutoencoderKLHunyuanVideo, AutoencoderKLHunyuanVideo15

    save("hunyuan_video-vae.diffusers", meta(lambda: AutoencoderKLHunyuanVideo(), "F32"))
    save("hunyuan_video-1.5-vae.diffusers", meta(lambda: AutoencoderKLHunyuanVideo15(), "F32"))


# --- LTX-Video -----------------------------------------------------------------------------------
# Inverse of diffusers LTX_VIDEO_095_TRANSFORMER_KEYS_RENAME_DICT (scripts/convert_ltx_to_diffusers.py).
LTX_TO_ORIGINAL = [
    (r"^proj_in\.", "patchify_proj."),
    (r"^time_embed\.", "adaln_single."),
    (r"\.norm_q\.", ".q_norm."),
    (r"\.norm_k\.", ".k_norm."),
]


def ltxv() -> None:
    from diffusers import LTX2VideoTransformer3DModel, LTXVideoTransformer3DModel

    small = meta(lambda: LTXVideoTransformer3DModel())
    save("ltxv-2b.diffusers", small)
    save("ltxv-2b.original", rename(small, LTX_TO_ORIGINAL))
    big = meta(
        lambda: LTXVideoTransformer3DModel(
            num_attention_heads=32, attention_head_dim=128, cross_attention_dim=4096, num_layers=48
        )
    )
    save("ltxv-13b.original", rename(big, LTX_TO_ORIGINAL))
    ltx2 = meta(lambda: LTX2VideoTransformer3DModel())
    save("ltx2.diffusers", ltx2)
    # Inverse of diffusers convert_ltx2_transformer_to_diffusers.
    ltx2_pairs = [
        (r"^audio_proj_in\.", "audio_patchify_proj."),
        (r"^proj_in\.", "patchify_proj."),
        (r"^audio_time_embed\.", "audio_adaln_single."),
        (r"^time_embed\.", "adaln_single."),
        (r"^av_cross_attn_video_scale_shift\.", "av_ca_video_scale_shift_adaln_single."),
        (r"^av_cross_attn_video_a2v_gate\.", "av_ca_a2v_gate_adaln_single."),
        (r"^av_cross_attn_audio_scale_shift\.", "av_ca_audio_scale_shift_adaln_single."),
        (r"^av_cross_attn_audio_v2a_gate\.", "av_ca_v2a_gate_adaln_single."),
        (r"video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
        (r"audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
        (r"\.norm_q\.", ".q_norm."),
        (r"\.norm_k\.", ".k_norm."),
    ]
    save("ltx2.original", rename(ltx2, ltx2_pairs))


def ltx_vae() -> None:
    from diffusers import AutoencoderKLCosmos, AutoencoderKLLTX2Video, AutoencoderKLLTXVideo
    from diffusers.models.autoencoders.autoencoder_kl_ltx2_audio import AutoencoderKLLTX2Audio

    save("ltxv-vae.diffusers", meta(lambda: AutoencoderKLLTXVideo(), "F32"))
    save("ltx2-vae.diffusers", meta(lambda: AutoencoderKLLTX2Video(), "BF16"))
    save("ltx2-audio-vae.diffusers", meta(lambda: AutoencoderKLLTX2Audio(), "BF16"))
    save("cosmos-vae.diffusers", meta(lambda: AutoencoderKLCosmos(), "BF16"))


# --- Mochi, CogVideoX, Cosmos, SVD ---------------------------------------------------------------


def others() -> None:
    from diffusers import (
        AutoencoderKLCogVideoX,
        AutoencoderKLMochi,
        CogVideoXTransformer3DModel,
        CosmosTransformer3DModel,
        MochiTransformer3DModel,
        UNetSpatioTemporalConditionModel,
    )

    save("mochi.diffusers", meta(lambda: MochiTransformer3DModel()))
    save("mochi-vae.diffusers", meta(lambda: AutoencoderKLMochi(), "F32"))
    cog5b = dict(num_attention_heads=48, num_layers=42, use_rotary_positional_embeddings=True)
    save("cogvideox-5b.diffusers", meta(lambda: CogVideoXTransformer3DModel(**cog5b)))
    save(
        "cogvideox-5b-i2v.diffusers",
        meta(lambda: CogVideoXTransformer3DModel(**cog5b, in_channels=32, use_learned_positional_embeddings=True)),
    )
    save("cogvideox-2b.diffusers", meta(lambda: CogVideoXTransformer3DModel()))
    save("cogvideox-vae.diffusers", meta(lambda: AutoencoderKLCogVideoX(), "F32"))
    p1 = dict(
        in_channels=16,
        num_attention_heads=32,
        num_layers=28,
        text_embed_dim=1024,
        rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=True,
        extra_pos_embed_type="learnable",
    )
    save("cosmos-predict1-7b.diffusers", meta(lambda: CosmosTransformer3DModel(**p1)))
    p2 = dict(
        in_channels=16,
        num_attention_heads=16,
        num_layers=28,
        text_embed_dim=1024,
        rope_scale=(1.0, 4.0, 4.0),
        concat_padding_mask=True,
        extra_pos_embed_type=None,
    )
    save("cosmos-predict2-2b.diffusers", meta(lambda: CosmosTransformer3DModel(**p2)))
    save("svd.diffusers", meta(lambda: UNetSpatioTemporalConditionModel(), "F16"))


# --- text encoders --------------------------------------------------------------------------------


def text_encoders() -> None:
    import transformers as tf

    def enc(cls, cfg, dtype="BF16"):
        return meta(lambda: cls(cfg), dtype)

    t5 = tf.T5Config(
        vocab_size=32128,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
    )
    save("t5xxl.transformers", enc(tf.T5EncoderModel, t5, "F16"))
    umt5 = tf.UMT5Config(
        vocab_size=256384,
        d_model=4096,
        d_kv=64,
        d_ff=10240,
        num_layers=24,
        num_heads=64,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
    )
    save("umt5xxl.transformers", enc(tf.UMT5EncoderModel, umt5))
    llama = tf.LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
    )
    save("llama3_8b.transformers", enc(tf.LlamaForCausalLM, llama))
    q3 = dict(vocab_size=151936, num_attention_heads=32, num_key_value_heads=8, head_dim=128)
    save(
        "qwen3_4b.transformers",
        enc(
            tf.Qwen3Model,
            tf.Qwen3Config(
                **q3, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, tie_word_embeddings=True
            ),
        ),
    )
    save(
        "qwen3_8b.transformers",
        enc(tf.Qwen3Model, tf.Qwen3Config(**q3, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36)),
    )
    save(
        "qwen3_0.6b.transformers",
        enc(
            tf.Qwen3Model,
            tf.Qwen3Config(
                vocab_size=151936,
                hidden_size=1024,
                intermediate_size=3072,
                num_hidden_layers=28,
                num_attention_heads=16,
                num_key_value_heads=8,
                head_dim=128,
            ),
        ),
    )
    qvl = tf.Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
        ),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584),
    )
    save("qwen25vl_7b.transformers", enc(tf.Qwen2_5_VLForConditionalGeneration, qvl))
    g2 = tf.Gemma2Config(
        vocab_size=256000,
        hidden_size=2304,
        intermediate_size=9216,
        num_hidden_layers=26,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
    )
    save("gemma2_2b.transformers", enc(tf.Gemma2Model, g2))
    g3 = tf.Gemma3TextConfig(
        vocab_size=262208,
        hidden_size=2560,
        intermediate_size=10240,
        num_hidden_layers=34,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
    )
    save("gemma3_4b.transformers", enc(tf.Gemma3TextModel, g3))
    # Image encoders: OpenCLIP ViT-H/14 vision tower as ComfyUI ships it (clip_vision_h: Wan 2.1 I2V,
    # SVD, IP-Adapter) and SigLIP so400m/14 (Flux Redux, HunyuanVideo 1.5).
    vit_h = tf.CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=1024,
    )
    save("clip_vision_h.transformers", enc(tf.CLIPVisionModelWithProjection, vit_h, "F16"))
    siglip = tf.SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        patch_size=14,
        image_size=384,
    )
    save("siglip_so400m.transformers", enc(tf.SiglipVisionModel, siglip, "BF16"))
    mistral = tf.MistralConfig(
        vocab_size=131072,
        hidden_size=5120,
        intermediate_size=32768,
        num_hidden_layers=40,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
    )
    save("mistral_small.transformers", enc(tf.MistralModel, mistral))


# Other DiTs in diffusers names (default configs: only the names matter), for negative tests: none of
# them may be taken for a video family (CogView's patch embedding has a text projection like
# CogVideoX's, HunyuanImage 2.1 has HunyuanVideo's blocks, Sana / PixArt share LTX's adaln_single).
NEGATIVES = (
    "CogView4Transformer2DModel",
    "CogView3PlusTransformer2DModel",
    "SanaVideoTransformer3DModel",
    "AllegroTransformer3DModel",
    "HunyuanImageTransformer2DModel",
    "Kandinsky5Transformer3DModel",
    "PixArtTransformer2DModel",
    "SanaTransformer2DModel",
    "Lumina2Transformer2DModel",
    "QwenImageTransformer2DModel",
    "FluxTransformer2DModel",
    "AuraFlowTransformer2DModel",
    "SD3Transformer2DModel",
    "Flux2Transformer2DModel",
    "ZImageTransformer2DModel",
    "ChromaTransformer2DModel",
)


def negatives() -> None:
    import diffusers

    for name in NEGATIVES:
        save(f"negative-{name}", meta(getattr(diffusers, name)))


def main() -> None:
    wan()
    wan_extras()
    wan_animate()
    wan_vae()
    hunyuan_video()
    hunyuan_vae()
    ltxv()
    ltx_vae()
    others()
    text_encoders()
    controlnets()
    negatives()


# --- ControlNets of the DiT families ----------------------------------------------------------------


def controlnets() -> None:
    from diffusers import ControlNetUnionModel, FluxControlNetModel, SD3ControlNetModel

    # InstantX/FLUX.1-dev-Controlnet-Union: 5 double + 10 single blocks, 10 modes (its config.json).
    save(
        "flux-controlnet-union.diffusers",
        meta(lambda: FluxControlNetModel(num_layers=5, num_single_layers=10, guidance_embeds=True, num_mode=10)),
    )
    # InstantX/SD3-Controlnet-Canny: SD3 medium width, 6 layers.
    save("sd3-controlnet.diffusers", meta(lambda: SD3ControlNetModel(num_layers=6, num_attention_heads=24), "F16"))
    # xinsir/controlnet-union-sdxl-1.0 (diffusers ControlNetUnionModel with SDXL's config).
    sdxl = dict(
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        block_out_channels=(320, 640, 1280),
        transformer_layers_per_block=(1, 2, 10),
        cross_attention_dim=2048,
        attention_head_dim=(5, 10, 20),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    )
    save("sdxl-controlnet-union.diffusers", meta(lambda: ControlNetUnionModel(**sdxl), "F16"))


if __name__ == "__main__":
    main()
