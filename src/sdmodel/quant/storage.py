"""What storage each weight of a file uses, read from names, dtypes, shapes and the small JSON
side tensors only (never the weights themselves).

Forms and where their layout is defined:

- GGUF block types (``Q8_0``, ``Q4_K``...): the GGML project (ggml-quants.c, gguf-py).
- ComfyUI legacy scaled fp8: a ``scaled_fp8`` marker (its dtype names the fp8 type), fp8 weights
  and an fp32 ``<layer>.scale_weight`` each (ComfyUI comfy/ops.py ``scaled_fp8_ops``).
- ComfyUI mixed precision: ``<layer>.comfy_quant`` (U8 bytes of a JSON object with ``format``) or
  ``__metadata__["_quantization_metadata"]``, side tensors ``weight_scale``, ``weight_scale_2``,
  ``input_scale`` (ComfyUI comfy/quant_ops.py ``QUANT_ALGOS``, comfy-kitchen layouts).
- musubi-tuner fp8: ``scale_weight`` without a marker, per tensor, per row ``[out, 1]`` or per
  block ``[out, blocks, 1]`` (musubi-tuner modules/fp8_optimization_utils.py).
- fp8 with a ``weight_scale`` and no ``comfy_quant`` (diffusers/ModelOpt-style spelling).
- bitsandbytes NF4/FP4 as Forge and diffusers save them: ``<w>.quant_state.bitsandbytes__nf4``
  JSON, ``<w>.absmax``, ``<w>.quant_map``, nested ``<w>.nested_absmax``/``nested_quant_map``
  (bitsandbytes ``QuantState.as_dict(packed=True)``).
- Nunchaku SVDQuant/AWQ: ``qweight``/``wscales`` (+ ``proj_down``/``proj_up`` low-rank branch):
  identified only; their kernels' packing is not dequantized here.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from sdmodel.dtypes import GGML_BLOCKS, PRECISION_NAMES, bits_per_weight
from sdmodel.errors import ModelReadError, error_message
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.i18n import N_, Bytes, Join, Msg

Scheme = Literal["gguf", "comfy_scaled_fp8", "comfy_quant", "musubi_fp8", "fp8_weight_scale", "bnb_4bit", "nunchaku"]
SCHEMES: tuple[str, ...] = Scheme.__args__  # type: ignore[attr-defined]

COMFY_FORMATS = ("float8_e4m3fn", "float8_e5m2", "mxfp8", "nvfp4", "int8_tensorwise")
_FP8_NAMES = {"F8_E4M3": "fp8 e4m3", "F8_E5M2": "fp8 e5m2"}
_COMFY_FP8 = {"float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "mxfp8": "F8_E4M3"}
_COMFY_SIDES = ("weight_scale", "weight_scale_2", "input_scale", "comfy_quant")
_BNB_SIDES = ("absmax", "quant_map", "nested_absmax", "nested_quant_map")
_NUNCHAKU_SIDES = (
    "qweight",
    "wscales",
    "wzeros",
    "smooth_factor",
    "smooth_factor_orig",
    "proj_down",
    "proj_up",
    "wtscale",
    "wcscales",
)
MAX_JSON = 1 << 20


@dataclass(frozen=True)
class QuantTensor:
    """One weight stored in a quantized form: ``name`` is the weight as the model names it,
    ``data`` the tensor holding its packed values, ``sides`` the scales and state it needs."""

    name: str
    scheme: Scheme
    format: str  # GGML type, comfy format, "nf4"/"fp4", fp8 dtype...
    shape: tuple[int, ...]
    data: str
    sides: tuple[str, ...] = ()
    params: tuple[tuple[str, object], ...] = ()
    unsupported: Msg | None = None  # why it cannot be dequantized, when it cannot

    def param(self, key: str, default: object = None) -> object:
        return dict(self.params).get(key, default)


@dataclass(frozen=True)
class Problem:
    """Something the reference loader would fail on or silently get wrong."""

    code: str
    name: str
    message: Msg


@dataclass
class QuantLayout:
    """Every quantized weight of a source, the tensors they consume and the problems found."""

    tensors: dict[str, QuantTensor] = field(default_factory=dict)
    consumed: set[str] = field(default_factory=set)  # side tensors and markers: not model weights
    markers: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def quantized(self) -> bool:
        return bool(self.tensors)

    def problem(self, code: str, name: str, message: Msg) -> None:
        self.problems.append(Problem(code, name, message))

    def unsupported(self) -> list[QuantTensor]:
        return [q for q in self.tensors.values() if q.unsupported]


def _read_json(source: TensorSource, name: str) -> object:
    """A U8 tensor holding JSON text (``comfy_quant``, bitsandbytes ``quant_state``)."""
    info = source.tensors[name]
    if info.dtype not in ("U8", "I8") or info.nbytes > MAX_JSON:
        raise ModelReadError(
            Msg(
                "{path}: {name} should hold JSON bytes (U8), has {dtype}{shape}",
                path=source.path,
                name=name,
                dtype=info.dtype,
                shape=list(info.shape),
            )
        )
    raw = source.read(name).tobytes()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelReadError(
            Msg("{path}: {name} is not valid JSON ({reason})", path=source.path, name=name, reason=error_message(e))
        ) from None


def _layer(name: str, suffix: str) -> str | None:
    return name[: -len(suffix)] if name.endswith(suffix) else None


def analyze(source: TensorSource) -> QuantLayout:
    """The storage of every quantized weight of ``source`` (empty layout for plain files).
    Raises ModelReadError for a JSON side tensor that is not JSON."""
    layout = QuantLayout()
    t = source.tensors
    if source.format == "gguf":
        for name, info in t.items():
            if info.dtype in GGML_BLOCKS:
                layout.tensors[name] = QuantTensor(name, "gguf", info.dtype, info.shape, name)
        return layout
    _comfy_quant(source, layout)
    _bnb(source, layout)
    _nunchaku(source, layout)
    _scaled_fp8(source, layout)
    return layout


def _comfy_quant(source: TensorSource, layout: QuantLayout) -> None:
    t = source.tensors
    configs: dict[str, tuple[object, str]] = {}
    for name in t:
        prefix = _layer(name, "comfy_quant")
        if prefix is not None and (prefix == "" or prefix.endswith(".")):
            configs[prefix] = (_read_json(source, name), name)
    meta = source.metadata.get("_quantization_metadata")
    if meta is not None:
        try:
            parsed = json.loads(meta)
        except json.JSONDecodeError as e:
            raise ModelReadError(
                Msg(
                    "{path}: __metadata__ _quantization_metadata is not valid JSON ({reason})",
                    path=source.path,
                    reason=error_message(e),
                )
            ) from None
        layers = parsed.get("layers") if isinstance(parsed, dict) else None
        if not isinstance(layers, dict):
            raise ModelReadError(Msg("{path}: _quantization_metadata has no 'layers' object", path=source.path))
        for layer, conf in layers.items():
            configs.setdefault(f"{layer}.", (conf, "__metadata__"))
    for prefix, (conf, where) in configs.items():
        weight = prefix + "weight"
        if where != "__metadata__":
            layout.consumed.add(where)
        if not isinstance(conf, dict) or "format" not in conf:
            layout.problem(
                "comfy-quant-no-format",
                where,
                Msg("{where}: comfy_quant has no 'format': ComfyUI cannot load {weight}", where=where, weight=weight),
            )
            continue
        fmt = conf["format"]
        sides = tuple(prefix + s for s in _COMFY_SIDES if prefix + s in t)
        layout.consumed.update(sides)
        if weight not in t:
            layout.problem(
                "quant-weight-missing",
                weight,
                Msg("{where} describes {weight}, which is not in the file", where=where, weight=weight),
            )
            continue
        info = t[weight]
        if fmt not in COMFY_FORMATS:
            layout.problem(
                "comfy-quant-unknown-format",
                weight,
                Msg("{weight}: comfy_quant format {fmt!r} is not one sdmodel reads", weight=weight, fmt=fmt),
            )
            layout.tensors[weight] = QuantTensor(
                weight,
                "comfy_quant",
                str(fmt),
                info.shape,
                weight,
                sides,
                unsupported=Msg("comfy_quant format {fmt!r}", fmt=fmt),
            )
            continue
        params: list[tuple[str, object]] = []
        unsupported: Msg | None = None
        if fmt == "int8_tensorwise" and conf.get("convrot"):
            unsupported = Msg("int8 with ConvRot (Hadamard-rotated) weights: needs comfy-kitchen's rotation")
        shape, why = _comfy_shape(source, weight, fmt, conf.get("orig_shape"))
        if shape != _stored_shape(fmt, info.shape):
            params.append(("orig_shape", shape))
        qt = QuantTensor(weight, "comfy_quant", fmt, shape, weight, sides, tuple(params), unsupported or why)
        layout.tensors[weight] = qt
        fatal = _check_comfy(source, layout, qt, info)
        if fatal and not qt.unsupported:
            layout.tensors[weight] = replace(qt, unsupported=fatal)


# comfy-kitchen pads nvfp4 weights to multiples of 16 and mxfp8 ones to multiples of 32 in both
# dimensions (TensorCoreNVFP4Layout / TensorCoreMXFP8Layout.get_padded_shape) and crops back to
# the layer's shape when dequantizing (QuantizedTensor.dequantize). ComfyUI takes that shape from
# the model (comfy/ops.py: its Linear's (out_features, in_features)), not from the file. A file
# that records it as "orig_shape" in the comfy_quant JSON is cropped to it; without one, a padded
# weight has no known shape.
_BLOCK = {"nvfp4": 16, "mxfp8": 32}  # values per block scale, and the multiple each side is padded to


def _stored_shape(fmt: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The element shape the stored data holds (nvfp4 packs two values a byte), padding included."""
    return (*shape[:-1], shape[-1] * 2) if fmt == "nvfp4" and shape else shape


def _comfy_shape(source: TensorSource, weight: str, fmt: str, orig: object) -> tuple[tuple[int, ...], Msg | None]:
    """The model shape of a comfy_quant weight and, when it cannot be known or does not fit the
    stored data, why it cannot be dequantized. Not a loading problem: ComfyUI ignores orig_shape
    and takes the shape from the model."""
    info = source.tensors[weight]
    stored = _stored_shape(fmt, info.shape)
    if isinstance(orig, list) and orig and all(type(d) is int and d > 0 for d in orig):
        shape = tuple(orig)
        fits = (
            len(shape) == len(stored) == 2 and all(o <= s for o, s in zip(shape, stored, strict=True))
            if fmt in _BLOCK
            else math.prod(shape) == math.prod(stored)
        )
        if fits:
            return shape, None
        return (
            stored,
            Msg(
                "a comfy_quant orig_shape {shape}, which does not fit the stored {fmt} weight {stored}",
                shape=list(shape),
                fmt=fmt,
                stored=list(stored),
            ),
        )
    if fmt not in _BLOCK or len(stored) != 2:
        return stored, None
    bias = source.tensors.get(weight[: -len("weight")] + "bias")
    if bias is not None and len(bias.shape) == 1 and bias.shape[0] != stored[0]:
        # The bias keeps the layer's real row count: the weight was padded, and its columns may
        # have been too. Cropping to a guess would write a wrong model.
        return stored, (
            Msg(
                "a weight stored padded to {stored} ({name} has {rows} rows) whose comfy_quant records no orig_shape: its real shape is unknown",
                stored=list(stored),
                name=bias.name,
                rows=bias.shape[0],
            )
        )
    return stored, None


def _check_comfy(source: TensorSource, layout: QuantLayout, qt: QuantTensor, info: TensorInfo) -> Msg | None:
    """Name what ComfyUI would fail on; return why sdmodel cannot dequantize it, when it cannot."""
    t = source.tensors
    prefix = qt.name[: -len("weight")]
    want = {
        "float8_e4m3fn": "F8_E4M3",
        "float8_e5m2": "F8_E5M2",
        "mxfp8": "F8_E4M3",
        "nvfp4": "U8",
        "int8_tensorwise": "I8",
    }
    fatal: Msg | None = None
    if info.dtype != want[qt.format]:
        fatal = Msg("{format} stored as {dtype}", format=qt.format, dtype=info.dtype)
        layout.problem(
            "quant-dtype",
            qt.name,
            Msg(
                "{name}: {format} weights must be {want}, not {dtype}",
                name=qt.name,
                format=qt.format,
                want=want[qt.format],
                dtype=info.dtype,
            ),
        )
    scale = prefix + "weight_scale"
    if scale not in t:
        layout.problem(
            "scale-missing",
            qt.name,
            Msg(
                "{name}: {format} layer has no {scale}: ComfyUI cannot load it",
                name=qt.name,
                format=qt.format,
                scale=scale,
            ),
        )
        return fatal if qt.format in _BLOCK else None
    s = t[scale]
    if qt.format in ("float8_e4m3fn", "float8_e5m2", "int8_tensorwise") and s.dtype != "F32":
        layout.problem(
            "scale-dtype",
            scale,
            Msg("{scale} is {dtype}: ComfyUI's fp8/int8 matmul needs an fp32 scale", scale=scale, dtype=s.dtype),
        )
    if qt.format not in _BLOCK:
        return None
    block = _BLOCK[qt.format]
    stored = _stored_shape(qt.format, info.shape)
    if len(stored) != 2 or stored[1] % block:
        layout.problem(
            "packed-shape",
            qt.name,
            Msg(
                "{name}: {format} data must be 2-D with rows of whole blocks of {block}, is {shape}",
                name=qt.name,
                format=qt.format,
                block=block,
                shape=list(info.shape),
            ),
        )
        return Msg("{format} data of shape {shape}", format=qt.format, shape=list(info.shape))
    need = _blocked(stored[0], stored[1] // block)
    kind = "E8M0" if qt.format == "mxfp8" else "fp8"
    if s.dtype not in (("F8_E8M0", "U8") if qt.format == "mxfp8" else ("F8_E4M3", "U8")) or s.numel != need:
        fatal = Msg(
            "{format} with {dtype}{shape} block scales ({need} {kind} needed)",
            format=qt.format,
            dtype=s.dtype,
            shape=list(s.shape),
            need=need,
            kind=kind,
        )
        layout.problem(
            "packed-shape",
            scale,
            Msg(
                "{scale}: {format} needs {need} {kind} block scales, has {dtype}{shape}",
                scale=scale,
                format=qt.format,
                need=need,
                kind=kind,
                dtype=s.dtype,
                shape=list(s.shape),
            ),
        )
    if qt.format == "nvfp4":
        s2 = prefix + "weight_scale_2"
        if s2 not in t:
            layout.problem("scale-missing", qt.name, Msg("{name}: nvfp4 layer has no {s2}", name=qt.name, s2=s2))
        elif t[s2].numel != 1 or t[s2].dtype != "F32":
            fatal = Msg("nvfp4 with a {dtype}{shape} weight_scale_2", dtype=t[s2].dtype, shape=list(t[s2].shape))
            layout.problem(
                "scale-dtype",
                s2,
                Msg(
                    "{s2} must be one fp32 value, is {dtype}{shape}", s2=s2, dtype=t[s2].dtype, shape=list(t[s2].shape)
                ),
            )
    return fatal


def _blocked(rows: int, cols: int) -> int:
    """Size of a block-scale matrix in cuBLAS's tiled layout (rows to 128, columns to 4)."""
    return -(-rows // 128) * 128 * (-(-cols // 4) * 4)


def _bnb(source: TensorSource, layout: QuantLayout) -> None:
    t = source.tensors
    for name in list(t):
        for kind in ("nf4", "fp4"):
            weight = _layer(name, f".quant_state.bitsandbytes__{kind}")
            if weight is None:
                continue
            parsed = _read_json(source, name)
            state: dict = parsed if isinstance(parsed, dict) else {}
            sides = (name, *(f"{weight}.{s}" for s in _BNB_SIDES if f"{weight}.{s}" in t))
            layout.consumed.update(sides)
            if weight not in t:
                layout.problem(
                    "quant-weight-missing",
                    weight,
                    Msg("{name} describes {weight}, which is not in the file", name=name, weight=weight),
                )
                continue
            shape, block = state.get("shape"), state.get("blocksize")
            if not (
                isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape) and isinstance(block, int)
            ):
                layout.problem(
                    "quant-state", name, Msg("{name}: quant_state lacks a valid shape and blocksize", name=name)
                )
                continue
            params = [("blocksize", block), ("dtype", str(state.get("dtype", "float32")))]
            if f"{weight}.nested_absmax" in t:
                if not isinstance(state.get("nested_blocksize"), int):
                    layout.problem(
                        "quant-state", name, Msg("{name}: nested absmax without a nested_blocksize", name=name)
                    )
                    continue
                params += [
                    ("nested_blocksize", state.get("nested_blocksize")),
                    ("nested_offset", state.get("nested_offset")),
                ]
            qt = QuantTensor(weight, "bnb_4bit", kind, tuple(shape), weight, sides, tuple(params))
            layout.tensors[weight] = qt
            numel = math.prod(shape)
            if t[weight].nbytes * 2 != numel + numel % 2:
                layout.problem(
                    "packed-shape",
                    weight,
                    Msg(
                        "{weight}: {nbytes} do not hold {shape} 4-bit values",
                        weight=weight,
                        nbytes=Bytes(t[weight].nbytes),
                        shape=list(shape),
                    ),
                )
            for side in ("absmax", "quant_map"):
                if f"{weight}.{side}" not in t:
                    layout.problem(
                        "scale-missing",
                        weight,
                        Msg(
                            "{weight}: bitsandbytes {kind} weight has no {weight}.{side}",
                            weight=weight,
                            kind=kind,
                            side=side,
                        ),
                    )
            absmax = t.get(f"{weight}.absmax")
            if absmax is not None and block > 0 and absmax.numel != -(-numel // block):
                layout.problem(
                    "packed-shape",
                    absmax.name,
                    Msg(
                        "{name}: {numel} values for {value} blocks",
                        name=absmax.name,
                        numel=absmax.numel,
                        value=-(-numel // block),
                    ),
                )


def _nunchaku(source: TensorSource, layout: QuantLayout) -> None:
    t = source.tensors
    for name in t:
        prefix = _layer(name, ".qweight")
        if prefix is None or f"{prefix}.wscales" not in t:
            continue
        lowrank = f"{prefix}.proj_down" in t or any(k.startswith(f"{prefix}.") and "lora_down" in k for k in t)
        kind = "SVDQuant" if lowrank else "AWQ"
        sides = tuple(f"{prefix}.{s}" for s in _NUNCHAKU_SIDES if f"{prefix}.{s}" in t)
        layout.consumed.update(sides)
        layout.tensors[f"{prefix}.weight"] = QuantTensor(
            f"{prefix}.weight",
            "nunchaku",
            kind,
            t[name].shape,
            name,
            sides,
            unsupported=Msg("Nunchaku {kind} (4-bit, kernel-packed): load it with ComfyUI-nunchaku", kind=kind),
        )


def _scaled_fp8(source: TensorSource, layout: QuantLayout) -> None:
    t = source.tensors
    markers = [n for n in t if n == "scaled_fp8" or n.endswith(".scaled_fp8")]
    layout.markers.extend(markers)
    layout.consumed.update(markers)
    comfy = bool(markers)
    for name, info in t.items():
        for suffix, scheme in (
            ("scale_weight", "comfy_scaled_fp8" if comfy else "musubi_fp8"),
            ("weight_scale", "fp8_weight_scale"),
        ):
            prefix = _layer(name, suffix)
            if prefix is None or (prefix and not prefix.endswith(".")):
                continue
            weight = prefix + "weight"
            if weight in layout.tensors or weight not in t:
                continue
            w = t[weight]
            if w.dtype not in _FP8_NAMES and not (scheme == "fp8_weight_scale" and w.dtype == "I8"):
                continue
            sides = tuple(prefix + s for s in (suffix, "scale_input", "input_scale") if prefix + s in t)
            layout.consumed.update(sides)
            fmt = w.dtype
            params: tuple[tuple[str, object], ...] = ()
            if info.numel != 1:
                if info.shape == (w.shape[0], 1) or info.shape == (w.shape[0],):
                    params = (("granularity", "row"),)
                elif len(info.shape) == 3 and info.shape[0] == w.shape[0] and info.shape[2] == 1 and len(w.shape) == 2:
                    blocks = info.shape[1]
                    if blocks == 0 or w.shape[1] % blocks:
                        layout.problem(
                            "scale-shape",
                            name,
                            Msg(
                                "{name}: {blocks} blocks do not divide a row of {width}",
                                name=name,
                                blocks=blocks,
                                width=w.shape[1],
                            ),
                        )
                        continue
                    params = (("granularity", "block"), ("block", w.shape[1] // blocks))
                else:
                    layout.problem(
                        "scale-shape",
                        name,
                        Msg(
                            "{name} {shape} does not fit weight {shape2}",
                            name=name,
                            shape=list(info.shape),
                            shape2=list(w.shape),
                        ),
                    )
                    continue
            layout.tensors[weight] = QuantTensor(weight, scheme, fmt, w.shape, weight, sides, params)  # type: ignore[arg-type]
    if comfy:
        marker_dtype = t[markers[0]].dtype
        for name, info in t.items():
            if (
                info.dtype in _FP8_NAMES
                and name not in layout.tensors
                and name.endswith(".weight")
                and len(info.shape) >= 2
            ):
                # ComfyUI gives such a layer a scale of 1 (comfy/ops.py scaled_fp8_op); say so.
                layout.problem(
                    "scale-missing",
                    name,
                    Msg("{name} is fp8 without a scale_weight: ComfyUI uses a scale of 1", name=name),
                )
                layout.tensors[name] = QuantTensor(name, "comfy_scaled_fp8", info.dtype, info.shape, name)
        if marker_dtype not in _FP8_NAMES:
            layout.problem(
                "marker-dtype",
                markers[0],
                Msg(
                    "{marker} is {marker_dtype}: its dtype should name the fp8 type",
                    marker=markers[0],
                    marker_dtype=marker_dtype,
                ),
            )


# --- describing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    """How a set of tensors (a part of a model) is stored, for ``info``."""

    label: str
    bits_per_weight: float | None
    scheme: str  # "plain" or one of SCHEMES
    counts: dict[str, int]  # storage kind -> tensors
    short: str = ""  # the main form in one word (``Q4_K``, ``fp8_scaled``, ``nf4``); "" when plain
    text: str | Msg = ""  # ``label`` in the user's language where shown

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "bits_per_weight": None if self.bits_per_weight is None else round(self.bits_per_weight, 2),
            "scheme": self.scheme,
            "counts": dict(self.counts),
            "short": self.short,
        }


def _fp8_label(qt: QuantTensor) -> Msg:
    gran = qt.param("granularity")
    fp8 = _FP8_NAMES.get(qt.format, qt.format)
    if qt.scheme == "comfy_scaled_fp8":
        return Msg("{fp8}, per-tensor scale (ComfyUI scaled)", fp8=fp8)
    if qt.scheme == "musubi_fp8":
        if gran == "row":
            return Msg("{fp8}, per-row scale (musubi-tuner)", fp8=fp8)
        if gran == "block":
            return Msg("{fp8}, block scale ({block}) (musubi-tuner)", fp8=fp8, block=qt.param("block"))
        return Msg("{fp8}, per-tensor scale (musubi-tuner)", fp8=fp8)
    if qt.format == "I8":
        return Msg("int8, per-tensor scale")
    return Msg("{fp8}, per-tensor weight_scale", fp8=fp8)


def short_name(qt: QuantTensor) -> str:
    """The form in one word, as the library's precision column shows it (``Q4_K``, ``fp8_scaled``)."""
    if qt.scheme == "gguf":
        return qt.format
    if qt.scheme == "bnb_4bit":
        return qt.format
    if qt.scheme == "nunchaku":
        return f"{qt.format.lower()}_int4"
    if qt.scheme == "comfy_quant" and qt.format in ("nvfp4", "mxfp8"):
        return qt.format
    if qt.format in ("I8", "int8_tensorwise"):
        return "int8_scaled"
    return "fp8_e5m2_scaled" if qt.format in ("F8_E5M2", "float8_e5m2") else "fp8_scaled"


def label_of(qt: QuantTensor) -> str:
    """One weight's storage in words (English: --json, the catalog, the dry-run table)."""
    return str(storage_words(qt))


_COMFY_QUANT_WORDS = {
    "float8_e4m3fn": N_("fp8 e4m3, per-tensor scale (ComfyUI mixed precision)"),
    "float8_e5m2": N_("fp8 e5m2, per-tensor scale (ComfyUI mixed precision)"),
    "mxfp8": N_("MXFP8 (fp8 e4m3, E8M0 scale per 32; ComfyUI)"),
    "nvfp4": N_("NVFP4 (fp4 e2m1, fp8 scale per 16; ComfyUI)"),
    "int8_tensorwise": N_("int8, tensor-wise scale (ComfyUI)"),
}


def storage_words(qt: QuantTensor) -> Msg:
    """One weight's storage in words, translated where shown."""
    if qt.scheme == "gguf":
        return Msg("GGUF {format}", format=qt.format)
    if qt.scheme in ("comfy_scaled_fp8", "musubi_fp8", "fp8_weight_scale"):
        return _fp8_label(qt)
    if qt.scheme == "comfy_quant":
        words = _COMFY_QUANT_WORDS.get(qt.format)
        return Msg(words) if words else Msg("comfy_quant {format}", format=qt.format)
    if qt.scheme == "bnb_4bit":
        return Msg("{format} (bitsandbytes, block {block})", format=qt.format.upper(), block=qt.param("blocksize"))
    return Msg("Nunchaku {format} (int4)", format=qt.format)


def describe(source: TensorSource, layout: QuantLayout, names: Iterable[str]) -> Storage:
    """The storage of the tensors ``names`` (one part): the main form, the mix and the effective
    bits per weight (every stored byte of the part, scales included, over its weights' elements)."""
    t = source.tensors
    names = [n for n in names if n in t]
    counts: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    stored = 0
    elements = 0
    quant_elems: Counter[str] = Counter()
    words: dict[str, Msg] = {}  # English label -> the words to show
    by_data = {q.data: q for q in layout.tensors.values()}
    for n in names:
        stored += t[n].nbytes
        qt = by_data.get(n)
        if qt is None and n in layout.consumed:
            continue
        if qt is not None:
            label = label_of(qt)
            words[label] = storage_words(qt)
            counts[qt.format if qt.scheme == "gguf" else label] += 1
            labels[label] += math.prod(qt.shape)
            quant_elems[qt.format] += math.prod(qt.shape)
            elements += math.prod(qt.shape)
        else:
            counts[t[n].dtype] += 1
            elements += t[n].numel
    bpw = 8.0 * stored / elements if elements else None
    if not labels:
        plain = Counter({d: t[n].numel for n in names if (d := t[n].dtype)})
        if not plain:
            return Storage("empty", None, "plain", {})
        main = plain.most_common(1)[0][0]
        text: str | Msg = PRECISION_NAMES.get(main, main)
        if len(plain) > 1:
            text = _mixed(text, [(counts[d], d) for d in sorted(counts, key=lambda k: -counts[k])])
        return Storage(str(text), bits_per_weight(main) if len(plain) == 1 else bpw, "plain", dict(counts), text=text)
    main = labels.most_common(1)[0][0]
    main_qt = next(q for q in layout.tensors.values() if label_of(q) == main)
    scheme = main_qt.scheme
    short = short_name(main_qt)
    if scheme == "gguf":
        main_type = quant_elems.most_common(1)[0][0]
        text, short = f"GGUF {main_type}", main_type
        if len(counts) > 1:
            text = _mixed(text, [(c, k) for k, c in counts.most_common()])
    else:
        text = words[main]
        if len(labels) > 1:
            text = _mixed(text, [(counts[k], words[k]) for k, _ in labels.most_common()])
    label = str(text)
    return Storage(label, bpw, scheme, dict(counts), short, text)


def _mixed(main: str | Msg, parts: list[tuple[int, str | Msg]]) -> Msg:
    """``main (mix: 312 Q4_K, 96 Q6_K...)``."""
    return Msg("{main} (mix: {parts})", main=main, parts=Join(tuple(Msg("{n} {what}", n=n, what=w) for n, w in parts)))
