"""The safe pickle VM: hostile pickles are built byte by byte and never loaded by ``pickle``."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest

from sdmodel.errors import ModelReadError, UnsafePickleError
from sdmodel.formats.pickle_allow import ALLOWED_GLOBALS, NpArray
from sdmodel.formats.pickle_values import Opaque
from sdmodel.formats.pickle_vm import Limits, run_pickle
from sdmodel.formats.torch_records import StorageRef, TensorExpansion, TensorRef
from sdmodel.security.grading import NOTE_GLOBALS

# ---- byte-level builders


def glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def uni(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def num(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def storage_pid(key: str = "0", numel: int = 12, stype: str = "FloatStorage") -> bytes:
    return tup(uni("storage"), glob("torch", stype), uni(key), uni("cpu"), num(numel)) + b"Q"


def tensor(offset: int, size: tuple, stride: tuple, pid: bytes | None = None) -> bytes:
    return (
        glob("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + (pid if pid is not None else storage_pid())
        + num(offset)
        + tup(*map(num, size))
        + tup(*map(num, stride))
        + b"\x89"
        + glob("collections", "OrderedDict")
        + b")R"
        + b"tR"
    )


def state_dict(**tensors: bytes) -> bytes:
    body = b"".join(uni(k) + v for k, v in tensors.items())
    return b"\x80\x02" + glob("collections", "OrderedDict") + b")R(" + body + b"u."


EVIL_GLOBAL = b"\x80\x02" + glob("os", "system") + tup(uni("echo pwned")) + b"R."
EVIL_STACK_GLOBAL = b"\x80\x04" + uni("os") + uni("system") + b"\x93" + tup(uni("echo pwned")) + b"R."
EVIL_INST = b"(" + uni("echo pwned") + b"ios\nsystem\n."
EVILS = pytest.mark.parametrize(
    "data", [EVIL_GLOBAL, EVIL_STACK_GLOBAL, EVIL_INST], ids=["GLOBAL", "STACK_GLOBAL", "INST"]
)


# ---- plain data


@pytest.mark.parametrize("protocol", range(6))
def test_plain_values_every_protocol(protocol: int) -> None:
    value = {
        "a": [1, -2, 2**70, -(2**100), 2.5, "text é", b"raw", (1, 2), (1, 2, 3), (), None, True, False],
        "b": {"nested": {"x": 1}},
        "c": {1, 2},
        "d": frozenset({3}),
        "e": bytearray(b"xy"),
    }
    shared = [1]
    value["f"] = (shared, shared)
    res = run_pickle(pickle.dumps(value, protocol=protocol))
    assert res.complete and not res.findings
    assert res.value == value
    assert res.value["f"][0] is res.value["f"][1]  # memo keeps identity
    assert res.protocol == (protocol if protocol >= 2 else None)


def test_numpy_scalars_and_arrays_as_lightning_writes_them() -> None:
    value = {"step": np.float64(1.5), "n": np.int64(7), "a": np.arange(3.0)}
    res = run_pickle(pickle.dumps(value, protocol=2))
    assert res.value["step"] == 1.5 and type(res.value["step"]) is float
    assert res.value["n"] == 7
    arr = res.value["a"]
    assert isinstance(arr, NpArray) and arr.array.tolist() == [0.0, 1.0, 2.0]
    used = {(g.module, g.name) for g in res.globals}
    assert used <= ALLOWED_GLOBALS
    assert ("_codecs", "encode") in used


def test_py2_names_are_mapped_only_below_protocol_3() -> None:
    body = glob("__builtin__", "set") + b"(]" + num(1) + b"a" + b"tR."
    res = run_pickle(b"\x80\x02" + body)
    assert res.value == {1}
    assert res.globals[0].module == "builtins" and res.globals[0].original == "__builtin__.set"
    assert ("builtins", "set") in NOTE_GLOBALS
    with pytest.raises(UnsafePickleError, match=r"__builtin__\.set"):
        run_pickle(b"\x80\x03" + body)


def test_pop_on_empty_frame_discards_the_mark() -> None:
    assert run_pickle(b"\x80\x02" + num(5) + b"(0.").value == 5


# ---- tensors


def test_rebuild_tensor_v2_with_views() -> None:
    data = state_dict(w=tensor(0, (3, 4), (4, 1)), t=tensor(0, (4, 3), (1, 4)), row=tensor(8, (4,), (1,)))
    res = run_pickle(data)
    w, t, row = res.value["w"], res.value["t"], res.value["row"]
    assert isinstance(w, TensorRef) and w.dtype == "F32" and w.shape == (3, 4)
    assert w.storage is t.storage is row.storage  # one storage per key
    assert row.extent() == (8, 12)
    assert not t.is_contiguous() and w.is_contiguous()


@pytest.mark.parametrize(
    "offset, size, stride",
    [
        (9, (4,), (1,)),  # runs one element past the storage
        (0, (3, 5), (4, 1)),
        (0, (2,), (20,)),
        (-1, (1,), (1,)),
        (0, (-3,), (1,)),
        (0, (2, 2), (1,)),
        (12, (), ()),  # 0-dim past the end
    ],
)
def test_out_of_bounds_view_metadata(offset: int, size: tuple, stride: tuple) -> None:
    data = state_dict(w=tensor(offset, size, stride))
    with pytest.raises(ModelReadError):
        run_pickle(data)
    res = run_pickle(data, strict=False)
    assert [f.code for f in res.findings] == ["bad-tensor"]
    assert res.findings[0].severity == "dangerous"


def test_non_int_view_metadata_is_refused() -> None:
    bad = (
        glob("torch._utils", "_rebuild_tensor_v2")
        + b"("
        + storage_pid()
        + b"G"
        + struct.pack(">d", 1.0)
        + tup(num(2))
        + tup(num(1))
        + b"\x89}tR"
    )
    with pytest.raises(ModelReadError, match="offset"):
        run_pickle(state_dict(w=bad))


def test_empty_tensor_may_have_any_stride() -> None:
    res = run_pickle(state_dict(w=tensor(0, (0, 3), (3, 1), storage_pid(numel=0))))
    assert res.value["w"].numel == 0


def test_persistent_load_callback_gets_the_id() -> None:
    seen = []

    def load(pid: tuple) -> StorageRef:
        seen.append(pid)
        raise ModelReadError("storage record data/0 is missing")

    with pytest.raises(ModelReadError, match="missing"):
        run_pickle(state_dict(w=tensor(0, (2,), (1,))), persistent_load=load)
    assert seen[0][0] == "storage" and seen[0][2:] == ("0", "cpu", 12)
    res = run_pickle(state_dict(w=tensor(0, (2,), (1,))), persistent_load=load, strict=False)
    assert [f.code for f in res.findings] == ["bad-storage"]
    assert isinstance(res.value["w"], Opaque)


def test_module_persistent_id_is_refused() -> None:
    data = b"\x80\x02" + tup(uni("module"), glob("torch.nn", "Linear"), uni("x.py"), uni("import os")) + b"Q."
    with pytest.raises(UnsafePickleError):
        run_pickle(data)
    res = run_pickle(data, strict=False)
    assert any(f.code == "persid-module" and f.severity == "dangerous" for f in res.findings)


# ---- forbidden globals


@EVILS
def test_forbidden_global_is_refused_naming_it(data: bytes) -> None:
    with pytest.raises(UnsafePickleError, match=r"forbidden global os\.system at byte \d+"):
        run_pickle(data)


@EVILS
def test_scan_mode_records_global_and_call(data: bytes) -> None:
    res = run_pickle(data, strict=False)
    assert res.complete
    codes = {(f.code, f.severity) for f in res.findings}
    assert ("global-not-allowed", "suspicious") in codes
    assert ("call", "dangerous") in codes
    assert [(g.module, g.name) for g in res.globals] == [("os", "system")]
    assert res.calls[0].func is not None and res.calls[0].func.qualname == "os.system"
    assert isinstance(res.value, Opaque) and res.value.called


def test_dotted_dunder_and_module_names_are_dangerous() -> None:
    for module, name, code in [
        ("builtins", "getattr.__self__", "dotted-name"),
        ("builtins", "__import__", "dotted-name"),
        ("torch", "_utils", "module-as-object"),
    ]:
        data = b"\x80\x04" + uni(module) + uni(name) + b"\x93."
        res = run_pickle(data, strict=False)
        assert [(f.code, f.severity) for f in res.findings] == [(code, "dangerous")]
        with pytest.raises(UnsafePickleError):
            run_pickle(data)


def test_allowed_but_inert_global_must_not_be_called() -> None:
    mc = glob("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
    as_key = b"\x80\x02}" + mc + num(1) + b"s."
    res = run_pickle(as_key)
    assert len(res.value) == 1 and not res.findings
    called = b"\x80\x02" + mc + b")R."
    with pytest.raises(UnsafePickleError):
        run_pickle(called)
    assert run_pickle(called, strict=False).findings[0].code == "call"


def test_build_on_a_global_is_a_call() -> None:
    data = b"\x80\x02" + glob("collections", "OrderedDict") + b"}b."
    res = run_pickle(data, strict=False)
    assert [c.opcode for c in res.calls] == ["BUILD"]
    assert res.findings[0].severity == "dangerous"


def test_parse_error_after_bad_global_is_dangerous() -> None:
    res = run_pickle(b"\x80\x02" + glob("os", "system") + b"\xff", strict=False)
    assert res.findings[-1].code == "parse-error" and res.findings[-1].severity == "dangerous"
    assert not res.complete
    res = run_pickle(b"\x80\x02" + num(1) + b"\xff", strict=False)
    assert [(f.code, f.severity) for f in res.findings] == [("parse-error", "suspicious")]
    with pytest.raises(ModelReadError):
        run_pickle(b"\x80\x02" + num(1))  # no STOP


A_TENSOR = tensor(0, (12,), (1,))


@pytest.mark.parametrize(
    "opcode, body",
    [
        ("SETITEM", b"]" + num(1) + num(2) + b"s"),
        ("SETITEM", b")" + num(1) + num(2) + b"s"),
        ("SETITEM", tup(num(1)) + b"(" + uni("k") + num(2) + b"u"),
        ("SETITEM", A_TENSOR + b"(" + uni("k") + num(2) + b"u"),
        ("APPEND", b"}" + num(1) + b"a"),
        ("APPEND", b")(" + num(1) + b"e"),
        ("ADDITEMS", b"](" + num(1) + b"\x90"),
        ("BUILD", b"]}b"),
        ("BUILD", A_TENSOR + tup(b"N", b"}" + uni("data") + num(1) + b"s") + b"b"),
    ],
    ids=[
        "setitem-list",
        "setitem-tuple",
        "setitems-tuple",
        "setitems-tensor",
        "append-dict",
        "appends-tuple",
        "additems-list",
        "build-list",
        "build-tensor",
    ],
)
def test_container_type_confusion_is_dangerous(opcode: str, body: bytes) -> None:
    data = b"\x80\x02" + body + b"."
    with pytest.raises(ModelReadError, match=opcode) as err:
        run_pickle(data)
    assert not isinstance(err.value, UnsafePickleError)
    res = run_pickle(data, strict=False)
    assert [(f.code, f.severity) for f in res.findings] == [("type-confusion", "dangerous")]
    assert "CVE-2026-24747" in str(res.findings[0].message) and res.complete


def test_harmless_argument_oddities_stay_type_errors() -> None:
    odict = glob("collections", "OrderedDict")
    for body in (b"}]" + num(1) + b"s", odict + tup(num(1)) + b"R", odict + b")R" + num(1) + b"b"):
        res = run_pickle(b"\x80\x02" + body + b".", strict=False)
        assert [(f.code, f.severity) for f in res.findings] == [("type-error", "suspicious")], body
        with pytest.raises(ModelReadError):
            run_pickle(b"\x80\x02" + body + b".")


NP_STR_OS = pickle.dumps(np.str_("os"), protocol=2)[2:-1]  # numpy scalar + dtype + _codecs.encode, no PROTO/STOP


@pytest.mark.parametrize(
    "module",
    [num(5), b"C\x02os", glob("os", "getcwd") + b")R", NP_STR_OS],
    ids=["int", "bytes", "computed-by-call", "numpy-str"],
)
def test_stack_global_operands_must_be_literal_strings(module: bytes) -> None:
    data = b"\x80\x04" + module + uni("system") + b"\x93" + tup(uni("echo pwned")) + b"R."
    with pytest.raises(UnsafePickleError, match=r"STACK_GLOBAL|forbidden global os\.getcwd"):
        run_pickle(data)
    res = run_pickle(data, strict=False)
    found = [(f.code, f.severity) for f in res.findings]
    assert ("bad-global-operands", "dangerous") in found
    assert found[-1] == ("call", "dangerous") and res.complete  # the VM goes on with a placeholder
    assert isinstance(res.value, Opaque) and res.value.name == "system"


def test_numpy_str_scalar_is_still_a_string_value_and_key() -> None:
    value = {np.str_("k"): np.str_("v")}
    res = run_pickle(pickle.dumps(value, protocol=2))
    assert res.value == {"k": "v"} and not res.findings


@pytest.mark.parametrize(
    "size, stride, numel",
    [
        ((1000, 12), (0, 1), 12),  # an expanded bias
        ((10**6,), (0,), 12),  # 4 MB from 48 bytes: far over 64x, but small
        ((2**28, 2), (1, 0), 2**28),  # 2 GiB from 1 GiB: large, but only 2x its storage
    ],
)
def test_expanded_views_within_bounds_are_allowed(size: tuple, stride: tuple, numel: int) -> None:
    res = run_pickle(state_dict(w=tensor(0, size, stride, storage_pid(numel=numel))))
    assert res.value["w"].shape == size and not res.findings


def test_expansion_bomb_is_refused() -> None:
    data = state_dict(w=tensor(0, (2**28 + 1,), (0,)))  # just over 1 GiB from 48 bytes
    with pytest.raises(TensorExpansion, match="memory bomb"):
        run_pickle(data)
    res = run_pickle(data, strict=False)
    assert [(f.code, f.severity) for f in res.findings] == [("bad-tensor", "suspicious")]
    assert "1073741828 bytes" in str(res.findings[0].message) and isinstance(res.value["w"], Opaque)


def test_ext_codes_and_stack_leftovers() -> None:
    with pytest.raises(UnsafePickleError):
        run_pickle(b"\x80\x02\x82\x01.")
    assert run_pickle(b"\x80\x02\x82\x01.", strict=False).findings[0].code == "ext-code"
    res = run_pickle(b"\x80\x02" + num(1) + num(2) + b".", strict=False)
    assert res.findings[0].code == "stack-not-empty" and res.value == 2


def test_frame_lengths_are_checked() -> None:
    good = pickle.dumps({"a": 1}, protocol=4)
    assert good[2] == 0x95
    assert run_pickle(good).value == {"a": 1}
    (n,) = struct.unpack_from("<Q", good, 3)
    bad = good[:3] + struct.pack("<Q", n - 3) + good[11:]
    with pytest.raises(ModelReadError, match="frame"):
        run_pickle(bad)
    assert any(f.code == "frame-mismatch" for f in run_pickle(bad, strict=False).findings)


def test_limits_end_bombs_fast() -> None:
    many = b"\x80\x02" + b"N0" * 1000 + b"N."
    with pytest.raises(ModelReadError, match="opcodes"):
        run_pickle(many, limits=Limits(max_ops=100))
    assert run_pickle(many, strict=False, limits=Limits(max_ops=100)).findings[0].code == "limit-exceeded"
    with pytest.raises(ModelReadError):
        run_pickle(b"\x80\x02\x8b" + struct.pack("<i", 1 << 20) + b"\x00" * (1 << 20) + b".")
    with pytest.raises(ModelReadError):
        run_pickle(b"\x80\x02" + b"(" * 5000 + b"N.")
    with pytest.raises(ModelReadError):
        run_pickle(b"\x80\x02B" + struct.pack("<I", 1000) + b"x" * 1000 + b".", limits=Limits(max_string=100))
    deep_key = b"\x80\x02}" + num(1) + b"\x85" * 20 + b"N" + b"s."
    with pytest.raises(ModelReadError, match="key"):
        run_pickle(deep_key)


def test_truncated_and_garbage_pickles() -> None:
    for data in (b"", b"\x80", b"\x80\x02X\xff\xff\x00\x00abc", b"hello world\n", b"\x80\x09."):
        with pytest.raises(ModelReadError):
            run_pickle(data)
        res = run_pickle(data, strict=False)
        assert not res.complete and res.findings[-1].code == "parse-error"


def test_note_globals_are_allowed_and_writer_names_come_from_the_reader() -> None:
    from sdmodel.formats.ckpt_writer import STORAGE_TYPES, TORCH_DTYPES_V3
    from sdmodel.formats.torch_records import STORAGE_DTYPES, TORCH_DTYPES

    assert NOTE_GLOBALS <= ALLOWED_GLOBALS
    assert all(STORAGE_DTYPES[name] == dtype for dtype, name in STORAGE_TYPES.items())
    assert all(TORCH_DTYPES[name] == dtype for dtype, name in TORCH_DTYPES_V3.items())
    assert set(TORCH_DTYPES_V3) == {"F8_E4M3", "F8_E5M2", "U16", "U32", "U64"}
