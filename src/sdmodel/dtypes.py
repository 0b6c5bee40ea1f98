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
_ML_DTYPES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}

ITEMSIZE: dict[str, int] = {name: np.dtype(code).itemsize for name, code in _PLAIN.items()}
ITEMSIZE |= {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}


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
