"""``sdmodel.diff``: how far two model files are apart, tensor by tensor, part by part.

Streaming: one pair of tensors in memory at a time (compared in chunks). For every tensor present
in both files: dtypes, shapes, whether the bytes are identical, the largest absolute difference and
the relative one, defined as ``max|a-b| / max|a|`` (relative to the tensor's scale, so that values
near zero do not dominate). Tensors only in A are "missing", only in B "extra".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.dtypes import is_float
from sdmodel.formats import open_model
from sdmodel.parts import part_of

CHUNK = 1 << 22  # elements compared at once


@dataclass
class TensorDiff:
    name: str
    part: str
    dtype_a: str
    dtype_b: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    identical: bool = False
    max_abs: float | None = None
    max_rel: float | None = None

    @property
    def status(self) -> str:
        """shape, identical (same bytes), equal values (same numbers in other bytes: another dtype,
        -0.0 for 0.0, other NaN payloads) or differs."""
        if self.shape_a != self.shape_b:
            return "shape"
        if self.identical:
            return "identical"
        return "equal values" if self.max_abs == 0 else "differs"


@dataclass
class PartDiff:
    part: str
    tensors: int = 0
    identical: int = 0
    changed_dtype: int = 0
    changed_shape: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    missing: int = 0
    extra: int = 0


@dataclass
class DiffResult:
    a: Path
    b: Path
    tensors: list[TensorDiff] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in A, not in B
    extra: list[str] = field(default_factory=list)  # in B, not in A

    @property
    def parts(self) -> list[PartDiff]:
        out: dict[str, PartDiff] = {}
        for t in self.tensors:
            p = out.setdefault(t.part, PartDiff(t.part))
            p.tensors += 1
            p.identical += t.status == "identical"
            p.changed_dtype += t.dtype_a != t.dtype_b
            p.changed_shape += t.shape_a != t.shape_b
            if t.max_abs is not None:
                p.max_abs = max(p.max_abs, t.max_abs)
            if t.max_rel is not None:
                p.max_rel = max(p.max_rel, t.max_rel)
        for name in self.missing:
            out.setdefault(part_of(name), PartDiff(part_of(name))).missing += 1
        for name in self.extra:
            out.setdefault(part_of(name), PartDiff(part_of(name))).extra += 1
        return list(out.values())

    @property
    def same(self) -> bool:
        """Same names, shapes and values (dtypes may differ if the values are exactly equal)."""
        return not self.missing and not self.extra and all(t.max_abs == 0 or t.identical for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": str(self.a),
            "b": str(self.b),
            "same": self.same,
            "parts": [asdict(p) for p in self.parts],
            "missing": self.missing,
            "extra": self.extra,
            "tensors": [
                dict(asdict(t), status=t.status, shape_a=list(t.shape_a), shape_b=list(t.shape_b)) for t in self.tensors
            ],
        }


def _compare(a: np.ndarray, b: np.ndarray, dtype_a: str, dtype_b: str) -> tuple[bool, float, float]:
    """(identical bytes, max abs difference, max abs difference / max |a|)."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    wide = np.float64 if "F64" in (dtype_a, dtype_b) or not (is_float(dtype_a) and is_float(dtype_b)) else np.float32
    max_abs = 0.0
    scale = 0.0
    same_bytes = a.dtype == b.dtype
    for lo in range(0, fa.size, CHUNK):
        ca, cb = fa[lo : lo + CHUNK], fb[lo : lo + CHUNK]
        if same_bytes:
            same_bytes = np.array_equal(ca.view(np.uint8), cb.view(np.uint8))
        xa, xb = ca.astype(wide), cb.astype(wide)
        with np.errstate(invalid="ignore", over="ignore"):
            d = np.abs(xa - xb)
            # NaN on one side only is a difference; NaN on both is not
            nan_a, nan_b = np.isnan(xa), np.isnan(xb)
            if nan_a.any() or nan_b.any():
                d = np.where(nan_a & nan_b, 0, np.where(nan_a | nan_b, np.inf, d))
            if d.size:
                max_abs = max(max_abs, float(np.max(d)))
                finite = np.abs(xa[np.isfinite(xa)])
                if finite.size:
                    scale = max(scale, float(finite.max()))
    if max_abs == 0:
        rel = 0.0
    elif scale == 0 or math.isinf(max_abs):
        rel = math.inf
    else:
        rel = max_abs / scale
    return bool(same_bytes), max_abs, rel


def diff(a: str | Path, b: str | Path, progress: Callable[[int, int], None] | None = None) -> DiffResult:
    """Compare two model files (any format sdmodel reads). ``progress(done, total)`` counts tensors."""
    with open_model(a) as sa, open_model(b) as sb:
        result = DiffResult(sa.path, sb.path)
        result.missing = [k for k in sa.tensors if k not in sb.tensors]
        result.extra = [k for k in sb.tensors if k not in sa.tensors]
        common = [k for k in sa.tensors if k in sb.tensors]
        for i, name in enumerate(common):
            ia, ib = sa.tensors[name], sb.tensors[name]
            t = TensorDiff(name, part_of(name), ia.dtype, ib.dtype, ia.shape, ib.shape)
            if ia.shape == ib.shape:
                t.identical, t.max_abs, t.max_rel = _compare(sa.read(name), sb.read(name), ia.dtype, ib.dtype)
            result.tensors.append(t)
            if progress is not None:
                progress(i + 1, len(common))
        return result
