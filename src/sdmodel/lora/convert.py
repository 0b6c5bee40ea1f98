"""Renaming a LoRA between the kohya, diffusers (PEFT) and ComfyUI namings, as plan steps.

Module paths, by family (facts from diffusers ``loaders/lora_conversion_utils.py`` and ComfyUI
``comfy/lora.py``):

- SD1/SD2: kohya ``lora_unet_`` + the diffusers UNet path with ``_``; SDXL: kohya ``lora_unet_`` + the
  LDM (sgm) path with ``_``; diffusers ``unet.`` + the diffusers path; ComfyUI ``diffusion_model.`` +
  the LDM path. Text encoders: kohya ``lora_te_`` (SD1/SD2) or ``lora_te1_``/``lora_te2_`` (SDXL),
  diffusers ``text_encoder.``/``text_encoder_2.``, ComfyUI ``text_encoders.clip_l|clip_h|clip_g.
  transformer.``, each + the HF CLIP path.
- Flux: kohya ``lora_unet_`` and ComfyUI ``diffusion_model.`` + the BFL path; text encoders
  ``lora_te1_`` (CLIP-L) / ``lora_te3_`` (T5). To diffusers, a fused ``qkv``/``linear1`` target
  becomes ``to_q``/``to_k``/``to_v`` (and ``proj_mlp``): the same ``down``, the rows of ``up`` split;
  from diffusers to BFL names the split parts are joined back only when they come as such a
  triple (same ``down``), else the conversion refuses.

Alpha: kohya and ComfyUI files keep ``<stem>.alpha`` tensors; PEFT files hold none, so diffusers
output carries every module's rank and alpha in the ``lora_adapter_metadata`` entry diffusers reads
(its ``rank_pattern``/``alpha_pattern``), and diffusers input without it gets ``alpha = rank``
(scale 1, what diffusers assumes). Converting there and back gives the same tensors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdmodel.errors import ConversionError
from sdmodel.formats.base import DictSource, TensorSource
from sdmodel.formats.diffusers_map import UNET_SD1, UNET_SDXL, unet_table
from sdmodel.i18n import Msg
from sdmodel.lora.keys import Target, parse
from sdmodel.lora.names import FLUX_DOUBLE, FLUX_SINGLE, FLUX_TOP, LORA_FORMATS, locate
from sdmodel.plan import MAIN, Plan, Step

CONVERTIBLE = ("sd1", "sd2", "sdxl", "flux")
METADATA_KEY = "lora_adapter_metadata"  # diffusers loaders/lora_base.py LORA_ADAPTER_METADATA_KEY
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
    ]
)
_MAX_PARTS = max(c.count("_") + 1 for c in COMPOUNDS)


def unflatten(flat: str) -> str:
    """``down_blocks_0_attentions_0_proj_in`` -> ``down_blocks.0.attentions.0.proj_in``."""
    tokens = flat.split("_")
    out: list[str] = []
    i = 0
    while i < len(tokens):
        for n in range(min(_MAX_PARTS, len(tokens) - i), 0, -1):
            joined = "_".join(tokens[i : i + n])
            if n == 1 or joined in COMPOUNDS:
                out.append(joined)
                i += n
                break
    return ".".join(out)


# --- per family: component prefixes in each naming -------------------------------------------

KOHYA_TE = {"sd1": {"te1": "lora_te_"}, "sd2": {"te1": "lora_te_"}, "sdxl": {"te1": "lora_te1_", "te2": "lora_te2_"}}
KOHYA_TE["flux"] = {"te1": "lora_te1_", "te3": "lora_te3_"}
DIFFUSERS_TE = {"te1": "text_encoder.", "te2": "text_encoder_2.", "te3": "text_encoder_2."}
COMFY_TE = {
    "sd1": {"te1": "text_encoders.clip_l.transformer."},
    "sd2": {"te1": "text_encoders.clip_h.transformer."},
    "sdxl": {"te1": "text_encoders.clip_l.transformer.", "te2": "text_encoders.clip_g.transformer."},
    "flux": {"te1": "text_encoders.clip_l.transformer.", "te3": "text_encoders.t5xxl.transformer."},
}
DIFFUSERS_COMPONENT = {"diffusion": "unet", "te1": "text_encoder", "te2": "text_encoder_2", "te3": "text_encoder_2"}


@dataclass(frozen=True)
class Module:
    """A target in canonical terms: component and dotted module path (LDM for SD UNets, BFL for
    Flux, HF for text encoders); ``rows`` = a part of a fused weight (Flux q/k/v from diffusers)."""

    component: str
    path: str
    rows: tuple[str, int] | None = None  # (fused part name q|k|v|mlp, index)


def _canonical_te(component: str, path: str, naming: str) -> Module:
    dotted = unflatten(path) if naming in ("kohya", "onetrainer") else path
    if component == "te3" and naming == "diffusers":  # diffusers Flux: text_encoder_2 is T5
        component = "te3"
    return Module(component, dotted)


def canonical(stem: str, family: str) -> Module:
    loc = locate(stem)
    if loc.component not in ("diffusion", "te1", "te2", "te3"):
        raise ConversionError(Msg("{stem}: no {family} module for this naming", stem=stem, family=family))
    if loc.component != "diffusion":
        component = (
            "te3" if family == "flux" and loc.naming == "diffusers" and loc.component == "te2" else loc.component
        )
        return _canonical_te(component, loc.path, loc.naming)
    path = unflatten(loc.path) if loc.naming in ("kohya", "onetrainer") else loc.path.replace(".processor.", ".")
    if family in ("sd1", "sd2", "sdxl"):
        table = unet_table(UNET_SDXL if family == "sdxl" else UNET_SD1)
        if path.startswith(("down_blocks.", "up_blocks.", "mid_block.", "conv_in", "conv_out", "time_embedding.")):
            ldm = table.to_ldm(path + ".weight")
            if ldm is None:
                raise ConversionError(Msg("{stem}: no LDM name for diffusers module {path}", stem=stem, path=path))
            path = ldm[: -len(".weight")]
        return Module("diffusion", path)
    # flux
    if path.startswith(("transformer_blocks.", "single_transformer_blocks.")) or path in FLUX_TOP:
        return _flux_from_diffusers(stem, path)
    return Module("diffusion", path)


# --- Flux: diffusers <-> BFL block names ---------------------------------------------------------

_FLUX_DOUBLE_FUSED = {f"attn.to_{c}": ("img_attn.qkv", c) for c in "qkv"} | {
    f"attn.add_{c}_proj": ("txt_attn.qkv", c) for c in "qkv"
}
_FLUX_SINGLE_FUSED = {f"attn.to_{c}": ("linear1", c) for c in "qkv"} | {"proj_mlp": ("linear1", "mlp")}
_FUSED_ORDER = {"q": 0, "k": 1, "v": 2, "mlp": 3}


def _flux_from_diffusers(stem: str, path: str) -> Module:
    if path in FLUX_TOP:
        return Module("diffusion", FLUX_TOP[path])
    kind, _dot, rest = path.partition(".")
    index, _dot, inner = rest.partition(".")
    if kind == "transformer_blocks":
        if inner in FLUX_DOUBLE:
            return Module("diffusion", f"double_blocks.{index}.{FLUX_DOUBLE[inner]}")
        if inner in _FLUX_DOUBLE_FUSED:
            fused, part = _FLUX_DOUBLE_FUSED[inner]
            return Module("diffusion", f"double_blocks.{index}.{fused}", (part, _FUSED_ORDER[part]))
    else:
        if inner in FLUX_SINGLE:
            return Module("diffusion", f"single_blocks.{index}.{FLUX_SINGLE[inner]}")
        if inner in _FLUX_SINGLE_FUSED:
            fused, part = _FLUX_SINGLE_FUSED[inner]
            return Module("diffusion", f"single_blocks.{index}.{fused}", (part, _FUSED_ORDER[part]))
    raise ConversionError(Msg("{stem}: no Flux (BFL) module for diffusers module {path}", stem=stem, path=path))


def _flux_to_diffusers(path: str) -> list[tuple[str, str | None]]:
    """Diffusers module(s) of a BFL path: several for a fused weight, with the part name."""
    for d, b in FLUX_TOP.items():
        if path == b:
            return [(d, None)]
    kind, _dot, rest = path.partition(".")
    index, _dot, inner = rest.partition(".")
    if kind == "double_blocks":
        for d, b in FLUX_DOUBLE.items():
            if inner == b:
                return [(f"transformer_blocks.{index}.{d}", None)]
        parts = [(d, p) for d, (f, p) in _FLUX_DOUBLE_FUSED.items() if f == inner]
        if parts:
            return [(f"transformer_blocks.{index}.{d}", p) for d, p in parts]
    if kind == "single_blocks":
        for d, b in FLUX_SINGLE.items():
            if inner == b:
                return [(f"single_transformer_blocks.{index}.{d}", None)]
        parts = [(d, p) for d, (f, p) in _FLUX_SINGLE_FUSED.items() if f == inner]
        if parts:
            return [(f"single_transformer_blocks.{index}.{d}", p) for d, p in parts]
    raise ConversionError(Msg("Flux module {path} has no diffusers name", path=path))


# --- names out ---------------------------------------------------------------------------------


def stem_for(module: Module, fmt: str, family: str) -> str:
    c, path = module.component, module.path
    if c != "diffusion":
        if fmt == "kohya":
            prefix = KOHYA_TE[family].get(c)
            if prefix is None:
                raise ConversionError(Msg("{family}: kohya has no name for text encoder {c}", family=family, c=c))
            return prefix + path.replace(".", "_")
        if fmt == "diffusers":
            return DIFFUSERS_TE[c] + path
        prefix = COMFY_TE[family].get(c)
        if prefix is None:
            raise ConversionError(Msg("{family}: ComfyUI has no name for text encoder {c}", family=family, c=c))
        return prefix + path
    if fmt == "comfy":
        return "diffusion_model." + path
    if family in ("sd1", "sd2", "sdxl"):
        if fmt == "kohya" and family == "sdxl":
            return "lora_unet_" + path.replace(".", "_")
        diffusers = unet_table(UNET_SDXL if family == "sdxl" else UNET_SD1).to_diffusers(path + ".weight")
        if diffusers is None:
            raise ConversionError(Msg("UNet module {path} has no diffusers name", path=path))
        d = diffusers[: -len(".weight")]
        return "lora_unet_" + d.replace(".", "_") if fmt == "kohya" else "unet." + d
    if fmt == "kohya":
        return "lora_unet_" + path.replace(".", "_")
    raise AssertionError("Flux to diffusers goes through _flux_to_diffusers")


# --- the plan step -------------------------------------------------------------------------------

ROLE_NAMES = {
    "kohya": {"up": ".lora_up.weight", "down": ".lora_down.weight"},
    "comfy": {"up": ".lora_up.weight", "down": ".lora_down.weight"},
    "diffusers": {"up": ".lora_B.weight", "down": ".lora_A.weight"},
}


def _rows(index: int, sizes: list[int]) -> Callable[[np.ndarray], np.ndarray]:
    start = sum(sizes[:index])
    stop = start + sizes[index]
    return lambda a: np.ascontiguousarray(a[start:stop])


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
    by_name = {s.name: s for s in plan.steps}
    alphas = _alphas_in(src, keys.targets)
    steps: list[Step] = []
    extra: dict[str, np.ndarray] = {}
    pattern: dict[str, dict[str, dict[str, float]]] = {}
    fused: dict[tuple[str, str], list[tuple[int, str, Target]]] = {}
    for stem, t in keys.targets.items():
        module = canonical(stem, family)
        rank = src.tensors[t.tensors["down"]].shape[0]
        alpha = alphas.get(stem, float(rank))
        if module.rows is not None:
            fused.setdefault((module.component, module.path), []).append((module.rows[1], module.rows[0], t))
            continue
        if fmt == "diffusers" and family == "flux" and module.component == "diffusion":
            outs = _flux_to_diffusers(module.path)
            if len(outs) > 1:
                _split(plan, steps, extra, pattern, t, outs, src, alpha, rank)
                continue
            out_stem = "transformer." + outs[0][0]
        else:
            out_stem = stem_for(module, fmt, family)
        for role in ("down", "up"):
            s = by_name[t.tensors[role]]
            s.out = out_stem + ROLE_NAMES[fmt][role]
            steps.append(s)
        _alpha_out(fmt, out_stem, alpha, rank, extra, pattern, steps, src)
    for (component, path), parts in fused.items():
        _join(plan, steps, extra, pattern, fmt, family, component, path, parts, src, alphas)
    plan.steps = steps
    if extra:
        plan.sources[ALPHA_SOURCE] = DictSource(extra, "<alpha>")
        for name, arr in extra.items():
            dtype = "F32" if arr.dtype == np.float32 else "F16"
            steps.append(Step(name, ALPHA_SOURCE, name, dtype, tuple(arr.shape), dtype, "lora", pinned=True))
    plan.notes.append(
        Msg(
            "LoRA names: {n} targets written in {format} naming for {family}",
            n=len(keys.targets),
            format=fmt,
            family=family,
        )
    )
    plan.tag(fmt)
    return {METADATA_KEY: _peft_metadata(pattern) if pattern else None}


def _alphas_in(src: TensorSource, targets: dict[str, Target]) -> dict[str, float]:
    out: dict[str, float] = {}
    for stem, t in targets.items():
        name = t.tensors.get("alpha")
        if name is not None:
            out[stem] = float(np.asarray(src.read(name), dtype=np.float64).reshape(-1)[0])
    meta = src.metadata.get(METADATA_KEY)
    if meta:
        out |= _alphas_from_peft_metadata(meta, targets)
    return out


def _alphas_from_peft_metadata(raw: str, targets: dict[str, Target]) -> dict[str, float]:
    """Per-target alpha from diffusers' ``lora_adapter_metadata`` (``<component>.alpha_pattern``
    keyed by module path, ``<component>.lora_alpha`` for the rest)."""
    try:
        meta = json.loads(raw)
    except ValueError:
        raise ConversionError(Msg("{metadata_key} metadata is not JSON", metadata_key=METADATA_KEY)) from None
    out: dict[str, float] = {}
    for stem in targets:
        component, _dot, path = stem.partition(".")
        pattern = meta.get(f"{component}.alpha_pattern") or {}
        if path in pattern:
            out[stem] = float(pattern[path])
        elif f"{component}.lora_alpha" in meta:
            out[stem] = float(meta[f"{component}.lora_alpha"])
    return out


def _alpha_out(
    fmt: str,
    out_stem: str,
    alpha: float,
    rank: int,
    extra: dict[str, np.ndarray],
    pattern: dict[str, dict[str, dict[str, float]]],
    steps: list[Step],
    src: TensorSource,
) -> None:
    if fmt == "diffusers":
        component, _dot, path = out_stem.partition(".")
        p = pattern.setdefault(component, {"rank": {}, "alpha": {}})
        p["rank"][path] = rank
        p["alpha"][path] = alpha
        return
    extra[out_stem + ".alpha"] = np.array(alpha, dtype=np.float32)


def _peft_metadata(pattern: dict[str, dict[str, dict[str, float]]]) -> str:
    """diffusers' ``lora_adapter_metadata``: per component a LoraConfig whose rank_pattern and
    alpha_pattern name every module (full paths)."""
    meta: dict[str, object] = {}
    for component, p in sorted(pattern.items()):
        ranks, alphas = p["rank"], p["alpha"]
        first = next(iter(ranks))
        meta[f"{component}.r"] = int(ranks[first])
        meta[f"{component}.lora_alpha"] = alphas[first]
        meta[f"{component}.rank_pattern"] = {k: int(v) for k, v in ranks.items()}
        meta[f"{component}.alpha_pattern"] = dict(alphas)
        meta[f"{component}.target_modules"] = sorted(ranks)
    return json.dumps(meta, sort_keys=True)


def _split(plan: Any, steps: Any, extra: Any, pattern: Any, t: Any, outs: Any, src: Any, alpha: Any, rank: Any) -> None:
    """A fused BFL target (qkv, linear1) as diffusers' separate modules: same down, rows of up."""
    up = src.tensors[t.tensors["up"]]
    hidden = src.tensors[t.tensors["down"]].shape[1]
    sizes = [hidden] * 3 + ([up.shape[0] - 3 * hidden] if len(outs) == 4 else [])
    if sum(sizes) != up.shape[0] or min(sizes) <= 0:
        raise ConversionError(
            Msg(
                "{stem}: {shape} output rows cannot be split into {outs_count} parts",
                stem=t.stem,
                shape=up.shape[0],
                outs_count=len(outs),
            )
        )
    down_step = next(s for s in plan.steps if s.name == t.tensors["down"])
    up_step = next(s for s in plan.steps if s.name == t.tensors["up"])
    for i, (module, _part) in enumerate(outs):
        stem = "transformer." + module
        d = Step(
            stem + ".lora_A.weight", MAIN, down_step.name, down_step.dtype, down_step.shape, down_step.out_dtype, "lora"
        )
        u = Step(
            stem + ".lora_B.weight",
            MAIN,
            up_step.name,
            up_step.dtype,
            (sizes[i], *up_step.shape[1:]),
            up_step.out_dtype,
            "lora",
            fix=_rows(i, sizes),
        )
        steps.extend((d, u))
        _alpha_out("diffusers", stem, alpha, rank, extra, pattern, steps, src)


def _join(
    plan: Any,
    steps: Any,
    extra: Any,
    pattern: Any,
    fmt: Any,
    family: Any,
    component: Any,
    path: Any,
    parts: Any,
    src: Any,
    alphas: Any,
) -> None:
    """diffusers' to_q/to_k/to_v (+ proj_mlp) of one Flux block back into the fused BFL target:
    only when they share one ``down`` (as a split by us or by diffusers' own converter leaves them)."""
    parts.sort(key=lambda p: p[0])
    names = [p[1] for p in parts]
    want = ["q", "k", "v"] + (["mlp"] if path.endswith("linear1") else [])
    stems = [p[2].stem for p in parts]
    downs = [src.read(p[2].tensors["down"]) for p in parts]
    same_down = all(np.array_equal(downs[0], d) for d in downs[1:])
    rank_alpha = {alphas.get(s) for s in stems}
    if names != want or not same_down or len(rank_alpha) != 1:
        raise ConversionError(
            Msg(
                "{stems}: {family} keeps {want} in one fused weight ({path}); these parts cannot be joined into one LoRA target (different or missing parts, downs or alphas)",
                stems=stems[0],
                family=family,
                want=", ".join(want),
                path=path,
            )
        )
    out_stem = stem_for(Module(component, path), fmt, family)
    first = next(s for s in plan.steps if s.name == parts[0][2].tensors["down"])
    first.out = out_stem + ROLE_NAMES[fmt]["down"]
    steps.append(first)
    ups = [next(s for s in plan.steps if s.name == p[2].tensors["up"]) for p in parts]
    rows = sum(u.shape[0] for u in ups)
    names_up = [u.name for u in ups]

    def joined(_a: np.ndarray, names: list[str] = names_up) -> np.ndarray:
        return np.concatenate([np.asarray(src.read(n)) for n in names], axis=0)

    steps.append(
        Step(
            out_stem + ROLE_NAMES[fmt]["up"],
            MAIN,
            ups[0].name,
            ups[0].dtype,
            (rows, *ups[0].shape[1:]),
            ups[0].out_dtype,
            "lora",
            fix=joined,
        )
    )
    rank = first.shape[0]
    alpha = alphas.get(stems[0], float(rank))
    _alpha_out(fmt, out_stem, alpha if alpha is not None else float(rank), rank, extra, pattern, steps, src)
