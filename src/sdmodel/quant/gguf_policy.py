"""Which GGUF type each tensor of a diffusion model gets, as the ComfyUI-GGUF tool chain decides.

That chain is city96's ``tools/convert.py`` (ComfyUI-GGUF: architecture detection, prefix
stripping, F32 for 1-D / small / high-precision tensors, ``comfy.gguf.orig_shape`` reshapes for
SD1/SDXL, 5-D tensors left to ``fix_5d_tensors.py``, which adds them back as F32) followed by
llama.cpp's ``llama-quantize`` with city96's ``lcpp.patch`` (which 2-D ``*weight`` tensors are
quantized per architecture, the ``_S``/``_M`` mixes of ``img_tensor_get_type``, and F16 for a
K-quant whose rows are not a multiple of 256). This module reproduces those decisions in one pass
over the source's names and shapes; nothing here reads tensor data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from sdmodel.errors import ConversionError
from sdmodel.i18n import N_, Msg
from sdmodel.quant.ggml_quantize import BLOCKS, QuantType, row_bytes

GGUFQuant = Literal[
    "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_S", "Q5_K_M", "Q4_K_S", "Q4_K_M", "Q3_K_S", "Q3_K_M", "Q2_K",
    "Q5_0", "Q5_1", "Q4_0", "Q4_1",
]  # fmt: skip
GGUF_QUANTS: tuple[GGUFQuant, ...] = get_args(GGUFQuant)

# llama.cpp's file types: the quant name -> (default tensor type, general.file_type value).
FILE_TYPES: dict[GGUFQuant, tuple[QuantType, int]] = {
    "F16": ("F16", 1),
    "BF16": ("BF16", 32),
    "Q8_0": ("Q8_0", 7),
    "Q6_K": ("Q6_K", 18),
    "Q5_K_S": ("Q5_K", 16),
    "Q5_K_M": ("Q5_K", 17),
    "Q4_K_S": ("Q4_K", 14),
    "Q4_K_M": ("Q4_K", 15),
    "Q3_K_S": ("Q3_K", 11),
    "Q3_K_M": ("Q3_K", 12),
    "Q2_K": ("Q2_K", 10),
    "Q5_0": ("Q5_0", 8),
    "Q5_1": ("Q5_1", 9),
    "Q4_0": ("Q4_0", 2),
    "Q4_1": ("Q4_1", 3),
}

QUANTIZATION_THRESHOLD = 1024  # convert.py: tensors this small stay F32
REARRANGE_THRESHOLD = 512  # convert.py: smallest tensor reshaped to rows of 256
MAX_NAME_LENGTH = 127  # convert.py (and the patched GGML_MAX_NAME)
K_QUANTS = frozenset({"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"})


@dataclass(frozen=True)
class GGUFArch:
    """One ``general.architecture`` of ComfyUI-GGUF. ``detect``: any of these key sets, all
    present (convert.py ``keys_detect``); ``banned``: keys of a layout ComfyUI-GGUF cannot load
    (diffusers naming); ``high_precision``/``ignore``: convert.py ``keys_hiprec``/``keys_ignore``
    (substrings); ``keep_containing``/``keep_named``: the patch's per-architecture tensors that are
    never quantized (substrings / exact names); ``shape_fix``: SD1/SDXL rows reshaped to 256."""

    name: str
    detect: tuple[tuple[str, ...], ...]
    banned: tuple[str, ...] = ()
    high_precision: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    keep_containing: tuple[str, ...] = ()
    keep_named: tuple[str, ...] = ()
    shape_fix: bool = False


# convert.py's SD1/SDXL UNet keys kept in high precision (the same list for both)
UNET_KEEP_CONTAINING = (
    "class_embedding.",
    "time_embedding.",
    "add_embedding.",
    "time_embed.",
    "label_emb.",
    "conv_in.",
    "conv_out.",
)
UNET_KEEP_NAMED = ("input_blocks.0.0.weight", "out.2.weight")
_FLUX_KEEP = ("txt_in.", "img_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.")

# convert.py's arch_list order (first match wins), Qwen-Image first: its diffusers-style names also
# match Flux's banned key. ComfyUI-GGUF's loader accepts "qwen_image", but the lcpp.patch has no
# rules for it; we keep its input/embedding/output layers unquantized as the patch does for Flux.
ARCHITECTURES: tuple[GGUFArch, ...] = (
    GGUFArch(
        "qwen_image",
        (("txt_norm.weight", "img_in.weight"),),
        keep_containing=("img_in.", "txt_in.", "txt_norm.", "time_text_embed.", "norm_out.", "proj_out."),
    ),
    GGUFArch(
        "flux",
        (("transformer_blocks.0.attn.norm_added_k.weight",), ("double_blocks.0.img_attn.proj.weight",)),
        banned=("transformer_blocks.0.attn.norm_added_k.weight",),
        keep_containing=_FLUX_KEEP,
    ),
    GGUFArch(
        "sd3",
        (("transformer_blocks.0.attn.add_q_proj.weight",), ("joint_blocks.0.x_block.attn.qkv.weight",)),
        banned=("transformer_blocks.0.attn.add_q_proj.weight",),
        keep_containing=(
            "final_layer.",
            "time_text_embed.",
            "context_embedder.",
            "t_embedder.",
            "y_embedder.",
            "x_embedder.",
        ),
        keep_named=("proj_out.weight", "pos_embed"),
    ),
    GGUFArch(
        "aura",
        (("double_layers.3.modX.1.weight",), ("joint_transformer_blocks.3.ff_context.out_projection.weight",)),
        banned=("joint_transformer_blocks.3.ff_context.out_projection.weight",),
        keep_containing=("t_embedder.", "init_x_linear."),
        keep_named=(
            "modF.1.weight",
            "cond_seq_linear.weight",
            "final_linear.weight",
            "positional_encoding",
            "register_tokens",
        ),
    ),
    GGUFArch(
        "hidream",
        (("caption_projection.0.linear.weight", "double_stream_blocks.0.block.ff_i.shared_experts.w3.weight"),),
        high_precision=(".ff_i.gate.weight", "img_emb.emb_pos"),
        keep_containing=(
            "p_embedder.",
            "t_embedder.",
            "x_embedder.",
            "final_layer.",
            ".ff_i.gate.weight",
            "caption_projection.",
        ),
    ),
    GGUFArch(
        "cosmos",
        (("blocks.0.mlp.layer1.weight", "blocks.0.adaln_modulation_cross_attn.1.weight"),),
        high_precision=("pos_embedder",),
        ignore=("_extra_state", "accum_"),
        keep_containing=(
            "p_embedder.",
            "t_embedder.",
            "t_embedding_norm.",
            "x_embedder.",
            "pos_embedder.",
            "final_layer.",
        ),
    ),
    GGUFArch(
        "ltxv",
        (
            (
                "adaln_single.emb.timestep_embedder.linear_2.weight",
                "transformer_blocks.27.scale_shift_table",
                "caption_projection.linear_2.weight",
            ),
        ),
        high_precision=("scale_shift_table",),
        keep_containing=("adaln_single.", "caption_projection.", "patchify_proj.", "proj_out.", "scale_shift_table"),
    ),
    GGUFArch(
        "hyvid",
        (("double_blocks.0.img_attn_proj.weight", "txt_in.individual_token_refiner.blocks.1.self_attn_qkv.weight"),),
        keep_containing=_FLUX_KEEP,
    ),
    GGUFArch(
        "wan",
        (("blocks.0.self_attn.norm_q.weight", "text_embedding.2.weight", "head.modulation"),),
        high_precision=(".modulation",),
        keep_containing=(
            "modulation.",
            "patch_embedding.",
            "text_embedding.",
            "time_projection.",
            "time_embedding.",
            "img_emb.",
            "head.",
        ),
    ),
    GGUFArch(
        "sdxl",
        (
            ("down_blocks.0.downsamplers.0.conv.weight", "add_embedding.linear_1.weight"),
            (
                "input_blocks.3.0.op.weight",
                "input_blocks.6.0.op.weight",
                "output_blocks.2.2.conv.weight",
                "output_blocks.5.2.conv.weight",
            ),
            ("label_emb.0.0.weight",),
        ),
        keep_containing=UNET_KEEP_CONTAINING,
        keep_named=UNET_KEEP_NAMED,
        shape_fix=True,
    ),
    GGUFArch(
        "sd1",
        (
            ("down_blocks.0.downsamplers.0.conv.weight",),
            (
                "input_blocks.3.0.op.weight",
                "input_blocks.6.0.op.weight",
                "input_blocks.9.0.op.weight",
                "output_blocks.2.1.conv.weight",
                "output_blocks.5.2.conv.weight",
                "output_blocks.8.2.conv.weight",
            ),
        ),
        keep_containing=UNET_KEEP_CONTAINING,
        keep_named=UNET_KEEP_NAMED,
        shape_fix=True,
    ),
    GGUFArch(
        "lumina2",
        (("cap_embedder.1.weight", "context_refiner.0.attention.qkv.weight"),),
        keep_containing=(
            "t_embedder.",
            "x_embedder.",
            "final_layer.",
            "cap_embedder.",
            "context_refiner.",
            "noise_refiner.",
        ),
    ),
)
ARCHITECTURE_NAMES = tuple(a.name for a in ARCHITECTURES)

# img_tensor_get_type's name patterns.
_ATTN_V = ("attn_v.weight", ".to_v.weight", ".v.weight", ".attn.w1v.weight", ".attn.w2v.weight", "_attn.v_proj.weight")
_ATTN_QKV = ("attn_qkv.weight", "attn.qkv.weight", "attention.qkv.weight")
_FFN_DOWN = (
    "ffn_down",
    ".ffn.2.weight",
    ".ff.net.2.weight",
    ".mlp.layer2.weight",
    ".adaln_modulation_mlp.2.weight",
    ".feed_forward.w2.weight",
)


def strip_prefix(names: Sequence[str]) -> dict[str, str]:
    """Source name -> GGUF name, for the tensors convert.py keeps: ``model.diffusion_model.`` or
    ``model.`` removed where any name has it (other names dropped), ``net.`` where all have it."""
    prefix = next((p for p in ("model.diffusion_model.", "model.") if any(n.startswith(p) for n in names)), None)
    if prefix is None and names and all(n.startswith("net.") for n in names):
        prefix = "net."
    if prefix is None:
        return {n: n for n in names}
    return {n: n.replace(prefix, "") for n in names if prefix in n}


def detect_architecture(names: Sequence[str]) -> GGUFArch:
    """The ComfyUI-GGUF architecture of a diffusion model's (prefix-stripped) tensor names."""
    present = set(names)
    for arch in ARCHITECTURES:
        if any(all(k in present for k in keys) for keys in arch.detect):
            banned = [k for k in arch.banned if k in present]
            if banned:
                raise ConversionError(
                    Msg(
                        "this {name} model uses diffusers tensor names ({banned}); ComfyUI-GGUF loads only the original layout: convert it to the original single-file layout first",
                        name=arch.name,
                        banned=banned[0],
                    )
                )
            return arch
    raise ConversionError(
        Msg(
            "ComfyUI-GGUF cannot load this model: it loads only the diffusion model of {names} (no known architecture key found)",
            names=", ".join(ARCHITECTURE_NAMES),
        )
    )


@dataclass(frozen=True)
class TensorChoice:
    """What one source tensor becomes in the GGUF file."""

    source: str
    name: str
    qtype: QuantType
    shape: tuple[int, ...]  # as written (numpy order), after any reshape
    orig_shape: tuple[int, ...] | None  # comfy.gguf.orig_shape when reshaped
    nbytes: int
    reason: Msg | None  # why it is stored so, when not the file's default type (the dry-run table)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _n_dims(shape: tuple[int, ...]) -> int:
    """ggml_n_dims: dimensions up to the last one (GGML order) that is not 1."""
    dims = len(shape)
    for size in shape:
        if size != 1 or dims == 1:
            break
        dims -= 1
    return dims


class _Mix:
    """img_tensor_get_type of the lcpp.patch, with its counter of attention-v tensors."""

    def __init__(self, quant: GGUFQuant) -> None:
        self.quant = quant
        self.attention_v = 0

    def choose(self, name: str, default: QuantType) -> tuple[QuantType, Msg | None]:
        q = self.quant
        new: QuantType = default
        if any(p in name for p in _ATTN_V):
            if q == "Q2_K":
                new = "Q3_K"
            elif q == "Q3_K_M":
                new = "Q5_K" if self.attention_v < 2 else "Q4_K"
            elif q in ("Q4_K_M", "Q5_K_M"):
                new = "Q6_K"
            elif q == "Q4_K_S" and self.attention_v < 4:
                new = "Q5_K"
            self.attention_v += 1
            why = N_("attention v")
        elif any(p in name for p in _ATTN_QKV):
            if q == "Q3_K_M":
                new = "Q4_K"
            elif q == "Q4_K_M":
                new = "Q5_K"
            elif q == "Q5_K_M":
                new = "Q6_K"
            why = N_("fused qkv")
        elif any(p in name for p in _FFN_DOWN) or ("experts." in name and ".w2.weight" in name):
            new = {
                "Q3_K_M": "Q4_K",
                "Q4_K_S": "Q5_K",
                "Q4_K_M": "Q6_K",
                "Q5_K_M": "Q6_K",
                "Q4_0": "Q4_1",
                "Q5_0": "Q5_1",
            }.get(q, default)  # type: ignore[assignment]
            why = N_("feed-forward down")
        else:
            return new, None
        return new, (Msg("{why}: {qtype}", why=Msg(why), qtype=new) if new != default else None)


def choose_types(
    arch: GGUFArch, tensors: Mapping[str, tuple[tuple[int, ...], str]], quant: GGUFQuant
) -> list[TensorChoice]:
    """Per source tensor (name -> (shape, safetensors dtype)), in the order given, what the GGUF
    file holds. Raises ConversionError for names GGUF cannot hold."""
    if quant not in FILE_TYPES:
        raise ConversionError(
            Msg(
                "unknown GGUF quantization {quant!r}; known: {gguf_quants}",
                quant=quant,
                gguf_quants=", ".join(GGUF_QUANTS),
            )
        )
    default, _ = FILE_TYPES[quant]
    names = strip_prefix(list(tensors))
    mix = _Mix(quant)
    too_long = [n for n in names.values() if len(n) > MAX_NAME_LENGTH]
    if too_long:
        raise ConversionError(
            Msg(
                "GGUF tensor names are limited to {max_name_length} characters: {too_long!r}",
                max_name_length=MAX_NAME_LENGTH,
                too_long=too_long[0],
            )
        )
    choices = []
    # llama-quantize walks tensors by name (its counters depend on that order)
    for source in sorted(names, key=lambda s: names[s]):
        name = names[source]
        shape, dtype = tensors[source]
        if any(x in name for x in arch.ignore):
            continue
        choices.append(_choose(arch, source, name, tuple(shape), dtype, quant, default, mix))
    order = {s: i for i, s in enumerate(tensors)}
    return sorted(choices, key=lambda c: order[c.source])


def _choose(
    arch: GGUFArch,
    source: str,
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    quant: GGUFQuant,
    default: QuantType,
    mix: _Mix,
) -> TensorChoice:
    shape = shape or (1,)
    numel = math.prod(shape)
    if len(shape) > 4:  # convert.py sets these aside; fix_5d_tensors.py adds them back as F32
        return TensorChoice(source, name, "F32", shape, None, numel * 4, Msg("5-D: F32 (as fix_5d_tensors.py)"))
    # convert.py: the stored type before quantizing
    stored: QuantType = "BF16" if dtype == "BF16" else "F16"
    why: Msg | None = None
    if dtype in ("F32", "BF16"):
        if len(shape) == 1:
            stored, why = "F32", Msg("1-D: F32")
        elif numel <= QUANTIZATION_THRESHOLD:
            stored, why = "F32", Msg("small (<= {threshold} values): F32", threshold=QUANTIZATION_THRESHOLD)
        elif any(k in name for k in arch.high_precision):
            stored, why = "F32", Msg("high-precision key: F32")
    orig_shape = None
    if arch.shape_fix and len(shape) > 1 and numel >= REARRANGE_THRESHOLD and numel % 256 == 0 and shape[-1] % 256:
        orig_shape, shape = shape, (numel // 256, 256)
    if default in ("F16", "BF16"):  # convert.py's output in the asked float type
        qtype: QuantType = "F32" if stored == "F32" else default
        return TensorChoice(source, name, qtype, shape, orig_shape, _nbytes(qtype, shape), why)
    # llama-quantize (patched): which tensors it quantizes
    keep: Msg | None = None
    if not name.endswith("weight"):
        keep = Msg("not a weight: {qtype}", qtype=stored)
    elif _n_dims(shape) != 2:
        keep = Msg("{dims}-D: {qtype}", dims=_n_dims(shape), qtype=stored)
    elif "_norm.weight" in name:
        keep = Msg("norm: {qtype}", qtype=stored)
    elif any(k in name for k in arch.keep_containing) or name in arch.keep_named:
        keep = Msg("kept by the {arch} rules: {qtype}", arch=arch.name, qtype=stored)
    if keep is not None:
        return TensorChoice(source, name, stored, shape, orig_shape, _nbytes(stored, shape), why or keep)
    qtype, why = mix.choose(name, default)
    if qtype in K_QUANTS and shape[-1] % 256:
        qtype, why = "F16", Msg("row of {row} not a multiple of {block}: F16", row=shape[-1], block=256)
    elif shape[-1] % BLOCKS[qtype][0]:
        qtype, why = "F16", Msg("row of {row} not a multiple of {block}: F16", row=shape[-1], block=BLOCKS[qtype][0])
    return TensorChoice(source, name, qtype, shape, orig_shape, _nbytes(qtype, shape), why)


def _nbytes(qtype: QuantType, shape: tuple[int, ...]) -> int:
    numel = math.prod(shape)
    return row_bytes(qtype, shape[-1]) * (numel // shape[-1]) if numel else 0
