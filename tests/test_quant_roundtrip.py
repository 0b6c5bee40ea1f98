"""What we write reads back through our own exact dequantization: scaled fp8 (comfy_quant and legacy
forms) reproduces the source within fp8 rounding, GGUF equals gguf-py's dequantization bit for bit."""

from __future__ import annotations

from pathlib import Path

import gguf
import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from sdmodel.conversion import convert
from sdmodel.formats.safetensors import SafetensorsSource
from tests.builders import arrays
from tests.quant_layouts import flux_layout

UNET = "model.diffusion_model."


def _flux(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    values = {UNET + k: v for k, v in arrays(flux_layout(1, 1, hidden=256)).items()}
    path = tmp_path / "flux-small.safetensors"
    save_file(values, str(path))
    return path, values


def _read_all(path: Path) -> dict[str, np.ndarray]:
    with safe_open(str(path), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a Mapping


@pytest.mark.parametrize(("fmt", "fp8", "mantissa_bits", "subnormal"), [
    ("fp8_e4m3fn_scaled", ml_dtypes.float8_e4m3fn, 3, 2.0**-9),
    ("fp8_e5m2_scaled", ml_dtypes.float8_e5m2, 2, 2.0**-16),
])  # fmt: skip
@pytest.mark.parametrize("legacy", [False, True])
def test_scaled_fp8_reads_back_within_fp8_rounding(
    tmp_path: Path, fmt: str, fp8: type, mantissa_bits: int, subnormal: float, legacy: bool
) -> None:
    src, values = _flux(tmp_path)
    out = tmp_path / "flux-fp8.safetensors"
    convert(src, out, dtype=fmt, legacy_scaled_fp8=legacy)
    with SafetensorsSource(out) as f:
        stored = {k: f.read(k) for k in f.tensors}
    back_path = tmp_path / "back.safetensors"
    convert(out, back_path, dtype="fp32")
    back = _read_all(back_path)
    assert set(back) == set(values)  # scales, comfy_quant tensors and the marker are consumed
    quantized = 0
    for name, source in values.items():
        src32 = source.astype(np.float32)
        got = back[name]
        assert got.dtype == np.float32 and got.shape == src32.shape, name
        scale_name = name[: -len("weight")] + ("scale_weight" if legacy else "weight_scale")
        if not name.endswith(".weight") or scale_name not in stored:
            assert np.array_equal(got, src32), name  # kept layers: bf16 values, exact in fp32
            continue
        quantized += 1
        scale = np.float32(stored[scale_name])
        # ComfyUI's dequantization: the fp8 value times its float32 scale
        assert np.array_equal(got, stored[name].view(np.uint8).view(fp8).astype(np.float32) * scale), name
        # within fp8 rounding of the source: half an ulp of the fp8 value (or of its smallest subnormal),
        # plus ComfyUI's bf16 arithmetic before it (1/scale and the product each rounded to bf16: 2^-8)
        ulp = np.maximum(np.abs(src32) * 2.0 ** (-mantissa_bits), subnormal * scale)
        excess = np.abs(got - src32) - (ulp / 2 + np.abs(src32) * 2.0**-7)
        i = int(np.argmax(excess))
        assert excess.flat[i] <= 0, (name, src32.flat[i], got.flat[i], scale)
    assert quantized >= 10


@pytest.mark.parametrize("quant", ["Q8_0", "Q5_1", "Q4_0", "Q6_K", "Q4_K_M", "Q3_K_S", "Q2_K"])
def test_gguf_reads_back_as_gguf_py_dequantizes(tmp_path: Path, quant: str) -> None:
    src, values = _flux(tmp_path)
    out = tmp_path / f"flux-{quant}.gguf"
    convert(src, out, format="gguf", quant=quant)
    back_path = tmp_path / "back.safetensors"
    convert(out, back_path, dtype="fp32")
    back = _read_all(back_path)
    reader = gguf.GGUFReader(out)
    types = set()
    for t in reader.tensors:
        want = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
        assert t.name in back, t.name  # a diffusion-model file: names as ComfyUI-GGUF loads them
        assert np.array_equal(back[t.name], want.reshape(values[UNET + t.name].shape)), t.name
        types.add(t.tensor_type.name)
    assert len(back) == len(reader.tensors) and len(types) >= 2
