"""Builders of quantized model files, written the way their tools write them: GGUF by gguf-py's
GGUFWriter (as ComfyUI-GGUF's convert.py does), scaled fp8 / comfy_quant / NF4 safetensors by
torch + safetensors with the key names of ComfyUI, musubi-tuner and bitsandbytes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# A Flux-shaped diffusion model, small: the real key names, hidden size shrunk to 256 (the probes
# look at names; block sizes need multiples of 256 for the K-quants).
FLUX_SMALL: dict[str, tuple[int, ...]] = {
    "img_in.weight": (256, 64),
    "img_in.bias": (256,),
    "time_in.in_layer.weight": (256, 256),
    "guidance_in.in_layer.weight": (256, 256),
    "double_blocks.0.img_attn.qkv.weight": (768, 256),
    "double_blocks.0.img_attn.norm.key_norm.scale": (128,),
    "double_blocks.0.img_mlp.0.weight": (1024, 256),
    "double_blocks.0.img_mlp.2.weight": (256, 1024),
    "single_blocks.0.linear1.weight": (1792, 256),
    "final_layer.linear.weight": (64, 256),
}


def flux_values(seed: int = 0, scale: float = 0.02) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(s) * scale).astype(np.float32) for k, s in FLUX_SMALL.items()}


def write_gguf(
    path: Path,
    arrays: dict[str, np.ndarray],
    types: dict[str, str],
    arch: str = "flux",
    orig_shapes: dict[str, tuple[int, ...]] | None = None,
    raw: dict[str, np.ndarray] | None = None,
) -> Path:
    """A GGUF file: each array quantized to ``types[name]`` (default F32) by gguf-py. Names in
    ``raw`` give the stored block bytes directly (for types gguf-py cannot quantize)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    for name, shape in (orig_shapes or {}).items():
        w.add_array(f"comfy.gguf.orig_shape.{name}", list(shape))
    for name, a in arrays.items():
        qtype = gguf.GGMLQuantizationType[types.get(name, "F32")]
        if raw and name in raw:
            w.add_tensor(name, raw[name], raw_dtype=qtype)
        elif qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, a.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, a.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(a, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def random_blocks(shape: tuple[int, ...], qtype: str, seed: int = 0) -> np.ndarray:
    """Valid-looking block bytes of a GGML type: random bits with finite fp16 block scales."""
    import gguf

    t = gguf.GGMLQuantizationType[qtype]
    block, size = gguf.GGML_QUANT_SIZES[t]
    byte_shape = (*shape[:-1], shape[-1] // block * size)
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, byte_shape, dtype=np.uint8)
    # Make every byte pair that could be an fp16 scale finite: clear the top exponent bit.
    data[..., 1::2] &= 0b1011_1111
    return data


def save_torch(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def json_tensor(obj: object):
    import torch

    return torch.tensor(list(json.dumps(obj).encode()), dtype=torch.uint8)


def fp8_scaled(values: dict[str, np.ndarray], fp8: str = "float8_e4m3fn") -> dict:
    """ComfyUI legacy scaled fp8: every 2-D weight as fp8 with an fp32 ``scale_weight``."""
    import torch

    dt = getattr(torch, fp8)
    out: dict = {"scaled_fp8": torch.empty(0, dtype=dt)}
    for k, a in values.items():
        t = torch.from_numpy(a)
        if k.endswith(".weight") and t.ndim == 2:
            scale = t.abs().max() / torch.finfo(dt).max
            out[k] = (t / scale).to(dt)
            out[k[: -len("weight")] + "scale_weight"] = scale.reshape(()).float()
        else:
            out[k] = t.to(torch.bfloat16)
    return out
