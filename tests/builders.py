"""Fixture builders: SD-shaped model files written by the real libraries (safetensors, torch.save).

Layouts are ``{name: (shape, dtype)}``. Detection needs real names and shapes, not values:
``write_sparse_safetensors`` writes only the header and truncates the file to full size (no disk,
milliseconds). Files with values use ``shrink`` so that only the tensors detection looks at keep
their real shapes.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from sdmodel.dtypes import NUMPY_DTYPES, is_float
from sdmodel.formats.base import TensorInfo
from sdmodel.formats.safetensors import header_bytes, reference_order
from sdmodel.parts import UNET_PREFIX, ema_key

LAYOUT_DIR = Path(__file__).parent / "data" / "layouts"

Layout = dict[str, tuple[tuple[int, ...], str]]


def layout(name: str) -> Layout:
    """``sd15`` or ``sdxl-base``: the exact tensor names, shapes and dtypes of the real release."""
    raw = json.loads((LAYOUT_DIR / f"{name}.json").read_text())["tensors"]
    return {k: (tuple(v[0]), v[1]) for k, v in raw.items()}


def novelai_clip(lay: Layout) -> Layout:
    """The NovelAI-era spelling of CLIP-L: ``text_model.`` only on ``position_ids`` (real releases
    put it on every key). Both spellings occur in downloaded files."""
    out: Layout = {}
    for k, v in lay.items():
        if ".transformer.text_model." in k and not k.endswith("position_ids"):
            k = k.replace(".transformer.text_model.", ".transformer.", 1)
        out[k] = v
    return out


def with_dtype(lay: Layout, dtype: str) -> Layout:
    """Cast every floating tensor's dtype (integers stay)."""
    return {k: (s, dtype if is_float(d) else d) for k, (s, d) in lay.items()}


def with_ema(lay: Layout, fraction: float = 1.0) -> Layout:
    """Add ``model_ema.*`` copies of (a fraction of) the UNet tensors, plus decay/num_updates."""
    out = dict(lay)
    unet = [k for k in lay if k.startswith(UNET_PREFIX)]
    for k in unet[: round(len(unet) * fraction)]:
        out[ema_key(k)] = lay[k]
    out["model_ema.decay"] = ((), "F32")
    out["model_ema.num_updates"] = ((), "I32")
    return out


def renamed(lay: Layout, rename: Callable[[str], str | None]) -> Layout:
    """Rename keys; ``None`` drops a key."""
    out: Layout = {}
    for k, v in lay.items():
        new = rename(k)
        if new is not None:
            out[new] = v
    return out


def write_sparse_safetensors(path: Path, lay: Layout, metadata: dict[str, str] | None = None) -> Path:
    """A valid safetensors file whose data section is a hole: real header, full size, no disk."""
    infos = reference_order([TensorInfo(k, d, s) for k, (s, d) in lay.items()])
    head, _ = header_bytes(infos, metadata)
    total = len(head) + sum(t.nbytes for t in infos)
    with open(path, "wb") as f:
        f.write(head)
    os.truncate(path, total)
    return Path(path)


def default_keep(name: str) -> bool:
    """Tensors that keep their real shape when shrinking: the ones detection probes."""
    from sdmodel.registry import probe_suffixes

    return name.endswith(probe_suffixes()) or "position_ids" in name


def shrink(lay: Layout, keep: Callable[[str], bool] = default_keep, limit: int = 16) -> Layout:
    """Smaller shapes (each dimension at most ``limit``) except for the tensors ``keep`` names."""
    return {
        k: (s if keep(k) or math.prod(s) <= limit * limit else tuple(min(d, limit) for d in s), d)
        for k, (s, d) in lay.items()
    }


def values_for(name: str, shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    """Plausible values: weights ~N(0, 0.02), norms ~1, position ids 0..n-1, schedules increasing."""
    npdt = NUMPY_DTYPES[dtype]
    if "position_ids" in name:
        return np.arange(math.prod(shape), dtype=np.int64).reshape(shape).astype(npdt)
    if not is_float(dtype):
        return rng.integers(0, 100, size=shape).astype(npdt)
    n = math.prod(shape)
    if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight", "ln_1.weight")):
        v = 1.0 + 0.01 * rng.standard_normal(n)
    elif len(shape) == 1 and n == 1000:
        v = np.linspace(1e-4, 0.999, n)
    else:
        v = 0.02 * rng.standard_normal(n)
    return v.astype(np.float32).reshape(shape).astype(npdt)


def arrays(lay: Layout, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: values_for(k, s, d, rng) for k, (s, d) in lay.items()}


def write_safetensors(path: Path, lay: Layout, metadata: dict[str, str] | None = None, seed: int = 0) -> Path:
    """A safetensors file with values, written by the reference writer."""
    from safetensors.numpy import save_file

    save_file(arrays(lay, seed), str(path), metadata=metadata)
    return Path(path)


def torch_tensors(lay: Layout, seed: int = 0) -> dict:
    import torch

    dt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    out = {}
    for k, a in arrays(lay, seed).items():
        d = lay[k][1]
        if d == "BF16":
            out[k] = torch.from_numpy(a.astype(np.float32)).to(dt[d])
        else:
            out[k] = torch.from_numpy(np.ascontiguousarray(a))
    return out


def write_ckpt(
    path: Path,
    lay: Layout,
    seed: int = 0,
    wrap: Iterable[str] = ("state_dict",),
    extras: dict | None = None,
    legacy: bool = False,
) -> Path:
    """A PyTorch checkpoint written by ``torch.save``: the state dict wrapped in ``wrap`` keys
    (``()`` for a bare state dict), with ``extras`` beside it; ``legacy`` uses the pre-zip format."""
    import torch

    obj: object = torch_tensors(lay, seed)
    for key in reversed(tuple(wrap)):
        obj = {key: obj, **(extras or {})}
    torch.save(obj, str(path), _use_new_zipfile_serialization=not legacy)
    return Path(path)


def png_bytes(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> bytes:
    """A real PNG picture (a vertical gradient from ``top`` to ``bottom``), for preview sidecars."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b""
    for y in range(height):
        t = y / max(1, height - 1)
        pixel = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        rows += b"\x00" + pixel * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_civitai_info(path: Path, *, version: str, base: str, words: list[str], model: str, creator: str) -> None:
    """A ``.civitai.info`` sidecar as the Civitai helpers write it (only the fields sdmodel reads)."""
    record = {"name": version, "baseModel": base, "trainedWords": words, "model": {"name": model}}
    path.write_text(json.dumps({**record, "creator": {"username": creator}}))
