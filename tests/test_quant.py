"""Quantized storage: the GGUF reader, storage detection, exact dequantization against the
reference libraries (gguf-py, torch, bitsandbytes), named problems and hostile files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from sdmodel.errors import ConversionError, ModelReadError
from sdmodel.formats import open_model, sniff
from sdmodel.quant.dequant import unblock_scales
from sdmodel.quant.storage import analyze, describe
from sdmodel.quant.view import DequantizedSource
from tests.quant_files import (
    FLUX_SMALL,
    flux_values,
    fp8_scaled,
    json_tensor,
    random_blocks,
    save_torch,
    write_gguf,
)

torch = pytest.importorskip("torch")
TORCH = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def bits(a) -> np.ndarray:
    """Bit patterns, so that NaNs and signed zeros compare exactly."""
    if isinstance(a, torch.Tensor):
        a = a.contiguous()
        return a.view({1: torch.uint8, 2: torch.int16, 4: torch.int32}[a.element_size()]).numpy()
    return np.ascontiguousarray(a).view({1: np.uint8, 2: np.int16, 4: np.int32}[a.dtype.itemsize])


# --- GGUF -------------------------------------------------------------------------------------


TYPES = {
    "img_in.weight": "Q8_0",
    "time_in.in_layer.weight": "Q5_0",
    "guidance_in.in_layer.weight": "Q4_0",
    "double_blocks.0.img_attn.qkv.weight": "Q4_K",
    "double_blocks.0.img_mlp.0.weight": "Q6_K",
    "double_blocks.0.img_mlp.2.weight": "IQ4_NL",
    "single_blocks.0.linear1.weight": "Q2_K",
    "final_layer.linear.weight": "F16",
}
RAW = ("Q4_K", "Q6_K", "IQ4_NL", "Q2_K")


@pytest.fixture
def flux_gguf(tmp_path):
    values = flux_values()
    # img_in as ComfyUI-GGUF stores a tensor it reshaped: (n/256, 256) plus comfy.gguf.orig_shape.
    values["img_in.weight"] = values["img_in.weight"].reshape(-1, 256)
    raw = {k: random_blocks(FLUX_SMALL[k], t, seed=i) for i, (k, t) in enumerate(TYPES.items()) if t in RAW}
    path = write_gguf(tmp_path / "flux-Q4_K.gguf", values, TYPES, orig_shapes={"img_in.weight": (256, 64)}, raw=raw)
    return path


def test_gguf_reader_lists_model_shapes_and_types(flux_gguf):
    assert sniff(flux_gguf) == "gguf"
    with open_model(flux_gguf) as src:
        assert src.format == "gguf" and src.fields["general.architecture"] == "flux"
        assert {n: t.shape for n, t in src.tensors.items()} == FLUX_SMALL
        assert src.tensors["img_in.weight"].stored_shape == (64, 256)
        assert {n: t.dtype for n, t in src.tensors.items() if n in TYPES} == TYPES
        assert src.tensors["img_in.bias"].dtype == "F32"
        assert src.tensors["double_blocks.0.img_attn.qkv.weight"].nbytes == 768 * 256 // 256 * 144


@pytest.mark.parametrize("out", ["F32", "BF16", "F16"])
def test_gguf_dequantization_is_bit_identical_to_gguf_py(flux_gguf, out):
    import gguf

    ref = gguf.GGUFReader(str(flux_gguf))
    with DequantizedSource(open_model(flux_gguf), out) as view:
        assert set(view.tensors) == set(FLUX_SMALL)
        for t in ref.tensors:
            want = gguf.quants.dequantize(t.data, t.tensor_type).reshape(FLUX_SMALL[t.name])
            got = view.read(t.name)
            assert got.shape == FLUX_SMALL[t.name]
            if t.name in TYPES and TYPES[t.name] not in ("F16",):
                assert view.tensors[t.name].dtype == out
                expect = torch.from_numpy(np.ascontiguousarray(want)).to(TORCH[out])
                assert (bits(got) == bits(expect)).all(), t.name
            else:
                assert (bits(got) == bits(want.astype(got.dtype))).all(), t.name


def test_q8_0_kernel_is_gguf_py_on_every_scale(tmp_path, monkeypatch):
    """Our Q8_0 kernel (dequant.q8_0_into, read from the file in chunks on worker threads) gives
    gguf-py's ``dequantize`` then ml_dtypes' cast bit for bit: every fp16 scale (subnormal,
    infinite, NaN: NaN and inf * 0 values too) with random codes, chunks ending mid-tensor,
    through ``read``, through ``read_bits`` (the engine's: bf16 as uint16) and from memory."""
    import gguf
    import ml_dtypes

    from sdmodel.quant import dequant

    monkeypatch.setattr(dequant, "Q8_0_READ", 3000)  # several file chunks, the last one short
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, ((1 << 16) + 64, 34), dtype=np.uint8)
    blocks[: 1 << 16, :2] = np.arange(1 << 16, dtype=np.uint16).view(np.uint8).reshape(-1, 2)
    blocks[::7, 2:10] = 0  # code 0 times an infinite scale: NaN
    raw = blocks.reshape(1025, 64 * 34)
    path = write_gguf(
        tmp_path / "q8.gguf",
        {"w.weight": np.zeros((1025, 2048), np.float32)},
        {"w.weight": "Q8_0"},
        raw={"w.weight": raw},
    )
    with np.errstate(all="ignore"):
        ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0)
    for out, dtype in (("F32", np.float32), ("F16", np.float16), ("BF16", ml_dtypes.bfloat16)):
        with np.errstate(all="ignore"):
            want = bits(ref.astype(dtype))
        with DequantizedSource(open_model(path), out) as view:
            got = view.read("w.weight")
            assert got.dtype == dtype and np.array_equal(bits(got), want), out
            assert np.array_equal(bits(view.read_bits("w.weight")), want), out
        assert np.array_equal(bits(dequant.q8_0(raw, out)).reshape(want.shape), want), out


def test_gguf_storage_label_counts_the_mix(flux_gguf):
    with open_model(flux_gguf) as src:
        layout = analyze(src)
        st = describe(src, layout, src.tensors)
    assert st.scheme == "gguf"
    assert st.label.startswith("GGUF Q2_K (mix: ") and "1 Q4_K" in st.label and "2 F32" in st.label
    assert 2 < st.bits_per_weight < 16


def _gguf_bytes(tensors=(("a", (32,), 0, 0),), kv=(), version=3, n_tensors=None, n_kv=None, data=b"\0" * 128):
    """A hand-made GGUF: ``tensors`` as (name, ne, type, offset), ``kv`` as raw encoded items."""
    out = b"GGUF" + struct.pack(
        "<IQQ", version, len(tensors) if n_tensors is None else n_tensors, len(kv) if n_kv is None else n_kv
    )
    for item in kv:
        out += item
    for name, ne, typ, off in tensors:
        nb = name.encode()
        out += struct.pack("<Q", len(nb)) + nb + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
        out += struct.pack("<IQ", typ, off)
    out += b"\0" * (-len(out) % 32)
    return out + data


def _kv_string(key: str, value: str, length: int | None = None) -> bytes:
    k, v = key.encode(), value.encode()
    return (
        struct.pack("<Q", len(k))
        + k
        + struct.pack("<I", 8)
        + struct.pack("<Q", len(v) if length is None else length)
        + v
    )


HOSTILE = [
    ("truncated header", lambda: _gguf_bytes()[:30], "truncated"),
    ("absurd tensor count", lambda: _gguf_bytes(n_tensors=1 << 60), "absurd"),
    ("absurd kv count", lambda: _gguf_bytes(n_kv=1 << 62), "absurd"),
    ("absurd string length", lambda: _gguf_bytes(kv=[_kv_string("general.name", "x", length=1 << 50)]), "absurd"),
    ("data beyond the file", lambda: _gguf_bytes(tensors=[("a", (1024,), 0, 0)]), "past the end"),
    ("overlapping tensors", lambda: _gguf_bytes(tensors=[("a", (16,), 0, 0), ("b", (16,), 0, 32)]), "overlap"),
    ("unknown type", lambda: _gguf_bytes(tensors=[("a", (32,), 77, 0)]), "unknown GGML type"),
    ("partial block", lambda: _gguf_bytes(tensors=[("a", (30,), 8, 0)]), "whole number"),
    ("misaligned offset", lambda: _gguf_bytes(tensors=[("a", (4,), 0, 4)]), "multiple of 32"),
    ("absurd rank", lambda: _gguf_bytes(tensors=[("a", (1,) * 40, 0, 0)]), "rank"),
    ("version 1", lambda: _gguf_bytes(version=1), "version"),
    ("bad orig_shape", lambda: _gguf_bytes(kv=[_kv_string("comfy.gguf.orig_shape.a", "x")]), "orig_shape"),
]


@pytest.mark.parametrize(("what", "make", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_gguf_gives_one_line_errors(tmp_path, what, make, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(make())
    with pytest.raises(ModelReadError) as err:
        open_model(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_handmade_gguf_reads(tmp_path):
    path = tmp_path / "ok.gguf"
    data = np.arange(32, dtype=np.float32).tobytes() + b"\0" * 0
    path.write_bytes(_gguf_bytes(tensors=[("a", (8, 4), 0, 0)], data=data))
    with open_model(path) as src:
        assert src.tensors["a"].shape == (4, 8)
        assert src.read("a").reshape(-1).tolist() == list(range(32))


# --- scaled fp8 (ComfyUI legacy, musubi-tuner, weight_scale) -------------------------------------


@pytest.mark.parametrize("fp8", ["float8_e4m3fn", "float8_e5m2"])
@pytest.mark.parametrize("out", ["F32", "BF16", "F16"])
def test_comfy_scaled_fp8_matches_comfyui_math(tmp_path, fp8, out):
    tensors = fp8_scaled(flux_values(), fp8)
    tensors["img_in.scale_weight"] = torch.tensor(0.123456789, dtype=torch.float32)  # not bf16-exact
    path = save_torch(tmp_path / "flux_fp8_scaled.safetensors", tensors)
    with open_model(path) as src:
        layout = analyze(src)
        assert layout.markers == ["scaled_fp8"] and not layout.problems
        assert "scaled_fp8" in layout.consumed and "img_in.scale_weight" in layout.consumed
        st = describe(src, layout, src.tensors)
        assert st.label.startswith(f"fp8 {'e4m3' if 'e4m3' in fp8 else 'e5m2'}, per-tensor scale (ComfyUI scaled)")
        view = DequantizedSource(src, out, layout)
        assert not any(n.endswith(("scale_weight", "scaled_fp8")) for n in view.tensors)
        for name in view.tensors:
            got = view.read(name)
            t = tensors[name]
            if t.dtype == getattr(torch, fp8):
                # ComfyUI comfy/ops.py scaled_fp8_op: weight.to(dtype) * scale_weight.to(dtype)
                scale = tensors[name[: -len("weight")] + "scale_weight"]
                want = t.to(TORCH[out]) * scale.to(TORCH[out])
                assert (bits(got) == bits(want)).all(), name
            else:
                assert (bits(got) == bits(t)).all()


def test_musubi_block_and_row_fp8_match_musubi_math(tmp_path):
    rng = np.random.default_rng(1)
    w = torch.from_numpy(rng.standard_normal((64, 256)).astype(np.float32))
    blocks = w.reshape(64, 4, 64)
    bscale = (blocks.abs().amax(dim=2, keepdim=True) / 448).to(torch.bfloat16)
    bq = (blocks / bscale.float()).to(torch.float8_e4m3fn).reshape(64, 256)
    rscale = (w.abs().amax(dim=1, keepdim=True) / 448).float()
    rq = (w / rscale).to(torch.float8_e4m3fn)
    path = save_torch(
        tmp_path / "musubi.safetensors",
        {"a.weight": bq, "a.scale_weight": bscale, "b.weight": rq, "b.scale_weight": rscale},
    )
    with open_model(path) as src:
        layout = analyze(src)
        assert layout.tensors["a.weight"].param("granularity") == "block"
        assert layout.tensors["b.weight"].param("granularity") == "row"
        assert "musubi-tuner" in describe(src, layout, ["a.weight", "a.scale_weight"]).label
        view = DequantizedSource(src, "F32", layout)
        # musubi-tuner fp8_linear_forward_patch: weight.to(scale.dtype) (viewed in blocks) * scale
        want_a = (bq.to(torch.bfloat16).view(64, 4, 64) * bscale).view(64, 256).float()
        want_b = rq.to(torch.float32) * rscale
        assert (bits(view.read("a.weight")) == bits(want_a)).all()
        assert (bits(view.read("b.weight")) == bits(want_b)).all()


# --- ComfyUI mixed precision (comfy_quant) ------------------------------------------------------


def to_blocked(sf):
    """comfy-kitchen float_utils.to_blocked (cuBLAS 128x4 tiles, 32x4x4 inside), in torch."""
    rows, cols = sf.shape
    rp, cp = -(-rows // 128) * 128, -(-cols // 4) * 4
    padded = torch.zeros(rp, cp, dtype=sf.dtype)
    padded[:rows, :cols] = sf
    t = padded.view(rp // 128, 128, cp // 4, 4).permute(0, 2, 1, 3)
    return t.reshape(-1, 4, 32, 4).transpose(1, 2).reshape(rp, cp).contiguous()


def kitchen_nvfp4(qx, per_tensor, block_scales, out):
    """comfy-kitchen backends/eager/quantization.py dequantize_nvfp4, restated in torch."""
    lut = torch.tensor([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]).to(out)
    codes = torch.stack([qx >> 4, qx & 0x0F], dim=-1).view(qx.shape[0], -1)
    vals = lut[codes.long()].reshape(qx.shape[0], -1, 16)
    rows, nb = qx.shape[0], qx.shape[1] * 2 // 16
    flat = block_scales.view(torch.uint8).reshape(-1)
    un = torch.from_numpy(unblock_scales(flat.numpy(), rows, nb).copy()).view(torch.float8_e4m3fn)
    total = per_tensor.to(out) * un.to(out)
    return (vals * total.unsqueeze(-1)).view(rows, -1).to(out)


def kitchen_mxfp8(qx, block_scales, out):
    rows, cols = qx.shape
    un = unblock_scales(block_scales.view(torch.uint8).reshape(-1).numpy(), rows, cols // 32)
    scale = torch.pow(2.0, torch.from_numpy(un.astype(np.float32)) - 127)
    return (qx.to(torch.float32).reshape(rows, cols // 32, 32) * scale.unsqueeze(-1)).reshape(rows, cols).to(out)


def test_unblock_scales_inverts_the_tiled_layout():
    sf = torch.arange(200 * 9, dtype=torch.int32).reshape(200, 9)
    assert (unblock_scales(to_blocked(sf).reshape(-1).numpy(), 200, 9) == sf.numpy()).all()


@pytest.fixture
def comfy_quant_file(tmp_path):
    g = torch.Generator().manual_seed(3)
    w8 = torch.randn(256, 128, generator=g)
    s8 = (w8.abs().max() / 448).float()
    nv = torch.randint(0, 256, (256, 64), dtype=torch.uint8, generator=g)
    nv_sf = to_blocked((torch.rand(256, 8, generator=g) * 4 + 0.01).to(torch.float8_e4m3fn))
    mx = torch.randn(128, 64, generator=g).to(torch.float8_e4m3fn)
    mx_sf = to_blocked(torch.randint(120, 130, (128, 2), dtype=torch.uint8, generator=g)).view(torch.float8_e8m0fnu)
    i8 = torch.randint(-127, 128, (64, 64), dtype=torch.int8, generator=g)
    tensors = {
        "a.weight": (w8 / s8).to(torch.float8_e4m3fn),
        "a.weight_scale": s8,
        "a.input_scale": torch.tensor(1.0),
        "a.comfy_quant": json_tensor({"format": "float8_e4m3fn"}),
        "a.bias": torch.randn(256, generator=g).to(torch.bfloat16),
        "b.weight": nv,
        "b.weight_scale": nv_sf,
        "b.weight_scale_2": torch.tensor(0.0123456, dtype=torch.float32),
        "b.comfy_quant": json_tensor({"format": "nvfp4"}),
        "c.weight": mx,
        "c.weight_scale": mx_sf,
        "c.comfy_quant": json_tensor({"format": "mxfp8"}),
        "d.weight": i8,
        "d.weight_scale": torch.tensor(0.0077, dtype=torch.float32),
        "d.comfy_quant": json_tensor({"format": "int8_tensorwise"}),
        "e.weight": i8.clone(),
        "e.weight_scale": torch.rand(64, 1, generator=g),
        "e.comfy_quant": json_tensor({"format": "int8_tensorwise"}),
        "norm.weight": torch.randn(64, generator=g).to(torch.bfloat16),
    }
    return save_torch(tmp_path / "mixed.safetensors", tensors), tensors


@pytest.mark.parametrize("out", ["F32", "BF16", "F16"])
def test_comfy_quant_formats_match_comfy_kitchen(comfy_quant_file, out):
    path, t = comfy_quant_file
    o = TORCH[out]
    with open_model(path) as src:
        layout = analyze(src)
        assert {q.format for q in layout.tensors.values()} == {"float8_e4m3fn", "nvfp4", "mxfp8", "int8_tensorwise"}
        assert not layout.problems
        view = DequantizedSource(src, out, layout)
        assert sorted(view.tensors) == [
            "a.bias",
            "a.weight",
            "b.weight",
            "c.weight",
            "d.weight",
            "e.weight",
            "norm.weight",
        ]
        assert view.tensors["b.weight"].shape == (256, 128)
        want = {
            "a.weight": t["a.weight"].to(o) * t["a.weight_scale"].to(o),
            "b.weight": kitchen_nvfp4(t["b.weight"], t["b.weight_scale_2"], t["b.weight_scale"], o),
            "c.weight": kitchen_mxfp8(t["c.weight"], t["c.weight_scale"], o),
            # TensorWiseINT8Layout.dequantize: qdata.to(orig_dtype) * scale
            "d.weight": (t["d.weight"].to(o) * t["d.weight_scale"]).to(o),
            "e.weight": (t["e.weight"].to(o) * t["e.weight_scale"]).to(o),
        }
        for name, w in want.items():
            assert (bits(view.read(name)) == bits(w)).all(), name


def padded_blocked_layers(g) -> dict:
    """nvfp4 of a 20x40 layer and mxfp8 of a 40x50 one as comfy-kitchen stores them: padded to
    whole blocks each side (32x48 and 64x64), scale matrices (32x3, 64x2) in the tiled layout."""
    return {
        "n.weight": torch.randint(0, 256, (32, 24), dtype=torch.uint8, generator=g),
        "n.weight_scale": to_blocked((torch.rand(32, 3, generator=g) * 4 + 0.01).to(torch.float8_e4m3fn)),
        "n.weight_scale_2": torch.tensor(0.02, dtype=torch.float32),
        "n.bias": torch.randn(20, generator=g).to(torch.bfloat16),
        "m.weight": torch.randn(64, 64, generator=g).to(torch.float8_e4m3fn),
        "m.weight_scale": to_blocked(torch.randint(120, 130, (64, 2), dtype=torch.uint8, generator=g)),
        "m.bias": torch.randn(40, generator=g).to(torch.bfloat16),
    }


def test_padded_blocked_weights_crop_to_orig_shape(tmp_path):
    g = torch.Generator().manual_seed(5)
    t = padded_blocked_layers(g)
    t["n.comfy_quant"] = json_tensor({"format": "nvfp4", "orig_shape": [20, 40]})
    t["m.comfy_quant"] = json_tensor({"format": "mxfp8", "orig_shape": [40, 50]})
    path = save_torch(tmp_path / "padded.safetensors", t)
    with open_model(path) as src:
        layout = analyze(src)
        assert not layout.problems
        view = DequantizedSource(src, "BF16", layout)
        assert (view.tensors["n.weight"].shape, view.tensors["m.weight"].shape) == ((20, 40), (40, 50))
        o = torch.bfloat16
        want_n = kitchen_nvfp4(t["n.weight"], t["n.weight_scale_2"], t["n.weight_scale"], o)[:20, :40]
        want_m = kitchen_mxfp8(t["m.weight"], t["m.weight_scale"], o)[:40, :50]
        assert (bits(view.read("n.weight")) == bits(want_n)).all()
        assert (bits(view.read("m.weight")) == bits(want_m)).all()


def test_padded_blocked_weights_without_orig_shape_are_refused(tmp_path):
    """The bias says the layer has fewer rows than stored: the padding is known to be there but
    the real column count is not, so sdmodel refuses rather than guess."""
    g = torch.Generator().manual_seed(6)
    t = padded_blocked_layers(g)
    t["n.comfy_quant"] = json_tensor({"format": "nvfp4"})
    t["m.comfy_quant"] = json_tensor({"format": "mxfp8"})
    t["f.weight"] = torch.zeros(8, 8, dtype=torch.float8_e4m3fn)
    t["f.weight_scale"] = torch.tensor(1.0)
    t["f.comfy_quant"] = json_tensor({"format": "float8_e4m3fn", "orig_shape": [3, 3]})
    path = save_torch(tmp_path / "padded.safetensors", t)
    with open_model(path) as src:
        layout = analyze(src)
        # ComfyUI loads all three (it takes the shape from the model): not loading problems.
        assert not layout.problems
        assert {n for n, q in layout.tensors.items() if q.unsupported} == {"n.weight", "m.weight", "f.weight"}
        with pytest.raises(ConversionError, match=r"f\.weight: cannot dequantize a comfy_quant orig_shape"):
            DequantizedSource(src, "BF16", layout)
        loose = DequantizedSource(src, "BF16", layout, strict=False)
        for name, why in (("n.weight", r"\[32, 48\] \(n.bias has 20 rows\)"), ("m.weight", r"\[64, 64\] \(m.bias")):
            with pytest.raises(
                ConversionError, match=f"{name}: cannot dequantize a weight stored padded to {why}"
            ) as e:
                loose.read(name)
            assert "\n" not in str(e.value) and "records no orig_shape" in str(e.value)


def test_blocked_weights_without_padding_evidence_keep_the_stored_shape(tmp_path):
    g = torch.Generator().manual_seed(7)
    t = {k: v for k, v in padded_blocked_layers(g).items() if not k.endswith("bias")}
    t["n.comfy_quant"] = json_tensor({"format": "nvfp4"})
    t["m.comfy_quant"] = json_tensor({"format": "mxfp8"})
    path = save_torch(tmp_path / "aligned.safetensors", t)
    with open_model(path) as src:
        view = DequantizedSource(src, "F32")
        assert (view.read("n.weight").shape, view.read("m.weight").shape) == ((32, 48), (64, 64))


def test_comfy_quant_problems_are_named(tmp_path):
    tensors = {
        "a.weight": torch.zeros(16, 16, dtype=torch.float8_e4m3fn),
        "a.comfy_quant": json_tensor({"fmt": "float8_e4m3fn"}),
        "b.weight": torch.zeros(16, 16, dtype=torch.float8_e4m3fn),
        "b.weight_scale": torch.tensor(1.0, dtype=torch.bfloat16),
        "b.comfy_quant": json_tensor({"format": "float8_e4m3fn"}),
        "c.weight": torch.zeros(16, 8, dtype=torch.uint8),
        "c.weight_scale": torch.zeros(16, 1, dtype=torch.uint8),
        "c.weight_scale_2": torch.tensor(1.0),
        "c.comfy_quant": json_tensor({"format": "nvfp4"}),
        "d.weight": torch.zeros(16, 16, dtype=torch.float8_e4m3fn),
        "d.comfy_quant": json_tensor({"format": "float8_e4m3fn"}),
        "e.weight": torch.zeros(16, 16, dtype=torch.uint8),
        "e.comfy_quant": json_tensor({"format": "w2a2_magic"}),
    }
    path = save_torch(tmp_path / "bad.safetensors", tensors)
    with open_model(path) as src:
        layout = analyze(src)
    codes = {(p.code, p.name.split(".")[0]) for p in layout.problems}
    assert codes == {
        ("comfy-quant-no-format", "a"),
        ("scale-dtype", "b"),
        ("packed-shape", "c"),
        ("scale-missing", "d"),
        ("comfy-quant-unknown-format", "e"),
    }
    with open_model(path) as src:
        layout = analyze(src)
        assert str(layout.tensors["c.weight"].unsupported) == "nvfp4 with U8[16, 1] block scales (512 fp8 needed)"
        with pytest.raises(ConversionError, match=r"c\.weight: cannot dequantize nvfp4 with U8"):
            DequantizedSource(src, "BF16", layout)
        with pytest.raises(ConversionError, match="w2a2_magic"):
            DequantizedSource(src, "BF16", layout, strict=False).read("e.weight")


def test_comfy_quant_that_is_not_json_is_a_one_line_error(tmp_path):
    import torch as t

    path = save_torch(
        tmp_path / "x.safetensors",
        {"a.weight": t.zeros(4, 4, dtype=t.float8_e4m3fn), "a.comfy_quant": t.tensor(list(b"{nope"), dtype=t.uint8)},
    )
    with open_model(path) as src, pytest.raises(ModelReadError, match="not valid JSON"):
        analyze(src)


def test_plain_files_have_no_quantized_storage(tmp_path):
    path = save_torch(tmp_path / "p.safetensors", {"a.weight": torch.zeros(4, 4, dtype=torch.bfloat16)})
    with open_model(path) as src:
        layout = analyze(src)
        assert not layout.quantized and not layout.problems
        st = describe(src, layout, src.tensors)
        assert (st.label, st.bits_per_weight, st.scheme) == ("bf16", 16.0, "plain")


def test_fp8_without_scale_and_without_marker_is_plain(tmp_path):
    """Plain fp8 (``--dtype fp8_e4m3fn`` output) has no scales: not quantized storage."""
    path = save_torch(tmp_path / "p.safetensors", {"a.weight": torch.zeros(4, 4, dtype=torch.float8_e4m3fn)})
    with open_model(path) as src:
        assert not analyze(src).quantized


# --- bitsandbytes NF4 / FP4 ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nf4", "fp4"])
@pytest.mark.parametrize("nested", [True, False])
def test_bnb_4bit_matches_bitsandbytes(tmp_path, kind, nested):
    F = pytest.importorskip("bitsandbytes.functional")
    g = torch.Generator().manual_seed(5)
    w = torch.randn(96, 200, generator=g).to(torch.bfloat16)
    q, state = F.quantize_4bit(w, blocksize=64, quant_type=kind, compress_statistics=nested)
    tensors = {"m.weight": q}
    for k, v in state.as_dict(packed=True).items():
        tensors[f"m.weight.{k}"] = v
    tensors["m.bias"] = torch.zeros(96, dtype=torch.bfloat16)
    path = save_torch(tmp_path / "nf4.safetensors", tensors)
    want = F.dequantize_4bit(q, state)
    with open_model(path) as src:
        layout = analyze(src)
        assert not layout.problems
        st = describe(src, layout, src.tensors)
        assert st.label == f"{kind.upper()} (bitsandbytes, block 64)" and 4 < st.bits_per_weight < 5
        view = DequantizedSource(src, "BF16", layout)
        assert sorted(view.tensors) == ["m.bias", "m.weight"]
        assert view.tensors["m.weight"].shape == (96, 200)
        assert (bits(view.read("m.weight")) == bits(want)).all()


# --- Nunchaku ----------------------------------------------------------------------------------


def test_nunchaku_is_identified_and_refused(tmp_path):
    tensors = {
        "transformer_blocks.0.attn.to_qkv.qweight": torch.zeros(64, 32, dtype=torch.int8),
        "transformer_blocks.0.attn.to_qkv.wscales": torch.zeros(2, 64, dtype=torch.bfloat16),
        "transformer_blocks.0.attn.to_qkv.proj_down": torch.zeros(64, 16, dtype=torch.bfloat16),
        "transformer_blocks.0.attn.to_qkv.proj_up": torch.zeros(64, 16, dtype=torch.bfloat16),
    }
    path = save_torch(tmp_path / "svdq-int4.safetensors", tensors)
    with open_model(path) as src:
        layout = analyze(src)
        st = describe(src, layout, src.tensors)
        assert "Nunchaku SVDQuant" in st.label
        with pytest.raises(ConversionError, match="ComfyUI-nunchaku"):
            DequantizedSource(src, "BF16", layout)


# --- same model in another precision -----------------------------------------------------------


def test_precision_sketch_groups_copies_and_separates_fine_tunes(tmp_path):
    """bf16, fp8-scaled and Q8_0 copies of one model are the same model; a fine-tune of it (even a
    mild one) is not, in any precision."""
    import gguf

    from sdmodel.quant.sketch import Sketch, precision_sketch

    base = flux_values(seed=7)
    rng = np.random.default_rng(8)
    tuned = {k: v + (rng.standard_normal(v.shape) * 2e-4).astype(np.float32) for k, v in base.items()}

    def copies(values, tag):
        bf16 = save_torch(
            tmp_path / f"{tag}-bf16.safetensors", {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in values.items()}
        )
        fp8 = save_torch(tmp_path / f"{tag}-fp8.safetensors", fp8_scaled(values))
        q8 = write_gguf(tmp_path / f"{tag}-Q8_0.gguf", values, {k: "Q8_0" for k, v in values.items() if v.ndim == 2})
        f32 = save_torch(tmp_path / f"{tag}-f32.safetensors", {k: torch.from_numpy(v) for k, v in values.items()})
        return [bf16, fp8, q8, f32]

    sketches = {}
    for tag, values in (("base", base), ("tuned", tuned)):
        for path in copies(values, tag):
            with open_model(path) as src:
                sk = precision_sketch(src)
            sketches[path.name] = Sketch.decode(sk.encode())
    names = list(sketches)
    for a in names:
        for b in names:
            same = sketches[a].same_model(sketches[b])
            assert same == (a.split("-")[0] == b.split("-")[0]), (a, b)
    assert gguf  # gguf-py wrote the Q8_0 copies


# --- scan ----------------------------------------------------------------------------------------


def test_scan_gives_gguf_and_quantized_files_a_verdict(tmp_path, flux_gguf):
    from sdmodel.security.scanner import scan

    good = scan(flux_gguf)
    assert (good.verdict, good.format) == ("safe", "gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(_gguf_bytes(tensors=[("a", (16,), 0, 0), ("b", (16,), 0, 32)]))
    assert scan(bad).verdict == "error" and "overlap" in str(scan(bad).findings[0].message)
    fp8 = save_torch(tmp_path / "fp8.safetensors", fp8_scaled(flux_values()))
    assert scan(fp8).verdict == "safe"
    path = save_torch(
        tmp_path / "x.safetensors",
        {
            "a.weight": torch.zeros(4, 4, dtype=torch.float8_e4m3fn),
            "a.comfy_quant": torch.tensor(list(b"{no"), dtype=torch.uint8),
        },
    )
    report = scan(path)
    assert report.verdict == "suspicious" and report.findings[0].code == "bad-quant-state"


def test_gguf_t5_encoder_gets_transformers_names(tmp_path):
    """city96's T5 GGUFs carry llama.cpp names; the view gives back the names T5 loaders read."""
    rng = np.random.default_rng(0)
    arrays = {
        "token_embd.weight": rng.standard_normal((64, 256)).astype(np.float32),
        "enc.blk.0.attn_q.weight": rng.standard_normal((256, 256)).astype(np.float32),
        "enc.blk.0.attn_rel_b.weight": rng.standard_normal((32, 4)).astype(np.float32),
        "enc.blk.0.ffn_gate.weight": rng.standard_normal((512, 256)).astype(np.float32),
        "enc.output_norm.weight": np.ones(256, np.float32),
    }
    path = write_gguf(tmp_path / "t5-Q8_0.gguf", arrays, {"enc.blk.0.attn_q.weight": "Q8_0"}, arch="t5encoder")
    with DequantizedSource(open_model(path), "F32") as view:
        assert sorted(view.tensors) == [
            "encoder.block.0.layer.0.SelfAttention.q.weight",
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            "encoder.block.0.layer.1.DenseReluDense.wi_0.weight",
            "encoder.final_layer_norm.weight",
            "shared.weight",
        ]
        assert view.read("shared.weight").shape == (64, 256)
    llama = write_gguf(
        tmp_path / "llama.gguf", {"blk.0.attn_q.weight": arrays["enc.blk.0.attn_q.weight"]}, {}, arch="llama"
    )
    with open_model(llama) as src, pytest.raises(ConversionError, match="key-value heads"):
        DequantizedSource(src, "F32")  # no head counts: the permutation cannot be undone exactly


def _llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (what its GGUF files store)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.mark.parametrize(("heads", "ok"), [((32, 8), True), ((40, 8), False)])
def test_gguf_llama_text_encoder_gets_transformers_names_and_order(tmp_path, heads, ok):
    """A Llama GGUF (llama.cpp names, q/k rows permuted) reads back as the transformers weights, as
    ComfyUI-GGUF's loader maps and un-permutes it (32 / 8 heads); other head counts are refused."""
    import gguf

    rng = np.random.default_rng(0)
    head_dim = 4
    hf = {
        "model.embed_tokens.weight": rng.standard_normal((16, 64)).astype(np.float32),
        "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((heads[0] * head_dim, 64)).astype(np.float32),
        "model.layers.0.self_attn.k_proj.weight": rng.standard_normal((heads[1] * head_dim, 64)).astype(np.float32),
        "model.layers.0.self_attn.v_proj.weight": rng.standard_normal((heads[1] * head_dim, 64)).astype(np.float32),
        "model.layers.0.input_layernorm.weight": np.ones(64, np.float32),
    }
    stored = {
        "token_embd.weight": hf["model.embed_tokens.weight"],
        "blk.0.attn_q.weight": _llama_cpp_permute(hf["model.layers.0.self_attn.q_proj.weight"], heads[0]),
        "blk.0.attn_k.weight": _llama_cpp_permute(hf["model.layers.0.self_attn.k_proj.weight"], heads[1]),
        "blk.0.attn_v.weight": hf["model.layers.0.self_attn.v_proj.weight"],
        "blk.0.attn_norm.weight": hf["model.layers.0.input_layernorm.weight"],
    }
    path = tmp_path / "llama.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_head_count(heads[0])
    w.add_head_count_kv(heads[1])
    q8 = gguf.GGMLQuantizationType.Q8_0
    for name, a in stored.items():
        if name == "blk.0.attn_q.weight":  # quantized rows are permuted as well
            w.add_tensor(name, gguf.quants.quantize(a, q8), raw_dtype=q8)
        else:
            w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open_model(path) as src:
        if not ok:
            with pytest.raises(ConversionError, match="32 / 8 only"):
                DequantizedSource(src, "F32")
            return
        view = DequantizedSource(src, "F32")
        assert sorted(view.tensors) == sorted(hf)
        for name in hf:
            if not name.endswith("q_proj.weight"):
                assert np.array_equal(view.read(name), hf[name]), name
        # the quantized q: stored row i holds the transformers row order[i]; dequantized exactly
        order = _llama_cpp_permute(np.arange(heads[0] * head_dim)[:, None], heads[0])[:, 0]
        q_stored = gguf.quants.dequantize(gguf.quants.quantize(stored["blk.0.attn_q.weight"], q8), q8)
        got = view.read("model.layers.0.self_attn.q_proj.weight")
        assert np.array_equal(got[order], q_stored)
        assert view.data_range("model.layers.0.self_attn.k_proj.weight") is None  # read through the permutation
