"""LoRA fixtures with real names and shapes: module lists from diffusers model classes built on the
meta device (diffusers names) and from the single-file layouts of the releases (LDM / BFL /
original names), turned into LoRA layouts in each trainer's naming."""

from __future__ import annotations

import re
from functools import cache

from tests.builders import Layout, layout

Modules = dict[str, tuple[int, ...]]  # module path -> weight shape


@cache
def diffusers_modules(cls_name: str, **config) -> Modules:
    """Every weight of a diffusers model class with ``config`` (built on the meta device)."""
    import diffusers
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = getattr(diffusers, cls_name)(**config)
    return {k[: -len(".weight")]: tuple(v.shape) for k, v in model.state_dict().items() if k.endswith(".weight")}


def linear_modules(mods: Modules, select: str = r"blocks") -> Modules:
    """The 2-D (and conv) weights whose path matches ``select``: what LoRA trainers target."""
    rx = re.compile(select)
    return {k: s for k, s in mods.items() if len(s) in (2, 4) and rx.search(k)}


def _pair(shape: tuple[int, ...], rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if len(shape) == 4:
        return (rank, shape[1], shape[2], shape[3]), (shape[0], rank, 1, 1)
    return (rank, shape[1]), (shape[0], rank)


def kohya(mods: Modules, prefix: str = "lora_unet_", rank: int = 4, dtype: str = "F16") -> Layout:
    out: Layout = {}
    for path, shape in mods.items():
        down, up = _pair(shape, rank)
        stem = prefix + path.replace(".", "_")
        out[stem + ".lora_down.weight"] = (down, dtype)
        out[stem + ".lora_up.weight"] = (up, dtype)
        out[stem + ".alpha"] = ((), dtype)
    return out


def peft(mods: Modules, prefix: str = "transformer.", rank: int = 4, dtype: str = "BF16") -> Layout:
    out: Layout = {}
    for path, shape in mods.items():
        down, up = _pair(shape, rank)
        out[f"{prefix}{path}.lora_A.weight"] = (down, dtype)
        out[f"{prefix}{path}.lora_B.weight"] = (up, dtype)
    return out


def comfy(mods: Modules, prefix: str = "diffusion_model.", rank: int = 4, dtype: str = "BF16") -> Layout:
    out: Layout = {}
    for path, shape in mods.items():
        down, up = _pair(shape, rank)
        out[f"{prefix}{path}.lora_down.weight"] = (down, dtype)
        out[f"{prefix}{path}.lora_up.weight"] = (up, dtype)
        out[f"{prefix}{path}.alpha"] = ((), dtype)
    return out


def merged(*layouts: Layout) -> Layout:
    out: Layout = {}
    for lay in layouts:
        out |= lay
    return out


# --- module lists in original / single-file names ---------------------------------------------


def clip_hf(width: int, layers: int) -> Modules:
    mods: Modules = {}
    for i in range(layers):
        p = f"text_model.encoder.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            mods[p + "self_attn." + n] = (width, width)
        mods[p + "mlp.fc1"] = (width * 4, width)
        mods[p + "mlp.fc2"] = (width, width * 4)
    return mods


def ldm_unet(name: str) -> Modules:
    """Attention and conv weights of a release's UNet under its LDM names (``sd15``, ``sdxl-base``)."""
    root = "model.diffusion_model."
    rx = re.compile(
        r"(transformer_blocks\.\d+\.(attn[12]\.(to_[qkv]|to_out\.0)|ff\.net\.(0\.proj|2))|proj_in|proj_out)\.weight$"
    )
    return {
        k[len(root) : -len(".weight")]: s for k, (s, _d) in layout(name).items() if k.startswith(root) and rx.search(k)
    }


def flux_bfl(double: int = 19, single: int = 38, hidden: int = 3072, mods: bool = True) -> Modules:
    """Flux.1 (and, without modulation, Chroma) blocks under BFL names."""
    h = hidden
    out: Modules = {}
    for i in range(double):
        for s in ("img", "txt"):
            p = f"double_blocks.{i}.{s}_"
            out[p + "attn.qkv"] = (3 * h, h)
            out[p + "attn.proj"] = (h, h)
            out[p + "mlp.0"] = (4 * h, h)
            out[p + "mlp.2"] = (h, 4 * h)
            if mods:
                out[p + "mod.lin"] = (6 * h, h)
    for i in range(single):
        p = f"single_blocks.{i}."
        out[p + "linear1"] = (7 * h, h)
        out[p + "linear2"] = (h, 5 * h)
        if mods:
            out[p + "modulation.lin"] = (3 * h, h)
    return out


def flux_model(double: int = 19, single: int = 38, hidden: int = 3072, root: str = "") -> Layout:
    """A Flux.1 dev diffusion model (BFL names) with every block weight, sparse-file ready."""
    h = hidden
    lay: Layout = {f"{root}{k}.weight": (s, "BF16") for k, s in flux_bfl(double, single, hidden).items()}
    for i in range(double):
        for s in ("img", "txt"):
            lay[f"{root}double_blocks.{i}.{s}_attn.norm.key_norm.scale"] = ((128,), "BF16")
            lay[f"{root}double_blocks.{i}.{s}_attn.norm.query_norm.scale"] = ((128,), "BF16")
    top = {
        "img_in": (h, 64),
        "txt_in": (h, 4096),
        "time_in.in_layer": (h, 256),
        "time_in.out_layer": (h, h),
        "vector_in.in_layer": (h, 768),
        "vector_in.out_layer": (h, h),
        "guidance_in.in_layer": (h, 256),
        "guidance_in.out_layer": (h, h),
        "final_layer.linear": (64, h),
        "final_layer.adaLN_modulation.1": (2 * h, h),
    }
    for k, s in top.items():
        lay[f"{root}{k}.weight"] = (s, "BF16")
    return lay


def hunyuan_video_original(double: int = 20, single: int = 40, h: int = 3072) -> Modules:
    out: Modules = {}
    for i in range(double):
        for s in ("img", "txt"):
            p = f"double_blocks.{i}.{s}_"
            out[p + "attn_qkv"] = (3 * h, h)
            out[p + "attn_proj"] = (h, h)
            out[p + "mlp.fc1"] = (4 * h, h)
            out[p + "mlp.fc2"] = (h, 4 * h)
            out[p + "mod.linear"] = (6 * h, h)
    for i in range(single):
        p = f"single_blocks.{i}."
        out[p + "linear1"] = (7 * h, h)
        out[p + "linear2"] = (h, 5 * h)
        out[p + "modulation.linear"] = (3 * h, h)
    return out


def wan_original(blocks: int = 40, h: int = 5120, ffn: int = 13824) -> Modules:
    out: Modules = {}
    for i in range(blocks):
        for a in ("self_attn", "cross_attn"):
            for n in "qkvo":
                out[f"blocks.{i}.{a}.{n}"] = (h, h)
        out[f"blocks.{i}.ffn.0"] = (ffn, h)
        out[f"blocks.{i}.ffn.2"] = (h, ffn)
    return out


# --- the families' LoRAs, in the naming their trainers write -------------------------------------

SD1_UNET = {"cross_attention_dim": 768}
SDXL_UNET = {
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "transformer_layers_per_block": (1, 2, 10),
    "cross_attention_dim": 2048,
    "attention_head_dim": (5, 10, 20),
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "use_linear_projection": True,
}
SD2_UNET = {"cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True}
ATTN = r"blocks\.\d+\.(attentions\.\d+\.(transformer_blocks\.\d+\.(attn[12]\.(to_[qkv]|to_out\.0)|ff\.net\.(0\.proj|2))|proj_in|proj_out))"


def unet_attn(config: dict) -> Modules:
    return linear_modules(diffusers_modules("UNet2DConditionModel", **config), ATTN)
