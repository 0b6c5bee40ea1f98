"""What a PyTorch checkpoint's pickle describes: storages (named by persistent ids) and tensors
(strided views of them), with every attacker-controlled number checked before use.

The storage-type and dtype tables are the one source of torch's names: the readers look names up
in them, the checkpoint writer uses their inverses (tinygrad's ``nn/state.py`` keeps its dtype
table the same way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sdmodel.dtypes import ITEMSIZE
from sdmodel.errors import ModelReadError, UnsafePickleError
from sdmodel.formats.pickle_values import GlobalObj, Placeholder, short
from sdmodel.i18n import Bytes, Msg

STORAGE_DTYPES: dict[str, str] = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
    "ComplexFloatStorage": "C64",
    "ComplexDoubleStorage": "C128",
}
"""``torch.<X>Storage`` -> our dtype (``torch/storage.py``'s typed storages)."""

STORAGE_NAMES: dict[str, str] = {v: k for k, v in STORAGE_DTYPES.items()}
"""Our dtype -> the ``torch.<X>Storage`` that ``torch.save`` writes for it."""

TORCH_DTYPES: dict[str, str] = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
    "complex64": "C64",
    "complex128": "C128",
}
"""``torch.<dtype>`` -> our dtype."""

TORCH_DTYPE_NAMES: dict[str, str] = {v: k for k, v in TORCH_DTYPES.items()}
"""Our dtype -> ``torch.<dtype>``."""


@dataclass(eq=False)
class StorageRef(Placeholder):
    """A storage named by a persistent id. ``numel`` counts elements of ``dtype``; a legacy view
    starts ``view_offset`` elements into the root storage ``key``."""

    key: str
    dtype: str
    location: str
    numel: int
    type_name: str
    view_offset: int = 0
    view_key: str | None = None

    @property
    def nbytes(self) -> int:
        return self.numel * ITEMSIZE[self.dtype]


@dataclass(eq=False)
class TensorRef(Placeholder):
    """A tensor described by a rebuild call: a strided view (in elements of ``dtype``) of a storage."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    requires_grad: bool = False
    parameter: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def is_contiguous(self) -> bool:
        expected = 1
        for size, st in zip(reversed(self.shape), reversed(self.stride), strict=True):
            if size != 1 and st != expected:
                return False
            expected *= size
        return True

    def extent(self) -> tuple[int, int]:
        """[first, last+1) element indices touched in the storage (0, 0 when empty)."""
        if self.numel == 0:
            return 0, 0
        last = self.offset + sum((s - 1) * st for s, st in zip(self.shape, self.stride, strict=True))
        return self.offset, last + 1


@dataclass(eq=False)
class ArrayTensor(Placeholder):
    """A tensor whose values are inside the pickle (``_rebuild_device_tensor_from_numpy``)."""

    array: np.ndarray
    dtype: str

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def parse_storage_pid(pid: Any, legacy: bool = False) -> StorageRef:
    """Check a storage persistent id and describe it. Zip format: ``('storage', type, key, location,
    numel)``; legacy: the same plus ``view_metadata`` (None or ``(view_key, offset, size)``).
    Raises UnsafePickleError for a ``('module', ...)`` id, ModelReadError for anything malformed."""
    if isinstance(pid, tuple) and pid and pid[0] == "module":
        raise UnsafePickleError(Msg("persistent id ('module', ...) asks to rebuild a whole module from source"))
    want = 6 if legacy else 5
    if not isinstance(pid, tuple) or len(pid) != want or pid[0] != "storage":
        raise ModelReadError(
            Msg("unexpected persistent id {pid} (wanted a {want}-tuple ('storage', ...))", pid=short(pid), want=want)
        )
    _, stype, key, location, numel = pid[:5]
    if not isinstance(stype, GlobalObj) or stype.rule.role != "storage-type":
        raise ModelReadError(Msg("persistent id names {stype} as storage type", stype=short(stype)))
    if not isinstance(key, str) or not isinstance(location, str):
        raise ModelReadError(Msg("persistent id {pid}: key and location must be strings", pid=short(pid)))
    if type(numel) is not int or numel < 0:
        raise ModelReadError(
            Msg("persistent id for storage {key!r}: bad element count {numel}", key=key, numel=short(numel))
        )
    dtype = stype.rule.dtype or "U8"
    ref = StorageRef(key, dtype, location, numel, stype.name)
    if legacy and pid[5] is not None:
        view = pid[5]
        if (
            not isinstance(view, tuple)
            or len(view) != 3
            or not isinstance(view[0], str)
            or type(view[1]) is not int
            or type(view[2]) is not int
            or view[1] < 0
            or view[2] < 0
            or view[1] + view[2] > numel
        ):
            raise ModelReadError(
                Msg(
                    "storage {key!r}: bad view metadata {view} (storage has {numel} elements)",
                    key=key,
                    view=short(view),
                    numel=numel,
                )
            )
        ref = StorageRef(key, dtype, location, view[2], stype.name, view_offset=view[1], view_key=view[0])
    return ref


def default_persistent_load(pid: Any) -> StorageRef:
    """Accept either storage id form (used when the caller gives no callback)."""
    return parse_storage_pid(pid, legacy=isinstance(pid, tuple) and len(pid) == 6)


# A tensor is refused when it materialises to more than MAX_EXPANSION times its storage's bytes and
# more than MAX_EXPANDED_BYTES (an expanded bias or shared views stay far below either bound).
MAX_EXPANSION = 64
MAX_EXPANDED_BYTES = 1 << 30


class TensorExpansion(ModelReadError):
    """A view inside its storage that materialises far more bytes than the storage holds (stride 0
    or overlapping strides): a memory bomb for whoever reads the tensor."""


def check_tensor(storage: StorageRef, offset: Any, shape: Any, stride: Any, dtype: str) -> TensorRef:
    """Validate attacker-controlled view metadata against the storage; ModelReadError if invalid,
    TensorExpansion if valid but far larger than its storage."""
    if type(offset) is not int or offset < 0:
        raise ModelReadError(Msg("tensor storage offset {offset} is not a non-negative int", offset=short(offset)))
    for what, seq in (("size", shape), ("stride", stride)):
        if not isinstance(seq, tuple) or len(seq) > 64 or not all(type(x) is int and x >= 0 for x in seq):
            raise ModelReadError(
                Msg("tensor {what} {seq} is not a tuple of non-negative ints", what=what, seq=short(seq))
            )
    if len(shape) != len(stride):
        raise ModelReadError(
            Msg("tensor size {shape} and stride {stride} differ in length", shape=shape, stride=stride)
        )
    elems = storage.nbytes // ITEMSIZE[dtype]
    numel = math.prod(shape)
    need = numel * ITEMSIZE[dtype]
    if need >= 1 << 62:
        raise ModelReadError(Msg("tensor size {shape} overflows", shape=shape))
    if numel:
        last = offset + sum((s - 1) * st for s, st in zip(shape, stride, strict=True))
        if last >= elems:
            raise ModelReadError(
                Msg(
                    "tensor view (offset {offset}, size {shape}, stride {stride}) reaches element {last} of a {elems}-element storage {key!r}",
                    offset=offset,
                    shape=shape,
                    stride=stride,
                    last=last,
                    elems=elems,
                    key=storage.key,
                )
            )
    if need > MAX_EXPANDED_BYTES and need > MAX_EXPANSION * storage.nbytes:
        raise TensorExpansion(
            Msg(
                "tensor of size {shape} (stride {stride}) would expand the {nbytes} of storage {key!r} to {need} (more than {max_expansion}x and {value} GiB): a memory bomb",
                shape=shape,
                stride=stride,
                nbytes=Bytes(storage.nbytes),
                key=storage.key,
                need=Bytes(need),
                max_expansion=MAX_EXPANSION,
                value=MAX_EXPANDED_BYTES >> 30,
            )
        )
    return TensorRef(storage, offset, shape, stride, dtype)
