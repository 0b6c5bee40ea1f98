"""What both PyTorch checkpoint readers share: finding the state dict in the unpickled object,
turning the rest into plain extras, and reading a (possibly strided) tensor from its storage.

State-dict discovery: the top level must be a dict. A ``state_dict`` key holding a dict is
unwrapped (repeatedly: Lightning files sometimes nest it twice). When the top level holds no tensor
itself, a ``model`` or ``module`` key holding a dict with tensors is unwrapped the same way (some
trainers save ``{'model': state_dict}``). Everything beside an unwrapped key goes to ``extras``.
In the state dict, nested dicts of tensors (an embedding's ``string_to_param`` ParameterDict) are
flattened with dotted names; non-tensor values go to ``extras`` under their (dotted) name.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from sdmodel.dtypes import ITEMSIZE, NUMPY_DTYPES
from sdmodel.errors import ModelReadError
from sdmodel.formats.base import TensorInfo, TensorSource, open_bytes, read_array
from sdmodel.formats.pickle_allow import NpArray, NpDtype
from sdmodel.formats.pickle_values import GlobalObj, Opaque
from sdmodel.formats.pickle_vm import PickleResult
from sdmodel.formats.torch_records import ArrayTensor, StorageRef, TensorRef
from sdmodel.i18n import Msg

WRAPPER_KEYS = ("state_dict",)
FALLBACK_WRAPPER_KEYS = ("model", "module")
MAX_DEPTH = 32
MAX_ITEMS = 1000
_TENSORS = (TensorRef, ArrayTensor)


def has_tensor(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _TENSORS):
        return True
    if isinstance(value, dict) and depth < MAX_DEPTH:
        return any(has_tensor(v, depth + 1) for v in value.values())
    return False


def plain(value: Any, depth: int = 0) -> Any:
    """A JSON-friendly copy of an extra value: placeholders become short strings."""
    if value is None or type(value) in (bool, int, float, str):  # not a numpy str_: str() below
        return value
    if depth >= MAX_DEPTH:
        return "..."
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex() if len(value) <= 64 else f"<{len(value)} bytes>"
    if isinstance(value, dict):
        out = {str(k): plain(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
        if len(value) > MAX_ITEMS:
            out["..."] = f"{len(value) - MAX_ITEMS} more"
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        out_list = [plain(v, depth + 1) for v in items[:MAX_ITEMS]]
        if len(items) > MAX_ITEMS:
            out_list.append(f"... {len(items) - MAX_ITEMS} more")
        return out_list
    if isinstance(value, _TENSORS):
        return f"<tensor {value.dtype} {list(value.shape)}>"
    if isinstance(value, NpArray):
        if value.array is not None and value.array.size <= MAX_ITEMS:
            return value.array.tolist()
        return "<numpy array>"
    if isinstance(value, NpDtype):
        return value.code
    if isinstance(value, StorageRef):
        return f"<storage {value.key}>"
    if isinstance(value, (GlobalObj, Opaque)):
        return str(value)
    return str(value)


def split_state_dict(obj: Any) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(tensors by flat name in pickle order, extras, unwrapped wrapper keys) of a checkpoint."""
    if not isinstance(obj, dict):
        if isinstance(obj, _TENSORS):
            raise ModelReadError(Msg("the checkpoint holds a single tensor, not a dict of tensors"))
        raise ModelReadError(Msg("the checkpoint holds a {kind}, not a dict of tensors", kind=type(obj).__name__))
    extras: dict[str, Any] = {}
    wrappers: list[str] = []
    sd: dict = obj
    while len(wrappers) < 8:
        inner = next((k for k in WRAPPER_KEYS if isinstance(sd.get(k), dict)), None)
        if inner is None and not any(isinstance(v, _TENSORS) for v in sd.values()):
            fallback = (k for k in FALLBACK_WRAPPER_KEYS if isinstance(sd.get(k), dict) and has_tensor(sd[k]))
            inner = next(fallback, None)
        if inner is None:
            break
        for k, v in sd.items():
            if k != inner:
                extras.setdefault(str(k), plain(v))
        wrappers.append(inner)
        sd = sd[inner]
    tensors: dict[str, Any] = {}
    _flatten(sd, "", tensors, extras, 0)
    return tensors, extras, wrappers


def _flatten(d: dict, prefix: str, tensors: dict[str, Any], extras: dict[str, Any], depth: int) -> None:
    for k, v in d.items():
        name = prefix + str(k)
        if isinstance(v, _TENSORS):
            tensors.setdefault(name, v)
        elif isinstance(v, dict) and depth < MAX_DEPTH and has_tensor(v):
            _flatten(v, name + ".", tensors, extras, depth + 1)
        else:
            extras[name] = plain(v)


class TorchSource(TensorSource):
    """Base of both PyTorch readers: subclasses parse the container, then call ``_install``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.big_endian = False
        self.wrappers: list[str] = []
        self.pickle_result: PickleResult | None = None
        self._refs: dict[str, TensorRef | ArrayTensor] = {}
        self._file = open_bytes(path)

    @abstractmethod
    def _parse(self) -> None:
        """Read the container and the pickle, then call ``_install``."""

    def _parse_or_close(self) -> None:
        """``_parse``; on any failure close the file, and name it in a ModelReadError's message."""
        try:
            self._parse()
        except ModelReadError as e:
            self._file.close()
            if not str(e).startswith(str(self.path)):
                raise type(e)(Msg("{path}: {problem}", path=self.path, problem=e.message)) from None
            raise
        except Exception:
            self._file.close()
            raise

    def _fail(self, problem: str | Msg) -> ModelReadError:
        return ModelReadError(Msg("{path}: {problem}", path=self.path, problem=problem))

    def _install(self, obj: Any) -> None:
        try:
            refs, self.extras, self.wrappers = split_state_dict(obj)
        except ModelReadError as e:
            raise self._fail(e.message) from None
        self._refs = refs
        self._tensors = {k: TensorInfo(k, r.dtype, tuple(r.shape)) for k, r in refs.items()}

    def tensor_ref(self, name: str) -> TensorRef | ArrayTensor:
        """The tensor's description in the pickle (storage, offset, shape, stride)."""
        return self._refs[name]

    @abstractmethod
    def _record(self, storage: StorageRef) -> tuple[int, int]:
        """(absolute file offset, byte length) of a root storage's data."""

    def storage_of(self, name: str) -> tuple[str, int, int]:
        """(storage key, absolute file offset of the storage data, its byte length) of a tensor.
        The tensor itself starts ``tensor_ref(name).offset`` elements into it (plus a legacy view
        offset). ValueError for a tensor whose values are inside the pickle."""
        ref = self._refs[name]
        if not isinstance(ref, TensorRef):
            raise ValueError(f"tensor {name!r} has no storage record (its values are in the pickle)")
        return (ref.storage.key, *self._record(ref.storage))

    def data_range(self, name: str) -> tuple[int, int] | None:
        """Absolute [begin, end) of a C-contiguous tensor's bytes, or None (strided, compressed,
        big-endian, in-pickle)."""
        ref = self._refs[name]
        if not isinstance(ref, TensorRef) or not ref.is_contiguous() or self.big_endian:
            return None
        base, _ = self._record(ref.storage)
        if base < 0:
            return None
        st = ref.storage
        begin = base + st.view_offset * ITEMSIZE[st.dtype] + ref.offset * ITEMSIZE[ref.dtype]
        return begin, begin + ref.numel * ITEMSIZE[ref.dtype]

    def _read_storage(self, storage: StorageRef, start: int, count: int, dtype: np.dtype) -> np.ndarray:
        """``count`` elements of ``dtype`` from ``start`` bytes into a root storage's data."""
        base, _ = self._record(storage)
        return read_array(
            self._file, base + start, dtype, (count,), Msg("{path}: storage {key!r}", path=self.path, key=storage.key)
        )

    def read(self, name: str) -> np.ndarray:
        ref = self._refs[name]
        if isinstance(ref, ArrayTensor):
            return np.array(ref.array, copy=True)
        dt = NUMPY_DTYPES[ref.dtype]
        item = dt.itemsize
        lo, hi = ref.extent()
        if hi == lo:
            return np.empty(ref.shape, dt)
        st = ref.storage
        start = st.view_offset * ITEMSIZE[st.dtype] + lo * item
        _, length = self._record(st)
        if start + (hi - lo) * item > length:  # the VM and persistent_load checked this already
            raise self._fail(Msg("tensor {name!r} reaches past its storage record", name=name))
        flat = self._read_storage(st, start, hi - lo, dt)
        if self.big_endian and item > 1:
            flat = flat.byteswap()
        arr = np.ndarray(ref.shape, dt, buffer=flat, offset=0, strides=tuple(s * item for s in ref.stride))
        # ascontiguousarray would turn a 0-dim array into a 1-dim one
        return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)

    def close(self) -> None:
        self._file.close()
