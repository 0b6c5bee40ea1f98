"""Our safetensors reader against the reference writer, and its validation of bad headers."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from sdmodel.errors import ModelReadError
from sdmodel.formats import open_model, sniff
from sdmodel.formats.base import TensorInfo
from sdmodel.formats.safetensors import SafetensorsSource, header_bytes, reference_order


def raw_file(path, header: dict | str, data: bytes = b"", pad_to_8: bool = True) -> str:
    text = header if isinstance(header, str) else json.dumps(header)
    raw = text.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_reads_reference_output_bit_exact(tmp_path):
    import ml_dtypes

    arrays = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array([1.5, -2.25], dtype=np.float16),
        "c": np.array([3.0, 1e-3], dtype=ml_dtypes.bfloat16),
        "d": np.arange(77, dtype=np.int64).reshape(1, 77),
        "e": np.zeros((0, 3), dtype=np.float32),
        "f": np.array(2.0, dtype=np.float32),
        "g": np.array([1.0, 448.0], dtype=ml_dtypes.float8_e4m3fn),
    }
    path = tmp_path / "x.safetensors"
    save_file(arrays, str(path), metadata={"k": "v"})
    with open_model(path) as src:
        assert isinstance(src, SafetensorsSource)
        assert src.metadata == {"k": "v"}
        assert {k: v.shape for k, v in src.tensors.items()} == {k: v.shape for k, v in arrays.items()}
        for k, v in arrays.items():
            got = src.read(k)
            assert got.dtype == v.dtype and got.tobytes() == v.tobytes()


def test_header_writer_matches_reference_layout(tmp_path):
    arrays = {"z": np.ones((2, 2), np.float16), "a": np.ones(3, np.float32), "m": np.ones(1, np.int64)}
    ref = tmp_path / "ref.safetensors"
    save_file(arrays, str(ref))
    infos = reference_order(
        [
            TensorInfo(k, {"float16": "F16", "float32": "F32", "int64": "I64"}[str(v.dtype)], v.shape)
            for k, v in arrays.items()
        ]
    )
    head, _ = header_bytes(infos)
    data = b"".join(arrays[t.name].tobytes() for t in infos)
    ours = tmp_path / "ours.safetensors"
    ours.write_bytes(head + data)
    assert len(head) % 8 == 0
    with open_model(ours) as a, open_model(ref) as b:
        assert list(a.tensors) == list(b.tensors)
        for k in arrays:
            assert a.data_range(k) == b.data_range(k)


BAD = [
    ("header length beyond the file", lambda p: p.write_bytes(struct.pack("<Q", 10_000) + b"{}"), "truncated"),
    ("header over 100 MB", lambda p: p.write_bytes(struct.pack("<Q", 200_000_000) + b"{"), "100 MB"),
    ("invalid JSON", lambda p: raw_file(p, "{not json}"), "not valid JSON"),
    ("not an object", lambda p: raw_file(p, "[1, 2]"), "not a JSON object"),
    (
        "dtype not a string",
        lambda p: raw_file(p, {"a": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
        "invalid dtype",
    ),
    (
        "size mismatch",
        lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
        "needs 8",
    ),
    (
        "overlap",
        lambda p: raw_file(
            p,
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            b"\0" * 8,
        ),
        "overlaps",
    ),
    ("gap", lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "gap"),
    (
        "trailing bytes",
        lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 12),
        "trailing",
    ),
    (
        "truncated data",
        lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
        "truncated",
    ),
    ("non-string metadata", lambda p: raw_file(p, {"__metadata__": {"a": 1}}), "strings"),
    (
        "negative offsets",
        lambda p: raw_file(p, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}),
        "data_offsets",
    ),
]


def test_unknown_dtype_leaves_the_rest_readable(tmp_path):
    path = tmp_path / "new.safetensors"
    header = {
        "odd": {"dtype": "F12", "shape": [2], "data_offsets": [0, 3]},
        "w": {"dtype": "F32", "shape": [1], "data_offsets": [3, 7]},
        "s": {"dtype": "F8_E8M0", "shape": [2], "data_offsets": [7, 9]},
        "p": {"dtype": "F4", "shape": [4], "data_offsets": [9, 11]},
    }
    raw_file(path, header, b"\0\0\0" + np.float32(1.5).tobytes() + bytes([127, 128, 0x21, 0x43]))
    with open_model(path) as src:
        assert src.tensors["odd"].nbytes == 3 and any(n.code == "unknown-dtype" for n in src.notes)
        assert src.read("w").tolist() == [1.5]
        assert src.read("s").astype(np.float32).tolist() == [1.0, 2.0]
        assert src.read("p").tolist() == [0x21, 0x43]
        with pytest.raises(ModelReadError, match="F12"):
            src.read("odd")


@pytest.mark.parametrize(("what", "make", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_headers_give_one_line_errors(tmp_path, what, make, message):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(ModelReadError) as err:
        open_model(path)
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_quirks_are_notes_not_errors(tmp_path):
    header = ' {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    path = raw_file(tmp_path / "lead.safetensors", header, b"\0" * 4)
    with open_model(path) as src:
        assert [n.code for n in src.notes] == ["header-leading-space"]
    dup = (
        '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
        '"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    )
    path = raw_file(tmp_path / "dup.safetensors", dup, b"\0" * 4)
    with open_model(path) as src:
        assert [n.code for n in src.notes] == ["duplicate-names"]


def test_sniff_by_content_not_extension(tmp_path):
    st = tmp_path / "model.ckpt"
    save_file({"a": np.ones(2, np.float32)}, str(st))
    assert sniff(st) == "safetensors"
    text = tmp_path / "notes.ckpt"
    text.write_text("hello, this is not a model\n")
    assert sniff(text) == "unknown"
    with pytest.raises(ModelReadError, match="not a model file"):
        open_model(text)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ModelReadError, match="empty"):
        open_model(empty)
    with pytest.raises(ModelReadError, match="no such file"):
        open_model(tmp_path / "missing.safetensors")


def test_reads_from_several_threads_get_their_own_bytes(tmp_path) -> None:
    """The engine's reader and a plan step (a LoRA join, a dequantization reading its scales) read
    one open file at once: every read gets its own tensor, never bytes from where another thread
    moved the file position."""
    from concurrent.futures import ThreadPoolExecutor

    tensors = {f"t{i}": np.full((64, 64), i, dtype=np.float32) for i in range(16)}
    path = tmp_path / "many.safetensors"
    save_file(tensors, str(path))
    with open_model(path) as src, ThreadPoolExecutor(max_workers=4) as pool:
        names = [f"t{i % 16}" for i in range(2000)]
        for name, a in zip(names, pool.map(src.read, names), strict=True):
            assert (a == int(name[1:])).all(), name
