"""A precision sketch: tells "the same model in another precision" (bf16, fp8-scaled, Q8_0...)
from "another model with the same architecture" (two fine-tunes of one base).

An exact hash cannot survive fp8 or 8-bit block rounding, so the sketch keeps sampled values
with the rounding bound of the storage they came from: element i of copy A lies within ``hA[i]``
of the original weight, so two copies of one model satisfy ``|a - b| <= hA + hB`` at every sampled
element. Rounding to nearest is what every converter does; a fine-tune moves enough weights across
a rounding boundary that some of 4,096 samples break the bound. Copies made with stochastic
rounding can break it too (they are then not grouped: a missed duplicate, never a false one).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import blake3
import numpy as np

from sdmodel.dtypes import GGML_BLOCKS
from sdmodel.formats.base import TensorSource
from sdmodel.quant.dequant import dequantize
from sdmodel.quant.storage import QuantLayout, QuantTensor, analyze

TENSORS = 8
PER_TENSOR = 512
STRIP = ("model.diffusion_model.",)
SLACK = 1.01  # the dequantized values are themselves rounded once (fp32)

# Largest code magnitude of a GGML block type: half a step is at most block max / (2 * levels).
_GGML_LEVELS = {"Q8_0": 127, "Q8_1": 127, "Q6_K": 31, "Q5_0": 15, "Q5_1": 15, "Q5_K": 15, "Q4_0": 7, "Q4_1": 7}
_GGML_LEVELS |= {"Q4_K": 7, "IQ4_NL": 7, "IQ4_XS": 7, "Q3_K": 3, "Q2_K": 1}
_MANTISSA = {"F32": 23, "F16": 10, "BF16": 7, "F8_E4M3": 3, "F8_E5M2": 2}


@dataclass(frozen=True)
class Sketch:
    """``key`` is shared by every file with the same sampled names and shapes; ``values`` and
    ``bounds`` are the sampled values and their rounding bounds, in sampling order."""

    key: str
    values: np.ndarray
    bounds: np.ndarray

    def encode(self) -> str:
        raw = self.values.astype("<f4").tobytes() + self.bounds.astype("<f4").tobytes()
        return self.key + ":" + base64.b64encode(raw).decode()

    @classmethod
    def decode(cls, text: str) -> Sketch:
        key, _, b64 = text.partition(":")
        raw = np.frombuffer(base64.b64decode(b64), dtype="<f4")
        half = raw.size // 2
        return cls(key, raw[:half].astype(np.float32), raw[half:].astype(np.float32))

    def same_model(self, other: Sketch) -> bool:
        if self.key != other.key or self.values.shape != other.values.shape:
            return False
        diff = np.abs(self.values.astype(np.float64) - other.values.astype(np.float64))
        bound = (self.bounds.astype(np.float64) + other.bounds.astype(np.float64)) * SLACK + 1e-30
        return bool(np.all(diff <= bound))


def _short(name: str) -> str:
    for p in STRIP:
        if name.startswith(p):
            return name[len(p) :]
    return name


def _ulp_half(values: np.ndarray, mantissa: int, min_exp: int = -126) -> np.ndarray:
    """Half a unit in the last place of each value in a float format with ``mantissa`` bits."""
    v = np.abs(values.astype(np.float64))
    e = np.floor(np.log2(np.where(v > 0, v, 1.0)))
    e = np.maximum(e, min_exp)
    return np.ldexp(0.5, (e - mantissa).astype(np.int64))


def _bounds(source: TensorSource, name: str, qt: QuantTensor | None, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    flat = values.reshape(-1)
    picked = flat[idx].astype(np.float64)
    if qt is None:
        dtype = source.tensors[name].dtype
        if dtype == "F32" or dtype not in _MANTISSA:
            return np.zeros(idx.size)
        return _ulp_half(picked, _MANTISSA[dtype], {"F16": -14, "BF16": -126}.get(dtype, -126))
    if qt.scheme == "gguf":
        per, _ = GGML_BLOCKS[qt.format]
        levels = _GGML_LEVELS.get(qt.format, 1)
        blocks = np.abs(flat.astype(np.float64)).reshape(-1, per).max(axis=1)[idx // per]
        # Half a step, plus the fp16 rounding of the block scale times the largest code.
        return blocks / (2 * levels) + blocks / 1024 + _ulp_half(picked, 10, -24)
    if qt.scheme in ("comfy_scaled_fp8", "musubi_fp8", "fp8_weight_scale") or (
        qt.scheme == "comfy_quant" and qt.format in ("float8_e4m3fn", "float8_e5m2")
    ):
        raw = source.read(qt.data).reshape(-1)[idx].astype(np.float64)
        fp8 = "F8_E5M2" if qt.format in ("F8_E5M2", "float8_e5m2") else "F8_E4M3"
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.abs(np.where(raw != 0, picked / raw, 0.0))
        scale = np.where(raw != 0, scale, scale.max())  # a zero code: the largest scale seen
        min_exp = -6 if fp8 == "F8_E4M3" else -14
        code_half = _ulp_half(np.where(raw != 0, raw, 2.0**min_exp), _MANTISSA[fp8], min_exp)
        return np.abs(scale) * code_half + _ulp_half(picked, 7)
    # Other forms (4-bit, mxfp8...): a generous bound from the values' magnitude.
    return np.abs(picked) * 0.25 + np.abs(flat).max() / 14


def precision_sketch(source: TensorSource, layout: QuantLayout | None = None) -> Sketch | None:
    """The sketch of a model (None when it has no weight matrix to sample)."""
    layout = layout if layout is not None else analyze(source)
    if layout.unsupported():
        return None
    candidates = []
    for name, info in source.tensors.items():
        if name in layout.consumed:
            continue
        qt = layout.tensors.get(name)
        shape = qt.shape if qt else info.shape
        if len(shape) >= 2 and math.prod(shape) >= PER_TENSOR and (qt is not None or info.dtype in _MANTISSA):
            candidates.append((blake3.blake3(_short(name).encode()).hexdigest(), name, shape, qt))
    if not candidates:
        return None
    candidates.sort()
    chosen = candidates[:TENSORS]
    key = blake3.blake3(";".join(f"{_short(n)}:{list(s)}" for _, n, s, _ in chosen).encode()).hexdigest()[:24]
    values, bounds = [], []
    for digest, name, shape, qt in chosen:
        numel = math.prod(shape)
        rng = np.random.default_rng(int(digest[:16], 16))
        idx = np.sort(rng.choice(numel, PER_TENSOR, replace=False))
        if qt is not None:
            out = "F32"
            data = dequantize(source, qt, out)
        else:
            data = source.read(name)
        flat = np.asarray(data).reshape(-1)
        values.append(flat[idx].astype(np.float32))
        bounds.append(_bounds(source, name, qt, flat, idx).astype(np.float32))
    return Sketch(key, np.concatenate(values), np.concatenate(bounds))
