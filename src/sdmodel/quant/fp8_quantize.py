"""Scaled fp8 as ComfyUI loads it: one float32 scale per weight, chosen as ComfyUI's own quantizer does.

ComfyUI's ``TensorCoreFP8Layout.quantize`` (comfy/quant_ops.py) takes ``scale = amax(|w|) / fp8_max``
in float32 (for an fp16 weight, ``1/scale`` is first clamped to fp16's range), multiplies the weight
by ``(1/scale)`` cast to the weight's own dtype, clamps to ``±fp8_max`` and rounds to fp8 (nearest
even). Its loader reads the result back as ``fp8 * scale``.

Two file forms:

* current (``comfy_quant``): per quantized layer ``<layer>.weight`` (fp8), ``<layer>.weight_scale``
  (float32 scalar) and ``<layer>.comfy_quant`` (uint8 bytes of the JSON ``{"format": ...}``, as
  ComfyUI's ``state_dict`` writes it); other layers load in the compute dtype unchanged, so the
  family's sensitive layers (embeddings, modulation, input/output layers) stay as they are.
* legacy (``--legacy-scaled-fp8``): a ``scaled_fp8`` marker tensor (empty, of the fp8 dtype) and
  ``<layer>.scale_weight`` per layer, as older ComfyUI builds and Forge read. Their loader builds
  *every* Linear layer in fp8, so every 2-D ``.weight`` is quantized in that form (a layer left in
  bf16 would be rounded to fp8 unscaled at load).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from sdmodel.dtypes import NUMPY_DTYPES
from sdmodel.errors import ConversionError
from sdmodel.formats.base import TensorInfo, TensorSource
from sdmodel.i18n import Msg

Fp8Format = Literal["fp8_e4m3fn_scaled", "fp8_e5m2_scaled"]
FP8_FORMATS: tuple[Fp8Format, ...] = get_args(Fp8Format)

# our name -> (safetensors dtype, ComfyUI QUANT_ALGOS format, largest finite value)
_FORMATS: dict[Fp8Format, tuple[str, str, float]] = {
    "fp8_e4m3fn_scaled": ("F8_E4M3", "float8_e4m3fn", 448.0),
    "fp8_e5m2_scaled": ("F8_E5M2", "float8_e5m2", 57344.0),
}
_FP16_MAX = np.float32(65504.0)


def storage_dtype(fmt: Fp8Format) -> str:
    return _FORMATS[fmt][0]


def comfy_quant(fmt: Fp8Format) -> np.ndarray:
    """The per-layer ``comfy_quant`` tensor: ``json.dumps({"format": ...})`` as uint8 bytes."""
    return np.frombuffer(json.dumps({"format": _FORMATS[fmt][1]}).encode("utf-8"), dtype=np.uint8).copy()


def legacy_marker(fmt: Fp8Format) -> np.ndarray:
    """The ``scaled_fp8`` marker of the legacy form: an empty tensor whose dtype names the fp8 type."""
    return np.zeros((0,), dtype=NUMPY_DTYPES[storage_dtype(fmt)])


_CHUNK = 1 << 20  # values converted to float32 at a time: memory stays a few MB above the tensor


def _chunks(weight: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    flat = weight.reshape(-1)
    for lo in range(0, flat.size, _CHUNK):
        yield lo, np.asarray(flat[lo : lo + _CHUNK], dtype=np.float32)


def scale_of(weight: np.ndarray, fmt: Fp8Format) -> np.float32:
    """The float32 dequantization scale ComfyUI chooses for ``weight`` (1.0 for an all-zero weight,
    where ComfyUI's formula would divide by zero)."""
    fp8_max = np.float32(_FORMATS[fmt][2])
    amax = np.float32(0)
    for _, chunk in _chunks(weight):
        if not np.isfinite(chunk).all():
            raise ConversionError(Msg("fp8: the weight holds NaN or infinity"))
        amax = max(amax, np.float32(np.max(np.abs(chunk))))
    if amax == 0:
        return np.float32(1)
    scale = amax / fp8_max
    if weight.dtype == np.float16:  # ComfyUI: keep 1/scale inside fp16's range
        scale = np.float32(1) / np.clip(np.float32(1) / scale, -_FP16_MAX, _FP16_MAX)
    return np.float32(scale)


def quantize_fp8(weight: np.ndarray, fmt: Fp8Format) -> tuple[np.ndarray, np.float32]:
    """(fp8 values, float32 scale) for a float weight (F32, F16 or BF16), as ComfyUI computes them."""
    scale = scale_of(weight, fmt)
    fp8_max = np.float32(_FORMATS[fmt][2])
    inverse = np.float32(np.asarray(np.float32(1) / scale, dtype=weight.dtype))  # in the weight's dtype
    out = np.empty(weight.shape, dtype=NUMPY_DTYPES[storage_dtype(fmt)])
    flat = out.reshape(-1)
    for lo, chunk in _chunks(weight):
        # the product of two values of the weight's dtype is exact in float32: one rounding, as torch
        chunk = (chunk * inverse).astype(weight.dtype).astype(np.float32)  # never in place: may view the source
        np.clip(chunk, -fp8_max, fp8_max, out=chunk)
        flat[lo : lo + chunk.size] = chunk
    return out, scale


class ScaleSource(TensorSource):
    """The float32 scales of the weights being quantized, each computed from its weight's values
    when read (``scales``: scale tensor name -> how to get the weight's values; ``fmt`` per call:
    the scale depends on the fp8 format)."""

    format = "fp8-scales"

    def __init__(self, main: TensorSource, scales: Mapping[str, Callable[[], np.ndarray]], fmt: Fp8Format) -> None:
        super().__init__(main.path)
        self.weights, self.fmt = dict(scales), fmt
        self._tensors = {n: TensorInfo(n, "F32", ()) for n in self.weights}

    def read(self, name: str) -> np.ndarray:
        return np.asarray(scale_of(self.weights[name](), self.fmt), dtype=np.float32).reshape(())


KEPT_BY_FAMILY = Msg("kept in full precision (family list)")


@dataclass(frozen=True)
class Fp8Choice:
    """What one source tensor becomes: quantized (with its scale tensor) or kept as it is."""

    name: str
    quantized: bool
    reason: Msg | None  # why it is kept (the dry-run table)


def choose_fp8(
    names: Mapping[str, tuple[tuple[int, ...], str]], keep_containing: tuple[str, ...], legacy: bool
) -> list[Fp8Choice]:
    """Per tensor (name -> (shape, dtype)): quantize the 2-D ``.weight`` of Linear layers, except
    (current form) those whose name contains a family keep pattern."""
    out = []
    for name, (shape, dtype) in names.items():
        if dtype not in ("F32", "F16", "BF16"):
            out.append(Fp8Choice(name, False, Msg("{dtype}: kept", dtype=dtype)))
        elif not name.endswith(".weight") or len(shape) != 2:
            out.append(Fp8Choice(name, False, Msg("not a Linear weight: kept")))
        elif not legacy and any(k in name for k in keep_containing):
            out.append(Fp8Choice(name, False, KEPT_BY_FAMILY))
        else:
            out.append(Fp8Choice(name, True, None))
    return out
