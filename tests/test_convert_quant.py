"""sdmodel convert --format gguf / --dtype fp8_*_scaled end to end: files ComfyUI-GGUF and ComfyUI
load, bytes equal to GGML's reference quantizers and to ComfyUI's fp8 formula, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from sdmodel.cli import main
from sdmodel.conversion import convert
from sdmodel.errors import ConversionError
from sdmodel.formats.safetensors import SafetensorsSource
from tests.builders import arrays, layout, shrink
from tests.ggml_reference import Reference, build
from tests.quant_layouts import flux_layout, wan_layout

UNET = "model.diffusion_model."


@pytest.fixture(scope="module")
def ggml() -> Reference:
    return Reference(build())


def _flux(tmp_path: Path, prefix: str = UNET, extra: dict | None = None) -> tuple[Path, dict[str, np.ndarray]]:
    values = {prefix + k: v for k, v in arrays(flux_layout(1, 1, hidden=256)).items()}
    values |= extra or {}
    path = tmp_path / "flux-small.safetensors"
    save_file(values, str(path))
    return path, values


def _cli(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    return int(e.value.code or 0), capsys.readouterr().err


def test_gguf_matches_ggml_and_loads_as_comfyui_gguf_expects(tmp_path: Path, ggml: Reference) -> None:
    src, values = _flux(
        tmp_path, extra={"first_stage_model.decoder.conv_in.weight": np.zeros((4, 4, 3, 3), np.float32)}
    )
    out = tmp_path / "flux-Q4_K_M.gguf"
    r = convert(src, out, format="gguf", quant="Q4_K_M")
    assert r.write is not None and out.stat().st_size == r.write.bytes >= r.bytes_after  # + header, padding
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.architecture"].contents() == "flux"  # in ComfyUI-GGUF's IMG_ARCH_LIST
    assert reader.fields["general.file_type"].contents() == 15
    names = {t.name: t for t in reader.tensors}
    assert not any(n.startswith(("model.", "first_stage_model.")) for n in names)
    assert names["double_blocks.0.img_attn.qkv.weight"].tensor_type.name == "Q5_K"  # Q4_K_M: fused qkv
    assert names["img_in.weight"].tensor_type.name == "BF16"
    assert names["img_in.bias"].tensor_type.name == "F32"
    for name, t in names.items():
        source = values[UNET + name].astype(np.float32)
        stored = np.asarray(t.data).reshape(-1).view(np.uint8)
        if t.tensor_type.name in ("Q4_K", "Q5_K", "Q6_K"):
            assert np.array_equal(stored, ggml.quantize(source, t.tensor_type.name)), name
        else:
            back = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(source.shape)
            assert np.array_equal(back, source), name  # bf16 source: F32 and BF16 hold it exactly
    assert r.tensors and {"name", "type", "bytes", "reason"} <= set(r.tensors[0])


def test_gguf_verify_q8_0_and_gguf_py(tmp_path: Path) -> None:
    src, values = _flux(tmp_path, prefix="")
    out = tmp_path / "f.gguf"
    convert(src, out, format="gguf", quant="Q8_0", verify=True)
    reader = gguf.GGUFReader(out)
    t = next(t for t in reader.tensors if t.name == "single_blocks.0.linear1.weight")
    want = gguf.quants.quantize(values[t.name].astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
    assert np.array_equal(np.asarray(t.data).view(np.uint8).reshape(-1), want.reshape(-1).view(np.uint8))


def test_dry_run_lists_types_and_writes_nothing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sdmodel.cli import main_group

    src, _ = _flux(tmp_path)
    res = CliRunner().invoke(
        main_group, ["convert", str(src), "--format", "gguf", "--quant", "Q4_K_S", "--dry-run"], terminal_width=200
    )
    assert res.exit_code == 0, res.output
    assert "Q4_K" in res.output and "kept by the flux rules" in res.output and "dry run" in res.output
    assert not list(tmp_path.glob("*.gguf"))


def test_dry_run_json(tmp_path: Path) -> None:
    src, _ = _flux(tmp_path)
    r = convert(src, format="gguf", quant="Q4_K_S", dry_run=True)
    rows = {row["name"]: row for row in r.tensors}
    assert rows["double_blocks.0.img_mlp.0.weight"]["type"] == "Q4_K"
    assert str(rows["img_in.weight"]["reason"]).startswith("kept by the flux rules")
    assert r.output is not None and r.output.suffix == ".gguf" and not r.output.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "gguf", "--quant", "Q7_K"], "unknown --quant"),
        (["--format", "gguf"], "go together"),
        (["--quant", "Q4_K_S"], "go together"),
        (["--format", "gguf", "--quant", "Q8_0", "--dtype", "fp16"], "not a --dtype"),
        (["--legacy-scaled-fp8"], "--legacy-scaled-fp8 goes with"),
    ],
)
def test_bad_options_one_line_exit_2(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    src, _ = _flux(tmp_path)
    code, err = _cli(["convert", str(src), *args], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_family_comfyui_gguf_cannot_load(tmp_path: Path, capsys) -> None:
    lay = {"transformer_blocks.0.attn.norm_added_k.weight": ((128,), "BF16"), "x_embedder.weight": ((256, 64), "BF16")}
    path = tmp_path / "diffusers-flux.safetensors"
    save_file(arrays(lay), str(path))
    code, err = _cli(["convert", str(path), "--format", "gguf", "--quant", "Q8_0"], capsys)
    assert code == 2 and "diffusers tensor names" in err
    other = tmp_path / "other.safetensors"
    save_file(arrays({"encoder.layers.0.fc1.weight": ((64, 64), "F32")}), str(other))
    code, err = _cli(["convert", str(other), "--format", "gguf", "--quant", "Q8_0"], capsys)
    assert code == 2 and "ComfyUI-GGUF cannot load" in err
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*tmp*"))


def test_nan_in_the_source_is_refused_and_nothing_written(tmp_path: Path, capsys) -> None:
    src, values = _flux(tmp_path, prefix="")
    bad = values["double_blocks.0.img_mlp.0.weight"].copy()
    bad[3, 5] = np.nan
    values["double_blocks.0.img_mlp.0.weight"] = bad
    save_file(values, str(src))
    out = tmp_path / "out.gguf"
    code, err = _cli(["convert", str(src), "--format", "gguf", "--quant", "Q4_K_S", "-o", str(out)], capsys)
    assert code == 2 and "NaN or infinity" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_wan_5d_and_sdxl_orig_shape(tmp_path: Path) -> None:
    wan = tmp_path / "wan.safetensors"
    save_file(arrays(wan_layout(blocks=1, dim=256, ffn=512)), str(wan))
    out = tmp_path / "wan.gguf"
    convert(wan, out, format="gguf", quant="Q5_K_S")
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.architecture"].contents() == "wan"
    patch = next(t for t in reader.tensors if t.name == "patch_embedding.weight")
    assert patch.tensor_type.name == "F32" and tuple(int(d) for d in reversed(patch.shape)) == (256, 16, 1, 2, 2)
    mod = next(t for t in reader.tensors if t.name == "blocks.0.modulation")
    assert tuple(int(d) for d in reversed(mod.shape)) == (1, 6, 256)

    lay = shrink(
        layout("sdxl-base"), keep=lambda n: n.endswith(("in_layers.2.weight", "add_embedding.linear_1.weight"))
    )
    lay = {k: v for k, v in lay.items() if k.startswith(UNET)}
    sdxl = tmp_path / "sdxl.safetensors"
    save_file(arrays(lay), str(sdxl))
    out = tmp_path / "sdxl.gguf"
    r = convert(sdxl, out, format="gguf", quant="Q4_K_S")
    reader = gguf.GGUFReader(out)
    assert reader.fields["general.architecture"].contents() == "sdxl"
    field = reader.fields["comfy.gguf.orig_shape.input_blocks.1.0.in_layers.2.weight"]
    assert field.types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32] and field.contents() == [320, 320, 3, 3]
    conv = next(t for t in reader.tensors if t.name == "input_blocks.1.0.in_layers.2.weight")
    assert conv.tensor_type.name == "Q4_K" and tuple(int(d) for d in reversed(conv.shape)) == (3600, 256)
    assert r.write is not None


def _comfy_fp8(w: np.ndarray, fp8: str) -> tuple[np.ndarray, np.float32]:
    """ComfyUI's TensorCoreFP8Layout.quantize (comfy/quant_ops.py), in torch."""
    import torch

    dt = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}[fp8]
    t = torch.from_numpy(w.astype(np.float32)).to(torch.bfloat16)
    scale = torch.amax(t.abs()).to(torch.float32) / torch.finfo(dt).max
    q = torch.clamp(t * (1.0 / scale).to(t.dtype), -torch.finfo(dt).max, torch.finfo(dt).max).to(dt)
    return q.view(torch.uint8).numpy(), np.float32(scale.item())


@pytest.mark.parametrize("legacy", [False, True])
def test_scaled_fp8_as_comfyui(tmp_path: Path, legacy: bool) -> None:
    src, values = _flux(tmp_path)
    out = tmp_path / "flux-fp8.safetensors"
    args = {"dtype": "fp8_e4m3fn_scaled", "legacy_scaled_fp8": legacy, "verify": True}
    r = convert(src, out, **args)
    assert r.write is not None
    layer = UNET + "double_blocks.0.img_attn.qkv."
    with SafetensorsSource(out) as f:
        infos = f.tensors
        assert infos[layer + "weight"].dtype == "F8_E4M3"
        got = f.read(layer + "weight").view(np.uint8)
        scale_name = layer + ("scale_weight" if legacy else "weight_scale")
        assert infos[scale_name].dtype == "F32" and infos[scale_name].shape == ()
        want, want_scale = _comfy_fp8(values[layer + "weight"], "F8_E4M3")
        assert np.array_equal(got, want) and f.read(scale_name) == want_scale
        back = got.view(ml_dtypes.float8_e4m3fn).astype(np.float32) * want_scale
        source = values[layer + "weight"].astype(np.float32)
        assert np.abs(back - source).max() <= np.abs(source).max() / 8
        assert infos[layer + "bias"].dtype == "BF16"
        if legacy:
            assert infos[UNET + "scaled_fp8"].dtype == "F8_E4M3" and infos[UNET + "scaled_fp8"].shape == (0,)
            assert infos[UNET + "img_in.weight"].dtype == "F8_E4M3"  # the legacy loader makes every Linear fp8
        else:
            assert json.loads(f.read(layer + "comfy_quant").tobytes()) == {"format": "float8_e4m3fn"}
            assert infos[UNET + "img_in.weight"].dtype == "BF16"  # Flux's input layer stays
            assert UNET + "img_in.comfy_quant" not in infos


def test_scaled_fp8_refuses_unknown_family(tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    save_file(arrays({"encoder.layers.0.fc1.weight": ((64, 64), "F32")}), str(other))
    with pytest.raises(ConversionError, match="cannot load"):
        convert(other, tmp_path / "o.safetensors", dtype="fp8_e4m3fn_scaled")
    with safe_open(str(other), "np") as f:
        assert list(f.keys()) == ["encoder.layers.0.fc1.weight"]
