"""A pickle virtual machine that reads checkpoints without running them.

It simulates the unpickler's stack and memo, but never imports anything: every global becomes an
inert placeholder. Only the allow-listed globals of honest checkpoints have a behaviour (an
``OrderedDict``, a tensor description, a numpy scalar...), performed by our own code after checking
the argument types. The same interpreter serves two purposes:

- load mode (``strict=True``): the first global outside the allow-list raises
  :class:`~sdmodel.errors.UnsafePickleError`, any structural problem raises ModelReadError;
- scan mode (``strict=False``): nothing raises for content; every problem becomes a :class:`Finding`
  and interpretation continues with placeholders while the stack still makes sense.

All opcodes of protocols 0-5 are understood (the semantics follow CPython's ``_pickle.c``,
including POP on an empty stack popping the MARK). Frame boundaries are checked (the C unpickler
does not), and limits bound the work done on a hostile file.
"""

from __future__ import annotations

import codecs
import math
import re
import struct
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sdmodel.dtypes import ITEMSIZE, NUMPY_DTYPES
from sdmodel.errors import ModelReadError, UnsafePickleError

# --------------------------------------------------------------------------------------------------
# Public records


@dataclass
class Finding:
    """Something worth reporting about a pickle. ``severity``: info, suspicious or dangerous."""

    severity: str
    code: str
    message: str
    offset: int | None = None
    member: str | None = None


@dataclass
class GlobalRef:
    """A global the pickle names (after the py2 name mapping); ``original`` is the spelling in the
    file when the mapping changed it."""

    module: str
    name: str
    offset: int
    original: str | None = None

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass
class Call:
    """A REDUCE/NEWOBJ/NEWOBJ_EX/OBJ/INST opcode, or a BUILD applied to a global. ``func`` is None
    when the callable is not a global (e.g. the result of another call)."""

    func: GlobalRef | None
    opcode: str
    offset: int


@dataclass
class PickleResult:
    value: Any
    findings: list[Finding]
    globals: list[GlobalRef]
    calls: list[Call]
    end: int
    complete: bool
    protocol: int | None
    persistent_ids: list[Any] = field(default_factory=list)
    n_ops: int = 0


@dataclass(frozen=True)
class Limits:
    """Bounds on the work a pickle may ask for (a real SD checkpoint is far below all of them)."""

    max_ops: int = 5_000_000
    max_memo: int = 2_000_000
    max_stack: int = 1_000_000
    max_marks: int = 1_000
    max_string: int = 64 * 1024 * 1024
    max_long_bytes: int = 1_024


DEFAULT_LIMITS = Limits()

# --------------------------------------------------------------------------------------------------
# Placeholders: what globals and allow-listed calls turn into


class Placeholder:
    """Base of the inert objects the VM creates (hashable by identity, usable as dict keys)."""

    __slots__ = ()


@dataclass(eq=False)
class Opaque(Placeholder):
    """A global outside the allow-list (``called=False``), or the result of calling/using one."""

    module: str
    name: str
    called: bool = False
    ref: GlobalRef | None = None

    def __str__(self) -> str:
        return f"{self.module}.{self.name}{'(...)' if self.called else ''}"


@dataclass(eq=False)
class GlobalObj(Placeholder):
    """An allow-listed global. ``kind`` selects its behaviour; ``dtype`` is the safetensors dtype
    of a storage type or a torch dtype."""

    module: str
    name: str
    kind: str
    dtype: str | None = None
    ref: GlobalRef | None = None

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


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
        if self.byteorder in "<>" and dt.itemsize > 1:
            dt = dt.newbyteorder("<" if self.byteorder == "<" else ">")
        return dt


@dataclass(eq=False)
class NpArray(Placeholder):
    """``numpy.core.multiarray._reconstruct`` result; ``array`` is set by its BUILD."""

    array: np.ndarray | None = None


# --------------------------------------------------------------------------------------------------
# The allow-list

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

_KINDS: dict[tuple[str, str], str] = {
    ("collections", "OrderedDict"): "odict",
    ("torch._utils", "_rebuild_tensor_v2"): "rebuild_v2",
    ("torch._utils", "_rebuild_tensor_v3"): "rebuild_v3",
    ("torch._utils", "_rebuild_parameter"): "rebuild_param",
    ("torch._utils", "_rebuild_parameter_with_state"): "rebuild_param_state",
    ("torch._utils", "_rebuild_device_tensor_from_numpy"): "rebuild_numpy",
    ("torch._tensor", "_rebuild_from_type_v2"): "rebuild_from_type",
    ("torch.storage", "UntypedStorage"): "storage",
    ("torch", "Size"): "size",
    ("torch", "Tensor"): "tensor_type",
    ("torch.nn.parameter", "Parameter"): "parameter",
    ("torch.nn.modules.container", "ParameterDict"): "paramdict",
    ("numpy.core.multiarray", "scalar"): "np_scalar",
    ("numpy._core.multiarray", "scalar"): "np_scalar",
    ("numpy.core.multiarray", "_reconstruct"): "np_reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "np_reconstruct",
    ("numpy", "dtype"): "np_dtype",
    ("numpy", "ndarray"): "np_ndarray",
    ("_codecs", "encode"): "codecs_encode",
    ("builtins", "set"): "set",
    ("builtins", "frozenset"): "frozenset",
    ("builtins", "bytearray"): "bytearray",
    ("builtins", "complex"): "complex",
    ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"): "inert",
}
_KINDS.update({("torch", name): "storage" for name in STORAGE_DTYPES})
_KINDS.update({("torch", name): "dtype" for name in TORCH_DTYPES})

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(_KINDS)
"""(module, name) pairs an honest checkpoint uses (after the py2 name mapping of protocols < 3)."""

NOTE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("torch.nn.modules.container", "ParameterDict"),
    }
)
"""Allowed globals that make a verdict "safe with notes" (inert extras, not weights)."""

REBUILD_KINDS = frozenset({"rebuild_v2", "rebuild_v3", "rebuild_param", "rebuild_param_state", "rebuild_numpy"})
_NEW_KINDS = {"paramdict": ParamDict, "odict": ODict, "set": set, "frozenset": frozenset}
_NP_CODE = re.compile(r"(b1|[iu][1248]|f[248]|c(8|16)|[US]\d{1,6})")
# Every module (and parent package) of the allow-list: naming one as a global uses a module as an object.
_MODULE_PREFIXES = frozenset(m[:i] for m, _ in _KINDS for i in [*(j for j, c in enumerate(m) if c == "."), len(m)])


def map_py2(module: str, name: str) -> tuple[str, str]:
    """CPython's protocol < 3 renames (``__builtin__`` -> ``builtins``...), from ``_compat_pickle``."""
    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


# --------------------------------------------------------------------------------------------------
# Persistent ids


def parse_storage_pid(pid: Any, legacy: bool = False) -> StorageRef:
    """Check a storage persistent id and describe it. Zip format: ``('storage', type, key, location,
    numel)``; legacy: the same plus ``view_metadata`` (None or ``(view_key, offset, size)``).
    Raises UnsafePickleError for a ``('module', ...)`` id, ModelReadError for anything malformed."""
    if isinstance(pid, tuple) and pid and pid[0] == "module":
        raise UnsafePickleError("persistent id ('module', ...) asks to rebuild a whole module from source")
    want = 6 if legacy else 5
    if not isinstance(pid, tuple) or len(pid) != want or pid[0] != "storage":
        raise ModelReadError(f"unexpected persistent id {_short(pid)} (wanted a {want}-tuple ('storage', ...))")
    _, stype, key, location, numel = pid[:5]
    if not isinstance(stype, GlobalObj) or stype.kind != "storage":
        raise ModelReadError(f"persistent id names {_short(stype)} as storage type")
    if not isinstance(key, str) or not isinstance(location, str):
        raise ModelReadError(f"persistent id {_short(pid)}: key and location must be strings")
    if type(numel) is not int or numel < 0:
        raise ModelReadError(f"persistent id for storage {key!r}: bad element count {_short(numel)}")
    dtype = stype.dtype or "U8"
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
            raise ModelReadError(f"storage {key!r}: bad view metadata {_short(view)} (storage has {numel} elements)")
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
        raise ModelReadError(f"tensor storage offset {_short(offset)} is not a non-negative int")
    for what, seq in (("size", shape), ("stride", stride)):
        if not isinstance(seq, tuple) or len(seq) > 64 or not all(type(x) is int and x >= 0 for x in seq):
            raise ModelReadError(f"tensor {what} {_short(seq)} is not a tuple of non-negative ints")
    if len(shape) != len(stride):
        raise ModelReadError(f"tensor size {shape} and stride {stride} differ in length")
    elems = storage.nbytes // ITEMSIZE[dtype]
    numel = math.prod(shape)
    need = numel * ITEMSIZE[dtype]
    if need >= 1 << 62:
        raise ModelReadError(f"tensor size {shape} overflows")
    if numel:
        last = offset + sum((s - 1) * st for s, st in zip(shape, stride, strict=True))
        if last >= elems:
            raise ModelReadError(
                f"tensor view (offset {offset}, size {shape}, stride {stride}) reaches element {last} "
                f"of a {elems}-element storage {storage.key!r}"
            )
    if need > MAX_EXPANDED_BYTES and need > MAX_EXPANSION * storage.nbytes:
        raise TensorExpansion(
            f"tensor of size {shape} (stride {stride}) would expand the {storage.nbytes} bytes of storage "
            f"{storage.key!r} to {need} bytes (more than {MAX_EXPANSION}x and {MAX_EXPANDED_BYTES >> 30} GiB): "
            "a memory bomb"
        )
    return TensorRef(storage, offset, shape, stride, dtype)


def _short(v: Any, n: int = 80) -> str:
    if isinstance(v, (list, tuple, dict, set, frozenset)) and len(v) > 16:
        return f"<{type(v).__name__} of {len(v)} items>"
    try:
        s = repr(v)
    except Exception:  # a hostile value should not break an error message
        s = f"<{type(v).__name__}>"
    return s if len(s) <= n else s[: n - 3] + "..."


# --------------------------------------------------------------------------------------------------
# The machine


class PickleTruncated(ModelReadError):
    """Load mode: the data ended before the pickle's STOP (a caller may retry with more bytes)."""


class _Stop(Exception):
    """Parsing cannot continue (structure broken, limit reached)."""

    def __init__(self, code: str, message: str, truncated: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.truncated = truncated


class _TypeProblem(Exception):
    """An operation with the wrong argument types: skipped in scan mode, fatal in load mode."""

    code = "type-error"
    severity = "suspicious"


class _TypeConfusion(_TypeProblem):
    """An opcode that fills or rebuilds a container of the wrong type (SETITEM on a tuple, BUILD on
    a tensor...): torch's weights_only loader did this without checking, the memory corruption of
    CVE-2026-24747."""

    code = "type-confusion"
    severity = "dangerous"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} (container type confusion, the memory-corruption class of CVE-2026-24747)")


class _VM:
    def __init__(
        self,
        data: bytes | memoryview,
        start: int,
        member: str | None,
        strict: bool,
        persistent_load: Callable[[Any], Any] | None,
        limits: Limits,
    ) -> None:
        self.data = data
        self.end = len(data)
        self.pos = start
        self.start = start
        self.op_pos = start
        self.member = member
        self.strict = strict
        self.persistent_load = persistent_load or self.default_load
        self.storages: dict[str, StorageRef] = {}
        self.limits = limits
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.fence = 0
        self.memo: dict[int, Any] = {}
        self.findings: list[Finding] = []
        self.globals: list[GlobalRef] = []
        self.calls: list[Call] = []
        self.pids: list[Any] = []
        self.protocol: int | None = None
        self.frame_end: int | None = None
        self.bad_seen = False
        self.n_ops = 0
        self.handlers: list[Callable[[], Any] | None] = [None] * 256
        for code, meth in _OPCODES.items():
            self.handlers[code] = getattr(self, meth)

    # ---- reporting

    def finding(self, severity: str, code: str, message: str, offset: int | None = None) -> None:
        if severity == "dangerous" or code == "global-not-allowed":
            self.bad_seen = True
        where = self.op_pos if offset is None else offset
        self.findings.append(Finding(severity, code, message, where, self.member))

    def unsafe(self, code: str, message: str, severity: str = "dangerous") -> None:
        """A security problem: refuse in load mode, record in scan mode."""
        if self.strict:
            raise UnsafePickleError(f"{message} at byte {self.op_pos}{self._where()}")
        self.finding(severity, code, message)

    def _where(self) -> str:
        return f" of {self.member}" if self.member else ""

    # ---- reading arguments

    def take(self, n: int) -> bytes | memoryview:
        p = self.pos
        e = p + n
        if e > self.end:
            raise _Stop("parse-error", f"pickle is truncated (wanted {n} bytes at byte {p})", truncated=True)
        self.pos = e
        return self.data[p:e]

    def line(self) -> bytes:
        p = self.pos
        limit = min(self.end, p + self.limits.max_string + 1)
        if isinstance(self.data, (bytes, bytearray)):
            i = self.data.find(b"\n", p, limit)
        else:
            i, chunk = -1, 256
            q = p
            while q < limit:
                j = bytes(self.data[q : min(limit, q + chunk)]).find(b"\n")
                if j >= 0:
                    i = q + j
                    break
                q += chunk
                chunk *= 2
        if i < 0:
            if limit < self.end:
                raise _Stop("limit-exceeded", f"text argument longer than {self.limits.max_string} bytes")
            raise _Stop("parse-error", f"pickle is truncated (no newline after byte {p})", truncated=True)
        self.pos = i + 1
        return bytes(self.data[p:i])

    def sized(self, n: int) -> bytes | memoryview:
        if n > self.limits.max_string:
            raise _Stop("limit-exceeded", f"string of {n} bytes (limit {self.limits.max_string})")
        return self.take(n)

    def u8(self) -> int:
        p = self.pos
        if p >= self.end:
            raise _Stop("parse-error", f"pickle is truncated at byte {p}", truncated=True)
        self.pos = p + 1
        return self.data[p]

    def unpack(self, fmt: struct.Struct) -> Any:
        p = self.pos
        if p + fmt.size > self.end:
            raise _Stop("parse-error", f"pickle is truncated (needs {fmt.size} bytes at {p})", truncated=True)
        self.pos = p + fmt.size
        return fmt.unpack_from(self.data, p)[0]

    # ---- the stack

    def pop(self) -> Any:
        if len(self.stack) <= self.fence:
            raise _Stop("parse-error", "stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        if len(self.stack) <= self.fence:
            raise _Stop("parse-error", "stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise _Stop("parse-error", "MARK expected but not found")
        m = self.marks.pop()
        self.fence = self.marks[-1] if self.marks else 0
        items = self.stack[m:]
        del self.stack[m:]
        return items

    # ---- main loop

    def run(self) -> PickleResult:
        value: Any = None
        complete = False
        try:
            value = self.loop()
            complete = True
        except _Stop as e:
            if self.strict:
                error = PickleTruncated if e.truncated else ModelReadError
                raise error(f"{e} (byte {self.op_pos}{self._where()})") from None
            sev = "dangerous" if e.code == "parse-error" and self.bad_seen else "suspicious"
            self.findings.append(Finding(sev, e.code, str(e), self.op_pos, self.member))
        except (RecursionError, MemoryError, OverflowError, ValueError, TypeError, KeyError, IndexError) as e:
            # Our own checks should catch everything first; never let a hostile file crash a scan.
            if self.strict:
                raise ModelReadError(f"invalid pickle at byte {self.op_pos}{self._where()}: {e}") from None
            sev = "dangerous" if self.bad_seen else "suspicious"
            self.findings.append(Finding(sev, "parse-error", f"invalid: {e}", self.op_pos, self.member))
        return PickleResult(
            value=value,
            findings=self.findings,
            globals=self.globals,
            calls=self.calls,
            end=self.pos,
            complete=complete,
            protocol=self.protocol,
            persistent_ids=self.pids,
            n_ops=self.n_ops,
        )

    def loop(self) -> Any:
        data = self.data
        handlers = self.handlers
        stack = self.stack
        max_ops = self.limits.max_ops
        max_stack = self.limits.max_stack
        while True:
            pos = self.pos
            if pos >= self.end:
                raise _Stop("parse-error", f"pickle is truncated (no STOP before byte {pos})", truncated=True)
            self.op_pos = pos
            self.pos = pos + 1
            self.n_ops += 1
            if self.n_ops > max_ops:
                raise _Stop("limit-exceeded", f"more than {max_ops} opcodes")
            handler = handlers[data[pos]]
            if handler is None:
                raise _Stop("parse-error", f"unknown opcode {bytes([data[pos]])!r}")
            try:
                if handler() is _DONE:
                    return self.result
            except _TypeProblem as e:
                if self.strict:
                    raise ModelReadError(f"{e} at byte {pos}{self._where()}") from None
                self.finding(e.severity, e.code, str(e), pos)
            if self.frame_end is not None and self.pos >= self.frame_end:
                if self.pos > self.frame_end:
                    self.frame_problem(f"opcode at byte {pos} runs past the end of its frame")
                self.frame_end = None
            if len(stack) > max_stack:
                raise _Stop("limit-exceeded", f"stack deeper than {max_stack}")

    def frame_problem(self, message: str) -> None:
        if self.strict:
            raise ModelReadError(f"{message}{self._where()}")
        self.finding("suspicious", "frame-mismatch", message)

    # ---- opcodes: protocol, framing, stop

    def op_proto(self) -> None:
        v = self.u8()
        if v > 5:
            raise _Stop("parse-error", f"unsupported pickle protocol {v}")
        if self.op_pos != self.start:
            self.finding("suspicious", "misplaced-proto", f"PROTO {v} not at the start of the pickle")
        self.protocol = v

    def op_frame(self) -> None:
        n = self.unpack(_Q)
        if self.frame_end is not None and self.op_pos != self.frame_end:
            self.frame_problem(f"new frame at byte {self.op_pos} before the end of the previous one")
        if self.pos + n > self.end:
            raise _Stop("parse-error", f"frame of {n} bytes runs past the end of the pickle", truncated=True)
        self.frame_end = self.pos + n if n else None

    def op_stop(self) -> object:
        if len(self.stack) != 1 or self.marks:
            msg = f"STOP with {len(self.stack)} values and {len(self.marks)} marks on the stack"
            if self.strict:
                raise _Stop("parse-error", msg)
            self.finding("suspicious", "stack-not-empty", msg)
        if self.frame_end is not None and self.pos != self.frame_end:
            self.frame_problem("STOP before the end of its frame")
            self.frame_end = None
        self.result = self.pop() if len(self.stack) > self.fence else None
        return _DONE

    # ---- scalars

    def op_none(self) -> None:
        self.stack.append(None)

    def op_newtrue(self) -> None:
        self.stack.append(True)

    def op_newfalse(self) -> None:
        self.stack.append(False)

    def op_int(self) -> None:
        s = self.line()
        if s == b"00":
            v: Any = False
        elif s == b"01":
            v = True
        else:
            v = self.parse_int(s)
        self.stack.append(v)

    def parse_int(self, s: bytes) -> int:
        if len(s) > self.limits.max_long_bytes * 3:
            raise _Stop("limit-exceeded", f"integer of {len(s)} digits")
        try:
            return int(s)
        except ValueError:
            raise _Stop("parse-error", f"invalid integer {s[:40]!r}") from None

    def op_binint(self) -> None:
        self.stack.append(self.unpack(_I4))

    def op_binint1(self) -> None:
        self.stack.append(self.u8())

    def op_binint2(self) -> None:
        self.stack.append(self.unpack(_U2))

    def op_long(self) -> None:
        s = self.line()
        if s.endswith(b"L"):
            s = s[:-1]
        self.stack.append(self.parse_int(s))

    def op_long1(self) -> None:
        self.stack.append(self.long_bytes(self.u8()))

    def op_long4(self) -> None:
        n = self.unpack(_I4)
        if n < 0:
            raise _Stop("parse-error", "LONG4 with a negative byte count")
        self.stack.append(self.long_bytes(n))

    def long_bytes(self, n: int) -> int:
        if n > self.limits.max_long_bytes:
            raise _Stop("limit-exceeded", f"integer of {n} bytes (limit {self.limits.max_long_bytes})")
        return int.from_bytes(self.take(n), "little", signed=True)

    def op_float(self) -> None:
        s = self.line()
        try:
            self.stack.append(float(s))
        except ValueError:
            raise _Stop("parse-error", f"invalid float {s[:40]!r}") from None

    def op_binfloat(self) -> None:
        self.stack.append(self.unpack(_F8))

    # ---- strings

    def op_string(self) -> None:
        s = self.line()
        if len(s) >= 2 and s[0] == s[-1] and s[:1] in (b"'", b'"'):
            s = s[1:-1]
        else:
            raise _Stop("parse-error", "STRING argument is not quoted")
        try:
            raw = codecs.escape_decode(s)[0]
        except ValueError as e:
            raise _Stop("parse-error", f"invalid STRING escape: {e}") from None
        self.stack.append(_py2str(raw))

    def op_binstring(self) -> None:
        n = self.unpack(_I4)
        if n < 0:
            raise _Stop("parse-error", "BINSTRING with a negative length")
        self.stack.append(_py2str(bytes(self.sized(n))))

    def op_short_binstring(self) -> None:
        self.stack.append(_py2str(bytes(self.take(self.u8()))))

    def op_binbytes(self) -> None:
        self.stack.append(bytes(self.sized(self.unpack(_U4))))

    def op_short_binbytes(self) -> None:
        self.stack.append(bytes(self.take(self.u8())))

    def op_binbytes8(self) -> None:
        self.stack.append(bytes(self.sized(self.unpack(_Q))))

    def op_bytearray8(self) -> None:
        self.stack.append(bytearray(self.sized(self.unpack(_Q))))

    def op_unicode(self) -> None:
        s = self.line()
        try:
            self.stack.append(s.decode("raw-unicode-escape"))
        except UnicodeDecodeError:
            raise _Stop("parse-error", "invalid UNICODE argument") from None

    def utf8(self, n: int) -> None:
        raw = self.sized(n)
        try:
            self.stack.append(str(raw, "utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise _Stop("parse-error", "string is not valid UTF-8") from None

    def op_short_binunicode(self) -> None:
        self.utf8(self.u8())

    def op_binunicode(self) -> None:
        self.utf8(self.unpack(_U4))

    def op_binunicode8(self) -> None:
        self.utf8(self.unpack(_Q))

    def op_buffer(self) -> None:
        raise _Stop("parse-error", "out-of-band buffer opcode (NEXT_BUFFER/READONLY_BUFFER) in a file")

    # ---- containers

    def op_empty_list(self) -> None:
        self.stack.append([])

    def op_empty_tuple(self) -> None:
        self.stack.append(())

    def op_empty_dict(self) -> None:
        self.stack.append({})

    def op_empty_set(self) -> None:
        self.stack.append(set())

    def op_list(self) -> None:
        self.stack.append(self.pop_mark())

    def op_tuple(self) -> None:
        self.stack.append(tuple(self.pop_mark()))

    def op_tuple1(self) -> None:
        self.stack.append((self.pop(),))

    def op_tuple2(self) -> None:
        b = self.pop()
        a = self.pop()
        self.stack.append((a, b))

    def op_tuple3(self) -> None:
        c = self.pop()
        b = self.pop()
        a = self.pop()
        self.stack.append((a, b, c))

    def op_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _Stop("parse-error", "DICT with an odd number of items")
        d: dict = {}
        self.stack.append(d)
        self.fill(d, items)

    def op_frozenset(self) -> None:
        items = self.pop_mark()
        for k in items:
            self.check_key(k)
        self.stack.append(frozenset(items))

    def op_append(self) -> None:
        v = self.pop()
        self.extend(self.top(), [v])

    def op_appends(self) -> None:
        items = self.pop_mark()
        self.extend(self.top(), items)

    def extend(self, target: Any, items: list) -> None:
        if type(target) is list:
            target.extend(items)
        elif not isinstance(target, Opaque):
            raise _TypeConfusion(f"APPEND to a {_kind(target)}, not a list")

    def op_setitem(self) -> None:
        v = self.pop()
        k = self.pop()
        self.fill(self.top(), [k, v])

    def op_setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _Stop("parse-error", "SETITEMS with an odd number of items")
        self.fill(self.top(), items)

    def fill(self, target: Any, items: list) -> None:
        if not isinstance(target, dict):
            if isinstance(target, Opaque):
                return
            raise _TypeConfusion(f"SETITEM on a {_kind(target)}, not a dict")
        for i in range(0, len(items), 2):
            self.check_key(items[i])
            target[items[i]] = items[i + 1]

    def op_additems(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if type(target) is not set:
            if isinstance(target, Opaque):
                return
            raise _TypeConfusion(f"ADDITEMS on a {_kind(target)}, not a set")
        for k in items:
            self.check_key(k)
        target.update(items)

    def check_key(self, k: Any, depth: int = 0) -> None:
        """Only cheap, bounded, identity- or value-hashable keys (no hostile deep tuples)."""
        t = type(k)
        if t in _SCALAR_KEYS or isinstance(k, Placeholder):
            return
        if (t is tuple or t is frozenset) and depth < 8 and len(k) <= 64:
            for x in k:
                self.check_key(x, depth + 1)
            return
        raise _TypeProblem(f"unhashable or oversized {_kind(k)} used as a key")

    # ---- stack and memo

    def op_mark(self) -> None:
        if len(self.marks) >= self.limits.max_marks:
            raise _Stop("limit-exceeded", f"more than {self.limits.max_marks} nested MARKs")
        self.fence = len(self.stack)
        self.marks.append(self.fence)

    def op_pop(self) -> None:
        if len(self.stack) > self.fence:
            self.stack.pop()
        else:
            self.pop_mark()  # CPython: POP on an empty stack frame discards the MARK

    def op_pop_mark(self) -> None:
        self.pop_mark()

    def op_dup(self) -> None:
        self.stack.append(self.top())

    def get(self, i: int) -> None:
        try:
            self.stack.append(self.memo[i])
        except KeyError:
            raise _Stop("parse-error", f"memo key {i} read before it was written") from None

    def op_get(self) -> None:
        self.get(self.parse_int(self.line()))

    def op_binget(self) -> None:
        self.get(self.u8())

    def op_long_binget(self) -> None:
        self.get(self.unpack(_U4))

    def put(self, i: int) -> None:
        if i < 0:
            raise _Stop("parse-error", "negative memo key")
        memo = self.memo
        if len(memo) >= self.limits.max_memo and i not in memo:
            raise _Stop("limit-exceeded", f"more than {self.limits.max_memo} memo entries")
        memo[i] = self.top()

    def op_put(self) -> None:
        self.put(self.parse_int(self.line()))

    def op_binput(self) -> None:
        self.put(self.u8())

    def op_long_binput(self) -> None:
        self.put(self.unpack(_U4))

    def op_memoize(self) -> None:
        self.put(len(self.memo))

    # ---- globals

    def lookup(self, module: str, name: str) -> Any:
        """The placeholder for a global: classify it and record it."""
        offset = self.op_pos
        original = None
        if (self.protocol or 0) < 3:
            mapped = map_py2(module, name)
            if mapped != (module, name):
                original = f"{module}.{name}"
                module, name = mapped
        ref = GlobalRef(module, name, offset, original)
        self.globals.append(ref)
        qual = f"{module}.{name}"
        if "." in name or (name.startswith("__") and name.endswith("__")) or not module or not name:
            self.unsafe("dotted-name", f"global {qual!r} uses a dotted, dunder or empty name")
            return Opaque(module, name, ref=ref)
        if qual in _MODULE_PREFIXES:
            self.unsafe("module-as-object", f"global {qual} is a module, used as an object")
            return Opaque(module, name, ref=ref)
        kind = _KINDS.get((module, name))
        if kind is None:
            if self.strict:
                raise UnsafePickleError(f"forbidden global {qual} at byte {offset}{self._where()}")
            self.finding("suspicious", "global-not-allowed", f"global {qual} is not allow-listed")
            return Opaque(module, name, ref=ref)
        dtype = STORAGE_DTYPES.get(name, "U8") if kind == "storage" else TORCH_DTYPES.get(name)
        return GlobalObj(module, name, kind, dtype, ref)

    def op_global(self) -> None:
        module, name = self.global_names()
        self.stack.append(self.lookup(module, name))

    def global_names(self) -> tuple[str, str]:
        try:
            return self.line().decode("utf-8"), self.line().decode("utf-8")
        except UnicodeDecodeError:
            raise _Stop("parse-error", "global name is not valid UTF-8") from None

    def op_stack_global(self) -> None:
        name = self.pop()
        module = self.pop()
        if type(module) is str and type(name) is str:
            self.stack.append(self.lookup(module, name))
            return
        # CPython refuses anything but two exact str: non-strings or names computed by a call (a
        # numpy str_ scalar...) are only there to hide the global from scanners.
        self.unsafe(
            "bad-global-operands",
            f"STACK_GLOBAL operands {_short(module, 40)}, {_short(name, 40)} are not two literal strings",
        )
        self.stack.append(Opaque(_operand(module), _operand(name)))

    def ext(self, code: int) -> None:
        self.unsafe("ext-code", f"extension code {code} (copyreg registry) names a global", "suspicious")
        self.stack.append(Opaque("copyreg", f"extension_{code}"))

    def op_ext1(self) -> None:
        self.ext(self.u8())

    def op_ext2(self) -> None:
        self.ext(self.unpack(_U2))

    def op_ext4(self) -> None:
        self.ext(self.unpack(_I4))

    # ---- persistent ids

    def default_load(self, pid: Any) -> StorageRef:
        """Without a callback: either id form; like torch, the first storage seen for a key is kept."""
        ref = default_persistent_load(pid)
        if ref.view_key is not None:
            return ref
        return self.storages.setdefault(ref.key, ref)

    def persid(self, pid: Any) -> None:
        self.pids.append(pid)
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            self.unsafe("persid-module", "persistent id ('module', ...) rebuilds a module from source code")
            self.stack.append(Opaque("persistent", "module", called=True))
            return
        try:
            self.stack.append(self.persistent_load(pid))
        except UnsafePickleError as e:
            self.unsafe("persid-module", str(e))
            self.stack.append(Opaque("persistent", "id", called=True))
        except ModelReadError as e:
            if self.strict:
                raise ModelReadError(f"{e} (byte {self.op_pos}{self._where()})") from None
            self.finding("dangerous", "bad-storage", str(e))
            self.stack.append(Opaque("persistent", "id", called=True))

    def op_persid(self) -> None:
        try:
            self.persid(self.line().decode("ascii"))
        except UnicodeDecodeError:
            raise _Stop("parse-error", "PERSID argument is not ASCII") from None

    def op_binpersid(self) -> None:
        self.persid(self.pop())

    # ---- calls

    def record_call(self, func: Any, opcode: str) -> None:
        is_global = isinstance(func, (Opaque, GlobalObj)) and not getattr(func, "called", False)
        ref = func.ref if is_global else None
        self.calls.append(Call(ref, opcode, self.op_pos))

    def call(self, func: Any, args: Any, opcode: str) -> Any:
        self.record_call(func, opcode)
        if isinstance(func, Opaque):
            if not func.called:
                self.unsafe("call", f"{opcode} calls {func}, which is not allow-listed")
            return _result_of(func)
        if not isinstance(func, GlobalObj):
            raise _Stop("parse-error", f"{opcode} on a {_kind(func)}, which is not callable")
        if type(args) is not tuple:
            raise _Stop("parse-error", f"{opcode} arguments are a {_kind(args)}, not a tuple")
        if func.kind != "rebuild_from_type" and any(isinstance(a, Opaque) for a in args):
            return _result_of(func)
        method = getattr(self, f"call_{func.kind}", None)
        if method is None:
            self.unsafe("call", f"{opcode} calls {func}, which is allow-listed only as an inert value")
            return _result_of(func)
        try:
            return method(func, args)
        except _TypeProblem as e:
            if self.strict:
                raise ModelReadError(f"{func}: {e} at byte {self.op_pos}{self._where()}") from None
            self.finding(e.severity, e.code, f"{func}: {e}")
            return _result_of(func)

    def op_reduce(self) -> None:
        args = self.pop()
        func = self.pop()
        self.stack.append(self.call(func, args, "REDUCE"))

    def op_inst(self) -> None:
        module, name = self.global_names()
        func = self.lookup(module, name)
        args = tuple(self.pop_mark())
        self.stack.append(self.call(func, args, "INST"))

    def op_obj(self) -> None:
        items = self.pop_mark()
        if not items:
            raise _Stop("parse-error", "OBJ without a class")
        self.stack.append(self.call(items[0], tuple(items[1:]), "OBJ"))

    def op_newobj(self) -> None:
        args = self.pop()
        cls = self.pop()
        self.stack.append(self.new(cls, args, {}, "NEWOBJ"))

    def op_newobj_ex(self) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        self.stack.append(self.new(cls, args, kwargs, "NEWOBJ_EX"))

    def new(self, cls: Any, args: Any, kwargs: Any, opcode: str) -> Any:
        self.record_call(cls, opcode)
        if isinstance(cls, Opaque):
            if not cls.called:
                self.unsafe("call", f"{opcode} instantiates {cls}, which is not allow-listed")
            return _result_of(cls)
        if not isinstance(cls, GlobalObj):
            raise _Stop("parse-error", f"{opcode} on a {_kind(cls)}, which is not a class")
        if type(args) is not tuple or type(kwargs) is not dict:
            raise _Stop("parse-error", f"{opcode} arguments have the wrong types")
        factory = _NEW_KINDS.get(cls.kind)
        if factory is None:
            self.unsafe("call", f"{opcode} instantiates {cls}, which is allow-listed only as a value")
            return _result_of(cls)
        if args or kwargs:
            raise _TypeProblem(f"{opcode} of {cls} with arguments")
        return factory()

    def op_build(self) -> None:
        state = self.pop()
        inst = self.top()
        if isinstance(inst, (GlobalObj, Opaque)) and not getattr(inst, "called", False):
            self.record_call(inst, "BUILD")
            self.unsafe("call", f"BUILD sets attributes of the global {inst} itself")
            return
        if isinstance(inst, Opaque):
            return
        t = type(inst)
        if t is ODict:
            if not isinstance(state, dict) and not (type(state) is tuple and len(state) == 2):
                raise _TypeProblem(f"BUILD of an OrderedDict with a {_kind(state)}")
        elif t is ParamDict:
            self.build_paramdict(inst, state)
        elif t is NpDtype:
            self.build_np_dtype(inst, state)
        elif t is NpArray:
            self.build_np_array(inst, state)
        else:
            raise _TypeConfusion(f"BUILD on a {_kind(inst)}")

    def build_paramdict(self, inst: ParamDict, state: Any) -> None:
        if not isinstance(state, dict):
            raise _TypeProblem(f"BUILD of a ParameterDict with a {_kind(state)}")
        params = state.get("_parameters", {})
        if not isinstance(params, dict):
            raise _TypeProblem("ParameterDict state has no _parameters dict")
        for k, v in params.items():
            if not isinstance(k, str) or not isinstance(v, (TensorRef, ArrayTensor, Opaque)):
                raise _TypeProblem(f"ParameterDict entry {_short(k)} is a {_kind(v)}")
            inst[k] = v

    def build_np_dtype(self, inst: NpDtype, state: Any) -> None:
        if type(state) is not tuple or len(state) < 8:
            raise _TypeProblem(f"numpy dtype state {_short(state)}")
        byteorder, subarray, names, fields = state[1:5]
        if byteorder not in ("<", ">", "|", "=") or (subarray, names, fields) != (None, None, None):
            raise _TypeProblem(f"numpy dtype state {_short(state)} (only plain numeric dtypes are read)")
        inst.byteorder = "<" if byteorder == "=" else byteorder

    def build_np_array(self, inst: NpArray, state: Any) -> None:
        if type(state) is not tuple or len(state) != 5:
            raise _TypeProblem(f"numpy array state {_short(state)}")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, NpDtype) or not isinstance(raw, (bytes, bytearray, str)):
            raise _TypeProblem("numpy array state must hold a plain dtype and raw bytes")
        if type(shape) is not tuple or not all(type(s) is int and s >= 0 for s in shape) or len(shape) > 64:
            raise _TypeProblem(f"numpy array shape {_short(shape)}")
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        dt = dtype.numpy()
        if math.prod(shape) * dt.itemsize != len(raw):
            raise _TypeProblem(f"numpy array of shape {shape} holds {len(raw)} bytes")
        inst.array = np.frombuffer(bytes(raw), dt).reshape(shape, order="F" if fortran else "C")

    # ---- behaviour of allow-listed callables (argument types checked)

    def tensor(self, storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None) -> Any:
        if not isinstance(storage, StorageRef):
            raise _TypeProblem(f"tensor storage is a {_kind(storage)}")
        try:
            return check_tensor(storage, offset, size, stride, dtype or storage.dtype)
        except ModelReadError as e:
            if self.strict:
                raise type(e)(f"{e} (byte {self.op_pos}{self._where()})") from None
            self.finding("suspicious" if isinstance(e, TensorExpansion) else "dangerous", "bad-tensor", str(e))
            return Opaque("torch._utils", "_rebuild_tensor", called=True)

    def call_rebuild_v2(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) not in (6, 7):
            raise _TypeProblem(f"{len(args)} arguments")
        self.check_tensor_extras(args[4], args[5], args[6] if len(args) == 7 else None)
        return self.tensor(args[0], args[1], args[2], args[3], None)

    def call_rebuild_v3(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) not in (7, 8):
            raise _TypeProblem(f"{len(args)} arguments")
        dtype = args[6]
        if not isinstance(dtype, GlobalObj) or dtype.kind != "dtype":
            raise _TypeProblem(f"dtype argument is a {_kind(dtype)}")
        self.check_tensor_extras(args[4], args[5], args[7] if len(args) == 8 else None)
        return self.tensor(args[0], args[1], args[2], args[3], dtype.dtype)

    def check_tensor_extras(self, requires_grad: Any, hooks: Any, metadata: Any) -> None:
        if type(requires_grad) is not bool:
            raise _TypeProblem(f"requires_grad is a {_kind(requires_grad)}")
        if not isinstance(hooks, dict) or (metadata is not None and not isinstance(metadata, dict)):
            raise _TypeProblem("backward hooks and metadata must be dicts")

    def call_rebuild_param(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) != 3:
            raise _TypeProblem(f"{len(args)} arguments")
        return self.parameter(args[0], args[1], args[2])

    def call_rebuild_param_state(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) != 4:
            raise _TypeProblem(f"{len(args)} arguments")
        if args[3] is not None and not isinstance(args[3], (dict, tuple)):
            raise _TypeProblem(f"parameter state is a {_kind(args[3])}")
        return self.parameter(args[0], args[1], args[2])

    def parameter(self, data: Any, requires_grad: Any, hooks: Any) -> Any:
        if type(requires_grad) is not bool or not isinstance(hooks, dict):
            raise _TypeProblem("parameter needs (tensor, bool, dict)")
        if isinstance(data, TensorRef):
            return replace(data, requires_grad=requires_grad, parameter=True)
        if isinstance(data, ArrayTensor):
            return data
        raise _TypeProblem(f"parameter data is a {_kind(data)}")

    def call_parameter(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) not in (1, 2):
            raise _TypeProblem(f"{len(args)} arguments")
        return self.parameter(args[0], args[1] if len(args) == 2 else True, {})

    def call_rebuild_numpy(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) != 4:
            raise _TypeProblem(f"{len(args)} arguments")
        data, dtype, device, _requires_grad = args
        if not isinstance(data, NpArray) or data.array is None:
            raise _TypeProblem(f"data is a {_kind(data)}, not a numpy array")
        if not isinstance(dtype, GlobalObj) or dtype.kind != "dtype" or not isinstance(device, str):
            raise _TypeProblem("needs a torch dtype and a device string")
        want = NUMPY_DTYPES[dtype.dtype or "U8"]
        arr = data.array
        if arr.dtype.kind == want.kind and arr.dtype.itemsize == want.itemsize:
            return ArrayTensor(np.ascontiguousarray(arr).astype(want, copy=False), dtype.dtype or "U8")
        raise _TypeProblem(f"numpy array of {arr.dtype} given for {dtype}")

    def call_rebuild_from_type(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) != 4:
            raise _TypeProblem(f"{len(args)} arguments")
        inner, new_type, inner_args, state = args
        if not isinstance(inner, GlobalObj) or inner.kind not in REBUILD_KINDS:
            self.unsafe("call", f"_rebuild_from_type_v2 calls {_short(inner)}, which is not a tensor rebuild")
            return _result_of(func)
        if not isinstance(new_type, GlobalObj) or new_type.kind not in ("tensor_type", "parameter"):
            self.unsafe("call", f"_rebuild_from_type_v2 makes a {_short(new_type)}, not a tensor")
            return _result_of(func)
        if type(inner_args) is not tuple or not (state is None or isinstance(state, dict)):
            raise _TypeProblem("needs an argument tuple and a state dict")
        result = getattr(self, f"call_{inner.kind}")(inner, inner_args)
        if new_type.kind == "parameter" and isinstance(result, TensorRef):
            result = replace(result, parameter=True)
        return result

    def call_odict(self, func: GlobalObj, args: tuple) -> Any:
        d = ODict()
        if len(args) > 1:
            raise _TypeProblem(f"{len(args)} arguments")
        if args:
            pairs = args[0]
            seqs = (list, tuple)
            if type(pairs) not in seqs or any(type(p) not in seqs or len(p) != 2 for p in pairs):
                raise _TypeProblem("OrderedDict needs a list of pairs")
            self.fill(d, [x for p in pairs for x in p])
        return d

    def call_size(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) != 1 or type(args[0]) not in (tuple, list) or not all(type(x) is int for x in args[0]):
            raise _TypeProblem("torch.Size needs a tuple of ints")
        return tuple(args[0])

    def call_paramdict(self, func: GlobalObj, args: tuple) -> Any:
        if args:
            raise _TypeProblem("ParameterDict called with arguments")
        return ParamDict()

    def call_np_dtype(self, func: GlobalObj, args: tuple) -> Any:
        if not 1 <= len(args) <= 3 or type(args[0]) is not str or not _NP_CODE.fullmatch(args[0]):
            raise _TypeProblem(f"numpy dtype {_short(args)} (only plain numeric/string dtypes are read)")
        code = args[0]
        return NpDtype(code, "|" if code == "b1" or code[0] == "S" or code[1:] == "1" else "<")

    def call_np_scalar(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) != 2 or not isinstance(args[0], NpDtype) or type(args[1]) not in (bytes, bytearray, str):
            raise _TypeProblem("numpy scalar needs (dtype, bytes)")
        raw = args[1].encode("latin-1") if isinstance(args[1], str) else bytes(args[1])
        dt = args[0].numpy()
        if len(raw) != dt.itemsize:
            raise _TypeProblem(f"numpy scalar of {dt} holds {len(raw)} bytes")
        value = np.frombuffer(raw, dt)[0]
        # a numpy str_ stays a str subclass, as in CPython (STACK_GLOBAL refuses it as a name)
        return value if isinstance(value, np.str_) else value.item()

    def call_np_reconstruct(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) != 3 or not isinstance(args[0], GlobalObj) or args[0].kind != "np_ndarray":
            raise _TypeProblem("numpy _reconstruct needs (numpy.ndarray, shape, typecode)")
        return NpArray()

    def call_codecs_encode(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) != 2 or type(args[0]) is not str or args[1] not in ("latin1", "latin-1"):
            raise _TypeProblem("_codecs.encode needs (str, 'latin1')")
        try:
            return args[0].encode("latin-1")
        except UnicodeEncodeError:
            raise _TypeProblem("_codecs.encode of a non-latin-1 string") from None

    def call_set(self, func: GlobalObj, args: tuple) -> Any:
        return set(self.elements(args))

    def call_frozenset(self, func: GlobalObj, args: tuple) -> Any:
        return frozenset(self.elements(args))

    def elements(self, args: tuple) -> list:
        if len(args) > 1 or (args and type(args[0]) not in (list, tuple, set, frozenset)):
            raise _TypeProblem("needs at most one list")
        items = list(args[0]) if args else []
        for k in items:
            self.check_key(k)
        return items

    def call_bytearray(self, func: GlobalObj, args: tuple) -> Any:
        if not args:
            return bytearray()
        if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
            return bytearray(args[0])
        if len(args) == 2 and type(args[0]) is str and args[1] in ("latin-1", "latin1"):
            return bytearray(args[0].encode("latin-1", "replace"))
        raise _TypeProblem("bytearray needs bytes or (str, 'latin-1')")

    def call_complex(self, func: GlobalObj, args: tuple) -> Any:
        if len(args) > 2 or not all(type(a) in (int, float) for a in args):
            raise _TypeProblem("complex needs two numbers")
        return complex(*args)


_DONE = object()
_SCALAR_KEYS = frozenset({str, int, float, bool, bytes, type(None), complex, np.str_})
_Q = struct.Struct("<Q")
_I4 = struct.Struct("<i")
_U4 = struct.Struct("<I")
_U2 = struct.Struct("<H")
_F8 = struct.Struct(">d")

_OPCODES: dict[int, str] = {
    ord(k): v
    for k, v in {
        "\x80": "op_proto",
        "\x95": "op_frame",
        ".": "op_stop",
        "N": "op_none",
        "\x88": "op_newtrue",
        "\x89": "op_newfalse",
        "I": "op_int",
        "J": "op_binint",
        "K": "op_binint1",
        "M": "op_binint2",
        "L": "op_long",
        "\x8a": "op_long1",
        "\x8b": "op_long4",
        "F": "op_float",
        "G": "op_binfloat",
        "S": "op_string",
        "T": "op_binstring",
        "U": "op_short_binstring",
        "B": "op_binbytes",
        "C": "op_short_binbytes",
        "\x8e": "op_binbytes8",
        "\x96": "op_bytearray8",
        "\x97": "op_buffer",
        "\x98": "op_buffer",
        "V": "op_unicode",
        "\x8c": "op_short_binunicode",
        "X": "op_binunicode",
        "\x8d": "op_binunicode8",
        "]": "op_empty_list",
        ")": "op_empty_tuple",
        "}": "op_empty_dict",
        "\x8f": "op_empty_set",
        "l": "op_list",
        "t": "op_tuple",
        "\x85": "op_tuple1",
        "\x86": "op_tuple2",
        "\x87": "op_tuple3",
        "d": "op_dict",
        "\x91": "op_frozenset",
        "a": "op_append",
        "e": "op_appends",
        "s": "op_setitem",
        "u": "op_setitems",
        "\x90": "op_additems",
        "(": "op_mark",
        "0": "op_pop",
        "1": "op_pop_mark",
        "2": "op_dup",
        "g": "op_get",
        "h": "op_binget",
        "j": "op_long_binget",
        "p": "op_put",
        "q": "op_binput",
        "r": "op_long_binput",
        "\x94": "op_memoize",
        "c": "op_global",
        "\x93": "op_stack_global",
        "\x82": "op_ext1",
        "\x83": "op_ext2",
        "\x84": "op_ext4",
        "P": "op_persid",
        "Q": "op_binpersid",
        "R": "op_reduce",
        "i": "op_inst",
        "o": "op_obj",
        "\x81": "op_newobj",
        "\x92": "op_newobj_ex",
        "b": "op_build",
    }.items()
}


def _py2str(raw: bytes) -> str:
    """A protocol-0/1/2 ``str`` (py2 bytes): ASCII text, or latin-1 to keep every byte."""
    return raw.decode("latin-1")


def _result_of(func: Opaque | GlobalObj) -> Opaque:
    """The inert placeholder for what calling ``func`` returned (a call we did not perform)."""
    return Opaque(func.module, func.name, called=True, ref=func.ref)


def _operand(v: Any) -> str:
    """A global name operand as text, marking the ones that are not strings."""
    return v if type(v) is str else f"<{_kind(v)}>"


def _kind(v: Any) -> str:
    if isinstance(v, (Opaque, GlobalObj)):
        return str(v)
    return type(v).__name__


def run_pickle(
    data: bytes | memoryview,
    *,
    start: int = 0,
    member: str | None = None,
    strict: bool = True,
    persistent_load: Callable[[Any], Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> PickleResult:
    """Interpret the pickle starting at ``data[start]`` without running anything.

    ``strict=True`` (load mode) raises UnsafePickleError on the first global outside
    :data:`ALLOWED_GLOBALS` and ModelReadError on any structural problem. ``strict=False`` (scan
    mode) never raises for content: problems become findings. ``persistent_load`` receives each
    persistent id (raising ModelReadError to reject it); without it, storage ids of either torch
    format become :class:`StorageRef` objects.
    """
    if isinstance(data, memoryview):
        data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    return _VM(data, start, member, strict, persistent_load, limits).run()
