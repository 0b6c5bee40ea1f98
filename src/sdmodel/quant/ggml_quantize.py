"""GGML block quantization in numpy, byte-identical to GGML's reference quantizers.

Each function below follows ``quantize_row_*_ref`` of GGML's ``ggml-quants.c`` (what ``llama-quantize``
runs without an importance matrix), vectorised across blocks: every float32 operation happens in
the same order as there (sums accumulate element by element: numpy reduces the first axis of a
C-contiguous array sequentially, so groups are laid out along the second axis), with the same
rounding (``nearest_int`` is GGML's add-1.5*2^23 trick; ``roundf`` rounds halves away from zero;
C casts truncate), so the bytes match GGML's portable build (compiled without fused multiply-add).
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, get_args

import numpy as np

from sdmodel.dtypes import NUMPY_DTYPES
from sdmodel.i18n import Msg

QuantType = Literal[
    "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"
]
QUANT_TYPES: tuple[QuantType, ...] = get_args(QuantType)

# type -> (elements per block, bytes per block), as GGML's type traits.
BLOCKS: dict[QuantType, tuple[int, int]] = {
    "F32": (1, 4),
    "F16": (1, 2),
    "BF16": (1, 2),
    "Q8_0": (32, 34),
    "Q4_0": (32, 18),
    "Q4_1": (32, 20),
    "Q5_0": (32, 22),
    "Q5_1": (32, 24),
    "Q2_K": (256, 84),
    "Q3_K": (256, 110),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
}

# GGML's type numbers (ggml.h enum ggml_type), as GGUF tensor infos record them.
GGML_TYPE_IDS: dict[QuantType, int] = {
    "F32": 0,
    "F16": 1,
    "Q4_0": 2,
    "Q4_1": 3,
    "Q5_0": 6,
    "Q5_1": 7,
    "Q8_0": 8,
    "Q2_K": 10,
    "Q3_K": 11,
    "Q4_K": 12,
    "Q5_K": 13,
    "Q6_K": 14,
    "BF16": 30,
}

_F32 = np.float32
_MAGIC = _F32(12582912.0)  # 1.5 * 2^23: adding it leaves the nearest integer in the low mantissa bits
_FAST_LIMIT = 4.0e6  # below 2^22, np.rint equals GGML's nearest_int exactly
_GROUP_MAX_EPS = _F32(1e-15)
_U8 = np.uint8


def row_bytes(qtype: QuantType, elements: int) -> int:
    """Bytes of ``elements`` values stored as ``qtype`` (a multiple of its block size)."""
    block, size = BLOCKS[qtype]
    if elements % block:
        raise ValueError(f"{qtype} stores rows in blocks of {block} values, not {elements}")
    return elements // block * size


def quantize(
    data: np.ndarray, qtype: QuantType, *, threads: int | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Quantize ``data`` (any float dtype, or uint16 holding bfloat16 bits: see :func:`as_float32`;
    rows along the last axis, a multiple of the block size) into GGML blocks. Returns uint8 of
    shape ``(*data.shape[:-1], row_bytes)``: a view of ``out`` (contiguous uint8, exactly that many
    bytes) when given, for a block type."""
    if qtype not in BLOCKS:
        raise ValueError(f"unknown GGML type {qtype!r}; known: {', '.join(QUANT_TYPES)}")
    shape = data.shape if data.ndim else (1,)
    out_shape = (*shape[:-1], row_bytes(qtype, shape[-1]))
    flat = data.reshape(-1)
    if qtype in ("F32", "F16", "BF16"):
        for lo in range(0, flat.size, _CHUNK_ELEMENTS):
            _finite_bounds(as_float32(flat[lo : lo + _CHUNK_ELEMENTS]))
        return _plain(flat, qtype).view(_U8).reshape(out_shape)
    block, size = BLOCKS[qtype]
    kernel = _KERNELS[qtype]
    nblocks = flat.size // block
    if out is None:
        out = np.empty((nblocks, size), dtype=_U8)
    elif out.dtype != _U8 or out.size != nblocks * size or not out.flags.c_contiguous:
        raise ValueError(f"out must be {nblocks * size} contiguous bytes, not {out.size} {out.dtype}")
    blocks = out.reshape(nblocks, size)
    step = max(1, _CHUNK_ELEMENTS // block)

    scratch: dict[int, dict[str, np.ndarray]] = {}  # each thread's work arrays, for this call only

    def run(first: int) -> None:
        _SCRATCH.buffers = scratch.setdefault(threading.get_ident(), {})
        last = min(nblocks, first + step)
        x = as_float32(flat[first * block : last * block]).reshape(-1, block)
        if qtype == "Q8_0":  # checks the values itself, and the zero block needs no special case
            with np.errstate(all="ignore"):
                _q8_0_into(x, blocks[first:last])
            return
        hi, lo = _finite_bounds(x)
        if hi == lo == 0 and not x.view(np.uint32).any():  # all +0.0 (padding, sparse files): the zero block
            blocks[first:last] = _zero_block(qtype)
            return
        with np.errstate(all="ignore"):
            blocks[first:last] = kernel(x)

    starts = range(0, nblocks, step)
    workers = _workers(threads)
    if workers > 1 and len(starts) > 1:
        list(_pool(workers).map(run, starts))
    else:
        for first in starts:
            run(first)
    for buffers in scratch.values():
        buffers.clear()
    return blocks.reshape(out_shape)


class NonFiniteError(ValueError):
    """The values hold NaN or infinity: no GGML type stores them meaningfully."""


def _finite_bounds(x: np.ndarray) -> tuple[np.float32, np.float32]:
    """The largest and smallest of the float32 values ``x``; NonFiniteError if they hold NaN or
    infinity (both reductions propagate NaN: cheaper than ``np.isfinite(x).all()``)."""
    hi, lo = x.max(), x.min()
    if not (np.isfinite(hi) and np.isfinite(lo)):
        raise NonFiniteError(Msg("the values hold NaN or infinity"))
    return hi, lo


def as_float32(x: np.ndarray) -> np.ndarray:
    """Values as float32; uint16 values are taken as bfloat16 bits (the engine hands bf16 tensors
    it does not cast over so: importing ml_dtypes for the bfloat16 dtype takes most of a second,
    holding the GIL). bfloat16 is the upper half of a float32, so it is widened by shifting its bits
    (exact, and about three times cheaper than ml_dtypes' cast)."""
    if x.dtype.name != "bfloat16" and x.dtype != np.uint16:
        return np.asarray(x, dtype=_F32)
    bits = np.empty(x.shape, dtype=np.uint32)
    np.copyto(bits, x.view(np.uint16))
    bits <<= 16
    return bits.view(_F32)


_CHUNK_ELEMENTS = 1 << 18  # 1 MB of float32: large enough for two threads to overlap, small enough for cache
_POOLS: dict[int, ThreadPoolExecutor] = {}


def _workers(threads: int | None) -> int:
    if threads is not None:
        return max(1, threads)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _pool(workers: int) -> ThreadPoolExecutor:
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="sdmodel-quantize")
    return _POOLS[workers]


def worker_pool() -> ThreadPoolExecutor:
    """The kernels' threads, one per core (numpy releases the GIL): shared with dequantization."""
    return _pool(_workers(None))


class _Scratch(threading.local):
    """Work arrays of the kernels, by name, kept between the chunks of one :func:`quantize` call
    (each thread has its own): a fresh megabyte-sized temporary costs more (the system zeroes its
    pages) than the arithmetic done in it. The kernels name them by slot ("x" the columns, "a" to
    "h", "v"), so that the types share about twelve megabytes per thread."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type = _F32) -> np.ndarray:
        """An uninitialised array of this shape (a view of the slot's buffer, grown as needed)."""
        size = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self.buffers[name] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)


_SCRATCH = _Scratch()


@functools.cache
def _zero_block(qtype: QuantType) -> np.ndarray:
    with np.errstate(all="ignore"):
        return _KERNELS[qtype](np.zeros((1, BLOCKS[qtype][0]), dtype=_F32))[0]


def _plain(flat: np.ndarray, qtype: QuantType) -> np.ndarray:
    if flat.dtype == np.uint16:  # bfloat16 bits
        if qtype == "BF16":
            return flat
        flat = as_float32(flat)
    if qtype == "F32":
        return np.asarray(flat, dtype="<f4")
    if qtype == "F16":
        return np.asarray(flat, dtype="<f2")  # round to nearest even, as GGML_FP32_TO_FP16
    return np.asarray(flat, dtype=NUMPY_DTYPES["BF16"])  # round to nearest even, as GGML_FP32_TO_BF16


# ---------------------------------------------------------------- helpers


def _nearest_int(v: np.ndarray) -> np.ndarray:
    """GGML's nearest_int for any float32 (also out of its asserted range), as int32."""
    bits = np.asarray(v + _MAGIC, dtype=_F32).view(np.int32)
    return (bits & 0x007FFFFF) - 0x00400000


def _rounded(t: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``MAX(lo, MIN(hi, nearest_int(t)))`` as float32, exact for any input."""
    return np.clip(_nearest_int(t), lo, hi).astype(_F32)


def _rint_clip(t: np.ndarray, lo: int | None, hi: int | None, out: np.ndarray | None = None) -> np.ndarray:
    """As :func:`_rounded` for ``|t| < 2^22`` (the caller guarantees it): one pass cheaper. A bound
    given as None is not applied (the caller knows the values keep within it)."""
    r = np.rint(t, out=out)
    if hi is not None:
        np.minimum(r, _F32(hi), out=r)  # np.clip costs more per call
    if lo is not None:
        np.maximum(r, _F32(lo), out=r)
    return r


def _fp16_bits(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=_F32).astype("<f2").view("<u2")


def _fp16_value(bits: np.ndarray) -> np.ndarray:
    return bits.view("<f2").astype(_F32)


def _inverse(d: np.ndarray) -> np.ndarray:
    """``d ? 1.0f/d : 0.0f``."""
    out = np.zeros_like(d)
    np.divide(_F32(1), d, out=out, where=d != 0)
    return out


def _first_abs_max(x: np.ndarray, axis: int) -> np.ndarray:
    """The value of largest magnitude, the first one on ties (GGML scans with a strict ``<`` from
    +0.0, so an all-zero group gives +0.0 whatever the sign of its zeros)."""
    hi = x.max(axis=axis)
    lo = x.min(axis=axis)
    minus_lo = np.negative(lo)
    top = np.where(hi >= minus_lo, hi, lo)
    tie = hi == minus_lo
    if tie.any():
        tie &= hi != 0  # both +a and -a present: the first one wins
        sub = np.compress(tie, x, axis=1 - axis)
        index = np.expand_dims(np.argmax(np.abs(sub), axis=axis), axis)
        top[tie] = np.take_along_axis(sub, index, axis=axis).squeeze(axis)
    top += _F32(0)  # -0.0 + 0.0 is +0.0; other values stay
    return top


def _first(x: np.ndarray, pick: Callable[..., np.ndarray]) -> np.ndarray:
    """First minimum/maximum of each row: only a zero's sign depends on which comes first."""
    value = (np.min if pick is np.argmin else np.max)(x, axis=1)
    zero = value == 0
    if zero.any():
        sub = x[zero]
        value[zero] = sub[np.arange(len(sub)), pick(sub, axis=1)]
    return value


def _positive_max(v: np.ndarray) -> np.ndarray:
    """``m = 0; for (...) if (v > m) m = v;`` per row: never -0.0."""
    m = v.max(axis=1)
    return np.where(m > 0, m, _F32(0))


def _columns(x: np.ndarray, group: int) -> np.ndarray:
    """Groups of ``group`` values as columns: shape (group, number of groups), C-contiguous (a
    scratch array: valid until the next call in this thread)."""
    out = _SCRATCH.get("x", (group, x.size // group))
    np.copyto(out, x.reshape(-1, group).T)
    return out


def _pack(fields: list[np.ndarray], nblocks: int) -> np.ndarray:
    parts = [np.ascontiguousarray(f).view(_U8).reshape(nblocks, -1) for f in fields]
    return np.concatenate(parts, axis=1)


# ---------------------------------------------------------------- 32-value blocks


_SIGN_BIT = np.uint32(0x80000000)
_BELOW_HALF = np.uint32(0x3EFFFFFF)  # bits of 0.5 - 2^-25, the float32 just below 0.5
_INF_BITS = np.int32(0x7F800000)  # magnitude bits of infinity; NaN's are larger


def _abs_max(x: np.ndarray) -> np.ndarray:
    """Largest magnitude of each row of finite float32 ``x`` (rows of a power of two values). The
    bits of non-negative floats order as integers, and halving the flat array into the maxima of
    adjacent pairs keeps each row's values together: one long loop per halving, where
    ``np.abs(x).max(axis=1)`` runs one short loop per row (several times slower)."""
    m = x.reshape(-1).view(np.int32) & np.int32(0x7FFFFFFF)
    while m.size > len(x):
        m = np.maximum(m[0::2], m[1::2])
    return m.view(_F32)


def _q8_0(x: np.ndarray) -> np.ndarray:
    out = np.empty((len(x), BLOCKS["Q8_0"][1]), dtype=_U8)
    _q8_0_into(x, out)
    return out


def _q8_0_into(x: np.ndarray, out: np.ndarray) -> None:
    """Q8_0 blocks of the rows of ``x`` written into ``out``; NonFiniteError on NaN or infinity,
    found from the block maxima (non-finite magnitudes have the largest bits), which saves the
    separate pass over the values the other types make (:func:`_finite_bounds`)."""
    amax = _abs_max(x)
    if len(amax) and amax.view(np.int32).max() >= _INF_BITS:
        raise NonFiniteError(Msg("the values hold NaN or infinity"))
    d = amax / _F32(127)
    v = np.multiply(x, _inverse(d)[:, None], out=_SCRATCH.get("v", x.shape))
    # GGML rounds with roundf (halves away from zero) and casts to int8. Adding 0.5 - 2^-25 with
    # the sign of v, then the cast's truncation, gives roundf(v) for every float32 |v| < 2^23
    # (checked exhaustively; |v| <= 127 here): four passes instead of roundf's seven.
    half = np.bitwise_and(v.view(np.uint32), _SIGN_BIT, out=_SCRATCH.get("a", x.shape, np.uint32))
    half |= _BELOW_HALF
    v += half.view(_F32)
    out[:, :2] = _fp16_bits(d).view(_U8).reshape(-1, 2)
    np.copyto(out[:, 2:].view(np.int8), v, casting="unsafe")


def _symmetric(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Q4_0/Q5_0: d from the value of largest magnitude; quants before packing."""
    d = _first_abs_max(x, axis=1) / _F32(-levels)
    v = x * _inverse(d)[:, None] + _F32(levels + 0.5)
    q = np.minimum(v.astype(np.int8), 2 * levels - 1).astype(_U8)
    return d, q


def _affine(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q4_1/Q5_1: d and m from the first minimum and maximum; quants before packing."""
    lo = _first(x, np.argmin)
    hi = _first(x, np.argmax)
    d = (hi - lo) / _F32(levels - 1)
    v = (x - lo[:, None]) * _inverse(d)[:, None] + _F32(0.5)
    return d, lo, v.astype(_U8)


def _nibbles(q: np.ndarray) -> np.ndarray:
    return (q[:, :16] & 0x0F) | ((q[:, 16:] & 0x0F) << 4)


def _high_bits(q: np.ndarray) -> np.ndarray:
    """Bit 4 of value j as bit j of a little-endian uint32 (GGML's qh)."""
    return np.packbits((q >> 4) & 1, axis=1, bitorder="little")


def _q4_0(x: np.ndarray) -> np.ndarray:
    d, q = _symmetric(x, 8)
    return _pack([_fp16_bits(d), _nibbles(q)], len(x))


def _q5_0(x: np.ndarray) -> np.ndarray:
    d, q = _symmetric(x, 16)
    return _pack([_fp16_bits(d), _high_bits(q), _nibbles(q)], len(x))


def _q4_1(x: np.ndarray) -> np.ndarray:
    d, m, q = _affine(x, 16)
    return _pack([_fp16_bits(d), _fp16_bits(m), np.minimum(q, 15)[:, :16] | (np.minimum(q, 15)[:, 16:] << 4)], len(x))


def _q5_1(x: np.ndarray) -> np.ndarray:
    d, m, q = _affine(x, 32)
    return _pack([_fp16_bits(d), _fp16_bits(m), _high_bits(q), _nibbles(q)], len(x))


# ---------------------------------------------------------------- K-quant helpers (groups as columns)


def _sum(v: np.ndarray) -> np.ndarray:
    """Sum down the columns, element after element (as GGML's loops)."""
    return np.add.reduce(v, axis=0)


def _make_qkx2(
    x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int, use_mad: bool
) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """GGML's make_qkx2_quants for every column: (scale, the_min, levels), ``levels(columns)``
    giving L of those columns as float32 rows (the final pass keeps L only where the quantized
    scale is 0, so L is recomputed for those columns alone, from the step that chose it)."""
    s = _SCRATCH
    shape = x.shape
    fmax = _F32(nmax)
    xmin = x.min(axis=0)
    hi = x.max(axis=0)
    lo = np.minimum(xmin, _F32(0))
    flat = hi == lo
    some_flat = bool(flat.any())
    sum_w = _sum(w)
    tmp = np.multiply(w, x, out=s.get("c", shape))
    sum_x = _sum(tmp)
    iscale = fmax / (hi - lo)
    scale = _F32(1) / iscale
    aux = np.subtract(x, lo, out=s.get("d", shape))
    aux *= iscale
    _rint_clip(aux, 0, nmax, out=aux)  # x - lo lies in [0, hi - lo]
    wl = s.get("e", shape)

    def error(sc: np.ndarray, m: np.ndarray) -> np.ndarray:
        diff = np.multiply(aux, sc, out=tmp)
        diff += m
        diff -= x
        if use_mad:
            np.abs(diff, out=diff)
        else:
            diff *= diff
        diff *= w
        return _sum(diff)

    best = error(scale, lo)
    first_lo = lo
    # the step whose L is kept: its iscale and min (the initial L: iscale and lo above)
    chosen_iscale, chosen_lo = iscale, lo
    span_low = xmin - lo  # x - lo >= span_low; tracks lo as it moves
    for step in range(nstep + 1):
        width = hi - lo
        top = _F32(rmin) + _F32(rdelta) * _F32(step) + fmax
        iscale = top / width
        np.subtract(x, lo, out=aux)
        aux *= iscale
        bound = np.abs(iscale) * np.maximum(np.abs(width), np.abs(span_low))
        if some_flat:
            bound[flat] = 0
        if bound.max() < _FAST_LIMIT:  # aux = iscale * (x - lo) lies in [iscale * span_low, top]
            below = bool(np.any(span_low < 0, where=~flat) if some_flat else span_low.min() < 0)
            # rint(top) <= nmax without clipping when top < nmax + 0.5 (with margin for rounding)
            _rint_clip(aux, 0 if below else None, nmax if top >= fmax + _F32(0.45) else None, out=aux)
        else:
            aux[...] = _rounded(aux, 0, nmax)
        np.multiply(w, aux, out=wl)
        sum_l = _sum(wl)
        sum_l2 = _sum(np.multiply(wl, aux, out=tmp))
        sum_xl = _sum(np.multiply(wl, x, out=tmp))
        det = sum_w * sum_l2 - sum_l * sum_l
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
        positive = this_min > 0
        this_min = np.where(positive, _F32(0), this_min)
        this_scale = np.where(positive, sum_xl / sum_l2, this_scale)
        current = error(this_scale, this_min)
        better = (det > 0) & (current < best)
        if better.any():
            best = np.where(better, current, best)
            scale = np.where(better, this_scale, scale)
            chosen_iscale = np.where(better, iscale, chosen_iscale)
            chosen_lo = np.where(better, lo, chosen_lo)
            lo = np.where(better, this_min, lo)
            span_low = xmin - lo
    scale = np.where(flat, _F32(0), scale)
    lo = np.where(flat, first_lo, lo)

    def levels(columns: np.ndarray) -> np.ndarray:
        sub = (x[:, columns] - chosen_lo[columns]) * chosen_iscale[columns]
        return np.where(flat[columns], _F32(0), _rounded(sub, 0, nmax)).T

    return scale, -lo, levels


def _make_qx(x: np.ndarray, nmax: int) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """GGML's make_qx_quants with rmse_type 1 and no weights, for every column: (scale, levels),
    ``levels(columns)`` giving L + nmax of those columns as float32 rows (the final pass keeps L
    only where the quantized scale is 0: recomputed for those columns alone, from the chosen
    iscale)."""
    s = _SCRATCH
    fmax = _F32(nmax)
    top = _first_abs_max(x, axis=0)
    zero = np.abs(top) < _GROUP_MAX_EPS
    w = np.multiply(x, x, out=s.get("b", x.shape))
    wx = np.multiply(w, x, out=s.get("c", x.shape))
    aux = s.get("d", x.shape)
    tmp = s.get("e", x.shape)

    def sums(iscale: np.ndarray, reach: np.float32) -> tuple[np.ndarray, np.ndarray]:
        # |iscale * x| <= reach (plus rounding): a bound is clipped only if rint can pass it
        np.multiply(x, iscale, out=aux)
        low = -nmax if reach >= fmax + _F32(0.45) else None
        high = nmax - 1 if reach >= fmax - _F32(0.55) else None
        _rint_clip(aux, low, high, out=aux)
        sumlx = _sum(np.multiply(wx, aux, out=tmp))
        wll = np.multiply(w, aux, out=tmp)
        wll *= aux
        return sumlx, _sum(wll)

    iscale = -fmax / top
    sumlx, suml2 = sums(iscale, fmax)
    scale = np.where(suml2 != 0, sumlx / suml2, _F32(0))
    best = scale * sumlx
    chosen = iscale
    for step in range(-9, 10):
        if step == 0:
            continue
        reach = fmax + _F32(0.1) * _F32(step)
        iscale = -reach / top
        sumlx, suml2 = sums(iscale, reach)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        if better.any():
            chosen = np.where(better, iscale, chosen)
            scale = np.where(better, sumlx / suml2, scale)
            best = np.where(better, scale * sumlx, best)

    def levels(columns: np.ndarray) -> np.ndarray:
        sub = _rint_clip(x[:, columns] * chosen[columns], -nmax, nmax - 1) + fmax  # |iscale * x| < nmax + 1
        return np.where(zero[columns], _F32(0), sub).T

    return np.where(zero, _F32(0), scale), levels


def _make_q3(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GGML's make_q3_quants(nmax=4, do_rmse=true) for every column: (L + 1.5*2^23 as float32, L
    in [-4, 3], in a scratch array; scale). An all-zero column holds L = -4 (GGML's 0 after adding
    nmax) and scale 0.

    GGML visits the values of a group one after another, five times at most (a try), and moves a
    value to a new level when that lowers the error; a move changes the group's sums, and so every
    later decision. Few values move (about one in twenty in the first try). So each round here
    takes, for every group, the values from where the group stopped onwards (to the same place of
    the next try, which GGML only reaches when the group moved a value in this one) with the
    group's present sums, finds the values whose level would change (one vectorised test for all
    of them), checks GGML's acceptance on those alone and applies each group's first move. A group
    without a move is finished: its next try would see the same sums, so GGML breaks there too.
    Most groups finish in the first round; the later ones run on the few groups still moving."""
    s = _SCRATCH
    n, ng = x.shape
    top = _first_abs_max(x, axis=0)
    zero = np.abs(top) < _GROUP_MAX_EPS
    levels = np.multiply(x, _F32(-4) / top, out=s.get("a", x.shape))
    np.rint(levels, out=levels)  # |iscale * x| <= 4 (rounded: < 4.5), so only 4 needs clipping to 3
    np.minimum(levels, _F32(3), out=levels)
    wll = np.multiply(x, x, out=s.get("b", x.shape))  # w = x*x, then w*L*L
    wxl = np.multiply(wll, x, out=s.get("c", x.shape))  # w*x, then w*x*L
    wxl *= levels
    wll *= levels
    wll *= levels
    sumlx = _sum(wxl)
    suml2 = _sum(wll)
    magic = levels
    magic += _MAGIC  # levels from here on as L + 1.5*2^23
    # the compact set: the groups of the last round that moved (all groups at first), their values
    # (x, w*x*L, w*L*L, L + 1.5*2^23), sums and positions (the next value to visit, counted over
    # the five tries: 80 when done)
    ids = np.arange(ng)
    cx, ca, cb, cm = x, wxl, wll, magic
    csx, cs2 = sumlx, suml2
    cpos = np.where(zero, 80, 0)
    flat_magic = magic.reshape(-1)
    flip = 0
    size = 0
    while True:
        if size != len(ids):
            size = len(ids)
            shape = (n, size)
            slx, sl2, t = s.get("f", shape), s.get("g", shape), s.get("h", shape)
            bits = t.view(np.int32)
            differ = s.get("ne", shape, np.bool_)
            flat = slx.reshape(-1), sl2.reshape(-1), t.reshape(-1), cx.reshape(-1), ca.reshape(-1), cb.reshape(-1)
            flat_m = cm.reshape(-1)
        np.subtract(csx, ca, out=slx)
        np.subtract(cs2, cb, out=sl2)
        np.multiply(cx, sl2, out=t)
        t /= slx
        t += _MAGIC
        # the bits of new + 1.5*2^23, new = nearest_int(x * sl2 / slx) clamped to [-4, 3] (exactly,
        # also out of nearest_int's range): the values whose level would change differ from cm
        bits &= 0x007FFFFF
        np.clip(bits, 0x003FFFFC, 0x00400003, out=bits)
        bits |= 0x4B000000
        k = np.flatnonzero(np.not_equal(t, cm, out=differ))
        if size & (size - 1):
            i, j = np.divmod(k, size)
        else:  # a whole chunk: 2^14 groups
            i = k >> (size.bit_length() - 1)
            j = k & (size - 1)
        slx_k, sl2_k, new, x_k = (v[k] for v in flat[:4])
        new -= _MAGIC
        w_k = x_k * x_k  # w and w*x again (the same operations: the same values; gathering them
        wx_k = w_k * x_k  # from the full arrays would miss the cache once per value)
        slx_new = wx_k * new
        slx_new += slx_k
        wl_k = w_k * new
        sl2_new = wl_k * new
        sl2_new += sl2_k
        sx = csx[j]
        at = cpos[j]
        at += (i - at) & 15  # the value's position: this try, or the next one for values before the start
        take = (np.minimum(slx_k, sl2_new) > 0) & (at < 80)
        take &= (slx_new * slx_new) * cs2[j] > (sx * sx) * sl2_new
        hit = np.flatnonzero(take)
        if not len(hit):
            break
        j, at = j[hit], at[hit]
        first = np.full(size, 80, dtype=at.dtype)
        np.minimum.at(first, j, at)
        win = np.flatnonzero(at == first[j])  # each group's first move
        hit, j = hit[win], j[win]
        k, new = k[hit], new[hit]
        moved = new + _MAGIC
        flat_m[k] = moved
        if cm is not magic:
            flat_magic[i[hit] * ng + ids[j]] = moved
        flat[4][k] = wx_k[hit] * new
        flat[5][k] = wl_k[hit] * new
        csx[j] = slx_new[hit]
        cs2[j] = sl2_new[hit]
        at = at[win] + 1
        cpos[j] = at
        going = j[at < 80]
        if not len(going):
            break
        if 2 * len(going) < size:  # drop the finished groups from the compact set
            if csx is not sumlx:
                sumlx[ids] = csx
                suml2[ids] = cs2
            going.sort()
            ids = ids[going]
            flip = 1 - flip  # never take into the arrays taken from
            shape = (n, len(going))
            if cx is x:  # from the blocks, where a group's values share a cache line
                cx = s.get(f"compactx{flip}", shape)
                np.copyto(cx, rows[ids].T)
            else:
                cx = np.take(cx, going, axis=1, out=s.get(f"compactx{flip}", shape), mode="clip")
            cm = np.take(cm, going, axis=1, out=s.get(f"compactm{flip}", shape), mode="clip")
            # the products from these two (the same operations as above give the same values)
            cl = np.subtract(cm, _MAGIC, out=s.get("compactl", shape))
            cb = np.multiply(cx, cx, out=s.get("compactb", shape))
            ca = np.multiply(cb, cx, out=s.get("compacta", shape))
            ca *= cl
            cb *= cl
            cb *= cl
            csx, cs2, cpos = csx[going], cs2[going], cpos[going]
    if csx is not sumlx:
        sumlx[ids] = csx
        suml2[ids] = cs2
    scale = np.where(suml2 > 0, sumlx / suml2, _F32(0))
    magic[:, zero] = _MAGIC - _F32(4)
    return magic, np.where(zero, _F32(0), scale)


def _requantize(
    x: np.ndarray,
    d: np.ndarray,
    dm: np.ndarray | None,
    lo: int,
    hi: int,
    group: int,
    kept: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Final pass of every K-quant: ``l = nearest_int((x + dm)/d)`` clamped to [lo, hi] (exactly,
    also out of nearest_int's range: from the bits), minus lo, as uint8 blocks of 256; groups with
    ``d == 0`` keep their levels, ``kept(groups)`` (rows of ``group`` values, minus lo too)."""
    d = d.reshape(-1, 1)
    v = _SCRATCH.get("v", (len(d), group))
    if dm is not None:
        np.add(x.reshape(v.shape), dm.reshape(-1, 1), out=v)
        v /= d
    else:
        np.divide(x.reshape(v.shape), d, out=v)
    v += _MAGIC
    bits = v.view(np.int32)
    bits &= 0x007FFFFF
    np.clip(bits, 0x00400000 + lo, 0x00400000 + hi, out=bits)
    final = bits.astype(_U8).reshape(len(x), 256)  # the low byte: l + 0x400000 modulo 256
    if lo:
        final -= _U8(lo & 0xFF)  # l - lo, modulo 256 as well
    keep = np.flatnonzero(d == 0)
    if len(keep):
        final.reshape(-1, group)[keep] = kept(keep)
    return final


def _lanes(levels: np.ndarray) -> np.ndarray:
    """Blocks of 256 uint8 levels as 32 uint64 words, 8 levels each: the bit packing below shifts
    and ORs eight levels per operation (no bit crosses from one byte into the next)."""
    return np.ascontiguousarray(levels).view(np.uint64).reshape(len(levels), 32)


def _crumbs(levels: np.ndarray) -> np.ndarray:
    """2-bit values (< 4): byte l of each 128-value half holds values l, l+32, l+64, l+96."""
    q = _lanes(levels).reshape(len(levels), 2, 4, 4)
    out = q[:, :, 1] << np.uint64(2)
    out |= q[:, :, 0]
    out |= q[:, :, 2] << np.uint64(4)
    out |= q[:, :, 3] << np.uint64(6)
    return out.view(_U8).reshape(len(levels), 64)


def _scales_k4(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and mins in GGML's 12-byte K_SCALE layout."""
    return np.concatenate(
        [
            ls[:, :4] | ((ls[:, 4:] >> 4) << 6),
            lm[:, :4] | ((lm[:, 4:] >> 4) << 6),
            (ls[:, 4:] & 0x0F) | ((lm[:, 4:] & 0x0F) << 4),
        ],
        axis=1,
    )


def _six_bits(value: np.ndarray) -> np.ndarray:
    """``uint8_t l = nearest_int(v); l = MIN(63, l)``."""
    return np.minimum(_nearest_int(value).astype(_U8), 63)


# ---------------------------------------------------------------- K-quants


def _q2_k(x: np.ndarray) -> np.ndarray:
    nb = len(x)
    xs = _columns(x, 16)
    weights = np.abs(xs, out=_SCRATCH.get("b", xs.shape))
    scales, mins, levels = _make_qkx2(xs, weights, 3, -0.5, 0.1, 15, True)
    scales = scales.reshape(nb, 16)
    mins = mins.reshape(nb, 16)
    max_scale = _positive_max(scales)
    max_min = _positive_max(mins)
    has_scale = (max_scale > 0)[:, None]
    has_min = (max_min > 0)[:, None]
    sc = np.where(has_scale, _nearest_int((_F32(15) / max_scale)[:, None] * scales), 0).astype(_U8)
    sc |= np.where(has_min, _nearest_int((_F32(15) / max_min)[:, None] * mins) << 4, 0).astype(_U8)
    d = _fp16_bits(np.where(has_scale[:, 0], max_scale / _F32(15), _F32(0)))
    dmin = _fp16_bits(np.where(has_min[:, 0], max_min / _F32(15), _F32(0)))
    dq = _fp16_value(d)[:, None] * (sc & 0x0F).astype(_F32)
    dmq = _fp16_value(dmin)[:, None] * (sc >> 4).astype(_F32)
    final = _requantize(x, dq, dmq, 0, 3, 16, levels)
    return _pack([sc, _crumbs(final), d, dmin], nb)


def _q3_k(x: np.ndarray) -> np.ndarray:
    nb = len(x)
    magic, scales = _make_q3(_columns(x, 16), x.reshape(-1, 16))
    scales = scales.reshape(nb, 16)
    max_scale = _first_abs_max(np.ascontiguousarray(scales.T), axis=0)  # reduces faster down columns
    has = (max_scale != 0)[:, None]
    iscale = _F32(-32) / max_scale
    q = np.clip(_nearest_int(iscale[:, None] * scales).astype(np.int8), -32, 31) + 32
    q = np.where(has, q, 0).astype(_U8)
    low = q & 0x0F
    top = (q >> 4).reshape(nb, 4, 4)
    packed = np.concatenate(
        [low[:, :8] | (low[:, 8:] << 4), top[:, 0] | (top[:, 1] << 2) | (top[:, 2] << 4) | (top[:, 3] << 6)], axis=1
    )
    d = _fp16_bits(np.where(has[:, 0], _F32(1) / iscale, _F32(0)))
    dq = (_fp16_value(d)[:, None] * (q.astype(np.int8) - np.int8(32)).astype(_F32)).reshape(-1)
    final = _requantize(x, dq, None, -4, 3, 16, lambda groups: (magic[:, groups] - (_MAGIC - _F32(4))).T)
    lanes = _lanes(final)
    high = (lanes >> np.uint64(2)) & np.uint64(0x0101010101010101)
    high = high.reshape(nb, 8, 4)
    hmask = high[:, 0].copy()
    for bit in range(1, 8):
        hmask |= high[:, bit] << np.uint64(bit)
    lanes &= np.uint64(0x0303030303030303)
    return _pack([hmask.view(_U8), _crumbs(final), packed, d], nb)


def _k_affine(
    x: np.ndarray, nmax: int, rmin: float, nstep: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shared by Q4_K and Q5_K: levels (uint8, 256 per block), packed scales, d and dmin bits."""
    nb = len(x)
    xs = _columns(x, 32)
    weights = np.multiply(xs, xs, out=_SCRATCH.get("b", xs.shape))
    av_x = np.sqrt(_sum(weights) / _F32(32))
    np.abs(xs, out=weights)
    weights += av_x
    scales, mins, levels = _make_qkx2(xs, weights, nmax, rmin, 0.1, nstep, False)
    scales = scales.reshape(nb, 8)
    mins = mins.reshape(nb, 8)
    max_scale = _positive_max(scales)
    max_min = _positive_max(mins)
    inv_scale = np.where(max_scale > 0, _F32(63) / max_scale, _F32(0))
    inv_min = np.where(max_min > 0, _F32(63) / max_min, _F32(0))
    ls = _six_bits(inv_scale[:, None] * scales)
    lm = _six_bits(inv_min[:, None] * mins)
    d = _fp16_bits(max_scale / _F32(63))
    dmin = _fp16_bits(max_min / _F32(63))
    dq = _fp16_value(d)[:, None] * ls.astype(_F32)
    dmq = _fp16_value(dmin)[:, None] * lm.astype(_F32)
    final = _requantize(x, dq, dmq, 0, nmax, 32, levels)
    return final, _scales_k4(ls, lm), d, dmin


def _q4_k(x: np.ndarray) -> np.ndarray:
    final, scales, d, dmin = _k_affine(x, 15, -1.0, 20)
    q = final.reshape(len(x), 4, 2, 32)
    return _pack([d, dmin, scales, q[:, :, 0] | (q[:, :, 1] << 4)], len(x))


def _q5_k(x: np.ndarray) -> np.ndarray:
    final, scales, d, dmin = _k_affine(x, 31, -0.5, 15)
    q = final.reshape(len(x), 4, 2, 32)
    qh = np.zeros((len(x), 32), dtype=_U8)
    for g in range(4):
        for h in range(2):
            qh |= (q[:, g, h] >> 4) << (2 * g + h)
    ql = (q[:, :, 0] & 0x0F) | ((q[:, :, 1] & 0x0F) << 4)
    return _pack([d, dmin, scales, qh, ql], len(x))


def _q6_k(x: np.ndarray) -> np.ndarray:
    nb = len(x)
    scales, levels = _make_qx(_columns(x, 16), 32)
    scales = scales.reshape(nb, 16)
    max_scale = _first_abs_max(np.ascontiguousarray(scales.T), axis=0)  # reduces faster down columns
    zero = np.abs(max_scale) < _GROUP_MAX_EPS
    iscale = _F32(-128) / max_scale
    d = _fp16_bits(np.where(zero, _F32(0), _F32(1) / iscale))
    sc = np.minimum(_nearest_int(iscale[:, None] * scales), 127).astype(np.int8)
    sc[zero] = 0
    dq = _fp16_value(d)[:, None] * sc.astype(_F32)
    final = _requantize(x, dq, None, -32, 31, 16, levels)
    q = _lanes(final).reshape(nb, 2, 4, 4)
    high = (q >> np.uint64(4)) & np.uint64(0x0303030303030303)  # bits 4-5 of each level
    q &= np.uint64(0x0F0F0F0F0F0F0F0F)
    ql = np.stack([q[:, :, 0] | (q[:, :, 2] << np.uint64(4)), q[:, :, 1] | (q[:, :, 3] << np.uint64(4))], axis=2)
    qh = high[:, :, 0] | (high[:, :, 1] << np.uint64(2))
    qh |= high[:, :, 2] << np.uint64(4)
    qh |= high[:, :, 3] << np.uint64(6)
    out = _pack([ql.view(_U8), qh.view(_U8), sc, d], nb)
    out[zero] = 0
    return out


_KERNELS: dict[QuantType, Callable[[np.ndarray], np.ndarray]] = {
    "Q8_0": _q8_0,
    "Q4_0": _q4_0,
    "Q4_1": _q4_1,
    "Q5_0": _q5_0,
    "Q5_1": _q5_1,
    "Q2_K": _q2_k,
    "Q3_K": _q3_k,
    "Q4_K": _q4_k,
    "Q5_K": _q5_k,
    "Q6_K": _q6_k,
}
