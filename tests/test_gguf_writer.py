"""The streaming GGUF writer, read back by gguf-py."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from sdmodel.errors import ConversionError
from sdmodel.formats.gguf_writer import ALIGNMENT, GGUFTensor, GGUFWriter
from sdmodel.quant.ggml_quantize import quantize, row_bytes


def test_round_trip_through_gguf_py(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "double_blocks.0.img_attn.qkv.weight": (rng.standard_normal((48, 512)).astype(np.float32), "Q4_K"),
        "double_blocks.0.img_attn.qkv.bias": (rng.standard_normal(77).astype(np.float32), "F32"),
        "pos_embed": (rng.standard_normal((1, 5, 64)).astype(np.float32), "Q8_0"),
        "patch_embedding.weight": (rng.standard_normal((4, 16, 1, 2, 2)).astype(np.float32), "F32"),
        "img_in.weight": (rng.standard_normal((3, 33)).astype(np.float32), "BF16"),
    }
    tensors = [
        GGUFTensor(k, q, a.shape, row_bytes(q, a.shape[-1]) * (a.size // a.shape[-1])) for k, (a, q) in arrays.items()
    ]
    kv = {
        "general.architecture": "flux",
        "general.quantization_version": 2,
        "general.file_type": 14,
        "comfy.gguf.orig_shape.pos_embed": (1, 5, 64),
        "sdmodel.source.sha256": "ab" * 32,
    }
    writer = GGUFWriter(tensors, kv)
    path = tmp_path / "m.gguf"
    with path.open("wb") as f:
        writer.begin(f)
        for i, (a, q) in enumerate(arrays.values()):
            writer.write_tensor(f, i, quantize(a, q).reshape(-1))  # type: ignore[arg-type]
        writer.finish(f)
    assert path.stat().st_size == writer.size
    reader = gguf.GGUFReader(path)
    assert reader.fields["general.architecture"].contents() == "flux"
    assert reader.fields["general.file_type"].types == [gguf.GGUFValueType.UINT32]
    shape_field = reader.fields["comfy.gguf.orig_shape.pos_embed"]
    assert shape_field.types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32]  # as ComfyUI-GGUF checks
    assert shape_field.contents() == [1, 5, 64]
    assert reader.data_offset % ALIGNMENT == 0
    for t in reader.tensors:
        a, q = arrays[t.name]
        assert t.tensor_type.name == q
        assert tuple(int(d) for d in reversed(t.shape)) == a.shape
        assert np.array_equal(t.data.reshape(-1).view(np.uint8), quantize(a, q).reshape(-1).view(np.uint8))  # type: ignore[arg-type]
        assert t.data_offset % ALIGNMENT == 0


def test_out_of_order_and_wrong_sizes(tmp_path: Path) -> None:
    writer = GGUFWriter([GGUFTensor("a", "F32", (4,), 16), GGUFTensor("b", "F32", (4,), 16)], {})
    with (tmp_path / "x.gguf").open("wb") as f:
        writer.begin(f)
        with pytest.raises(ConversionError, match="out of turn"):
            writer.write_tensor(f, 1, bytes(16))
        with pytest.raises(ConversionError, match="bytes for a F32"):
            writer.write_tensor(f, 0, bytes(8))
        writer.write_tensor(f, 0, bytes(16))
        with pytest.raises(ConversionError, match="incomplete"):
            writer.finish(f)
    with pytest.raises(ConversionError, match="unique"):
        GGUFWriter([GGUFTensor("a", "F32", (4,), 16)] * 2, {})


def _sink_run(tmp_path: Path, arrays: dict, types: dict):
    from sdmodel.formats.base import TensorInfo
    from sdmodel.formats.gguf_writer import GGUFSink

    infos = [TensorInfo(k, "F32", a.shape) for k, a in arrays.items()]
    sink = GGUFSink(infos, [types[k] for k in arrays], {"general.architecture": "flux"})
    path = tmp_path / "s.gguf"
    with path.open("wb") as f:
        sink.begin(f)
        for i in sink.order:
            sink.write(f, i, sink.encode(i, list(arrays.values())[i]))
        sink.finish(f)
    return sink, path


def test_sink_checks_and_verifies(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {
        "a.weight": (rng.standard_normal((16, 512)) * 0.02).astype(np.float32),
        "a.bias": rng.standard_normal(16).astype(np.float32),
        "b.weight": (rng.standard_normal((8, 256)) * 0.02).astype(np.float32),
    }
    types = {"a.weight": "Q4_K", "a.bias": "F32", "b.weight": "Q8_0"}
    sink, path = _sink_run(tmp_path, arrays, types)
    sink.check(path)
    sink.verify(path, lambda i: list(arrays.values())[i])
    # a flipped byte in a sampled row is found by check, any change by verify
    data = bytearray(path.read_bytes())
    reader = gguf.GGUFReader(path)
    data[reader.tensors[0].data_offset + 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ConversionError, match="not the ones written"):
        sink.check(path)
    with pytest.raises(ConversionError, match="differs from the source"):
        sink.verify(path, lambda i: list(arrays.values())[i])


def test_sink_refuses_nan(tmp_path: Path) -> None:
    bad = np.ones((4, 256), np.float32)
    bad[2, 7] = np.nan
    with pytest.raises(ConversionError, match="NaN or infinity"):
        _sink_run(tmp_path, {"x.weight": bad}, {"x.weight": "Q4_K"})
