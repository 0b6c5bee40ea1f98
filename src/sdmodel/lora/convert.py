"""Renaming a LoRA between the kohya, diffusers (PEFT) and ComfyUI namings, as plan steps.

Module paths, by family (facts from diffusers ``loaders/lora_conversion_utils.py`` and ComfyUI
``comfy/lora.py``):

- SD1/SD2: kohya ``lora_unet_`` + the diffusers UNet path with ``_``; SDXL: kohya ``lora_unet_`` + the
  LDM (sgm) path with ``_``; diffusers ``unet.`` + the diffusers path; ComfyUI ``diffusion_model.`` +
  the LDM path.
- DiTs (Flux, SD3, Wan, LTX-Video, Qwen-Image, HiDream): kohya/musubi-tuner ``lora_unet_`` and
  ComfyUI ``diffusion_model.`` + the single-file path; diffusers ``transformer.`` + the diffusers
  path (sdmodel.lora.namings). To diffusers, a fused target (Flux/SD3 ``qkv``, Flux ``linear1``)
  becomes ``to_q``/``to_k``/``to_v`` (and ``proj_mlp``): the same ``down``, the rows of ``up``
  split; back, the parts are joined only when they come as such a set (same ``down``), else the
  conversion refuses. Where diffusers keeps a modulation's halves as (scale, shift), the rows of
  ``up`` are swapped.
- Text encoders: kohya ``lora_te_`` (SD1/SD2) or ``lora_te1_``/``lora_te2_``/``lora_te3_``,
  diffusers ``text_encoder.``/``text_encoder_2.``/``text_encoder_3.``, ComfyUI
  ``text_encoders.clip_l|clip_h|clip_g|t5xxl.transformer.``, each + the HF path.

Alpha: kohya and ComfyUI files keep ``<stem>.alpha`` tensors; PEFT files hold none, so diffusers
output carries every module's rank and alpha in the ``lora_adapter_metadata`` entry diffusers reads
(its ``rank_pattern``/``alpha_pattern``), and diffusers input without it gets ``alpha = rank``
(scale 1, what diffusers assumes). Converting there and back gives the same tensors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from sdmodel.errors import ConversionError
from sdmodel.formats.base import DictSource
from sdmodel.formats.diffusers_map import UNET_SD1, UNET_SDXL, unet_table
from sdmodel.i18n import Msg
from sdmodel.lora.delta import read_alpha
from sdmodel.lora.keys import PEFT_METADATA_KEY, Target, parse, read_peft_alphas
from sdmodel.lora.names import LORA_FORMATS, locate
from sdmodel.lora.namings import NAMES, Fused, swap_halves, swaps
from sdmodel.plan import Plan, Step

METADATA_KEY = PEFT_METADATA_KEY
ALPHA_SOURCE = "lora_alpha"

# Identifiers containing "_" in the module paths of the families above: a kohya name is split at
# "_" and these are joined back (longest first), everything else is one path segment.
COMPOUNDS: frozenset[str] = frozenset(
    [
        "down_blocks",
        "up_blocks",
        "mid_block",
        "transformer_blocks",
        "to_q",
        "to_k",
        "to_v",
        "to_out",
        "proj_in",
        "proj_out",
        "time_emb_proj",
        "conv_shortcut",
        "time_embedding",
        "linear_1",
        "linear_2",
        "add_embedding",
        "conv_in",
        "conv_out",
        "conv_norm_out",
        "input_blocks",
        "output_blocks",
        "middle_block",
        "in_layers",
        "out_layers",
        "emb_layers",
        "skip_connection",
        "time_embed",
        "label_emb",
        "text_model",
        "self_attn",
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "layer_norm1",
        "layer_norm2",
        "final_layer_norm",
        "token_embedding",
        "position_embedding",
        "double_blocks",
        "single_blocks",
        "img_attn",
        "txt_attn",
        "img_mlp",
        "txt_mlp",
        "img_mod",
        "txt_mod",
        "img_in",
        "txt_in",
        "time_in",
        "vector_in",
        "guidance_in",
        "in_layer",
        "out_layer",
        "final_layer",
        "adaLN_modulation",
        "query_norm",
        "key_norm",
        "single_transformer_blocks",
        "add_q_proj",
        "add_k_proj",
        "add_v_proj",
        "to_add_out",
        "norm1_context",
        "ff_context",
        "proj_mlp",
        "norm_out",
        "x_embedder",
        "context_embedder",
        "time_text_embed",
        "timestep_embedder",
        "text_embedder",
        "guidance_embedder",
        "SelfAttention",
        "DenseReluDense",
        "EncDecAttention",
        "relative_attention_bias",
        "layer_norm",
        "wi_0",
        "wi_1",
        "adaln_single",
        "after_proj",
        "before_proj",
        "caption_projection",
        "condition_embedder",
        "context_block",
        "cross_attn",
        "double_stream_blocks",
        "ff_i",
        "ff_t",
        "image_embedder",
        "img_emb",
        "joint_blocks",
        "k_img",
        "p_embedder",
        "patch_embedding",
        "patchify_proj",
        "pooled_embedder",
        "pos_embed",
        "shared_experts",
        "single_stream_blocks",
        "t_embedder",
        "text_embedding",
        "time_embedder",
        "time_proj",
        "time_projection",
        "to_k_t",
        "to_out_t",
        "to_q_t",
        "to_v_t",
        "v_img",
        "vace_blocks",
        "vace_patch_embedding",
        "x_block",
        "y_embedder",
        "audio_adaln_single",
        "audio_attn1",
        "audio_attn2",
        "audio_caption_projection",
        "audio_ff",
        "audio_patchify_proj",
        "audio_proj_in",
        "audio_proj_out",
        "audio_time_embed",
        "audio_to_video_attn",
        "av_ca_a2v_gate_adaln_single",
        "av_ca_audio_scale_shift_adaln_single",
        "av_ca_v2a_gate_adaln_single",
        "av_ca_video_scale_shift_adaln_single",
        "av_cross_attn_audio_scale_shift",
        "av_cross_attn_audio_v2a_gate",
        "av_cross_attn_video_a2v_gate",
        "av_cross_attn_video_scale_shift",
        "video_to_audio_attn",
        "prompt_adaln",
        "prompt_adaln_single",
        "audio_prompt_adaln",
        "audio_prompt_adaln_single",
        "c_embedder",
        "cap_embedder",
        "caption_embedder",
        "context_refiner",
        "distilled_guidance_layer",
        "double_stream_modulation_img",
        "double_stream_modulation_txt",
        "feed_forward",
        "in_proj",
        "individual_token_refiner",
        "input_embedder",
        "linear_3",
        "linear_in",
        "linear_out",
        "noise_refiner",
        "refiner_blocks",
        "single_stream_modulation",
        "time_caption_embed",
        "time_guidance_embed",
        "to_qkv_mlp_proj",
        "token_refiner",
        "all_x_embedder",
        "all_final_layer",
        "ar_embedder",
        "aspect_ratio_embedder",
        "c_fc1",
        "c_fc2",
        "c_proj",
        "cond_seq_linear",
        "conv_depth",
        "conv_inverted",
        "conv_point",
        "csize_embedder",
        "depth_conv",
        "double_layers",
        "final_linear",
        "init_x_linear",
        "inverted_conv",
        "joint_transformer_blocks",
        "kv_linear",
        "out_projection",
        "patch_embed",
        "point_conv",
        "q_linear",
        "resolution_embedder",
        "single_layers",
        "t_block",
        "time_step_proj",
        "y_proj",
    ]
)


def unflatten(flat: str, extra: frozenset[str] = frozenset()) -> str:
    """``down_blocks_0_attentions_0_proj_in`` -> ``down_blocks.0.attentions.0.proj_in``; ``extra``:
    a family's own identifiers that would split another family's (HunyuanVideo's ``img_attn_qkv``
    is Flux's ``img_attn.qkv``)."""
    compounds = COMPOUNDS | extra
    longest = max(c.count("_") + 1 for c in compounds)
    tokens = flat.split("_")
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(longest, len(tokens) - i), 0, -1):
            joined = "_".join(tokens[i : i + n])
            if n == 1 or joined in compounds:
                out.append(joined)
                i += n
                break
    return ".".join(out)


# --- per family: text encoder prefixes in each naming ------------------------------------------


class TextEncoder(NamedTuple):
    """A text encoder's target prefixes: kohya (the first is written; the others are read too, as
    ComfyUI reads them), diffusers, ComfyUI."""

    kohya: tuple[str, ...]
    diffusers: str
    comfy: str


CLIP_L = "text_encoders.clip_l.transformer."
CLIP_G = "text_encoders.clip_g.transformer."
T5XXL = "text_encoders.t5xxl.transformer."
TEXT_ENCODERS: dict[str, dict[str, TextEncoder]] = {
    "sd1": {"te1": TextEncoder(("lora_te_",), "text_encoder.", CLIP_L)},
    "sd2": {"te1": TextEncoder(("lora_te_",), "text_encoder.", "text_encoders.clip_h.transformer.")},
    "sdxl": {
        "te1": TextEncoder(("lora_te1_",), "text_encoder.", CLIP_L),
        "te2": TextEncoder(("lora_te2_",), "text_encoder_2.", CLIP_G),
    },
    # Flux T5: kohya sd-scripts lora_te3_, OneTrainer lora_te2_ (ComfyUI comfy/lora.py reads both).
    "flux": {
        "te1": TextEncoder(("lora_te1_",), "text_encoder.", CLIP_L),
        "te3": TextEncoder(("lora_te3_", "lora_te2_"), "text_encoder_2.", T5XXL),
    },
    "sd3": {
        "te1": TextEncoder(("lora_te1_",), "text_encoder.", CLIP_L),
        "te2": TextEncoder(("lora_te2_",), "text_encoder_2.", CLIP_G),
        "te3": TextEncoder(("lora_te3_",), "text_encoder_3.", T5XXL),
    },
}
UNET_FAMILIES = ("sd1", "sd2", "sdxl")
CONVERTIBLE = (*UNET_FAMILIES, *NAMES)
# Namings whose diffusion targets use diffusers module paths (the rest: the single-file paths;
# SD1/SD2 kohya files: diffusers paths too, told apart by their roots).
DIFFUSERS_SIDE = ("diffusers", "peft", "onetrainer", "simpletuner")
FLATTENED = ("kohya", "onetrainer", "simpletuner")


@dataclass(frozen=True)
class Module:
    """A target in canonical terms: component and the single-file module path (LDM for SD UNets,
    HF for text encoders); ``part`` = which part of ``fused`` a diffusers target is; ``swap`` = the
    target's output halves must be swapped to fit this path (diffusers scale/shift order)."""

    component: str
    path: str
    part: int | None = None
    fused: Fused | None = None
    swap: bool = False


def _text_encoder(stem: str, family: str) -> Module | None:
    for component, te in TEXT_ENCODERS.get(family, {}).items():
        for prefix in te.kohya:
            if stem.startswith(prefix):
                return Module(component, unflatten(stem[len(prefix) :]))
        for prefix in (te.diffusers, te.comfy):
            if stem.startswith(prefix):
                return Module(component, stem[len(prefix) :])
    return None


def canonical(stem: str, family: str) -> Module:
    """Where target ``stem`` of a ``family`` LoRA points, in single-file terms."""
    loc = locate(stem)
    if loc.component != "diffusion":
        te = _text_encoder(stem, family)
        if te is None:
            raise ConversionError(Msg("{stem}: no {family} module for this naming", stem=stem, family=family))
        return te
    extra = NAMES[family].compounds if family in NAMES else frozenset()
    path = unflatten(loc.path, extra) if loc.naming in FLATTENED else loc.path.replace(".processor.", ".")
    if family in UNET_FAMILIES:
        table = unet_table(UNET_SDXL if family == "sdxl" else UNET_SD1)
        if path.startswith(("down_blocks.", "up_blocks.", "mid_block.", "conv_in", "conv_out", "time_embedding.")):
            ldm = table.to_ldm(path + ".weight")
            if ldm is None:
                raise ConversionError(Msg("{stem}: no LDM name for diffusers module {path}", stem=stem, path=path))
            path = ldm[: -len(".weight")]
        return Module("diffusion", path)
    names = NAMES[family]
    if loc.naming in DIFFUSERS_SIDE:
        mapped = names.to_native(path)
        if mapped is None:
            raise ConversionError(
                Msg("{stem}: no {family} module for diffusers module {path}", stem=stem, family=family, path=path)
            )
        return Module("diffusion", mapped.path, mapped.part, mapped.fused, mapped.swapped)
    if names.to_diffusers(path) is None:
        raise ConversionError(Msg("{stem}: {family} has no module {path}", stem=stem, family=family, path=path))
    return Module("diffusion", path)


# --- names out ---------------------------------------------------------------------------------


def stems_for(module: Module, fmt: str, family: str) -> tuple[list[str], bool]:
    """The output stem(s) of a canonical module (several: a fused weight split for diffusers), and
    whether the output halves are swapped relative to the single-file weight."""
    c, path = module.component, module.path
    if c != "diffusion":
        te = TEXT_ENCODERS[family].get(c)
        if te is None:
            raise ConversionError(Msg("{family}: no name for text encoder {c}", family=family, c=c))
        if fmt == "kohya":
            return [te.kohya[0] + path.replace(".", "_")], False
        return [(te.diffusers if fmt == "diffusers" else te.comfy) + path], False
    if fmt == "comfy":
        return ["diffusion_model." + path], False
    if family in UNET_FAMILIES:
        if fmt == "kohya" and family == "sdxl":
            return ["lora_unet_" + path.replace(".", "_")], False
        diffusers = unet_table(UNET_SDXL if family == "sdxl" else UNET_SD1).to_diffusers(path + ".weight")
        if diffusers is None:
            raise ConversionError(Msg("UNet module {path} has no diffusers name", path=path))
        d = diffusers[: -len(".weight")]
        return ["lora_unet_" + d.replace(".", "_") if fmt == "kohya" else "unet." + d], False
    if fmt == "kohya":
        return ["lora_unet_" + path.replace(".", "_")], False
    out = NAMES[family].to_diffusers(path)
    if out is None:
        raise ConversionError(Msg("{family} module {path} has no diffusers name", family=family, path=path))
    paths, swapped = out
    return ["transformer." + p for p in paths], swapped


# --- the plan step -------------------------------------------------------------------------------

ROLE_NAMES = {
    "kohya": {"up": ".lora_up.weight", "down": ".lora_down.weight"},
    "comfy": {"up": ".lora_up.weight", "down": ".lora_down.weight"},
    "diffusers": {"up": ".lora_B.weight", "down": ".lora_A.weight"},
}


def _rows(start: int, stop: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: np.ascontiguousarray(a[start:stop])


class _Renamer:
    """Builds the renamed plan: every output step, the alpha tensors or the PEFT metadata."""

    def __init__(self, plan: Plan, fmt: str, family: str) -> None:
        self.plan = plan
        self.fmt = fmt
        self.family = family
        self.by_name = {s.name: s for s in plan.steps}
        self.steps: list[Step] = []
        self.extra: dict[str, np.ndarray] = {}
        self.pattern: dict[str, dict[str, dict[str, float]]] = {}

    def step(self, name: str) -> Step:
        return self.by_name[name]

    def rank_alpha(self, t: Target) -> tuple[int, float]:
        rank = self.plan.source.tensors[t.tensors["down"]].shape[0]
        alpha = read_alpha(t, self.plan.source.read)
        return rank, float(rank) if alpha is None else alpha

    def rename(self, t: Target, module: Module) -> None:
        stems, swapped = stems_for(module, self.fmt, self.family)
        up = self.step(t.tensors["up"])
        down = self.step(t.tensors["down"])
        rank, alpha = self.rank_alpha(t)
        if len(stems) > 1:
            assert module.fused is None
            self.split(stems, up, down, rank, alpha)
            return
        swap = swaps(module.swap or swapped, up.shape[0], _width(down))
        down.out = stems[0] + ROLE_NAMES[self.fmt]["down"]
        up.out = stems[0] + ROLE_NAMES[self.fmt]["up"]
        if swap:
            up.fix = swap_halves
        self.steps += [down, up]
        self.alpha(stems[0], rank, alpha)

    def split(self, stems: list[str], up: Step, down: Step, rank: int, alpha: float) -> None:
        """A fused single-file target (qkv, linear1) as diffusers' separate modules: the same down,
        the rows of up."""
        fused = _fused_of(self.family, stems)
        sizes = fused.sizes(up.shape[0], _width(down))
        if sum(sizes) != up.shape[0] or min(sizes) <= 0:
            raise ConversionError(
                Msg(
                    "{stem}: {shape} output rows cannot be split into {outs_count} parts",
                    stem=up.name,
                    shape=up.shape[0],
                    outs_count=len(stems),
                )
            )
        start = 0
        for stem, size in zip(stems, sizes, strict=True):
            self.steps.append(replace(down, out=stem + ROLE_NAMES["diffusers"]["down"]))
            self.steps.append(
                replace(
                    up,
                    out=stem + ROLE_NAMES["diffusers"]["up"],
                    shape=(size, *up.shape[1:]),
                    fix=_rows(start, start + size),
                )
            )
            self.alpha(stem, rank, alpha)
            start += size

    def join(self, module: Module, parts: list[tuple[int, Target]]) -> None:
        """diffusers' separate modules of one fused single-file weight, back into one target. Parts
        that share one ``down`` and alpha (as a split leaves them) keep it and stack their ups;
        otherwise (separately trained q/k/v, as diffusers trainers write them, or parts left out) the
        target is block-diagonal: the downs stacked, each up in its own rows and columns, zeros
        elsewhere, so ``up @ down`` is exactly the parts' deltas stacked. Its rank is the sum of the
        parts' and its alpha keeps their common alpha/rank; parts with different alpha/rank refuse."""
        fused = module.fused
        assert fused is not None
        parts.sort(key=lambda p: p[0])
        targets = [t for _i, t in parts]
        src = self.plan.source
        rank_alphas = [self.rank_alpha(t) for t in targets]
        (stem,), _swapped = stems_for(Module(module.component, module.path), self.fmt, self.family)
        downs = [self.step(t.tensors["down"]) for t in targets]
        ups = [self.step(t.tensors["up"]) for t in targets]
        width = _width(downs[0])
        complete = [i for i, _t in parts] == list(range(len(fused.parts)))
        values = [src.read(d.name) for d in downs]
        if complete and len(set(rank_alphas)) == 1 and all(np.array_equal(values[0], v) for v in values[1:]):
            up_names = [u.name for u in ups]

            def stacked(_a: np.ndarray) -> np.ndarray:
                return np.concatenate([np.asarray(src.read(n)) for n in up_names], axis=0)

            rows = sum(u.shape[0] for u in ups)
            self.steps += [
                replace(downs[0], out=stem + ROLE_NAMES[self.fmt]["down"]),
                replace(ups[0], out=stem + ROLE_NAMES[self.fmt]["up"], shape=(rows, *ups[0].shape[1:]), fix=stacked),
            ]
            self.alpha(stem, *rank_alphas[0])
            return
        scales = {alpha / rank for rank, alpha in rank_alphas}
        sizes = fused.part_sizes({i: u.shape[0] for (i, _t), u in zip(parts, ups, strict=True)}, width)
        if len(scales) != 1 or sizes is None:
            raise ConversionError(
                Msg(
                    "{stems}: {family} keeps {want} in one fused weight ({path}); these parts cannot be joined into one LoRA target (different or missing parts, downs or alphas)",
                    stems=targets[0].stem,
                    family=self.family,
                    want=", ".join(fused.parts),
                    path=module.path,
                )
            )
        row_at = [sum(sizes[:i]) for i, _t in parts]
        ranks = [rank for rank, _alpha in rank_alphas]
        down_names, up_names = [d.name for d in downs], [u.name for u in ups]

        def stacked_downs(_a: np.ndarray) -> np.ndarray:
            return np.concatenate([np.asarray(src.read(n)) for n in down_names], axis=0)

        def block_diagonal(_a: np.ndarray) -> np.ndarray:
            first = np.asarray(src.read(up_names[0]))
            out = np.zeros((sum(sizes), sum(ranks)), dtype=first.dtype)
            col = 0
            for name, row, rank in zip(up_names, row_at, ranks, strict=True):
                up = first if name == up_names[0] else np.asarray(src.read(name))
                out[row : row + up.shape[0], col : col + rank] = up
                col += rank
            return out

        self.steps += [
            replace(downs[0], out=stem + ROLE_NAMES[self.fmt]["down"], shape=(sum(ranks), width), fix=stacked_downs),
            replace(ups[0], out=stem + ROLE_NAMES[self.fmt]["up"], shape=(sum(sizes), sum(ranks)), fix=block_diagonal),
        ]
        self.alpha(stem, sum(ranks), scales.pop() * sum(ranks))
        self.plan.notes.append(
            Msg(
                "LoRA names: {path} joined from {n} separately trained parts as one block-diagonal target of rank {rank}",
                path=module.path,
                n=len(parts),
                rank=sum(ranks),
            )
        )

    def alpha(self, out_stem: str, rank: int, alpha: float) -> None:
        if self.fmt == "diffusers":
            component, _dot, path = out_stem.partition(".")
            p = self.pattern.setdefault(component, {"rank": {}, "alpha": {}})
            p["rank"][path] = rank
            p["alpha"][path] = alpha
        else:
            self.extra[out_stem + ".alpha"] = np.array(alpha, dtype=np.float32)


def _width(down: Step) -> int:
    return down.shape[1]


def _fused_of(family: str, stems: list[str]) -> Fused:
    mapped = NAMES[family].to_native(stems[0].partition(".")[2])
    assert mapped is not None and mapped.fused is not None
    return mapped.fused


def apply_lora_format(plan: Plan, fmt: str, family: str | None) -> dict[str, str | None]:
    """Rename every target of the LoRA in ``plan`` to ``fmt``. Only plain LoRA targets (up/down,
    alpha) of the families in CONVERTIBLE; anything else refuses with the reason. Returns the
    metadata changes the output needs (None = remove the entry)."""
    if fmt not in LORA_FORMATS:
        raise ConversionError(
            Msg(
                "--lora-format must be one of {lora_formats}, not {fmt!r}",
                lora_formats=", ".join(LORA_FORMATS),
                fmt=fmt,
            )
        )
    src = plan.source
    if family not in CONVERTIBLE:
        raise ConversionError(
            Msg(
                "{path}: converting LoRA names is defined for {convertible}; this LoRA is for {family}",
                path=src.path,
                convertible=", ".join(CONVERTIBLE),
                family=family or Msg("an unknown family"),
            )
        )
    keys = parse(src.tensors)
    if not keys.targets:
        raise ConversionError(Msg("{path}: not a LoRA (no LoRA target in the file)", path=src.path))
    odd = sorted(
        {
            "DoRA" if t.dora else t.algorithm
            for t in keys.targets.values()
            if t.algorithm not in ("lora", "locon") or set(t.tensors) - {"up", "down", "alpha"}
        }
    )
    if odd:
        raise ConversionError(
            Msg("{path}: only plain LoRA targets can be renamed ({odd} found)", path=src.path, odd=", ".join(odd))
        )
    if keys.other:
        raise ConversionError(
            Msg(
                "{path}: {other_count} tensors belong to no LoRA target, e.g. {other}",
                path=src.path,
                other_count=len(keys.other),
                other=keys.other[0],
            )
        )
    read_peft_alphas(keys, src.metadata)
    renamer = _Renamer(plan, fmt, family)
    fused: dict[tuple[str, str], tuple[Module, list[tuple[int, Target]]]] = {}
    for stem, t in keys.targets.items():
        module = canonical(stem, family)
        if module.part is None:
            renamer.rename(t, module)
        else:
            fused.setdefault((module.component, module.path), (module, []))[1].append((module.part, t))
    for module, parts in fused.values():
        renamer.join(module, parts)
    plan.steps = [replace(s, part="lora") for s in renamer.steps]
    if renamer.extra:
        plan.sources[ALPHA_SOURCE] = DictSource(renamer.extra, "<alpha>")
        for name, arr in renamer.extra.items():
            plan.steps.append(Step(name, ALPHA_SOURCE, name, "F32", tuple(arr.shape), "F32", "lora", pinned=True))
    plan.notes.append(
        Msg(
            "LoRA names: {n} targets written in {format} naming for {family}",
            n=len(keys.targets),
            format=fmt,
            family=family,
        )
    )
    plan.tag(fmt)
    return {METADATA_KEY: _peft_metadata(renamer.pattern) if renamer.pattern else None}


def _peft_metadata(pattern: dict[str, dict[str, dict[str, float]]]) -> str:
    """diffusers' ``lora_adapter_metadata``: per component a LoraConfig whose rank_pattern and
    alpha_pattern name every module (full paths). PEFT takes the first pattern key that is a dotted
    suffix of a module's name (peft ``get_pattern_key``), so the longest keys come first: the top
    ``proj_out`` must not give its alpha to ``single_transformer_blocks.0.proj_out``."""
    meta: dict[str, object] = {}
    for component, p in sorted(pattern.items()):
        ranks, alphas = p["rank"], p["alpha"]
        order = sorted(ranks, key=lambda k: (-len(k), k))
        first = order[-1]
        meta[f"{component}.r"] = int(ranks[first])
        meta[f"{component}.lora_alpha"] = alphas[first]
        meta[f"{component}.rank_pattern"] = {k: int(ranks[k]) for k in order}
        meta[f"{component}.alpha_pattern"] = {k: alphas[k] for k in order}
        meta[f"{component}.target_modules"] = sorted(ranks)
    return json.dumps(meta)
