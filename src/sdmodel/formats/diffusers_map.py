"""Diffusers <-> single-file (LDM / A1111) tensor names, as data and small pure functions (no I/O).

Facts from the public conversion tables (diffusers ``scripts/convert_diffusers_to_original_*.py``,
``loaders/single_file_utils.py``, kohya ``library/model_util.py``); the code is our own:

- UNet: ``down_blocks.i.resnets.j`` -> ``input_blocks.{i*(R+1)+j+1}.0`` (R resnets per down block),
  attentions -> ``.1`` of the same block, ``down_blocks.i.downsamplers.0.conv`` ->
  ``input_blocks.{(i+1)*(R+1)}.0.op``; ``up_blocks.i.resnets.j`` -> ``output_blocks.{i*U+j}.0`` (U resnets
  per up block), upsampler -> ``output_blocks.{i*U+U-1}.{2 if the block has attention else 1}.conv``;
  ``mid_block`` -> ``middle_block.0/1/2``; resnet parts norm1/conv1/norm2/conv2/time_emb_proj/conv_shortcut
  -> in_layers.0/in_layers.2/out_layers.0/out_layers.3/emb_layers.1/skip_connection. Shapes are equal.
- VAE: up blocks are numbered in reverse (``decoder.up_blocks.i`` -> ``decoder.up.{N-1-i}``); mid attention
  q/k/v/proj_out are linear [C, C] in diffusers, 1x1 conv [C, C, 1, 1] in LDM.
- CLIP-L: HF names in both (``text_model.*`` under the LDM prefix).
- OpenCLIP (SD2 ViT-H, SDXL bigG): q/k/v projections concatenated (in that order) into ``in_proj``,
  ``text_projection.weight`` transposed into ``text_projection``; diffusers keeps no ``logit_scale``.
"""

from __future__ import annotations

import collections.abc
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

# The single-file key prefixes: sdmodel.parts owns them (re-exported for the diffusers reader).
from sdmodel.parts import UNET_PREFIX, VAE_PREFIX

T = TypeVar("T")

# Ops needed to build one LDM tensor from its diffusers part(s).
COPY = "copy"
CONV1X1 = "conv1x1"  # linear [C, C] -> 1x1 conv [C, C, 1, 1]
QKV = "qkv"  # concatenate q, k, v along dim 0
TRANSPOSE = "transpose"


@dataclass(frozen=True)
class Mapping:
    """One single-file tensor: its name, the diffusers tensor(s) it is made of and how."""

    target: str
    sources: tuple[str, ...]
    op: str = COPY


@dataclass
class ComponentPlan:
    """How one diffusers component's tensors appear in the single-file layout."""

    mappings: list[Mapping] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)  # no single-file name: kept under "<component>."
    dropped: list[str] = field(default_factory=list)  # not presented on purpose (OpenCLIP position_ids)


# ---------------------------------------------------------------------------------------------- tables


class PrefixTable:
    """Bidirectional name table: exact names and dotted prefixes (``a.b.``), longest match wins."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.forward: dict[str, str] = {}
        self.backward: dict[str, str] = {}
        for src, dst in pairs:
            self.forward.setdefault(src, dst)
            self.backward.setdefault(dst, src)

    @staticmethod
    def _lookup(table: dict[str, str], name: str) -> str | None:
        if name in table:
            return table[name]
        cut = len(name)
        while (cut := name.rfind(".", 0, cut)) > 0:
            head = name[: cut + 1]
            if head in table:
                return table[head] + name[cut + 1 :]
        return None

    def to_ldm(self, name: str) -> str | None:
        return self._lookup(self.forward, name)

    def to_diffusers(self, name: str) -> str | None:
        return self._lookup(self.backward, name)


_UNET_RESNET = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
)


@dataclass(frozen=True)
class UnetStructure:
    """Which blocks of a diffusers UNet hold attention, and how many resnets each block has."""

    down_attn: tuple[bool, ...]
    up_attn: tuple[bool, ...]
    down_resnets: int = 2
    up_resnets: int = 3
    mid_attn: bool = True


UNET_SD1 = UnetStructure((True, True, True, False), (False, True, True, True))  # SD1 and SD2
UNET_SDXL = UnetStructure((False, True, True), (True, True, False))


def unet_table(s: UnetStructure) -> PrefixTable:
    pairs: list[tuple[str, str]] = [
        ("conv_in.", "input_blocks.0.0."),
        ("time_embedding.linear_1.", "time_embed.0."),
        ("time_embedding.linear_2.", "time_embed.2."),
        ("add_embedding.linear_1.", "label_emb.0.0."),  # SDXL
        ("add_embedding.linear_2.", "label_emb.0.2."),
        ("class_embedding.linear_1.", "label_emb.0.0."),  # SD2 unCLIP
        ("class_embedding.linear_2.", "label_emb.0.2."),
        ("conv_norm_out.", "out.0."),
        ("conv_out.", "out.2."),
    ]

    def resnet(d: str, ldm: str) -> None:
        pairs.extend((d + a, ldm + b) for a, b in _UNET_RESNET)

    step = s.down_resnets + 1
    for i, attn in enumerate(s.down_attn):
        for j in range(s.down_resnets):
            n = i * step + j + 1
            resnet(f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{n}.0.")
            if attn:
                pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{n}.1."))
        if i < len(s.down_attn) - 1:
            pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{(i + 1) * step}.0.op."))
    resnet("mid_block.resnets.0.", "middle_block.0.")
    if s.mid_attn:
        pairs.append(("mid_block.attentions.0.", "middle_block.1."))
    resnet("mid_block.resnets.1.", f"middle_block.{2 if s.mid_attn else 1}.")
    u = s.up_resnets
    for i, attn in enumerate(s.up_attn):
        for j in range(u):
            n = i * u + j
            resnet(f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{n}.0.")
            if attn:
                pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{n}.1."))
        if i < len(s.up_attn) - 1:
            up = f"output_blocks.{i * u + u - 1}.{2 if attn else 1}.conv."
            pairs.append((f"up_blocks.{i}.upsamplers.0.conv.", up))
    return PrefixTable(pairs)


_BLOCK_RE = re.compile(r"(down_blocks|up_blocks)\.(\d+)\.(resnets|attentions)\.(\d+)\.")


def unet_structure(names: Iterable[str]) -> UnetStructure:
    """The block structure of a diffusers UNet, read from its tensor names."""
    blocks: dict[str, dict[int, set[str]]] = {"down_blocks": {}, "up_blocks": {}}
    resnets: dict[str, set[int]] = {"down_blocks": set(), "up_blocks": set()}
    mid_attn = False
    for name in names:
        m = _BLOCK_RE.match(name)
        if m:
            kind, i, part, j = m.group(1), int(m.group(2)), m.group(3), int(m.group(4))
            blocks[kind].setdefault(i, set()).add(part)
            if part == "resnets" and i == 0:
                resnets[kind].add(j)
        elif name.startswith("mid_block.attentions."):
            mid_attn = True

    def attn(kind: str) -> tuple[bool, ...]:
        found = blocks[kind]
        return tuple("attentions" in found.get(i, ()) for i in range(max(found, default=-1) + 1))

    return UnetStructure(
        attn("down_blocks"),
        attn("up_blocks"),
        len(resnets["down_blocks"]) or 2,
        len(resnets["up_blocks"]) or 3,
        mid_attn,
    )


_VAE_ATTN = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
    # names written by diffusers before 0.14
    ("query.", "q."),
    ("key.", "k."),
    ("value.", "v."),
    ("proj_attn.", "proj_out."),
)


def vae_table(down_blocks: int = 4, up_blocks: int = 4, down_resnets: int = 2, up_resnets: int = 3) -> PrefixTable:
    pairs: list[tuple[str, str]] = [
        (p, p)
        for p in (
            "encoder.conv_in.",
            "encoder.conv_out.",
            "decoder.conv_in.",
            "decoder.conv_out.",
            "quant_conv.",
            "post_quant_conv.",
        )
    ]
    pairs += [(f"{side}.conv_norm_out.", f"{side}.norm_out.") for side in ("encoder", "decoder")]

    def resnet(d: str, ldm: str) -> None:
        pairs.extend([(d + "conv_shortcut.", ldm + "nin_shortcut."), (d, ldm)])

    for i in range(down_blocks):
        for j in range(down_resnets):
            resnet(f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}.")
        if i < down_blocks - 1:
            down = f"encoder.down.{i}.downsample.conv."
            pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.conv.", down))
    for i in range(up_blocks):
        k = up_blocks - 1 - i
        for j in range(up_resnets):
            resnet(f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{k}.block.{j}.")
        if i < up_blocks - 1:
            pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.conv.", f"decoder.up.{k}.upsample.conv."))
    for side in ("encoder", "decoder"):
        for j in range(2):
            resnet(f"{side}.mid_block.resnets.{j}.", f"{side}.mid.block_{j + 1}.")
        pairs.extend((f"{side}.mid_block.attentions.0.{a}", f"{side}.mid.attn_1.{b}") for a, b in _VAE_ATTN)
    return PrefixTable(pairs)


_VAE_COUNT_RE = re.compile(r"(?:encoder\.down_blocks|decoder\.up_blocks)\.(\d+)\.resnets\.(\d+)\.")
_VAE_CONV_ATTN_RE = re.compile(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$")
_DEFAULT_VAE = vae_table()


def vae_table_for(names: Iterable[str]) -> PrefixTable:
    """The VAE table sized from the tensor names (the decoder's reversed order depends on the block count)."""
    down: set[int] = set()
    up: set[int] = set()
    down_res: set[int] = set()
    up_res: set[int] = set()
    for name in names:
        m = _VAE_COUNT_RE.match(name)
        if m:
            is_down = name.startswith("encoder.")
            (down if is_down else up).add(int(m.group(1)))
            (down_res if is_down else up_res).add(int(m.group(2)))
    if not down and not up:
        return _DEFAULT_VAE
    return vae_table(max(down, default=3) + 1, max(up, default=3) + 1, len(down_res) or 2, len(up_res) or 3)


def looks_like_diffusers_vae(names: Iterable[str]) -> bool:
    """True for a VAE state dict in diffusers layout (``encoder.down_blocks.*``, ``decoder.up_blocks.*``)."""
    heads = ("encoder.down_blocks.", "decoder.up_blocks.", "decoder.mid_block.")
    return any(n.startswith(heads) for n in names)


# -------------------------------------------------------------------------------------------- planners


def plan_table(names: Iterable[str], table: PrefixTable, prefix: str, conv_attn: bool = False) -> ComponentPlan:
    """Rename through ``table``; ``conv_attn`` marks the VAE mid-attention weights for the 1x1 reshape."""
    plan = ComponentPlan()
    for name in names:
        target = table.to_ldm(name)
        if target is None:
            plan.unmapped.append(name)
            continue
        op = CONV1X1 if conv_attn and _VAE_CONV_ATTN_RE.search(target) else COPY
        plan.mappings.append(Mapping(prefix + target, (name,), op))
    return plan


def plan_unet(names: Sequence[str], prefix: str = UNET_PREFIX) -> ComponentPlan:
    return plan_table(names, unet_table(unet_structure(names)), prefix)


def plan_vae(names: Sequence[str], prefix: str = VAE_PREFIX) -> ComponentPlan:
    return plan_table(names, vae_table_for(names), prefix, conv_attn=True)


def plan_clip_l(names: Iterable[str], prefix: str) -> ComponentPlan:
    """CLIP-L keeps its HF names (``text_model.*``) under the LDM prefix."""
    plan = ComponentPlan()
    for name in names:
        if name.startswith("text_model."):
            plan.mappings.append(Mapping(prefix + name, (name,)))
        else:
            plan.unmapped.append(name)
    return plan


_OPENCLIP_EXACT = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPENCLIP_LAYER = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}
_HF_LAYER_RE = re.compile(r"text_model\.encoder\.layers\.(\d+)\.(.+)$")
_HF_QKV_RE = re.compile(r"self_attn\.([qkv])_proj\.(weight|bias)$")


def plan_openclip(names: Sequence[str], prefix: str) -> ComponentPlan:
    """HF CLIPTextModel(WithProjection) names -> OpenCLIP names (SD2 ViT-H, SDXL bigG)."""
    plan = ComponentPlan()
    present = set(names)
    done_qkv: set[tuple[str, str]] = set()
    for name in names:
        if name in _OPENCLIP_EXACT:
            plan.mappings.append(Mapping(prefix + _OPENCLIP_EXACT[name], (name,)))
            continue
        if name == "text_projection.weight":
            plan.mappings.append(Mapping(prefix + "text_projection", (name,), TRANSPOSE))
            continue
        if name == "text_model.embeddings.position_ids":
            plan.dropped.append(name)  # OpenCLIP has no position_ids: never add one
            continue
        m = _HF_LAYER_RE.match(name)
        if m is None:
            plan.unmapped.append(name)
            continue
        layer, rest = m.group(1), m.group(2)
        block = f"{prefix}transformer.resblocks.{layer}."
        qkv = _HF_QKV_RE.match(rest)
        if qkv:
            kind = qkv.group(2)
            parts = tuple(f"text_model.encoder.layers.{layer}.self_attn.{c}_proj.{kind}" for c in "qkv")
            if not all(p in present for p in parts):
                plan.unmapped.append(name)
            elif (layer, kind) not in done_qkv:
                done_qkv.add((layer, kind))
                plan.mappings.append(Mapping(f"{block}attn.in_proj_{kind}", parts, QKV))
            continue
        for hf, oc in _OPENCLIP_LAYER.items():
            if rest.startswith(hf):
                plan.mappings.append(Mapping(block + oc + rest[len(hf) :], (name,)))
                break
        else:
            plan.unmapped.append(name)
    return plan


def openclip_ldm_to_hf(name: str) -> str | tuple[str, str, str] | None:
    """Reverse of ``plan_openclip`` for one OpenCLIP name (without prefix): the HF name, or the q/k/v
    names an ``in_proj`` is split into, or None (``logit_scale``: diffusers keeps none)."""
    for hf, oc in _OPENCLIP_EXACT.items():
        if name == oc:
            return hf
    if name == "text_projection":
        return "text_projection.weight"
    m = re.match(r"transformer\.resblocks\.(\d+)\.(.+)$", name)
    if m is None:
        return None
    layer, rest = m.group(1), m.group(2)
    hf_block = f"text_model.encoder.layers.{layer}."
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = rest.rsplit("_", 1)[1]
        q, k, v = (f"{hf_block}self_attn.{c}_proj.{kind}" for c in "qkv")
        return q, k, v
    for hf, oc in _OPENCLIP_LAYER.items():
        if rest.startswith(oc):
            return hf_block + hf + rest[len(oc) :]
    return None


# ----------------------------------------------------------------------------------- shapes and values


def output_shape(op: str, shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    """The shape of the LDM tensor ``op`` builds from parts of ``shapes``."""
    first = tuple(shapes[0])
    if op == CONV1X1:
        return (*first, 1, 1) if len(first) == 2 else first
    if op == QKV:
        return (sum(s[0] for s in shapes), *first[1:])
    if op == TRANSPOSE:
        return first[::-1]
    return first


def apply_op(op: str, arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Build the LDM tensor from its diffusers part(s): renames copy, the rest reshape/concat/transpose."""
    a = arrays[0]
    if op == CONV1X1:
        return a.reshape(output_shape(op, [a.shape]))
    if op == QKV:
        return np.concatenate(arrays, axis=0)
    if op == TRANSPOSE:
        return np.ascontiguousarray(a.T)
    return a


def with_ldm_unet_names(tensors: collections.abc.Mapping[str, T]) -> dict[str, T]:
    """A diffusers UNet's tensors (``conv_in``, ``down_blocks``...) also under their LDM names, so that
    the registry's UNet signatures can match them; other tensors unchanged."""
    if "conv_in.weight" not in tensors:
        return dict(tensors)
    plan = plan_unet(list(tensors), "")
    return dict(tensors) | {m.target: tensors[m.sources[0]] for m in plan.mappings if m.op == COPY}
