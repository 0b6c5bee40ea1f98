"""Scaled fp8: the scale and bytes ComfyUI's quantizer computes (re-done here in torch), the tensors
its loader reads."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
import torch

from sdmodel.errors import ConversionError
from sdmodel.quant.fp8_quantize import choose_fp8, comfy_quant, legacy_marker, quantize_fp8, scale_of
from tests.quant_layouts import flux_layout

_TORCH = {"fp8_e4m3fn_scaled": torch.float8_e4m3fn, "fp8_e5m2_scaled": torch.float8_e5m2}


def _comfy(weight: torch.Tensor, fp8: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """ComfyUI comfy/quant_ops.py TensorCoreFP8Layout.quantize with scale="recalculate"."""
    scale = torch.amax(weight.abs()).to(dtype=torch.float32) / torch.finfo(fp8).max
    if weight.dtype not in (torch.float32, torch.bfloat16):
        info = torch.finfo(weight.dtype)
        scale = 1.0 / torch.clamp(1.0 / scale, min=info.min, max=info.max)
    scaled = weight * (1.0 / scale).to(weight.dtype)
    lp = torch.finfo(fp8).max
    torch.clamp(scaled, min=-lp, max=lp, out=scaled)
    return scaled.to(fp8), scale


@pytest.mark.parametrize("fmt", list(_TORCH))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_same_bytes_and_scale_as_comfyui(fmt: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    w = (torch.randn(384, 256, generator=g) * 0.03).to(dtype)
    w[5, 7] = 0.9  # one outlier sets the scale
    expected, expected_scale = _comfy(w, _TORCH[fmt])
    source = w.view(torch.int16).numpy().view(ml_dtypes.bfloat16) if dtype == torch.bfloat16 else w.numpy()
    got, scale = quantize_fp8(source, fmt)  # type: ignore[arg-type]
    assert np.float32(scale) == np.float32(expected_scale.item())
    assert np.array_equal(got.view(np.uint8), expected.view(torch.uint8).numpy())
    # read back as the loader does: fp8 * scale, within fp8 rounding of the source
    back = got.astype(np.float32) * scale
    ref = np.asarray(source, dtype=np.float32)
    assert np.abs(back - ref).max() <= np.abs(ref).max() * (2**-3 if fmt == "fp8_e4m3fn_scaled" else 2**-2)


def test_zero_weight_and_non_finite() -> None:
    got, scale = quantize_fp8(np.zeros((4, 4), np.float32), "fp8_e4m3fn_scaled")
    assert scale == 1 and not got.astype(np.float32).any()
    bad = np.ones((4, 4), np.float32)
    bad[1, 1] = np.inf
    with pytest.raises(ConversionError, match="NaN or infinity"):
        scale_of(bad, "fp8_e4m3fn_scaled")


def test_file_form_tensors() -> None:
    assert json.loads(comfy_quant("fp8_e4m3fn_scaled").tobytes()) == {"format": "float8_e4m3fn"}
    assert comfy_quant("fp8_e5m2_scaled").tobytes() == json.dumps({"format": "float8_e5m2"}).encode()
    marker = legacy_marker("fp8_e4m3fn_scaled")
    assert marker.shape == (0,) and marker.dtype == ml_dtypes.float8_e4m3fn


def test_choice_keeps_family_layers() -> None:
    lay = flux_layout(1, 1)
    keep = ("img_in.", "txt_in.", "final_layer.")
    got = {c.name: c for c in choose_fp8(lay, keep, legacy=False)}
    assert got["double_blocks.0.img_attn.qkv.weight"].quantized
    assert not got["img_in.weight"].quantized and "family" in str(got["img_in.weight"].reason)
    assert not got["double_blocks.0.img_attn.qkv.bias"].quantized
    legacy = {c.name: c for c in choose_fp8(lay, keep, legacy=True)}
    assert legacy["img_in.weight"].quantized  # the legacy loader builds every Linear in fp8


def test_scale_source_reads_the_scale_of_its_weight() -> None:
    from sdmodel.formats.base import DictSource
    from sdmodel.quant.fp8_quantize import ScaleSource

    w = np.linspace(-3, 1, 64, dtype=np.float32).reshape(8, 8)
    main = DictSource({"l.weight": w})
    src = ScaleSource(main, {"l.weight_scale": lambda: main.read("l.weight")}, "fp8_e4m3fn_scaled")
    assert src.tensors["l.weight_scale"].shape == () and src.tensors["l.weight_scale"].dtype == "F32"
    got = src.read("l.weight_scale")
    assert got.shape == () and got == np.float32(3) / np.float32(448)
