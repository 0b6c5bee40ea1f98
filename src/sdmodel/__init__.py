"""sdmodel: read, identify, check, convert and catalog Stable Diffusion model files.

>>> import sdmodel
>>> with sdmodel.open_model("model.safetensors") as src:
...     print(len(src.tensors))
>>> report = sdmodel.inspect("model.safetensors")   # identification, parts, EMA, CLIP, advice
>>> hashes = sdmodel.hash_file("model.safetensors")  # AutoV1/V2/V3, SHA256, BLAKE3, CRC32
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it (imported on first use, so `import sdmodel` stays fast).
_EXPORTS: dict[str, str] = {
    "open_model": "sdmodel.formats",
    "TensorSource": "sdmodel.formats.base",
    "TensorInfo": "sdmodel.formats.base",
    "SdmodelError": "sdmodel.errors",
    "ModelReadError": "sdmodel.errors",
    "UnsafePickleError": "sdmodel.errors",
    "ConversionError": "sdmodel.errors",
    "inspect": "sdmodel.inspection",
    "hash_file": "sdmodel.hashing",
    "scan": "sdmodel.security.scanner",
    "convert": "sdmodel.conversion",
    "extract": "sdmodel.conversion",
    "diff": "sdmodel.diffing",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sdmodel' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
