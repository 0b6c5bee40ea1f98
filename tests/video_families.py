"""Layouts of the video families, their VAEs and the 2025-2026 text encoders: the committed layouts
(scripts/make_video_layouts.py: diffusers / transformers classes on the meta device, original names
by inverting diffusers' single-file converters) plus a few built here from the published key lists
(ComfyUI comfy/model_detection.py, diffusers loaders/single_file_utils.py)."""

from __future__ import annotations

import gzip
import json
from functools import cache

from tests.builders import LAYOUT_DIR, Layout, renamed

VIDEO_DIR = LAYOUT_DIR / "video"
B = "BF16"


@cache
def _load(name: str) -> tuple[tuple[str, tuple[tuple[int, ...], str]], ...]:
    raw = json.loads(gzip.decompress((VIDEO_DIR / f"{name}.json.gz").read_bytes()))["tensors"]
    return tuple((k, (tuple(v[0]), v[1])) for k, v in raw.items())


def video(name: str) -> Layout:
    """A committed layout, e.g. ``wan2.1-t2v-1.3b.original`` or ``umt5xxl.transformers``."""
    return dict(_load(name))


def rooted(lay: Layout, root: str) -> Layout:
    return renamed(lay, lambda k: root + k)


def edited(lay: Layout, changes: Layout, drop: tuple[str, ...] = ()) -> Layout:
    """``lay`` with some shapes changed or tensors added, and keys starting with ``drop`` removed."""
    out = {k: v for k, v in lay.items() if not (drop and k.startswith(drop))}
    return out | changes


def wan_humo() -> Layout:
    """HuMo (audio-conditioned Wan 14B): ComfyUI tells it by its audio projection."""
    return edited(video("wan2.1-t2v-14b.original"), {"audio_proj.audio_proj_glob_1.layer.bias": ((1024,), B)})


def wan_humo_small() -> Layout:
    return edited(video("wan2.1-t2v-1.3b.original"), {"audio_proj.audio_proj_glob_1.layer.bias": ((1024,), B)})


def wan_camera_small() -> Layout:
    """Wan 2.1 Fun 1.3B camera control: the 1.3B image-conditioned model plus the camera adapter."""
    d = 1536
    return video("wan2.1-i2v-1.3b.original") | {
        "control_adapter.conv.weight": ((d, 24 * 64, 2, 2), B),
        "control_adapter.conv.bias": ((d,), B),
    }


def wan_camera_22() -> Layout:
    """Wan 2.2 Fun camera control: the camera adapter without the CLIP image embedding."""
    return edited(video("wan2.1-camera-14b.original"), {}, drop=("img_emb.",))


def mochi_original() -> Layout:
    """Genmo's names (the keys diffusers convert_mochi_transformer_checkpoint_to_diffusers reads)."""
    x, y = 3072, 1536
    out: Layout = {
        "x_embedder.proj.weight": ((x, 12, 2, 2), B),
        "t_embedder.mlp.0.weight": ((x, 256), B),
        "t5_y_embedder.to_kv.weight": ((2 * 4096, 4096), B),
        "t5_yproj.weight": ((y, 4096), B),
        "pos_frequencies": ((3, 24, 64), B),
        "final_layer.linear.weight": ((48, x), B),
    }
    for i in range(48):
        b = f"blocks.{i}."
        out[b + "attn.qkv_x.weight"] = ((3 * x, x), B)
        out[b + "attn.proj_x.weight"] = ((x, x), B)
        out[b + "mod_x.weight"] = ((4 * x, x), B)
        if i < 47:
            out[b + "attn.qkv_y.weight"] = ((3 * x, y), B)
    return out


def cosmos_predict1(width: int = 4096, inputs: int = 68, blocks: int = 28) -> Layout:
    """NVIDIA's Cosmos-1.0 names under ``net.`` (diffusers convert_cosmos_to_diffusers 1.0 keys)."""
    out: Layout = {
        "net.x_embedder.proj.1.weight": ((width, inputs), B),
        "net.extra_pos_embedder.pos_emb_h": ((120, width), B),
        "net.t_embedder.1.linear_1.weight": ((width, width), B),
        "net.final_layer.linear.weight": ((64, width), B),
    }
    for i in range(blocks):
        b = f"net.blocks.block{i}.blocks."
        out[b + "0.block.attn.to_q.0.weight"] = ((width, width), B)
        out[b + "1.block.attn.to_k.0.weight"] = ((width, 1024), B)
        out[b + "2.block.layer1.weight"] = ((4 * width, width), B)
    return out


def cosmos_predict2(width: int = 2048, inputs: int = 68, blocks: int = 28) -> Layout:
    """NVIDIA's Cosmos-Predict2 names under ``net.`` (diffusers convert_cosmos_to_diffusers 2.0 keys)."""
    out: Layout = {
        "net.x_embedder.proj.1.weight": ((width, inputs), B),
        "net.t_embedder.1.linear_1.weight": ((width, width), B),
        "net.final_layer.linear.weight": ((64, width), B),
    }
    for i in range(blocks):
        b = f"net.blocks.{i}."
        out[b + "self_attn.q_proj.weight"] = ((width, width), B)
        out[b + "cross_attn.k_proj.weight"] = ((width, 1024), B)
        out[b + "mlp.layer1.weight"] = ((4 * width, width), B)
    return out


def anima() -> Layout:
    """Anima: Cosmos-Predict2 2B plus an LLM adapter from Qwen3 0.6B embeddings (ComfyUI)."""
    return cosmos_predict2() | {
        "net.llm_adapter.embed.weight": ((32128, 1024), B),
        "net.llm_adapter.blocks.0.self_attn.q_proj.weight": ((1024, 1024), B),
    }


def svd_original() -> Layout:
    """SVD's SGM names: an SD-2-shaped UNet (8 input channels, 1024 context, 768 vector) with a
    ``time_stack`` beside every spatial transformer and ``time_mixer`` merges."""
    from tests.families import sd2, unet_only

    out: Layout = {}
    for k, (shape, _dt) in unet_only(sd2()).items():
        out[k] = (shape, "F16")
        if ".transformer_blocks.0.attn1.to_q.weight" in k:
            stack = k.replace(".transformer_blocks.0.", ".time_stack.0.")
            out[stack] = (shape, "F16")
            out[k.replace(".transformer_blocks.0.attn1.to_q.weight", ".time_mixer.mix_factor")] = ((1,), "F32")
    out["input_blocks.0.0.weight"] = ((320, 8, 3, 3), "F16")
    out["label_emb.0.0.weight"] = ((1280, 768), "F16")
    return out


def cog(name: str, patch: tuple[int, ...]) -> Layout:
    return edited(video(name), {"patch_embed.proj.weight": (patch, B)})


# (family, variant, kind, build): every answer the video signatures give, in both namings where the
# family has both, under the usual roots.
VIDEO_FIXTURES: list[tuple[str, str, str, object]] = [
    ("wan", "2.1-vace-1.3b", "unet", lambda: video("wan2.1-vace-1.3b.original")),
    ("wan", "2.1-vace-14b", "unet", lambda: video("wan2.1-vace-14b.diffusers")),
    ("wan", "2.2-animate-14b", "unet", lambda: rooted(video("wan2.2-animate-14b.original"), "model.diffusion_model.")),
    ("wan", "2.2-animate-14b", "unet", lambda: video("wan2.2-animate-14b.diffusers")),
    ("wan", "2.2-s2v-14b", "unet", lambda: video("wan2.2-s2v-14b.original")),
    ("wan", "humo-14b", "unet", wan_humo),
    ("wan", "humo-1.7b", "unet", wan_humo_small),
    ("wan", "2.1-camera-1.3b", "unet", wan_camera_small),
    ("wan", "2.1-camera-14b", "unet", lambda: video("wan2.1-camera-14b.original")),
    ("wan", "2.2-camera-14b", "unet", wan_camera_22),
    ("wan", "2.1-flf2v-14b", "unet", lambda: video("wan2.1-flf2v-14b.original")),
    ("wan", "2.1-flf2v-14b", "unet", lambda: video("wan2.1-flf2v-14b.diffusers")),
    ("wan", "2.1-i2v-14b", "unet", lambda: rooted(video("wan2.1-i2v-14b.original"), "diffusion_model.")),
    ("wan", "2.1-i2v-14b", "unet", lambda: video("wan2.1-i2v-14b.diffusers")),
    ("wan", "2.1-i2v-1.3b", "unet", lambda: video("wan2.1-i2v-1.3b.original")),
    ("wan", "2.2-i2v-14b", "unet", lambda: video("wan2.2-i2v-14b.original")),
    ("wan", "2.2-i2v-14b", "unet", lambda: rooted(video("wan2.2-i2v-14b.diffusers"), "transformer.")),
    ("wan", "2.2-ti2v-5b", "unet", lambda: video("wan2.2-ti2v-5b.original")),
    ("wan", "2.2-ti2v-5b", "unet", lambda: video("wan2.2-ti2v-5b.diffusers")),
    ("wan", "2.1-t2v-1.3b", "unet", lambda: rooted(video("wan2.1-t2v-1.3b.original"), "model.")),
    ("wan", "2.1-t2v-1.3b", "unet", lambda: video("wan2.1-t2v-1.3b.diffusers")),
    ("wan", "2.2-t2v-14b", "unet", lambda: video("wan2.1-t2v-14b.original")),
    ("wan", "2.2-t2v-14b", "unet", lambda: video("wan2.1-t2v-14b.diffusers")),
    ("hunyuan_video", "t2v", "unet", lambda: video("hunyuan_video-t2v.original")),
    ("hunyuan_video", "t2v", "unet", lambda: video("hunyuan_video-t2v.diffusers")),
    ("hunyuan_video", "i2v", "unet", lambda: rooted(video("hunyuan_video-i2v.original"), "model.diffusion_model.")),
    ("hunyuan_video", "i2v", "unet", lambda: video("hunyuan_video-i2v.diffusers")),
    ("hunyuan_video", "1.5", "unet", lambda: video("hunyuan_video-1.5.diffusers")),
    ("hunyuan_video", "1.5", "unet", lambda: hunyuan_video_15_original()),
    ("ltxv", "0.9-2b", "unet", lambda: video("ltxv-2b.original")),
    ("ltxv", "0.9-2b", "unet", lambda: video("ltxv-2b.diffusers")),
    ("ltxv", "0.9-13b", "unet", lambda: rooted(video("ltxv-13b.original"), "model.diffusion_model.")),
    ("ltxv", "2", "unet", lambda: rooted(video("ltx2.original"), "model.diffusion_model.")),
    ("ltxv", "2", "unet", lambda: video("ltx2.diffusers")),
    ("mochi", "preview", "unet", mochi_original),
    ("mochi", "preview", "unet", lambda: video("mochi.diffusers")),
    ("cogvideox", "t2v-2b", "unet", lambda: video("cogvideox-2b.diffusers")),
    ("cogvideox", "inpaint-2b", "unet", lambda: cog("cogvideox-2b.diffusers", (1920, 48, 2, 2))),
    ("cogvideox", "t2v-5b", "unet", lambda: video("cogvideox-5b.diffusers")),
    ("cogvideox", "i2v-5b", "unet", lambda: video("cogvideox-5b-i2v.diffusers")),
    ("cogvideox", "inpaint-5b", "unet", lambda: cog("cogvideox-5b.diffusers", (3072, 48, 2, 2))),
    ("cogvideox", "1.5-t2v-5b", "unet", lambda: cog("cogvideox-5b.diffusers", (3072, 128))),
    ("cogvideox", "1.5-i2v-5b", "unet", lambda: cog("cogvideox-5b-i2v.diffusers", (3072, 256))),
    ("cosmos", "predict1-t2w-7b", "unet", cosmos_predict1),
    ("cosmos", "predict1-t2w-7b", "unet", lambda: video("cosmos-predict1-7b.diffusers")),
    ("cosmos", "predict1-t2w-14b", "unet", lambda: cosmos_predict1(5120, 68, 36)),
    ("cosmos", "predict1-v2w-7b", "unet", lambda: cosmos_predict1(4096, 72)),
    ("cosmos", "predict2-t2i-2b", "unet", cosmos_predict2),
    ("cosmos", "predict2-t2i-2b", "unet", lambda: video("cosmos-predict2-2b.diffusers")),
    ("cosmos", "predict2-v2w-2b", "unet", lambda: cosmos_predict2(2048, 72)),
    ("cosmos", "predict2-t2i-14b", "unet", lambda: cosmos_predict2(5120, 68, 36)),
    ("cosmos", "anima", "unet", anima),
    ("svd", "img2vid", "unet", svd_original),
    ("svd", "img2vid", "unet", lambda: video("svd.diffusers")),
]


# Wan's own VAE names for the keys diffusers convert_wan_vae_to_diffusers renames one to one
# (middle blocks, heads, latent convs); the up/down blocks are left out.
_WAN_VAE_ORIGINAL = {
    "quant_conv.": "conv1.",
    "post_quant_conv.": "conv2.",
    "encoder.conv_in.": "encoder.conv1.",
    "decoder.conv_in.": "decoder.conv1.",
    "encoder.norm_out.": "encoder.head.0.",
    "encoder.conv_out.": "encoder.head.2.",
    "decoder.norm_out.": "decoder.head.0.",
    "decoder.conv_out.": "decoder.head.2.",
}
_WAN_VAE_RESNET = {"norm1.": "residual.0.", "conv1.": "residual.2.", "norm2.": "residual.3.", "conv2.": "residual.6."}


def wan_vae_original(name: str = "wan2.1-vae.diffusers") -> Layout:
    def rename(k: str) -> str | None:
        for new, old in _WAN_VAE_ORIGINAL.items():
            if k.startswith(new):
                return old + k[len(new) :]
        for side in ("encoder", "decoder"):
            for i, mid in ((0, 0), (1, 2)):
                head = f"{side}.mid_block.resnets.{i}."
                if k.startswith(head):
                    rest = k[len(head) :]
                    for d, o in _WAN_VAE_RESNET.items():
                        if rest.startswith(d):
                            return f"{side}.middle.{mid}.{o}{rest[len(d) :]}"
            head = f"{side}.mid_block.attentions.0."
            if k.startswith(head):
                return f"{side}.middle.1.{k[len(head) :]}"
        return None

    return renamed(video(name), rename)


def flux_controlnet_xlabs(blocks: int = 2) -> Layout:
    """XLabs-AI flux-controlnet-*: Flux's own block names, a hint encoder, one zero linear per block."""
    from tests.families import flux

    out = flux() | {
        "input_hint_block.0.weight": ((16, 3, 3, 3), B),
        "input_hint_block.14.weight": ((16, 16, 3, 3), B),
        "pos_embed_input.weight": ((3072, 64), B),
    }
    for i in range(blocks):
        out[f"controlnet_blocks.{i}.weight"] = ((3072, 3072), B)
        out[f"controlnet_blocks.{i}.bias"] = ((3072,), B)
    return out


def ip_adapter(width: int = 768, first: int = 320, image: int = 1024, kind: str = "base") -> Layout:
    """tencent-ailab IP-Adapter flattened: ``image_proj.*`` and ``ip_adapter.<n>.to_{k,v}_ip`` for
    every cross-attention processor (odd n)."""
    F = "F16"
    out: Layout = {}
    if kind == "plus":
        out |= {
            "image_proj.latents": ((1, 16, width), F),
            "image_proj.proj_in.weight": ((width, image), F),
            "image_proj.proj_out.weight": ((width, width), F),
            "image_proj.norm_out.weight": ((width,), F),
        }
    elif kind == "faceid":
        out |= {
            "image_proj.proj.0.weight": ((1024, 512), F),
            "image_proj.proj.2.weight": ((4 * width, 1024), F),
            "image_proj.norm.weight": ((width,), F),
        }
    else:
        out |= {
            "image_proj.proj.weight": ((4 * width, image), F),
            "image_proj.norm.weight": ((width,), F),
            "image_proj.norm.bias": ((width,), F),
        }
    for n, w in ((1, first), (3, first), (5, first * 2), (7, first * 2)):
        out[f"ip_adapter.{n}.to_k_ip.weight"] = ((w, width), F)
        out[f"ip_adapter.{n}.to_v_ip.weight"] = ((w, width), F)
    return out


def ip_adapter_flux_xlabs() -> Layout:
    out: Layout = {
        "ip_adapter_proj_model.proj.weight": ((4 * 4096, 768), B),
        "ip_adapter_proj_model.norm.weight": ((4096,), B),
    }
    for i in range(19):
        p = f"double_blocks.{i}.processor."
        out[p + "ip_adapter_double_stream_k_proj.weight"] = ((3072, 4096), B)
        out[p + "ip_adapter_double_stream_v_proj.weight"] = ((3072, 4096), B)
    return out


def hunyuan_video_15_original() -> Layout:
    """HunyuanVideo 1.5 (Tencent / ComfyUI names): HunyuanVideo's token refiner and double blocks at
    2048 wide, 54 double blocks, 1x1x1 patches of 65 channels, plus the condition-type embedding,
    the SigLIP vision projection and the ByT5 glyph projection (diffusers' 1.5 converter keys)."""
    h = 2048
    out: Layout = {
        "img_in.proj.weight": ((h, 65, 1, 1, 1), B),
        "cond_type_embedding.weight": ((3, h), B),
        "vision_in.proj.0.weight": ((1152,), B),
        "vision_in.proj.1.weight": ((1152, 1152), B),
        "vision_in.proj.3.weight": ((h, 1152), B),
        "byt5_in.fc1.weight": ((h, 1472), B),
        "byt5_in.layernorm.weight": ((1472,), B),
        "txt_in.input_embedder.weight": ((h, 3584), B),
        "final_layer.linear.weight": ((32, h), B),
    }
    for i in range(2):
        r = f"txt_in.individual_token_refiner.blocks.{i}."
        out |= {r + "norm1.weight": ((h,), B), r + "self_attn_qkv.weight": ((3 * h, h), B)}
    for i in range(54):
        d = f"double_blocks.{i}."
        out |= {d + "img_mod.linear.weight": ((6 * h, h), B), d + "txt_mod.linear.weight": ((6 * h, h), B)}
        out |= {d + "img_attn_q_norm.weight": ((128,), B), d + "img_mlp.fc1.weight": ((4 * h, h), B)}
    return out
