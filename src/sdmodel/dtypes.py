"""Tensor element types: safetensors dtype names are the common vocabulary of every module."""

from __future__ import annotations

import ml_dtypes
import numpy as np

# safetensors name -> numpy dtype (little-endian). bf16 and fp8 come from ml_dtypes.
NUMPY_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "C64": np.dtype("<c8"),
    "C128": np.dtype("<c16"),
}

FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})

ITEMSIZE: dict[str, int] = {name: dt.itemsize for name, dt in NUMPY_DTYPES.items()}

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


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def numpy_dtype(dtype: str) -> np.dtype:
    try:
        return NUMPY_DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}") from None


def dtype_name(np_dtype: np.dtype) -> str:
    """The safetensors name of a numpy dtype (byte order ignored)."""
    np_dtype = np.dtype(np_dtype).newbyteorder("<") if np.dtype(np_dtype).byteorder == ">" else np.dtype(np_dtype)
    for name, dt in NUMPY_DTYPES.items():
        if dt == np_dtype:
            return name
    raise ValueError(f"no safetensors dtype for numpy {np_dtype}")
