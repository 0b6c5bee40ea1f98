"""Where the diffusers module names of a family's diffusion model land in its single-file names.

LoRA trainers name their targets either by the model's single-file modules (kohya/musubi-tuner
``lora_unet_`` + path with ``_``, ComfyUI ``diffusion_model.`` + path) or by the diffusers model's
modules (``transformer.`` + path). One record per family says how the two name the same weight:

- ``blocks``: per repeated block, diffusers inner path -> single-file inner path, and the fused
  weights (one single-file weight whose rows are several diffusers weights, e.g. Flux's ``qkv``);
- ``top``: the modules outside the blocks (whole paths, or path prefixes ending in ``.``);
- ``swapped``: single-file modules whose two output halves diffusers keeps in the other order
  (``shift, scale`` vs ``scale, shift``), when the weight has twice as many rows as inputs;
- ``same``: the family's diffusers names are its single-file names (Qwen-Image, HiDream), apart
  from the ``top`` renames.

Facts from diffusers ``loaders/single_file_utils.py`` (the ``convert_*_to_diffusers`` functions) and
``loaders/lora_conversion_utils.py``, and ComfyUI ``comfy/utils.py`` (``flux_to_diffusers``,
``mmdit_to_diffusers``); tests check every record against real key lists of both layouts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sdmodel.lora.names import FLUX_DOUBLE, FLUX_SINGLE, FLUX_TOP


@dataclass(frozen=True)
class Fused:
    """One single-file weight holding the rows of several diffusers weights, in this order: equal
    parts (q, k, v; k, v), or q with the input's width and k, v sharing the rest (``grouped``:
    grouped-query attention), or three parts of the input's width and a fourth with the rest
    (``rest``: Flux's ``linear1`` = q, k, v and the MLP input)."""

    native: str
    parts: tuple[str, ...]
    grouped: bool = False
    rest: bool = False

    def sizes(self, rows: int, width: int) -> list[int]:
        if self.grouped:
            return [width, (rows - width) // 2, (rows - width) // 2]
        if self.rest:
            return [width] * (len(self.parts) - 1) + [rows - (len(self.parts) - 1) * width]
        return [rows // len(self.parts)] * len(self.parts)

    def part_sizes(self, known: dict[int, int], width: int) -> list[int] | None:
        """Every part's rows from those of the parts at hand (``known``: index -> rows); None when
        a missing part's rows cannot be told (the rest part) or the known ones do not fit."""
        if self.rest:
            if len(self.parts) - 1 not in known:
                return None
            want = [width] * (len(self.parts) - 1) + [known[len(self.parts) - 1]]
        elif self.grouped:
            kv = {known[i] for i in (1, 2) if i in known}
            if len(kv) > 1:
                return None
            want = [width, *([kv.pop()] * 2 if kv else [width] * 2)]
        else:
            equal = set(known.values())
            if len(equal) != 1:
                return None
            want = [equal.pop()] * len(self.parts)
        return want if all(want[i] == n for i, n in known.items()) else None


@dataclass(frozen=True)
class Blocks:
    """A repeated block: ``native.N.<inner>`` in single-file names, ``diffusers.N.<inner>`` in diffusers'."""

    native: str
    diffusers: str
    modules: Mapping[str, str]  # diffusers inner path -> single-file inner path
    fused: tuple[Fused, ...] = ()
    swapped: frozenset[str] = frozenset()  # single-file inner paths


@dataclass(frozen=True)
class Mapped:
    """A diffusers module in single-file terms: the path, and for a part of a fused weight its
    index and the fused record."""

    path: str
    part: int | None = None
    fused: Fused | None = None
    swapped: bool = False


@dataclass(frozen=True)
class DiffusersNames:
    family: str
    blocks: tuple[Blocks, ...] = ()
    top: Mapping[str, str] = field(
        default_factory=dict
    )  # diffusers -> single-file (a key ending in "." renames a prefix)
    swapped: frozenset[str] = frozenset()  # single-file paths outside the blocks
    same: bool = False
    signature: str = ""  # a single-file weight that says a model of unknown family uses these names
    compounds: frozenset[str] = frozenset()  # identifiers with "_" that only this family has (kohya names)

    def to_native(self, path: str) -> Mapped | None:
        """The single-file module of diffusers module ``path`` (None: the family has no such module)."""
        for b in self.blocks:
            index, inner = _in_block(path, b.diffusers)
            if index is None:
                continue
            prefix = f"{b.native}.{index}."
            if inner in b.modules:
                native = b.modules[inner]
                return Mapped(prefix + native, swapped=native in b.swapped)
            for f in b.fused:
                if inner in f.parts:
                    return Mapped(prefix + f.native, f.parts.index(inner), f)
            if not self.same:
                return None
        renamed = _renamed(path, self.top)
        if renamed is None:
            return Mapped(path) if self.same else None
        return Mapped(renamed, swapped=renamed in self.swapped)

    def to_diffusers(self, path: str) -> tuple[list[str], bool] | None:
        """The diffusers module(s) of single-file module ``path``: several for a fused weight (in row
        order); and whether its output halves are swapped. None: no such module."""
        for b in self.blocks:
            index, inner = _in_block(path, b.native)
            if index is None:
                continue
            prefix = f"{b.diffusers}.{index}."
            for d, n in b.modules.items():
                if n == inner:
                    return [prefix + d], inner in b.swapped
            for f in b.fused:
                if f.native == inner:
                    return [prefix + p for p in f.parts], False
            if not self.same:
                return None
        inverse = {n: d for d, n in self.top.items()}
        diffusers = _renamed(path, inverse)
        if diffusers is None:
            return ([path], False) if self.same else None
        return [diffusers], path in self.swapped


def swaps(swapped: bool, rows: int, width: int) -> bool:
    """Whether a weight's halves change order between the namings: a ``swapped`` module in its
    two-chunk (shift, scale) form, twice as many rows as inputs (SD3's other context blocks keep
    six chunks in one order)."""
    return swapped and rows == 2 * width


def swap_halves(a: np.ndarray) -> np.ndarray:
    """Rows stored as (shift, scale) in one naming and (scale, shift) in the other; for a LoRA,
    swapping the difference's rows is swapping ``up``'s."""
    half = a.shape[0] // 2
    return np.ascontiguousarray(np.concatenate([a[half:], a[:half]], axis=0))


def _in_block(path: str, root: str) -> tuple[str | None, str]:
    if not path.startswith(root + "."):
        return None, ""
    index, _dot, inner = path[len(root) + 1 :].partition(".")
    return (index, inner) if index.isdigit() else (None, "")


def _renamed(path: str, table: Mapping[str, str]) -> str | None:
    if path in table:
        return table[path]
    for old, new in table.items():
        if old.endswith(".") and path.startswith(old):
            return new + path[len(old) :]
    return None


_QKV = ("to_q", "to_k", "to_v")
_ADD_QKV = ("add_q_proj", "add_k_proj", "add_v_proj")

FLUX = DiffusersNames(
    "flux",
    blocks=(
        Blocks(
            "double_blocks",
            "transformer_blocks",
            FLUX_DOUBLE,
            (
                Fused("img_attn.qkv", tuple(f"attn.{p}" for p in _QKV)),
                Fused("txt_attn.qkv", tuple(f"attn.{p}" for p in _ADD_QKV)),
            ),
        ),
        Blocks(
            "single_blocks",
            "single_transformer_blocks",
            FLUX_SINGLE,
            (Fused("linear1", (*(f"attn.{p}" for p in _QKV), "proj_mlp"), rest=True),),
        ),
    ),
    top={**FLUX_TOP, "norm_out.linear": "final_layer.adaLN_modulation.1"},
    swapped=frozenset({"final_layer.adaLN_modulation.1"}),
    signature="double_blocks.0.img_attn.qkv.weight",
)

# SD3 / SD3.5 MMDiT (diffusers convert_sd3_transformer_checkpoint_to_diffusers): the last block's
# context adaLN (2 chunks, not 6) and the final layer's adaLN are stored swapped.
SD3 = DiffusersNames(
    "sd3",
    blocks=(
        Blocks(
            "joint_blocks",
            "transformer_blocks",
            {
                "attn.to_out.0": "x_block.attn.proj",
                "attn.to_add_out": "context_block.attn.proj",
                "attn2.to_out.0": "x_block.attn2.proj",
                "norm1.linear": "x_block.adaLN_modulation.1",
                "norm1_context.linear": "context_block.adaLN_modulation.1",
                "ff.net.0.proj": "x_block.mlp.fc1",
                "ff.net.2": "x_block.mlp.fc2",
                "ff_context.net.0.proj": "context_block.mlp.fc1",
                "ff_context.net.2": "context_block.mlp.fc2",
            },
            (
                Fused("x_block.attn.qkv", tuple(f"attn.{p}" for p in _QKV)),
                Fused("context_block.attn.qkv", tuple(f"attn.{p}" for p in _ADD_QKV)),
                Fused("x_block.attn2.qkv", tuple(f"attn2.{p}" for p in _QKV)),
            ),
            swapped=frozenset({"context_block.adaLN_modulation.1"}),
        ),
    ),
    top={
        "pos_embed.proj": "x_embedder.proj",
        "context_embedder": "context_embedder",
        "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
        "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
        "proj_out": "final_layer.linear",
        "norm_out.linear": "final_layer.adaLN_modulation.1",
    },
    swapped=frozenset({"final_layer.adaLN_modulation.1"}),
    signature="joint_blocks.0.x_block.attn.qkv.weight",
)

# Wan 2.1 / 2.2 (diffusers convert_wan_transformer_to_diffusers; its LoRA converter
# _convert_non_diffusers_wan_lora_to_diffusers), VACE blocks included.
_WAN_BLOCK = {
    **{f"attn1.{d}": f"self_attn.{n}" for d, n in zip((*_QKV, "to_out.0"), "qkvo", strict=True)},
    **{f"attn2.{d}": f"cross_attn.{n}" for d, n in zip((*_QKV, "to_out.0"), "qkvo", strict=True)},
    "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}
WAN = DiffusersNames(
    "wan",
    blocks=(
        Blocks("blocks", "blocks", _WAN_BLOCK),
        Blocks("vace_blocks", "vace_blocks", {**_WAN_BLOCK, "proj_in": "before_proj", "proj_out": "after_proj"}),
    ),
    top={
        "patch_embedding": "patch_embedding",
        "vace_patch_embedding": "vace_patch_embedding",
        "condition_embedder.time_proj": "time_projection.1",
        "condition_embedder.text_embedder.linear_1": "text_embedding.0",
        "condition_embedder.text_embedder.linear_2": "text_embedding.2",
        "condition_embedder.time_embedder.linear_1": "time_embedding.0",
        "condition_embedder.time_embedder.linear_2": "time_embedding.2",
        "condition_embedder.image_embedder.ff.net.0.proj": "img_emb.proj.1",
        "condition_embedder.image_embedder.ff.net.2": "img_emb.proj.3",
        "proj_out": "head.head",
    },
    signature="blocks.0.self_attn.q.weight",
)

# LTX-Video and LTX-2 (diffusers convert_ltx_transformer_checkpoint_to_diffusers and the renames of
# _convert_non_diffusers_ltx2_lora_to_diffusers): the blocks keep their names.
LTXV = DiffusersNames(
    "ltxv",
    top={
        "proj_in": "patchify_proj",
        "audio_proj_in": "audio_patchify_proj",
        "time_embed.": "adaln_single.",
        "audio_time_embed.": "audio_adaln_single.",
        "prompt_adaln.": "prompt_adaln_single.",
        "audio_prompt_adaln.": "audio_prompt_adaln_single.",
        "av_cross_attn_video_scale_shift.": "av_ca_video_scale_shift_adaln_single.",
        "av_cross_attn_video_a2v_gate.": "av_ca_a2v_gate_adaln_single.",
        "av_cross_attn_audio_scale_shift.": "av_ca_audio_scale_shift_adaln_single.",
        "av_cross_attn_audio_v2a_gate.": "av_ca_v2a_gate_adaln_single.",
    },
    same=True,
    signature="adaln_single.linear.weight",
)

# Chroma (diffusers convert_chroma_transformer_checkpoint_to_diffusers): Flux's blocks without their
# modulations, and the distilled guidance network.
CHROMA = DiffusersNames(
    "chroma",
    blocks=(
        *FLUX.blocks,
        Blocks(
            "distilled_guidance_layer.layers",
            "distilled_guidance_layer.layers",
            {"linear_1": "in_layer", "linear_2": "out_layer"},
        ),
    ),
    top={
        "x_embedder": "img_in",
        "context_embedder": "txt_in",
        "proj_out": "final_layer.linear",
        "distilled_guidance_layer.in_proj": "distilled_guidance_layer.in_proj",
        "distilled_guidance_layer.out_proj": "distilled_guidance_layer.out_proj",
    },
    signature="distilled_guidance_layer.in_proj.weight",
)

# FLUX.2 (diffusers convert_flux2_transformer_to_diffusers): shared modulations; the single block's
# fused projection keeps one diffusers weight.
FLUX2 = DiffusersNames(
    "flux2",
    blocks=(
        Blocks(
            "double_blocks",
            "transformer_blocks",
            {
                "attn.to_out.0": "img_attn.proj",
                "attn.to_add_out": "txt_attn.proj",
                "ff.linear_in": "img_mlp.0",
                "ff.linear_out": "img_mlp.2",
                "ff_context.linear_in": "txt_mlp.0",
                "ff_context.linear_out": "txt_mlp.2",
            },
            FLUX.blocks[0].fused,
        ),
        Blocks(
            "single_blocks", "single_transformer_blocks", {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2"}
        ),
    ),
    top={
        "x_embedder": "img_in",
        "context_embedder": "txt_in",
        "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
        "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
        "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
        "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
        "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
        "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
        "single_stream_modulation.linear": "single_stream_modulation.lin",
        "proj_out": "final_layer.linear",
        "norm_out.linear": "final_layer.adaLN_modulation.1",
    },
    swapped=frozenset({"final_layer.adaLN_modulation.1"}),
    signature="double_stream_modulation_img.lin.weight",
)

# HunyuanVideo (diffusers convert_hunyuan_video_to_diffusers and its LoRA converter
# _convert_hunyuan_video_lora_to_diffusers), the text token refiner included.
HUNYUAN_VIDEO = DiffusersNames(
    "hunyuan_video",
    blocks=(
        Blocks(
            "double_blocks",
            "transformer_blocks",
            {
                "attn.to_out.0": "img_attn_proj",
                "attn.to_add_out": "txt_attn_proj",
                "norm1.linear": "img_mod.linear",
                "norm1_context.linear": "txt_mod.linear",
                "ff.net.0.proj": "img_mlp.fc1",
                "ff.net.2": "img_mlp.fc2",
                "ff_context.net.0.proj": "txt_mlp.fc1",
                "ff_context.net.2": "txt_mlp.fc2",
            },
            (
                Fused("img_attn_qkv", tuple(f"attn.{p}" for p in _QKV)),
                Fused("txt_attn_qkv", tuple(f"attn.{p}" for p in _ADD_QKV)),
            ),
        ),
        Blocks(
            "single_blocks",
            "single_transformer_blocks",
            {"norm.linear": "modulation.linear", "proj_out": "linear2"},
            FLUX.blocks[1].fused,
        ),
        Blocks(
            "txt_in.individual_token_refiner.blocks",
            "context_embedder.token_refiner.refiner_blocks",
            {
                "attn.to_out.0": "self_attn_proj",
                "ff.net.0.proj": "mlp.fc1",
                "ff.net.2": "mlp.fc2",
                "norm_out.linear": "adaLN_modulation.1",
            },
            (Fused("self_attn_qkv", tuple(f"attn.{p}" for p in _QKV)),),
        ),
    ),
    top={
        "x_embedder.proj": "img_in.proj",
        "time_text_embed.timestep_embedder.linear_1": "time_in.mlp.0",
        "time_text_embed.timestep_embedder.linear_2": "time_in.mlp.2",
        "time_text_embed.guidance_embedder.linear_1": "guidance_in.mlp.0",
        "time_text_embed.guidance_embedder.linear_2": "guidance_in.mlp.2",
        "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
        "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
        "context_embedder.proj_in": "txt_in.input_embedder",
        "context_embedder.time_text_embed.timestep_embedder.linear_1": "txt_in.t_embedder.mlp.0",
        "context_embedder.time_text_embed.timestep_embedder.linear_2": "txt_in.t_embedder.mlp.2",
        "context_embedder.time_text_embed.text_embedder.linear_1": "txt_in.c_embedder.linear_1",
        "context_embedder.time_text_embed.text_embedder.linear_2": "txt_in.c_embedder.linear_2",
        "proj_out": "final_layer.linear",
        "norm_out.linear": "final_layer.adaLN_modulation.1",
    },
    swapped=frozenset({"final_layer.adaLN_modulation.1"}),
    signature="double_blocks.0.img_attn_qkv.weight",
    compounds=frozenset(f"{a}_attn_{b}" for a in ("img", "txt", "self") for b in ("qkv", "proj")),
)

# Lumina 2 (diffusers convert_lumina2_to_diffusers): grouped-query attention in one qkv.
_LUMINA_BLOCK = {
    "attn.to_out.0": "attention.out",
    "feed_forward.linear_1": "feed_forward.w1",
    "feed_forward.linear_2": "feed_forward.w2",
    "feed_forward.linear_3": "feed_forward.w3",
    "norm1.linear": "adaLN_modulation.1",
}
_LUMINA_QKV = (Fused("attention.qkv", tuple(f"attn.{p}" for p in _QKV), grouped=True),)
LUMINA2 = DiffusersNames(
    "lumina2",
    blocks=tuple(Blocks(b, b, _LUMINA_BLOCK, _LUMINA_QKV) for b in ("layers", "noise_refiner", "context_refiner")),
    top={
        "x_embedder": "x_embedder",
        "time_caption_embed.caption_embedder.1": "cap_embedder.1",
        "time_caption_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_caption_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "norm_out.linear_1": "final_layer.adaLN_modulation.1",
        "norm_out.linear_2": "final_layer.linear",
    },
    signature="noise_refiner.0.attention.qkv.weight",
)

# Z-Image (diffusers ZImageTransformer2DModel; ComfyUI's single file fuses q, k and v).
_Z_IMAGE_BLOCK = {
    "attention.to_out.0": "attention.out",
    "feed_forward.w1": "feed_forward.w1",
    "feed_forward.w2": "feed_forward.w2",
    "feed_forward.w3": "feed_forward.w3",
    "adaLN_modulation.0": "adaLN_modulation.0",
}
_Z_IMAGE_QKV = (Fused("attention.qkv", tuple(f"attention.{p}" for p in _QKV)),)
Z_IMAGE = DiffusersNames(
    "z_image",
    blocks=tuple(Blocks(b, b, _Z_IMAGE_BLOCK, _Z_IMAGE_QKV) for b in ("layers", "noise_refiner", "context_refiner")),
    top={
        "all_x_embedder.2-1": "x_embedder",
        "all_final_layer.2-1.adaLN_modulation.1": "final_layer.adaLN_modulation.1",
        "all_final_layer.2-1.linear": "final_layer.linear",
        "cap_embedder.1": "cap_embedder.1",
        "t_embedder.mlp.0": "t_embedder.mlp.0",
        "t_embedder.mlp.2": "t_embedder.mlp.2",
    },
)

# PixArt-α/Σ and Sana (diffusers convert_pixart / convert_sana scripts): the self-attention's q, k,
# v in one weight, the cross-attention's k, v in another.
_PIXART_BLOCK = {
    "attn1.to_out.0": "attn.proj",
    "attn2.to_q": "cross_attn.q_linear",
    "attn2.to_out.0": "cross_attn.proj",
    "ff.net.0.proj": "mlp.fc1",
    "ff.net.2": "mlp.fc2",
    "ff.conv_inverted": "mlp.inverted_conv.conv",
    "ff.conv_depth": "mlp.depth_conv.conv",
    "ff.conv_point": "mlp.point_conv.conv",
}
_PIXART_FUSED = (
    Fused("attn.qkv", tuple(f"attn1.{p}" for p in _QKV)),
    Fused("cross_attn.kv_linear", ("attn2.to_k", "attn2.to_v")),
)
_PIXART_TOP = {
    "caption_projection.linear_1": "y_embedder.y_proj.fc1",
    "caption_projection.linear_2": "y_embedder.y_proj.fc2",
    "proj_out": "final_layer.linear",
}
PIXART = DiffusersNames(
    "pixart",
    blocks=(Blocks("blocks", "transformer_blocks", _PIXART_BLOCK, _PIXART_FUSED),),
    top={
        **_PIXART_TOP,
        "pos_embed.proj": "x_embedder.proj",
        "adaln_single.linear": "t_block.1",
        "adaln_single.emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "adaln_single.emb.timestep_embedder.linear_2": "t_embedder.mlp.2",
        "adaln_single.emb.resolution_embedder.linear_1": "csize_embedder.mlp.0",
        "adaln_single.emb.resolution_embedder.linear_2": "csize_embedder.mlp.2",
        "adaln_single.emb.aspect_ratio_embedder.linear_1": "ar_embedder.mlp.0",
        "adaln_single.emb.aspect_ratio_embedder.linear_2": "ar_embedder.mlp.2",
    },
)
SANA = DiffusersNames(
    "sana",
    blocks=(Blocks("blocks", "transformer_blocks", _PIXART_BLOCK, _PIXART_FUSED),),
    top={
        **_PIXART_TOP,
        "patch_embed.proj": "x_embedder.proj",
        "time_embed.linear": "t_block.1",
        "time_embed.emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
        "time_embed.emb.timestep_embedder.linear_2": "t_embedder.mlp.2",
    },
)

# AuraFlow (diffusers convert_auraflow_to_diffusers; ComfyUI comfy/utils.py auraflow_to_diffusers).
_AURA_FF = {"linear_1": "c_fc1", "linear_2": "c_fc2", "out_projection": "c_proj"}
AURAFLOW = DiffusersNames(
    "auraflow",
    blocks=(
        Blocks(
            "double_layers",
            "joint_transformer_blocks",
            {
                **{f"attn.{d}": f"attn.w1{n}" for d, n in zip((*_QKV, "to_out.0"), "qkvo", strict=True)},
                **{f"attn.{d}": f"attn.w2{n}" for d, n in zip((*_ADD_QKV, "to_add_out"), "qkvo", strict=True)},
                **{f"ff.{d}": f"mlpX.{n}" for d, n in _AURA_FF.items()},
                **{f"ff_context.{d}": f"mlpC.{n}" for d, n in _AURA_FF.items()},
                "norm1.linear": "modX.1",
                "norm1_context.linear": "modC.1",
            },
        ),
        Blocks(
            "single_layers",
            "single_transformer_blocks",
            {
                **{f"attn.{d}": f"attn.w1{n}" for d, n in zip((*_QKV, "to_out.0"), "qkvo", strict=True)},
                **{f"ff.{d}": f"mlp.{n}" for d, n in _AURA_FF.items()},
                "norm1.linear": "modCX.1",
            },
        ),
    ),
    top={
        "context_embedder": "cond_seq_linear",
        "pos_embed.proj": "init_x_linear",
        "proj_out": "final_linear",
        "norm_out.linear": "modF.1",
        "time_step_proj.linear_1": "t_embedder.mlp.0",
        "time_step_proj.linear_2": "t_embedder.mlp.2",
    },
    swapped=frozenset({"modF.1"}),
)

NAMES: dict[str, DiffusersNames] = {
    n.family: n
    for n in (
        CHROMA,  # before Flux: a model of unknown family is matched by signature, first match wins
        FLUX2,
        FLUX,
        SD3,
        WAN,
        HUNYUAN_VIDEO,
        LTXV,
        LUMINA2,
        Z_IMAGE,
        PIXART,
        SANA,
        AURAFLOW,
        DiffusersNames("qwen_image", same=True),
        DiffusersNames("hidream", same=True),
    )
}
