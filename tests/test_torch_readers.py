"""PyTorch checkpoint readers against files written by the real ``torch.save``; hostile files are
built by hand and never given to ``torch.load``."""

from __future__ import annotations

import io
import json
import random
import struct
import warnings
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch

from sdmodel.errors import ModelReadError, UnsafePickleError
from sdmodel.formats import open_model
from sdmodel.formats.torch_legacy import TorchLegacySource
from sdmodel.formats.torch_zip import TorchZipSource
from sdmodel.formats.zipview import read_zip
from tests.builders import layout, shrink, write_ckpt
from tests.test_pickle_vm import EVIL_GLOBAL, glob, num, state_dict, storage_pid, tensor, tup, uni


def as_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    if t.dtype == torch.float8_e4m3fn:
        return t.view(torch.uint8).numpy().view(ml_dtypes.float8_e4m3fn)
    return t.numpy()


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def mixed() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    return {
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(7, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "f64": torch.randn(2, generator=g).double(),
        "i64": torch.arange(77),
        "i32": torch.arange(5, dtype=torch.int32),
        "u8": torch.arange(5, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "base": base,
        "transposed": base.t(),
        "row": base[2],
        "column": base[:, 3],
        "scalar": torch.tensor(2.5),
        "scalar_view": base[1, 2],
        "empty": torch.zeros(0, 4),
        "expanded": torch.arange(4.0).expand(3, 4),  # stride 0: an honest view, never a memory bomb
    }


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_dtypes_views_and_shapes_are_bit_exact(tmp_path: Path, legacy: bool) -> None:
    sd = mixed()
    path = tmp_path / "m.ckpt"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    with open_model(path) as src:
        assert isinstance(src, TorchLegacySource if legacy else TorchZipSource)
        assert list(src.tensors) == list(sd)
        for name, t in sd.items():
            info = src.tensors[name]
            assert info.shape == tuple(t.shape), name
            got = src.read(name)
            assert got.flags.c_contiguous
            assert same(got, as_numpy(t.contiguous())), name
        assert src.tensors["bf16"].dtype == "BF16" and src.tensors["bool"].dtype == "BOOL"
        assert src.extras == {}
        key, offset, length = src.storage_of("row")
        assert key == src.storage_of("base")[0] and length == 30 * 4
        with open(path, "rb") as f:
            f.seek(offset)
            assert np.frombuffer(f.read(length), "<f4").tolist() == sd["base"].flatten().tolist()
        begin, end = src.data_range("row")
        assert end - begin == 20 and src.data_range("transposed") is None


def test_float8_rebuild_tensor_v3(tmp_path: Path) -> None:
    t = torch.randn(4, 3).to(torch.float8_e4m3fn)
    torch.save({"w": t, "e5": torch.ones(2).to(torch.float8_e5m2)}, tmp_path / "f8.pt")
    with open_model(tmp_path / "f8.pt") as src:
        assert src.tensors["w"].dtype == "F8_E4M3" and src.tensors["e5"].dtype == "F8_E5M2"
        assert same(src.read("w"), as_numpy(t))
        names = {(g.module, g.name) for g in src.pickle_result.globals}
        assert ("torch._utils", "_rebuild_tensor_v3") in names and ("torch", "float8_e4m3fn") in names


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_nested_state_dict_with_extras_and_parameters(tmp_path: Path, protocol: int) -> None:
    w = torch.nn.Parameter(torch.randn(3, 2))
    inner = {"model.w": w, "model.b": torch.ones(2)}
    obj = {
        "state_dict": {"state_dict": inner, "inner_extra": 1},
        "global_step": 1234,
        "epoch": 5,
        "pytorch-lightning_version": "1.4.2",
        "optimizer_states": [],
        "callbacks": {"x": torch.zeros(2)},
    }
    torch.save(obj, tmp_path / "n.ckpt", pickle_protocol=protocol)
    with open_model(tmp_path / "n.ckpt") as src:
        assert src.wrappers == ["state_dict", "state_dict"]
        assert list(src.tensors) == ["model.w", "model.b"]
        assert same(src.read("model.w"), w.detach().numpy())
        assert src.tensor_ref("model.w").parameter
        assert src.extras["global_step"] == 1234 and src.extras["epoch"] == 5
        assert src.extras["inner_extra"] == 1 and src.extras["optimizer_states"] == []
        assert src.extras["callbacks"] == {"x": "<tensor F32 [2]>"}
        json.dumps(src.extras)
        assert src.pickle_result.protocol == protocol


def test_embedding_pt(tmp_path: Path) -> None:
    param = torch.nn.Parameter(torch.randn(2, 768))
    obj = {
        "string_to_token": {"*": 265},
        "string_to_param": torch.nn.ParameterDict({"*": param}),
        "name": "x",
        "step": 10,
    }
    torch.save(obj, tmp_path / "emb.pt")
    with open_model(tmp_path / "emb.pt") as src:
        assert list(src.tensors) == ["string_to_param.*"]
        assert same(src.read("string_to_param.*"), param.detach().numpy())
        assert src.extras == {"string_to_token": {"*": 265}, "name": "x", "step": 10}
        kinds = {(g.module, g.name) for g in src.pickle_result.globals}
        assert ("torch.nn.modules.container", "ParameterDict") in kinds


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_sd15_shaped_checkpoint(tmp_path: Path, legacy: bool) -> None:
    lay = shrink(layout("sd15"))
    path = write_ckpt(tmp_path / "sd15.ckpt", lay, extras={"global_step": 470000}, legacy=legacy)
    with open_model(path) as src:
        assert {k: (t.shape, t.dtype) for k, t in src.tensors.items()} == lay
        assert src.extras == {"global_step": 470000}
        ref = torch.load(path, weights_only=True)["state_dict"]  # our own honest file
        for name in list(lay)[::97]:
            assert same(src.read(name), as_numpy(ref[name])), name


# ---- hand-made zips


def make_zip(
    path: Path, pkl: bytes, records: dict[str, bytes], archive: str = "archive", extra: list[tuple[str, bytes]] = ()
) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            z.writestr(f"{archive}/data.pkl", pkl)
            for name, data in records.items():
                z.writestr(f"{archive}/{name}", data)
            for name, data in extra:
                z.writestr(name, data)
    return path


F32_12 = np.arange(12, dtype="<f4").tobytes()


def test_hand_made_zip_reads(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "h.ckpt", state_dict(w=tensor(1, (2, 2), (1, 3))), {"data/0": F32_12})
    with open_model(path) as src:
        assert src.read("w").tolist() == [[1.0, 4.0], [2.0, 5.0]]
        assert [n.code for n in src.notes] == ["no-byteorder"]


def test_big_endian_byteorder(tmp_path: Path) -> None:
    big = np.arange(12, dtype=">f4").tobytes()
    records = {"data/0": big, "byteorder": b"big"}
    path = make_zip(tmp_path / "be.ckpt", state_dict(w=tensor(0, (12,), (1,))), records)
    with open_model(path) as src:
        assert src.read("w").tolist() == list(range(12))
        assert "byteorder-big" in [n.code for n in src.notes]


ONES = ("archive/data/0", np.ones(12, "<f4").tobytes())


@pytest.mark.parametrize(
    ("records", "extra", "first"),
    [
        ({"data/0": F32_12, "version": b"3\n"}, [ONES], True),
        ({"data/0": F32_12, "byteorder": b"little"}, [ONES, ("archive/version", b"3\n")], False),
    ],
    ids=["first-wins", "second-wins"],
)
def test_duplicate_entries_resolve_like_torch(
    tmp_path: Path, records: dict[str, bytes], extra: list[tuple[str, bytes]], first: bool
) -> None:
    """miniz heap-sorts the directory and binary-searches it: which duplicate torch reads depends on
    the entries around it (checked against torch's own reader)."""
    path = make_zip(tmp_path / "d.ckpt", state_dict(w=tensor(0, (3,), (1,))), records, extra=extra)
    expected = [0.0, 1.0, 2.0] if first else [1.0, 1.0, 1.0]
    with open_model(path) as src:
        assert src.read("w").tolist() == expected
        assert "duplicate-entries" in [n.code for n in src.notes]
        assert src.zip.duplicates == ["archive/data/0"]
    record = torch._C.PyTorchFileReader(str(path)).get_record("data/0")
    assert np.frombuffer(record, "<f4")[:3].tolist() == expected


def test_zip_lookup_matches_torch_reader_on_random_archives(tmp_path: Path) -> None:
    """Case-insensitive names, duplicates, 1-40 entries: every lookup returns torch's record."""
    rng = random.Random(7)
    variants = ["data.pkl", "DATA.PKL", "Data.pkl", "data/0", "DATA/0", "data/1", "byteorder", "x"]
    for trial in range(60):
        names = ["version"] + [rng.choice(variants) for _ in range(rng.randint(1, 40))]
        rng.shuffle(names)
        path = tmp_path / f"r{trial}.zip"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with zipfile.ZipFile(path, "w") as z:
                for n, name in enumerate(names):
                    z.writestr(f"archive/{name}", b"3" if name == "version" else str(n).encode())
        reader = torch._C.PyTorchFileReader(str(path))
        with open(path, "rb") as f:
            zv = read_zip(f)
            for rec in ("data.pkl", "data/0", "DATA/1", "x", "nothing"):
                entry = zv.find(f"archive/{rec}")
                ours = zv.read(entry) if entry is not None else None
                theirs = reader.get_record(rec) if reader.has_record(rec) else None
                assert ours == theirs, (names, rec)


@pytest.mark.parametrize(
    "pkl, records, match",
    [
        (state_dict(w=tensor(0, (3,), (1,))), {}, "data/0 is missing"),
        (state_dict(w=tensor(0, (3,), (1,))), {"data/0": F32_12[:8]}, "record holds 8 bytes"),
        (state_dict(w=tensor(10, (3,), (1,))), {"data/0": F32_12}, "reaches element"),
        (state_dict(w=tensor(0, (3,), (1,), storage_pid(stype="Evil"))), {"data/0": F32_12}, "forbidden"),
    ],
    ids=["missing-record", "numel-too-large", "out-of-bounds-view", "bad-storage-type"],
)
def test_bad_zip_checkpoints(tmp_path: Path, pkl: bytes, records: dict, match: str) -> None:
    path = make_zip(tmp_path / "bad.ckpt", pkl, records)
    with pytest.raises(ModelReadError, match=match) as info:
        open_model(path)
    assert str(path) in str(info.value)


def test_forbidden_global_in_zip_runs_nothing(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "evil.ckpt", EVIL_GLOBAL, {})
    with pytest.raises(UnsafePickleError, match=r"forbidden global os\.system at byte 2") as info:
        open_model(path)
    assert str(path) in str(info.value)


def test_torchscript_and_not_torch_zips(tmp_path: Path) -> None:
    ts = make_zip(tmp_path / "ts.pt", state_dict(), {"constants.pkl": b"\x80\x02)."})
    with pytest.raises(ModelReadError, match="TorchScript"):
        open_model(ts)
    flat = tmp_path / "flat.ckpt"
    with zipfile.ZipFile(flat, "w") as z:
        z.writestr("data.pkl", state_dict())
    with pytest.raises(ModelReadError, match="folder"):
        open_model(flat)


def test_truncated_zip(tmp_path: Path) -> None:
    path = tmp_path / "t.ckpt"
    torch.save({"w": torch.randn(64)}, path)
    data = path.read_bytes()
    for cut in (len(data) - 10, len(data) // 2, 40):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelReadError):
            open_model(path)


def test_text_file_renamed_ckpt(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    path.write_text("<html>404 not found</html>\n")
    with pytest.raises(ModelReadError):
        open_model(path)


def test_zipview_reads_like_miniz(tmp_path: Path) -> None:
    path = make_zip(tmp_path / "z.ckpt", state_dict(), {"data/0": F32_12})
    with open(path, "rb") as f:
        z = read_zip(f)
        assert z.archive_name == "archive" and z.prefix_bytes == 0
        e = z.find("archive/data/0")
        assert z.read(e) == F32_12 and z.crc_ok(e)
        assert e.data_offset == e.local_header_offset + 30 + len(e.local_name) + 0
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zz:
        zz.writestr("a/x", b"hello" * 100)
    buf.seek(0)
    z = read_zip(buf)
    assert z.read(z.entries[0]) == b"hello" * 100


# ---- legacy format details


MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."


def legacy_file(
    path: Path, obj: bytes, keys: list[str], blobs: list[tuple[int, bytes]], magic: bytes = MAGIC, little: bool = True
) -> Path:
    sys_info = b"\x80\x02}(" + uni("little_endian") + (b"\x88" if little else b"\x89") + b"u."
    key_list = b"\x80\x02](" + b"".join(uni(k) for k in keys) + b"e."
    out = magic + b"\x80\x02M\xe9\x03." + sys_info + obj + key_list
    for count, raw in blobs:
        out += struct.pack("<q" if little else ">q", count) + raw
    path.write_bytes(out)
    return path


def legacy_tensor(offset: int, size: tuple, stride: tuple, view: bytes = b"N", numel: int = 12) -> bytes:
    pid = tup(uni("storage"), glob("torch", "FloatStorage"), uni("k"), uni("cpu"), num(numel), view) + b"Q"
    return tensor(offset, size, stride, pid)


def test_legacy_views(tmp_path: Path) -> None:
    view = tup(uni("v"), num(4), num(6))
    obj = state_dict(w=legacy_tensor(1, (2,), (1,), view))
    path = legacy_file(tmp_path / "l.pt", obj, ["k"], [(12, F32_12)])
    with open_model(path) as src:
        assert src.read("w").tolist() == [5.0, 6.0]


def test_legacy_big_endian(tmp_path: Path) -> None:
    path = legacy_file(
        tmp_path / "l.pt",
        state_dict(w=legacy_tensor(0, (3,), (1,))),
        ["k"],
        [(12, np.arange(12, dtype=">f4").tobytes())],
        little=False,
    )
    with open_model(path) as src:
        assert src.read("w").tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"magic": b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6D).to_bytes(10, "little") + b"."}, "magic"),
        ({"blobs": [(11, F32_12[:44])]}, "holds 11 elements"),
        ({"blobs": [(12, F32_12[:20])]}, "truncated"),
        ({"keys": []}, "not in the file"),
        ({"obj": state_dict(w=legacy_tensor(0, (3,), (1,), tup(uni("v"), num(10), num(6))))}, "view"),
    ],
    ids=["magic", "count", "truncated", "missing-key", "bad-view"],
)
def test_bad_legacy_files(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"obj": state_dict(w=legacy_tensor(0, (3,), (1,))), "keys": ["k"], "blobs": [(12, F32_12)]}
    args.update(kwargs)
    path = legacy_file(tmp_path / "bad.pt", **args)
    with pytest.raises(ModelReadError, match=match):
        open_model(path)
