"""Layouts of every family sdmodel identifies, derived from the real SD 1.5 / SDXL layouts or built
from the published architectures (names and shapes only). Used by tests and benchmarks."""

from __future__ import annotations

import gzip
import json
import re

from tests.builders import LAYOUT_DIR, Layout, layout, renamed

F32 = "F32"


def openclip(prefix: str, width: int, layers: int, heads_dim: int = 4) -> Layout:
    """OpenCLIP text transformer names (SD2 ViT-H at 1024 wide, SDXL bigG at 1280)."""
    out: Layout = {
        f"{prefix}token_embedding.weight": ((49408, width), F32),
        f"{prefix}positional_embedding": ((77, width), F32),
        f"{prefix}ln_final.weight": ((width,), F32),
        f"{prefix}ln_final.bias": ((width,), F32),
        f"{prefix}text_projection": ((width, width), F32),
        f"{prefix}logit_scale": ((), F32),
    }
    for i in range(layers):
        b = f"{prefix}transformer.resblocks.{i}."
        out |= {
            b + "attn.in_proj_weight": ((3 * width, width), F32),
            b + "attn.in_proj_bias": ((3 * width,), F32),
            b + "attn.out_proj.weight": ((width, width), F32),
            b + "attn.out_proj.bias": ((width,), F32),
            b + "ln_1.weight": ((width,), F32),
            b + "ln_1.bias": ((width,), F32),
            b + "ln_2.weight": ((width,), F32),
            b + "ln_2.bias": ((width,), F32),
            b + "mlp.c_fc.weight": ((heads_dim * width, width), F32),
            b + "mlp.c_fc.bias": ((heads_dim * width,), F32),
            b + "mlp.c_proj.weight": ((width, heads_dim * width), F32),
            b + "mlp.c_proj.bias": ((width,), F32),
        }
    return out


def sd1() -> Layout:
    return layout("sd15")


def sd1_inpaint() -> Layout:
    lay = sd1()
    lay["model.diffusion_model.input_blocks.0.0.weight"] = ((320, 9, 3, 3), F32)
    return lay


def sd1_pix2pix() -> Layout:
    lay = sd1()
    lay["model.diffusion_model.input_blocks.0.0.weight"] = ((320, 8, 3, 3), F32)
    return lay


def sd1_novelai() -> Layout:
    """Old CLIP names without ``text_model.`` everywhere (position ids included)."""
    return renamed(sd1(), lambda k: k.replace("transformer.text_model.", "transformer."))


def sd2() -> Layout:
    """SD 2.x: 1024-wide cross-attention, linear proj_in/proj_out, OpenCLIP ViT-H text encoder."""
    out: Layout = {}
    for k, (shape, dt) in sd1().items():
        if k.startswith("cond_stage_model."):
            continue
        if re.search(r"attn2\.to_[kv]\.weight$", k):
            shape = (shape[0], 1024)
        if re.search(r"\.proj_(in|out)\.weight$", k):
            shape = shape[:2]
        out[k] = (shape, dt)
    return out | openclip("cond_stage_model.model.", 1024, 24)


def sd2_depth() -> Layout:
    lay = sd2()
    lay["model.diffusion_model.input_blocks.0.0.weight"] = ((320, 5, 3, 3), F32)
    lay["depth_model.model.pretrained.act_postprocess3.0.project.0.bias"] = ((1024,), F32)
    return lay


UNCLIP_LABEL_WIDTH = {768: 1536, 1024: 2048}  # CLIP-L / OpenCLIP-H image embedding + noise level


def sd2_unclip(image_width: int = 1024) -> Layout:
    lay = sd2()
    lay["model.diffusion_model.label_emb.0.0.weight"] = ((1280, UNCLIP_LABEL_WIDTH[image_width]), F32)
    lay["model.diffusion_model.label_emb.0.0.bias"] = ((1280,), F32)
    lay["embedder.model.ln_final.weight"] = ((image_width,), F32)
    return lay


def sdxl() -> Layout:
    return layout("sdxl-base")


def sdxl_refiner() -> Layout:
    out: Layout = {}
    for k, v in sdxl().items():
        if k.startswith("conditioner.embedders.0."):
            continue
        out[k.replace("conditioner.embedders.1.", "conditioner.embedders.0.")] = v
    out["model.diffusion_model.input_blocks.0.0.weight"] = ((384, 4, 3, 3), "F16")
    out["model.diffusion_model.label_emb.0.0.weight"] = ((1536, 2560), "F16")
    return out


def vae_only(lay: Layout | None = None) -> Layout:
    lay = lay or sd1()
    return renamed(lay, lambda k: k[len("first_stage_model.") :] if k.startswith("first_stage_model.") else None)


def unet_only(lay: Layout | None = None) -> Layout:
    lay = lay or sd1()
    return renamed(
        lay, lambda k: k[len("model.diffusion_model.") :] if k.startswith("model.diffusion_model.") else None
    )


def clip_l() -> Layout:
    """HF CLIPTextModel names, as ComfyUI's text_encoders/clip_l.safetensors."""

    def name(k: str) -> str | None:
        if not k.startswith("cond_stage_model.transformer."):
            return None
        rest = k[len("cond_stage_model.transformer.") :]
        return rest if rest.startswith("text_model.") else "text_model." + rest

    return renamed(sd1(), name)


def t5xxl() -> Layout:
    out: Layout = {"shared.weight": ((32128, 4096), "F16")}
    for i in range(24):
        out[f"encoder.block.{i}.layer.0.SelfAttention.q.weight"] = ((4096, 4096), "F16")
    return out


def sd3() -> Layout:
    out: Layout = {"model.diffusion_model.x_embedder.proj.weight": ((1536, 16, 2, 2), "F16")}
    for i in range(24):
        out[f"model.diffusion_model.joint_blocks.{i}.x_block.attn.qkv.weight"] = ((4608, 1536), "F16")
    out |= {
        "first_stage_model.encoder.conv_in.weight": ((128, 3, 3, 3), "F16"),
        "first_stage_model.decoder.conv_in.weight": ((512, 16, 3, 3), "F16"),
        "text_encoders.clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": ((768, 768), "F16"),
        "text_encoders.clip_g.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight": ((1280, 1280), "F16"),
    }
    return out


def flux(dev: bool = True) -> Layout:
    out: Layout = {
        "img_in.weight": ((3072, 64), "BF16"),
        "double_blocks.0.img_attn.norm.key_norm.scale": ((128,), "BF16"),
        "double_blocks.0.img_attn.qkv.weight": ((9216, 3072), "BF16"),
        "single_blocks.0.linear1.weight": ((21504, 3072), "BF16"),
        "vector_in.in_layer.weight": ((3072, 768), "BF16"),
    }
    if dev:
        out["guidance_in.in_layer.weight"] = ((3072, 256), "BF16")
    return out


def controlnet(lay: Layout | None = None, prefix: str = "control_model.") -> Layout:
    """An LDM ControlNet: the UNet's input and middle blocks plus hint block and zero convs."""
    lay = lay or sd1()
    out: Layout = {}
    for k, v in lay.items():
        if k.startswith("model.diffusion_model.") and ".output_blocks." not in k and ".out." not in k:
            out[prefix + k[len("model.diffusion_model.") :]] = v
    out[prefix + "input_hint_block.0.weight"] = ((16, 3, 3, 3), F32)
    for i in range(12):
        out[prefix + f"zero_convs.{i}.0.weight"] = ((320, 320, 1, 1), F32)
    out[prefix + "middle_block_out.0.weight"] = ((1280, 1280, 1, 1), F32)
    return out


def t2i_adapter(in_channels: int = 192) -> Layout:
    return {"conv_in.weight": ((320, in_channels, 3, 3), F32), "body.0.block1.weight": ((320, 320, 3, 3), F32)}


def lora_kohya(width: int = 768, te: tuple[str, ...] = ("lora_te_",), rank: int = 8) -> Layout:
    out: Layout = {}
    unet = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    if width == 2048:
        unet = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    out[unet + ".lora_down.weight"] = ((rank, width), "F16")
    out[unet + ".lora_up.weight"] = ((320, rank), "F16")
    out[unet + ".alpha"] = ((), "F16")
    for p in te:
        k = f"{p}text_model_encoder_layers_0_self_attn_q_proj"
        out[k + ".lora_down.weight"] = ((rank, 768), "F16")
        out[k + ".lora_up.weight"] = ((768, rank), "F16")
        out[k + ".alpha"] = ((), "F16")
    return out


def lora_peft(width: int = 768) -> Layout:
    k = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    return {k + ".lora_A.weight": ((4, width), "F16"), k + ".lora_B.weight": ((320, 4), "F16")}


def loha(width: int = 768) -> Layout:
    k = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    return {
        k + ".hada_w1_a": ((320, 4), "F16"),
        k + ".hada_w1_b": ((4, width), "F16"),
        k + ".hada_w2_a": ((320, 4), "F16"),
        k + ".hada_w2_b": ((4, width), "F16"),
        k + ".alpha": ((), "F16"),
    }


def lokr() -> Layout:
    k = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
    return {k + ".lokr_w1": ((8, 8), "F16"), k + ".lokr_w2": ((96, 96), "F16")}


def embedding(width: int = 768, vectors: int = 4) -> Layout:
    return {"emb_params": ((vectors, width), F32)}


def embedding_sdxl(vectors: int = 4) -> Layout:
    return {"clip_l": ((vectors, 768), F32), "clip_g": ((vectors, 1280), F32)}


def with_in_channels(lay: Layout, channels: int) -> Layout:
    """The UNet's first convolution with another number of input channels (inpaint, pix2pix, depth)."""
    key = "model.diffusion_model.input_blocks.0.0.weight"
    shape, dtype = lay[key]
    return lay | {key: ((shape[0], channels, *shape[2:]), dtype)}


def sd3_large() -> Layout:
    lay = sd3()
    for i in range(24, 38):
        lay[f"model.diffusion_model.joint_blocks.{i}.x_block.attn.qkv.weight"] = ((4608, 1536), "F16")
    return lay


# Every (family, variant) the registry can answer, with a layout that must identify as it:
# (family, variant, kind, layout builder). tests/test_registry.py requires one per registry answer.
FAMILY_FIXTURES: list[tuple[str, str, str, object]] = [
    ("sd1", "base", "checkpoint", sd1),
    ("sd1", "inpaint", "checkpoint", sd1_inpaint),
    ("sd1", "pix2pix", "checkpoint", sd1_pix2pix),
    ("sd1", "depth", "unet", lambda: unet_only(with_in_channels(sd1(), 5))),
    ("sd2", "base", "checkpoint", sd2),
    ("sd2", "inpaint", "checkpoint", lambda: with_in_channels(sd2(), 9)),
    ("sd2", "pix2pix", "unet", lambda: unet_only(with_in_channels(sd2(), 8))),
    ("sd2", "depth", "checkpoint", sd2_depth),
    ("sd2", "unclip", "checkpoint", sd2_unclip),
    ("sdxl", "base", "checkpoint", sdxl),
    ("sdxl", "inpaint", "checkpoint", lambda: with_in_channels(sdxl(), 9)),
    ("sdxl", "pix2pix", "unet", lambda: unet_only(with_in_channels(sdxl(), 8))),
    ("sdxl_refiner", "base", "checkpoint", sdxl_refiner),
    ("sd3", "medium", "checkpoint", sd3),
    ("sd3", "large", "checkpoint", sd3_large),
    ("flux", "dev", "unet", flux),
    ("flux", "schnell", "unet", lambda: flux(dev=False)),
]


FAMILY_LAYOUT_DIR = LAYOUT_DIR / "families"


def family_layout(name: str) -> Layout:
    """A layout made by scripts/make_family_layouts.py (names and shapes of a released model)."""
    raw = json.loads(gzip.decompress((FAMILY_LAYOUT_DIR / f"{name}.json.gz").read_bytes()))["tensors"]
    return {k: (tuple(shape), dtype) for k, (shape, dtype) in raw.items()}


BESIDE_THE_MODEL = ("cc_projection.",)  # Zero123's camera projection stays at the top level


def prefixed(lay: Layout, prefix: str) -> Layout:
    return {k if k.startswith(BESIDE_THE_MODEL) else prefix + k: v for k, v in lay.items()}


def as_checkpoint(lay: Layout) -> Layout:
    """A lone diffusion model made a whole checkpoint: under ``model.diffusion_model.`` with a VAE."""
    return prefixed(lay, "model.diffusion_model.") | {
        "vae.encoder.conv_in.weight": ((128, 3, 3, 3), "BF16"),
        "vae.decoder.conv_in.weight": ((512, 16, 3, 3), "BF16"),
    }


# (layout file, family, variant): single-file names (".comfy" = ComfyUI's classes, ".original" =
# diffusers' single-file converters inverted) and diffusers names of every image family.
LAYOUT_FIXTURES: list[tuple[str, str, str | None]] = [
    ("flux_dev.comfy", "flux", "dev"),
    ("flux_dev.diffusers", "flux", "dev"),
    ("flux_schnell.comfy", "flux", "schnell"),
    ("flux_schnell.diffusers", "flux", "schnell"),
    ("flux_fill.comfy", "flux", "fill"),
    ("flux_fill.diffusers", "flux", "fill"),
    ("flux_canny.comfy", "flux", "canny"),
    ("flux_canny.diffusers", "flux", "canny"),
    ("flux2_dev.original", "flux2", "dev"),
    ("flux2_dev.diffusers", "flux2", "dev"),
    ("flux2_klein4b.original", "flux2", "klein-4b"),
    ("flux2_klein4b.diffusers", "flux2", "klein-4b"),
    ("flux2_klein9b.original", "flux2", "klein-9b"),
    ("chroma.comfy", "chroma", "base"),
    ("chroma.diffusers", "chroma", "base"),
    ("chroma_radiance.comfy", "chroma", "radiance"),
    ("sd3_medium.comfy", "sd3", "medium"),
    ("sd3_medium.diffusers", "sd3", "medium"),
    ("sd35_medium.comfy", "sd3", "3.5-medium"),
    ("sd35_medium.diffusers", "sd3", "3.5-medium"),
    ("sd35_large.comfy", "sd3", "large"),
    ("sd35_large.diffusers", "sd3", "large"),
    ("auraflow.comfy", "auraflow", "base"),
    ("auraflow.diffusers", "auraflow", "base"),
    ("pixart_alpha.comfy", "pixart", "alpha"),
    ("pixart_alpha.diffusers", "pixart", "alpha"),
    ("pixart_sigma.comfy", "pixart", "sigma"),
    ("pixart_sigma.diffusers", "pixart", "sigma"),
    ("sana.original", "sana", "base"),
    ("sana.diffusers", "sana", "base"),
    ("hunyuan_dit.comfy", "hunyuan_dit", "base"),
    ("hunyuan_dit.diffusers", "hunyuan_dit", "base"),
    ("lumina2.comfy", "lumina2", "base"),
    ("lumina2.diffusers", "lumina2", "base"),
    ("z_image.original", "z_image", "base"),
    ("z_image.diffusers", "z_image", "base"),
    ("hidream_i1.comfy", "hidream", "i1"),
    ("hidream_i1.diffusers", "hidream", "i1"),
    ("qwen_image.comfy", "qwen_image", "base"),
    ("qwen_image21.diffusers", "qwen_image", "2.1"),
    ("stable_cascade_c.comfy", "stable_cascade", "stage_c"),
    ("stable_cascade_b.comfy", "stable_cascade", "stage_b"),
    ("ssd1b.comfy", "sdxl", "ssd-1b"),
    ("ssd1b.diffusers", "sdxl", "ssd-1b"),
    ("vega.comfy", "sdxl", "vega"),
    ("koala_700m.comfy", "sdxl", "koala"),
    ("koala_1b.comfy", "sdxl", "koala"),
    ("kolors.diffusers", "kolors", "base"),
    ("stable_zero123.comfy", "stable_zero123", "base"),
    ("x4_upscaler.comfy", "x4_upscaler", "base"),
]
from tests.video_families import VIDEO_FIXTURES  # noqa: E402

FAMILY_FIXTURES += VIDEO_FIXTURES
