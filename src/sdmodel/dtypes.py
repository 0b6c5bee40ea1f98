"""Tensor element types: safetensors dtype names are the common vocabulary of every module."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

# safetensors name -> numpy dtype string; bf16 and fp8 come from ml_dtypes (by attribute name).
_PLAIN = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
    "C64": "<c8",
    "C128": "<c16",
}
# F8_E8M0: the power-of-two block scales of mxfp8 (OCP MX spec: 2**(e - 127), 255 is NaN).
_ML_DTYPES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu"}

ITEMSIZE: dict[str, int] = {name: np.dtype(code).itemsize for name, code in _PLAIN.items()}
ITEMSIZE |= {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}

# safetensors' sub-byte dtypes (packed, no numpy type): bits per element, for sizes only.
SUBBYTE_BITS: dict[str, int] = {"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}

# GGML block types as GGUF stores them: name -> (elements per block, bytes per block), from
# gguf-py's GGML_QUANT_SIZES (the GGML project's own table).
GGML_BLOCKS: dict[str, tuple[int, int]] = {
    "Q4_0": (32, 18),
    "Q4_1": (32, 20),
    "Q5_0": (32, 22),
    "Q5_1": (32, 24),
    "Q8_0": (32, 34),
    "Q8_1": (32, 40),
    "Q2_K": (256, 84),
    "Q3_K": (256, 110),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
    "Q8_K": (256, 292),
    "IQ2_XXS": (256, 66),
    "IQ2_XS": (256, 74),
    "IQ3_XXS": (256, 98),
    "IQ1_S": (256, 50),
    "IQ4_NL": (32, 18),
    "IQ3_S": (256, 110),
    "IQ2_S": (256, 82),
    "IQ4_XS": (256, 136),
    "IQ1_M": (256, 56),
    "TQ1_0": (256, 54),
    "TQ2_0": (256, 66),
    "MXFP4": (32, 17),
}


def storage_nbytes(dtype: str, numel: int) -> int | None:
    """Bytes that ``numel`` elements of ``dtype`` take, or None if the dtype is unknown (or a block
    type and ``numel`` is not a whole number of blocks)."""
    if dtype in ITEMSIZE:
        return numel * ITEMSIZE[dtype]
    if dtype in SUBBYTE_BITS:
        return -(-numel * SUBBYTE_BITS[dtype] // 8)
    if dtype in GGML_BLOCKS:
        per, size = GGML_BLOCKS[dtype]
        return numel // per * size if numel % per == 0 else None
    return None


def bits_per_weight(dtype: str) -> float | None:
    """Storage bits per element of a dtype (GGML block types include their scales)."""
    if dtype in ITEMSIZE:
        return 8.0 * ITEMSIZE[dtype]
    if dtype in SUBBYTE_BITS:
        return float(SUBBYTE_BITS[dtype])
    if dtype in GGML_BLOCKS:
        per, size = GGML_BLOCKS[dtype]
        return 8.0 * size / per
    return None


class _NumpyDtypes(Mapping[str, np.dtype]):
    """safetensors name -> numpy dtype. ml_dtypes (slow to import: about a second) is imported
    only when a bf16 or fp8 dtype is asked for."""

    def __getitem__(self, name: str) -> np.dtype:
        if name in _PLAIN:
            return np.dtype(_PLAIN[name])
        if name in _ML_DTYPES:
            import ml_dtypes  # noqa: PLC0415 - about a second to import: only when bf16/fp8 is asked for

            return np.dtype(getattr(ml_dtypes, _ML_DTYPES[name]))
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in _PLAIN or name in _ML_DTYPES

    def __iter__(self) -> Iterator[str]:
        return iter([*_PLAIN, *_ML_DTYPES])

    def __len__(self) -> int:
        return len(_PLAIN) + len(_ML_DTYPES)


NUMPY_DTYPES: Mapping[str, np.dtype] = _NumpyDtypes()


def is_dtype(np_dtype: np.dtype, name: str) -> bool:
    """Whether a numpy dtype is the safetensors dtype ``name``, without importing ml_dtypes."""
    if name in _PLAIN:
        return np.dtype(np_dtype) == np.dtype(_PLAIN[name])
    return np.dtype(np_dtype).name == _ML_DTYPES.get(name)


# --- float32 -> bfloat16 -----------------------------------------------------------------------

BF16_CHUNK = 1 << 16  # values rounded at a time: the float32 chunk and its scratch stay in the CPU cache
_BF16_NAN = 0x7FC0  # the quiet NaN a NaN becomes, with its sign


def round_bf16(f: np.ndarray, dst: np.ndarray, scratch: np.ndarray, finite: bool = False) -> None:
    """float32 values ``f`` (1-D, overwritten) rounded to bfloat16, their bits (uint16) written to
    ``dst``: round to nearest, ties to even; a NaN becomes the quiet NaN ``0x7FC0`` with its sign.
    The same bits as ml_dtypes' ``astype(bfloat16)`` (the cast the reference loaders' numpy side
    does), the one place this rule is written. ``scratch``: uint32, ``f``'s size; ``finite``:
    the caller knows ``f`` holds no NaN (saves looking for one).

    bfloat16 is the upper half of a float32: adding ``0x7FFF`` plus the lowest kept bit to the
    float32 bits and dropping the lower 16 rounds to nearest even (a carry into the exponent is
    the correct next binade or infinity). Integer steps over cache-sized chunks: a few times
    faster than ml_dtypes' cast, and no ml_dtypes import (about a second, holding the GIL)."""
    u = f.view(np.uint32)
    nan = np.isnan(f) if not finite and f.size and np.isnan(f.max()) else None  # max propagates NaN: one pass
    signs = u[nan] >> 16 & 0x8000 if nan is not None else None
    np.right_shift(u, 16, out=scratch)
    scratch &= 1
    scratch += 0x7FFF
    u += scratch
    np.right_shift(u, 16, out=dst, casting="unsafe")
    if nan is not None and signs is not None:
        dst[nan] = signs | _BF16_NAN


def bf16_bits(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x`` (float32 or float16: exact in float32; not float64, which would round twice) as
    bfloat16 bits (uint16, ``x``'s shape; into ``out`` when given), by :func:`round_bf16`."""
    if x.dtype not in (np.float32, np.float16):
        raise TypeError(f"bf16_bits takes float32 or float16, not {x.dtype}")
    res = np.empty(x.shape, dtype=np.uint16) if out is None else out
    src, dst = x.reshape(-1), res.reshape(-1)
    n = min(src.size, BF16_CHUNK)
    f, scratch = np.empty(n, dtype=np.float32), np.empty(n, dtype=np.uint32)
    for lo in range(0, src.size, BF16_CHUNK):
        m = min(BF16_CHUNK, src.size - lo)
        np.copyto(f[:m], src[lo : lo + m])
        round_bf16(f[:m], dst[lo : lo + m], scratch[:m])
    return res


FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})

# User-facing precision names (CLI) -> safetensors names.
PRECISIONS: dict[str, str] = {
    "fp64": "F64",
    "fp32": "F32",
    "fp16": "F16",
    "bf16": "BF16",
    "fp8_e4m3fn": "F8_E4M3",
    "fp8_e5m2": "F8_E5M2",
}
PRECISION_NAMES: dict[str, str] = {v: k for k, v in PRECISIONS.items()}

FP8_DTYPES = frozenset({"F8_E4M3", "F8_E5M2"})
# Largest finite value of each fp8 format (ml_dtypes finfo): values beyond it are clamped before the cast.
FP8_MAX = {"F8_E4M3": 448.0, "F8_E5M2": 57344.0}


def cast_target(target: str, current: str, ndim: int) -> str:
    """The dtype a floating tensor of ``ndim`` dimensions gets when asked for ``target``: fp8 is for
    weight matrices and kernels (2 or more dimensions); biases and norm scales go to fp16 instead
    (or keep the fp8 dtype they already have)."""
    if target in FP8_DTYPES and ndim < 2:
        return current if current in FP8_DTYPES else "F16"
    return target


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def dtype_name(np_dtype: np.dtype) -> str:
    """The safetensors name of a numpy dtype (byte order ignored)."""
    np_dtype = np.dtype(np_dtype)
    if np_dtype.byteorder == ">":
        np_dtype = np_dtype.newbyteorder("<")
    for name, code in _PLAIN.items():
        if np.dtype(code) == np_dtype:
            return name
    for name, attr in _ML_DTYPES.items():
        if np_dtype.name == attr:
            return name
    raise ValueError(f"no safetensors dtype for numpy {np_dtype}")
