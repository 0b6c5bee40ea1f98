"""Which base model family a LoRA was trained for, from its target paths and widths: one flat list
of rules keyed by family id (first match wins), plus the trainers' metadata.

Every rule is scoped to the key shapes of its family. A cross-attention width only says SD1/SD2/SDXL
for UNet-shaped paths (Cosmos, HunyuanDiT and LTX-Video also have ``attn2.to_k`` with widths 1024 or
2048); ``double_blocks`` says Flux only with Flux's modulation names and block counts (Chroma,
HunyuanVideo and FLUX.2 have double blocks too). Facts from ComfyUI ``comfy/model_detection.py``,
``comfy/lora.py`` and the diffusers model classes; a LoRA that no rule decides is ``unknown`` (with
``candidates`` when a rule narrows it down).

Paths are ``component:flat_path`` (see sdmodel.lora.names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Axis = Literal["in", "out"]

UNET = r"^diffusion:(input_blocks|output_blocks|middle_block|down_blocks|up_blocks|mid_block)_\d"
UNET_TO_K = r"^diffusion:(input_blocks|output_blocks|middle_block|down_blocks|up_blocks|mid_block)_.*_attn2_to_k$"


@dataclass(frozen=True)
class Shape:
    """A width rule: at least one target matches ``pattern`` and every one that does has its
    ``axis`` width in ``values``; with ``ratio``, out/in of every matching target equals it."""

    pattern: str
    axis: Axis = "in"
    values: frozenset[int] = frozenset()
    ratio: float | None = None


@dataclass(frozen=True)
class Rule:
    """``family`` (or, when the keys cannot decide, None and ``candidates``) when every ``need``
    pattern matches a target path, no ``avoid`` pattern does, the ``shape`` holds and every block
    index matched by a ``below`` pattern (its one group) is under its count."""

    family: str | None
    need: tuple[str, ...]
    avoid: tuple[str, ...] = ()
    shape: Shape | None = None
    below: tuple[tuple[str, int], ...] = ()
    candidates: tuple[str, ...] = ()


def _w(*values: int) -> frozenset[int]:
    return frozenset(values)


FLUX_BLOCKS = (
    (r"^diffusion:(?:double_blocks|transformer_blocks)_(\d+)_", 19),
    (r"^diffusion:single_(?:transformer_)?blocks_(\d+)_", 38),
)

RULES: tuple[Rule, ...] = (
    # --- DiTs with double/single stream blocks ---
    Rule("auraflow", (r"^diffusion:(joint_transformer_blocks_\d+_|(double|single)_layers_\d+_attn_w)",)),
    Rule(
        "flux2",
        (
            r"^diffusion:(double_stream_modulation|single_stream_modulation|single_transformer_blocks_\d+_attn_to_qkv_mlp_proj)",
        ),
    ),
    Rule(
        "flux2",
        (r"^diffusion:double_blocks_\d+_img_mlp_0$",),
        shape=Shape(r"^diffusion:double_blocks_\d+_img_mlp_0$", ratio=6.0),
    ),
    Rule(
        "flux2",
        (r"^diffusion:single_blocks_\d+_linear1$",),
        shape=Shape(r"^diffusion:single_blocks_\d+_linear1$", ratio=9.0),
    ),
    Rule(
        "hunyuan_video",
        (
            r"^diffusion:(double_blocks_\d+_(img|txt)_(mlp_fc[12]|mod_linear)$|single_blocks_\d+_modulation_linear$|.*token_refiner)",
        ),
    ),
    Rule(
        "hunyuan_video",
        (
            r"^diffusion:((double_blocks|transformer_blocks)_19_|single_(transformer_)?blocks_3[89]_)",
            r"^diffusion:single_",
        ),
    ),
    Rule("chroma", (r"^diffusion:distilled_guidance_layer_",)),
    Rule(
        "flux",
        (r"^diffusion:(double_blocks_\d+_(img|txt)_mod_lin$|single_blocks_\d+_modulation_lin$)",),
        below=FLUX_BLOCKS,
    ),
    Rule(
        "flux",
        (r"^diffusion:transformer_blocks_\d+_norm1(_context)?_linear$", r"^diffusion:single_transformer_blocks_\d+_"),
        shape=Shape(r"^diffusion:(single_)?transformer_blocks_\d+_attn_to_q$", "in", _w(3072)),
        below=FLUX_BLOCKS,
    ),
    Rule(
        None,
        (
            r"^diffusion:(double_blocks_\d+_img_attn_qkv$|single_transformer_blocks_\d+_attn_to_q$|single_blocks_\d+_linear1$)",
        ),
        shape=Shape(
            r"^diffusion:(double_blocks_\d+_img_attn_qkv|single_transformer_blocks_\d+_attn_to_q|single_blocks_\d+_linear1)$",
            "in",
            _w(3072),
        ),
        below=FLUX_BLOCKS,
        candidates=("flux", "chroma", "hunyuan_video"),
    ),
    Rule("sd3", (r"^diffusion:joint_blocks_\d+_",)),
    Rule(
        "sd3",
        (r"^diffusion:transformer_blocks_\d+_attn_(to_[qkv]|add_[qkv]_proj)$",),
        avoid=(r"^diffusion:(single_transformer_blocks|transformer_blocks_\d+_(img|txt)_(mlp|mod))",),
        shape=Shape(r"^diffusion:transformer_blocks_\d+_attn_to_[qkv]$", "in", _w(1536, 2432)),
    ),
    Rule("qwen_image", (r"^diffusion:transformer_blocks_\d+_(img_mlp|txt_mlp|img_mod|txt_mod)_",)),
    Rule(
        "qwen_image",
        (r"^diffusion:transformer_blocks_([2-5]\d)_attn_(to_[qkv]|add_[qkv]_proj)$",),
        avoid=(r"^diffusion:single_",),
        shape=Shape(r"^diffusion:transformer_blocks_\d+_attn_to_[qkv]$", "in", _w(3072)),
    ),
    Rule("hidream", (r"^diffusion:(double|single)_stream_blocks_\d+_",)),
    Rule(
        "z_image",
        (r"^diffusion:(layers|noise_refiner|context_refiner)_\d+_(attention|attn)_",),
        shape=Shape(
            r"^diffusion:(layers|noise_refiner|context_refiner)_\d+_(attention|attn)_(qkv|to_[qkv])$", "in", _w(3840)
        ),
    ),
    Rule(
        "lumina2",
        (r"^diffusion:layers_\d+_(attention|attn)_",),
        shape=Shape(r"^diffusion:layers_\d+_(attention|attn)_(qkv|to_[qkv])$", "in", _w(2304)),
    ),
    # --- video DiTs and other single-stream DiTs ---
    Rule("cosmos", (r"^diffusion:(net_)?blocks_block\d+_blocks_\d+_block_",)),
    Rule("cosmos", (r"^diffusion:(net_)?blocks_\d+_((self_attn|cross_attn)_[qkv]_proj|mlp_layer[12])$",)),
    Rule(
        "cosmos",
        (r"^diffusion:transformer_blocks_\d+_attn2_to_k$",),
        shape=Shape(r"^diffusion:transformer_blocks_\d+_attn2_to_k$", "in", _w(1024)),
    ),
    # (end-anchored: PixArt's and Sana's blocks have cross_attn_q_linear)
    Rule("wan", (r"^diffusion:(vace_)?blocks_\d+_((self_attn|cross_attn)_([qkvo]|[kv]_img)|ffn_\d|ffn_net_\d.*)$",)),
    Rule(
        "wan",
        (r"^diffusion:blocks_\d+_attn[12]_to_[qkv]$",),
        avoid=(r"^diffusion:blocks_\d+_(ff_net|mlp)_",),
        shape=Shape(r"^diffusion:blocks_\d+_attn1_to_[qkv]$", "in", _w(1536, 3072, 5120)),
    ),
    Rule("hunyuan_dit", (r"^diffusion:blocks_\d+_(attn1_wqkv|attn2_kv_proj|attn2_q_proj)$",)),
    Rule(
        "hunyuan_dit",
        (r"^diffusion:blocks_\d+_attn[12]_to_[qkv]$",),
        shape=Shape(r"^diffusion:blocks_\d+_attn1_to_[qkv]$", "in", _w(1408)),
    ),
    Rule("ltxv", (r"^diffusion:transformer_blocks_\d+_(audio_attn|audio_to_video_attn|video_to_audio_attn)",)),
    Rule(
        "ltxv",
        (r"^diffusion:transformer_blocks_\d+_attn2_to_k$",),
        shape=Shape(r"^diffusion:transformer_blocks_\d+_attn2_to_k$", "in", _w(2048, 4096)),
    ),
    Rule(
        "sana",
        (r"^diffusion:(transformer_)?blocks_\d+_(ff_conv_(inverted|depth|point)|mlp_(inverted|depth|point)_conv)",),
    ),
    Rule(
        "sana",
        (r"^diffusion:transformer_blocks_\d+_attn2_to_k$",),
        shape=Shape(r"^diffusion:transformer_blocks_\d+_attn2_to_k$", "in", _w(2240)),
    ),
    Rule("pixart", (r"^diffusion:blocks_\d+_cross_attn_(q|kv)_linear$",)),
    Rule(
        "pixart",
        (r"^diffusion:transformer_blocks_\d+_attn2_to_k$", r"^diffusion:transformer_blocks_\d+_ff_net_"),
        shape=Shape(r"^diffusion:transformer_blocks_\d+_attn2_to_k$", "in", _w(1152)),
    ),
    Rule(
        "mochi", (r"^diffusion:(blocks_\d+_(attn_qkv_[xy]|mlp_[xy]_w\d)|transformer_blocks_\d+_attn1_add_[qkv]_proj)$",)
    ),
    Rule(
        "cogvideox",
        (r"^diffusion:transformer_blocks_\d+_attn1_to_[qkv]$",),
        avoid=(r"^diffusion:transformer_blocks_\d+_attn2_",),
        shape=Shape(r"^diffusion:transformer_blocks_\d+_attn1_to_[qkv]$", "in", _w(1920)),
    ),
    Rule(
        None,
        (r"^diffusion:transformer_blocks_\d+_attn1_to_[qkv]$",),
        avoid=(r"^diffusion:transformer_blocks_\d+_attn2_",),
        shape=Shape(r"^diffusion:transformer_blocks_\d+_attn1_to_[qkv]$", "in", _w(3072)),
        candidates=("cogvideox", "mochi"),
    ),
    # --- UNets ---
    Rule("stable_cascade", (r"^prior(_te)?:",)),
    Rule("stable_cascade", (r"^diffusion:(down|up)_blocks_\d+_\d+_(attention|channelwise|kv_mapper)",)),
    Rule("svd", (UNET, r"^diffusion:.*(time_stack|temporal_transformer_blocks|time_mixer|time_pos_embed)")),
    Rule("sdxl_refiner", (UNET_TO_K,), shape=Shape(UNET_TO_K, "in", _w(1280))),
    Rule("sdxl", (UNET_TO_K,), shape=Shape(UNET_TO_K, "in", _w(2048))),
    Rule("sd2", (UNET_TO_K,), shape=Shape(UNET_TO_K, "in", _w(1024))),
    Rule("sd1", (UNET_TO_K,), shape=Shape(UNET_TO_K, "in", _w(768))),
    Rule("sdxl", (UNET, r"^te2:text_model_encoder_layers_")),
    # text-encoder-only: layers 12+ of a 1024-wide CLIP are SD2's OpenCLIP-H
    Rule(
        "sd2",
        (r"^te1:text_model_encoder_layers_(1[2-9]|2\d)_",),
        avoid=(r"^(diffusion|te2|te3):",),
        shape=Shape(r"^te1:text_model_encoder_layers_\d+_self_attn_q_proj$", "in", _w(1024)),
    ),
)

_COMPILED: dict[str, re.Pattern[str]] = {}


def _re(pattern: str) -> re.Pattern[str]:
    rx = _COMPILED.get(pattern)
    if rx is None:
        rx = _COMPILED[pattern] = re.compile(pattern)
    return rx


@dataclass(frozen=True)
class Probe:
    """What a rule sees of one target: its ``component:flat`` path and widths (None = not known)."""

    path: str
    in_width: int | None
    out_width: int | None


def _shape_ok(shape: Shape, probes: list[Probe]) -> bool:
    rx = _re(shape.pattern)
    hit = [p for p in probes if rx.search(p.path)]
    if not hit:
        return False
    for p in hit:
        if shape.ratio is not None:
            if not p.in_width or not p.out_width or p.out_width != round(p.in_width * shape.ratio):
                return False
            continue
        width = p.in_width if shape.axis == "in" else p.out_width
        if width not in shape.values:
            return False
    return True


def _below_ok(below: tuple[tuple[str, int], ...], probes: list[Probe]) -> bool:
    for pattern, count in below:
        rx = _re(pattern)
        for p in probes:
            m = rx.search(p.path)
            if m and int(m.group(1)) >= count:
                return False
    return True


def match(rule: Rule, probes: list[Probe]) -> bool:
    paths = [p.path for p in probes]
    for pattern in rule.need:
        rx = _re(pattern)
        if not any(rx.search(p) for p in paths):
            return False
    for pattern in rule.avoid:
        rx = _re(pattern)
        if any(rx.search(p) for p in paths):
            return False
    if rule.shape is not None and not _shape_ok(rule.shape, probes):
        return False
    return _below_ok(rule.below, probes)


def family_from_keys(probes: list[Probe]) -> tuple[str | None, tuple[str, ...]]:
    """(family, candidates) from the first matching rule; (None, ()) when none matches."""
    for rule in RULES:
        if match(rule, probes):
            return rule.family, rule.candidates
    return None, ()


# Trainer metadata -> family: kohya sd-scripts ``ss_base_model_version`` / ``ss_v2``, musubi-tuner's
# architecture names, ModelSpec ``modelspec.architecture`` (prefix match, lower case, first wins).
METADATA_FAMILY: tuple[tuple[str, str], ...] = (
    ("sdxl_refiner", "sdxl_refiner"),
    ("stable-diffusion-xl-v1-refiner", "sdxl_refiner"),
    ("sdxl", "sdxl"),
    ("stable-diffusion-xl", "sdxl"),
    ("kolors", "kolors"),
    ("sd_v2", "sd2"),
    ("sd_2", "sd2"),
    ("stable-diffusion-v2", "sd2"),
    ("sd_v1", "sd1"),
    ("sd_1", "sd1"),
    ("stable-diffusion-v1", "sd1"),
    ("sd3", "sd3"),
    ("stable-diffusion-v3", "sd3"),
    ("stable-diffusion-3", "sd3"),
    ("flux_2", "flux2"),
    ("flux.2", "flux2"),
    ("flux-2", "flux2"),
    ("flux", "flux"),
    ("chroma", "chroma"),
    ("hunyuan_video", "hunyuan_video"),
    ("hunyuan-video", "hunyuan_video"),
    ("hv", "hunyuan_video"),
    ("framepack", "hunyuan_video"),
    ("wan", "wan"),
    ("qwen_image", "qwen_image"),
    ("qwen-image", "qwen_image"),
    ("z_image", "z_image"),
    ("z-image", "z_image"),
    ("hidream", "hidream"),
    ("lumina", "lumina2"),
    ("ltx", "ltxv"),
    ("mochi", "mochi"),
    ("cogvideox", "cogvideox"),
    ("auraflow", "auraflow"),
    ("pixart", "pixart"),
    ("sana", "sana"),
    ("cosmos", "cosmos"),
    ("hunyuan-dit", "hunyuan_dit"),
    ("hunyuan_dit", "hunyuan_dit"),
)
METADATA_KEYS = ("ss_base_model_version", "modelspec.architecture")
# Families trained by kohya's musubi-tuner (its ss_base_model_version names them).
MUSUBI_VERSIONS = (
    "hunyuan_video",
    "hunyuan_video_1_5",
    "wan",
    "framepack",
    "flux_kontext",
    "flux_2_dev",
    "flux_2_klein_4b",
    "flux_2_klein_9b",
    "qwen_image",
    "qwen_image_edit",
    "qwen_image_layered",
    "kandinsky5",
    "z_image",
    "hidream_o1_image",
)


def family_from_metadata(metadata: dict[str, str]) -> tuple[str | None, str | None]:
    """(family, the metadata key that told it)."""
    for key in METADATA_KEYS:
        value = metadata.get(key, "").strip().lower()
        if not value:
            continue
        for prefix, family in METADATA_FAMILY:
            if value.startswith(prefix):
                return family, key
    if metadata.get("ss_v2", "").lower() == "true":
        return "sd2", "ss_v2"
    return None, None
