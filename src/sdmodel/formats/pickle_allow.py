"""The allow-list: every global a checkpoint may name, and everything each one may do.

This is the whole of what the pickle VM lets a file do. :data:`ALLOWED` maps ``(module, name)``
(after CPython's py2 renames) to a :class:`Rule`: what calling it returns (REDUCE, INST, OBJ),
what instantiating it returns (NEWOBJ), and its role when another allowed global takes it as an
argument (a storage type, a dtype, a tensor class). :data:`BUILDS` says which results BUILD may
fill in. Each behaviour is our own code on checked arguments; nothing is imported or run. Any
global not in the table is an inert placeholder, and calling it is a finding.

Collected from the globals honest checkpoints use (``torch.save``'s pickler, Lightning, A1111
embeddings) and ``torch/_weights_only_unpickler.py``'s allow-list.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from sdmodel.dtypes import NUMPY_DTYPES
from sdmodel.formats.pickle_values import (
    GlobalObj,
    Opaque,
    Placeholder,
    TypeConfusion,
    TypeProblem,
    UnsafeCall,
    check_key,
    fill,
    kind_of,
    short,
)
from sdmodel.formats.torch_records import (
    STORAGE_DTYPES,
    TORCH_DTYPES,
    ArrayTensor,
    StorageRef,
    TensorRef,
    check_tensor,
)
from sdmodel.i18n import Bytes, Msg

Role = Literal["function", "class", "rebuild", "storage-type", "dtype", "tensor-class", "ndarray-class", "value"]


@dataclass(frozen=True)
class Rule:
    """What an allowed global may do. ``call``: the result of calling it with checked positional
    arguments (None: calling it is a finding). ``new``: the empty object NEWOBJ makes (None:
    NEWOBJ is a finding). ``dtype``: of a storage type or a torch dtype. ``sees_unknown``: it is
    called even with unknown globals among its arguments (to name what it would call)."""

    role: Role
    call: Callable[[tuple], Any] | None = None
    new: Callable[[], Any] | None = None
    dtype: str | None = None
    sees_unknown: bool = False


# ---- results of allowed calls that BUILD may fill in


class ODict(dict):
    """A ``collections.OrderedDict`` built by the pickle (a plain dict that BUILD may target)."""

    __hash__ = None


class ParamDict(dict):
    """A ``torch.nn.ParameterDict``: after BUILD, maps its keys to its parameters."""

    __hash__ = None


@dataclass(eq=False)
class NpDtype(Placeholder):
    code: str
    byteorder: str = "|"

    def numpy(self) -> np.dtype:
        dt = np.dtype(self.code)
        if self.byteorder in ("<", ">") and dt.itemsize > 1:
            dt = dt.newbyteorder("<" if self.byteorder == "<" else ">")
        return dt


@dataclass(eq=False)
class NpArray(Placeholder):
    """``numpy.core.multiarray._reconstruct`` result; ``array`` is set by its BUILD."""

    array: np.ndarray | None = None


# ---- tensors


def _n_args(args: tuple, *allowed: int) -> None:
    if len(args) not in allowed:
        raise TypeProblem(Msg("{args_count} arguments", args_count=len(args)))


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None) -> TensorRef:
    """Raises ModelReadError for view metadata outside the storage (the VM grades it)."""
    if not isinstance(storage, StorageRef):
        raise TypeProblem(Msg("tensor storage is a {storage}", storage=kind_of(storage)))
    return check_tensor(storage, offset, size, stride, dtype or storage.dtype)


def _tensor_extras(requires_grad: Any, hooks: Any, metadata: Any) -> None:
    if type(requires_grad) is not bool:
        raise TypeProblem(Msg("requires_grad is a {requires_grad}", requires_grad=kind_of(requires_grad)))
    if not isinstance(hooks, dict) or (metadata is not None and not isinstance(metadata, dict)):
        raise TypeProblem(Msg("backward hooks and metadata must be dicts"))


def _is_dtype(v: Any) -> bool:
    return isinstance(v, GlobalObj) and v.rule.role == "dtype"


def rebuild_tensor_v2(args: tuple) -> Any:
    """``(storage, offset, size, stride, requires_grad, backward_hooks[, metadata])``"""
    _n_args(args, 6, 7)
    _tensor_extras(args[4], args[5], args[6] if len(args) == 7 else None)
    return _tensor(args[0], args[1], args[2], args[3], None)


def rebuild_tensor_v3(args: tuple) -> Any:
    """``(storage, offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])``"""
    _n_args(args, 7, 8)
    if not _is_dtype(args[6]):
        raise TypeProblem(Msg("dtype argument is a {args}", args=kind_of(args[6])))
    _tensor_extras(args[4], args[5], args[7] if len(args) == 8 else None)
    return _tensor(args[0], args[1], args[2], args[3], args[6].rule.dtype)


def _parameter(data: Any, requires_grad: Any, hooks: Any) -> Any:
    if type(requires_grad) is not bool or not isinstance(hooks, dict):
        raise TypeProblem(Msg("parameter needs (tensor, bool, dict)"))
    if isinstance(data, TensorRef):
        return replace(data, requires_grad=requires_grad, parameter=True)
    if isinstance(data, ArrayTensor):
        return data
    raise TypeProblem(Msg("parameter data is a {data}", data=kind_of(data)))


def rebuild_parameter(args: tuple) -> Any:
    _n_args(args, 3)
    return _parameter(*args)


def rebuild_parameter_with_state(args: tuple) -> Any:
    _n_args(args, 4)
    if args[3] is not None and not isinstance(args[3], (dict, tuple)):
        raise TypeProblem(Msg("parameter state is a {args}", args=kind_of(args[3])))
    return _parameter(args[0], args[1], args[2])


def parameter(args: tuple) -> Any:
    """``torch.nn.Parameter(data[, requires_grad])``"""
    _n_args(args, 1, 2)
    return _parameter(args[0], args[1] if len(args) == 2 else True, {})


def rebuild_device_tensor_from_numpy(args: tuple) -> Any:
    """``(numpy array, dtype, device, requires_grad)``: values inside the pickle."""
    _n_args(args, 4)
    data, dtype, device, _requires_grad = args
    if not isinstance(data, NpArray) or data.array is None:
        raise TypeProblem(Msg("data is a {data}, not a numpy array", data=kind_of(data)))
    if not _is_dtype(dtype) or not isinstance(device, str):
        raise TypeProblem(Msg("needs a torch dtype and a device string"))
    want = NUMPY_DTYPES[dtype.rule.dtype or "U8"]
    arr = data.array
    if arr.dtype.kind == want.kind and arr.dtype.itemsize == want.itemsize:
        return ArrayTensor(np.ascontiguousarray(arr).astype(want, copy=False), dtype.rule.dtype or "U8")
    raise TypeProblem(Msg("numpy array of {dtype} given for {dtype2}", dtype=arr.dtype, dtype2=dtype))


def rebuild_from_type_v2(args: tuple) -> Any:
    """``(rebuild function, tensor class, its arguments, state)``: calls only a tensor rebuild."""
    _n_args(args, 4)
    inner, new_type, inner_args, state = args
    if not isinstance(inner, GlobalObj) or inner.rule.role != "rebuild" or inner.rule.call is None:
        raise UnsafeCall(Msg("_rebuild_from_type_v2 calls {inner}, which is not a tensor rebuild", inner=short(inner)))
    if not isinstance(new_type, GlobalObj) or new_type.rule.role != "tensor-class":
        raise UnsafeCall(Msg("_rebuild_from_type_v2 makes a {new_type}, not a tensor", new_type=short(new_type)))
    if type(inner_args) is not tuple or not (state is None or isinstance(state, dict)):
        raise TypeProblem(Msg("needs an argument tuple and a state dict"))
    result = inner.rule.call(inner_args)
    if new_type.name == "Parameter" and isinstance(result, TensorRef):
        result = replace(result, parameter=True)
    return result


# ---- containers and values


def ordered_dict(args: tuple) -> Any:
    """``OrderedDict()`` or ``OrderedDict([(k, v), ...])``"""
    _n_args(args, 0, 1)
    d = ODict()
    if args:
        pairs = args[0]
        seqs = (list, tuple)
        if type(pairs) not in seqs or any(type(p) not in seqs or len(p) != 2 for p in pairs):
            raise TypeProblem(Msg("OrderedDict needs a list of pairs"))
        fill(d, [x for p in pairs for x in p])
    return d


def parameter_dict(args: tuple) -> Any:
    if args:
        raise TypeProblem(Msg("ParameterDict called with arguments"))
    return ParamDict()


def torch_size(args: tuple) -> Any:
    if len(args) != 1 or type(args[0]) not in (tuple, list) or not all(type(x) is int for x in args[0]):
        raise TypeProblem(Msg("torch.Size needs a tuple of ints"))
    return tuple(args[0])


def _elements(args: tuple) -> list:
    if len(args) > 1 or (args and type(args[0]) not in (list, tuple, set, frozenset)):
        raise TypeProblem(Msg("needs at most one list"))
    items = list(args[0]) if args else []
    for k in items:
        check_key(k)
    return items


def make_set(args: tuple) -> Any:
    return set(_elements(args))


def make_frozenset(args: tuple) -> Any:
    return frozenset(_elements(args))


def make_bytearray(args: tuple) -> Any:
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin-1", "latin1"):
        return bytearray(args[0].encode("latin-1", "replace"))
    raise TypeProblem(Msg("bytearray needs bytes or (str, 'latin-1')"))


def make_complex(args: tuple) -> Any:
    if len(args) > 2 or not all(type(a) in (int, float) for a in args):
        raise TypeProblem(Msg("complex needs two numbers"))
    return complex(*args)


def codecs_encode(args: tuple) -> Any:
    """``_codecs.encode(str, 'latin1')``: how protocol 2 stores bytes."""
    if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
        raise TypeProblem(Msg("_codecs.encode needs (str, 'latin1')"))
    try:
        return args[0].encode("latin-1")
    except UnicodeEncodeError:
        raise TypeProblem(Msg("_codecs.encode of a non-latin-1 string")) from None


# ---- numpy values (Lightning's numpy scalars, arrays inside the pickle)

_NP_CODE = re.compile(r"(b1|[iu][1248]|f[248]|c(8|16)|[US]\d{1,6})")


def np_dtype(args: tuple) -> Any:
    if not 1 <= len(args) <= 3 or type(args[0]) is not str or not _NP_CODE.fullmatch(args[0]):
        raise TypeProblem(Msg("numpy dtype {args} (only plain numeric/string dtypes are read)", args=short(args)))
    code = args[0]
    return NpDtype(code, "|" if code == "b1" or code[0] == "S" or code[1:] == "1" else "<")


def np_scalar(args: tuple) -> Any:
    if len(args) != 2 or not isinstance(args[0], NpDtype) or type(args[1]) not in (bytes, bytearray, str):
        raise TypeProblem(Msg("numpy scalar needs (dtype, bytes)"))
    raw = args[1].encode("latin-1") if isinstance(args[1], str) else bytes(args[1])
    dt = args[0].numpy()
    if len(raw) != dt.itemsize:
        raise TypeProblem(Msg("numpy scalar of {dt} holds {raw_count}", dt=dt, raw_count=Bytes(len(raw))))
    value = np.frombuffer(raw, dt)[0]
    # a numpy str_ stays a str subclass, as in CPython (STACK_GLOBAL refuses it as a name)
    return value if isinstance(value, np.str_) else value.item()


def np_reconstruct(args: tuple) -> Any:
    if len(args) != 3 or not isinstance(args[0], GlobalObj) or args[0].rule.role != "ndarray-class":
        raise TypeProblem(Msg("numpy _reconstruct needs (numpy.ndarray, shape, typecode)"))
    return NpArray()


# ---- BUILD: the only objects whose state a pickle may set


def build_ordered_dict(inst: ODict, state: Any) -> None:
    """Torch's ``_metadata`` attribute; nothing is kept."""
    if not isinstance(state, dict) and not (type(state) is tuple and len(state) == 2):
        raise TypeProblem(Msg("BUILD of an OrderedDict with a {state}", state=kind_of(state)))


def build_parameter_dict(inst: ParamDict, state: Any) -> None:
    if not isinstance(state, dict):
        raise TypeProblem(Msg("BUILD of a ParameterDict with a {state}", state=kind_of(state)))
    params = state.get("_parameters", {})
    if not isinstance(params, dict):
        raise TypeProblem(Msg("ParameterDict state has no _parameters dict"))
    for k, v in params.items():
        if not isinstance(k, str) or not isinstance(v, (TensorRef, ArrayTensor, Opaque)):
            raise TypeProblem(Msg("ParameterDict entry {k} is a {v}", k=short(k), v=kind_of(v)))
        inst[k] = v


def build_np_dtype(inst: NpDtype, state: Any) -> None:
    if type(state) is not tuple or len(state) < 8:
        raise TypeProblem(Msg("numpy dtype state {state}", state=short(state)))
    byteorder, subarray, names, fields = state[1:5]
    if byteorder not in ("<", ">", "|", "=") or (subarray, names, fields) != (None, None, None):
        raise TypeProblem(Msg("numpy dtype state {state} (only plain numeric dtypes are read)", state=short(state)))
    inst.byteorder = "<" if byteorder == "=" else byteorder


def build_np_array(inst: NpArray, state: Any) -> None:
    if type(state) is not tuple or len(state) != 5:
        raise TypeProblem(Msg("numpy array state {state}", state=short(state)))
    _, shape, dtype, fortran, raw = state
    if not isinstance(dtype, NpDtype) or not isinstance(raw, (bytes, bytearray, str)):
        raise TypeProblem(Msg("numpy array state must hold a plain dtype and raw bytes"))
    if type(shape) is not tuple or not all(type(s) is int and s >= 0 for s in shape) or len(shape) > 64:
        raise TypeProblem(Msg("numpy array shape {shape}", shape=short(shape)))
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    dt = dtype.numpy()
    if math.prod(shape) * dt.itemsize != len(raw):
        raise TypeProblem(Msg("numpy array of shape {shape} holds {raw_count}", shape=shape, raw_count=Bytes(len(raw))))
    inst.array = np.frombuffer(bytes(raw), dt).reshape(shape, order="F" if fortran else "C")


def build(inst: Any, state: Any) -> None:
    """BUILD on a result of an allowed call; anything else is a type confusion."""
    handler = BUILDS.get(type(inst))
    if handler is None:
        raise TypeConfusion(Msg("BUILD on a {inst}", inst=kind_of(inst)))
    handler(inst, state)


BUILDS: dict[type, Callable[[Any, Any], None]] = {
    ODict: build_ordered_dict,
    ParamDict: build_parameter_dict,
    NpDtype: build_np_dtype,
    NpArray: build_np_array,
}

# ---- the table

_REBUILD: Role = "rebuild"
ALLOWED: dict[tuple[str, str], Rule] = {
    ("collections", "OrderedDict"): Rule("class", call=ordered_dict, new=ODict),
    ("torch._utils", "_rebuild_tensor_v2"): Rule(_REBUILD, call=rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor_v3"): Rule(_REBUILD, call=rebuild_tensor_v3),
    ("torch._utils", "_rebuild_parameter"): Rule(_REBUILD, call=rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): Rule(_REBUILD, call=rebuild_parameter_with_state),
    ("torch._utils", "_rebuild_device_tensor_from_numpy"): Rule(_REBUILD, call=rebuild_device_tensor_from_numpy),
    ("torch._tensor", "_rebuild_from_type_v2"): Rule("function", call=rebuild_from_type_v2, sees_unknown=True),
    ("torch.storage", "UntypedStorage"): Rule("storage-type", dtype="U8"),
    **{("torch", name): Rule("storage-type", dtype=dtype) for name, dtype in STORAGE_DTYPES.items()},
    **{("torch", name): Rule("dtype", dtype=dtype) for name, dtype in TORCH_DTYPES.items()},
    ("torch", "Size"): Rule("class", call=torch_size),
    ("torch", "Tensor"): Rule("tensor-class"),
    ("torch.nn.parameter", "Parameter"): Rule("tensor-class", call=parameter),
    ("torch.nn.modules.container", "ParameterDict"): Rule("class", call=parameter_dict, new=ParamDict),
    ("numpy.core.multiarray", "scalar"): Rule("function", call=np_scalar),
    ("numpy._core.multiarray", "scalar"): Rule("function", call=np_scalar),
    ("numpy.core.multiarray", "_reconstruct"): Rule("function", call=np_reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): Rule("function", call=np_reconstruct),
    ("numpy", "dtype"): Rule("class", call=np_dtype),
    ("numpy", "ndarray"): Rule("ndarray-class"),
    ("_codecs", "encode"): Rule("function", call=codecs_encode),
    ("builtins", "set"): Rule("class", call=make_set, new=set),
    ("builtins", "frozenset"): Rule("class", call=make_frozenset, new=frozenset),
    ("builtins", "bytearray"): Rule("class", call=make_bytearray),
    ("builtins", "complex"): Rule("class", call=make_complex),
    # Lightning < 1.5 keys callback state by the class: a dict key, never called.
    ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"): Rule("value"),
}
"""(module, name) -> what it may do. Everything else is inert and may not be called."""

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(ALLOWED)

MODULE_PREFIXES: frozenset[str] = frozenset(
    m[:i] for m, _ in ALLOWED for i in [*(j for j, c in enumerate(m) if c == "."), len(m)]
)
"""Every module (and parent package) of the allow-list: naming one as a global uses a module as an
object (sys_module_override)."""
