"""A pickle virtual machine that reads checkpoints without running them.

It simulates the unpickler's stack and memo, but never imports anything: every global becomes an
inert placeholder (:mod:`sdmodel.formats.pickle_values`). Only the globals of the allow-list
(:mod:`sdmodel.formats.pickle_allow`, one table of what each may do) have a behaviour. The same
interpreter serves two purposes:

- load mode (``strict=True``): the first global outside the allow-list raises
  :class:`~sdmodel.errors.UnsafePickleError`, any structural problem raises ModelReadError;
- scan mode (``strict=False``): nothing raises for content; every problem becomes a :class:`Finding`
  and interpretation continues with placeholders while the stack still makes sense.

All opcodes of protocols 0-5 are understood (the semantics follow CPython's ``_pickle.c``,
including POP on an empty stack popping the MARK); each handler is registered with ``@op`` next to
its code. Frame boundaries are checked (the C unpickler does not), and limits bound the work done
on a hostile file.
"""

from __future__ import annotations

import codecs
import struct
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sdmodel.errors import ModelReadError, UnsafePickleError, error_message
from sdmodel.formats.pickle_allow import ALLOWED, MODULE_PREFIXES, build
from sdmodel.formats.pickle_values import (
    GlobalObj,
    GlobalRef,
    Opaque,
    TypeConfusion,
    TypeProblem,
    UnsafeCall,
    check_key,
    fill,
    kind_of,
    result_of,
    short,
)
from sdmodel.formats.torch_records import StorageRef, TensorExpansion, default_persistent_load
from sdmodel.i18n import Bytes, Msg

# --------------------------------------------------------------------------------------------------
# Public records


@dataclass
class Finding:
    """Something worth reporting about a pickle. ``severity``: info, suspicious or dangerous."""

    severity: str
    code: str
    message: str | Msg  # Msg: translated where shown (``to_dict``: English)
    offset: int | None = None
    member: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": str(self.message),
            "offset": self.offset,
            "member": self.member,
        }


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


def map_py2(module: str, name: str) -> tuple[str, str]:
    """CPython's protocol < 3 renames (``__builtin__`` -> ``builtins``...), from ``_compat_pickle``."""
    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


# --------------------------------------------------------------------------------------------------
# The machine

_F = TypeVar("_F", bound=Callable[..., Any])
_OPCODES: dict[int, str] = {}


def op(*codes: bytes) -> Callable[[_F], _F]:
    """Register the decorated method as the handler of these opcodes."""

    def register(method: _F) -> _F:
        for code in codes:
            _OPCODES[code[0]] = method.__name__
        return method

    return register


class PickleTruncated(ModelReadError):
    """Load mode: the data ended before the pickle's STOP (a caller may retry with more bytes)."""


class _Stop(Exception):
    """Parsing cannot continue (structure broken, limit reached)."""

    def __init__(self, code: str, message: Msg, truncated: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.truncated = truncated


class _VM:
    def __init__(
        self,
        data: bytes | memoryview,
        start: int,
        member: str | None,
        strict: bool,
        persistent_load: Callable[[Any], Any] | None,
        limits: Limits,
        stream: bool = False,
    ) -> None:
        self.data = data
        self.stream = stream
        self.buf_end = start
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
        if stream:  # every fixed-size read goes through the buffer model
            self.u8 = self.stream_u8  # type: ignore[method-assign]
            self.unpack = self.stream_unpack  # type: ignore[method-assign]
        self.handlers: list[Callable[[], Any] | None] = [None] * 256
        for code, meth in _OPCODES.items():
            self.handlers[code] = getattr(self, meth)

    # ---- reporting

    def finding(self, severity: str, code: str, message: str | Msg, offset: int | None = None) -> None:
        if severity == "dangerous" or code == "global-not-allowed":
            self.bad_seen = True
        where = self.op_pos if offset is None else offset
        self.findings.append(Finding(severity, code, message, where, self.member))

    def unsafe(self, code: str, message: str | Msg, severity: str = "dangerous") -> None:
        """A security problem: refuse in load mode, record in scan mode."""
        if self.strict:
            raise UnsafePickleError(
                Msg("{message} at byte {op_pos}{where}", message=message, op_pos=self.op_pos, where=self._where())
            )
        self.finding(severity, code, message)

    def _at_byte(self, e: BaseException) -> Msg:
        """``e``'s message with the place where reading stopped."""
        return Msg("{reason} (byte {op_pos}{where})", reason=error_message(e), op_pos=self.op_pos, where=self._where())

    def _where(self) -> Msg | str:
        return Msg(" of {member}", member=self.member) if self.member else ""

    # ---- reading arguments

    def take(self, n: int) -> bytes | memoryview:
        """A fixed-size read (``_Unpickler_Read``)."""
        p = self.pos
        if self.stream and p + n > self.buf_end:
            p = self.refill(p)
            self.buf_end = p + n
        e = p + n
        if e > self.end:
            raise _Stop(
                "parse-error", Msg("pickle is truncated (wanted {n} at byte {p})", n=Bytes(n), p=p), truncated=True
            )
        self.pos = e
        return self.data[p:e]

    def refill(self, p: int) -> int:
        """Stream reading: the buffer cannot serve the read, so the C unpickler replaces it with a
        new ``read()`` from the file, which is at the buffer's end: the rest of the buffer (of a
        frame) is skipped, never interpreted."""
        if p < self.buf_end:
            self.finding(
                "suspicious",
                "frame-split",
                Msg(
                    "bytes {p}-{buf_end} skipped: an argument straddles the end of its frame, and the C unpickler reading a file without peek() (torch.load's io.BytesIO) drops the rest of the frame",
                    p=p,
                    buf_end=self.buf_end,
                ),
                p,
            )
            p = self.buf_end
        return p

    def take_into(self, n: int) -> bytes | memoryview:
        """The data of BINBYTES/BYTEARRAY8 (``_Unpickler_ReadInto``): the buffer's rest, then the file."""
        if n > self.limits.max_string:
            raise _Stop(
                "limit-exceeded",
                Msg("string of {n} (limit {max_string})", n=Bytes(n), max_string=self.limits.max_string),
            )
        p = self.pos
        e = p + n
        if e > self.end:
            raise _Stop(
                "parse-error", Msg("pickle is truncated (wanted {n} at byte {p})", n=Bytes(n), p=p), truncated=True
            )
        self.pos = e
        if e > self.buf_end:
            self.buf_end = e
        return self.data[p:e]

    def line(self) -> bytes:
        p = self.pos
        if self.stream:
            i = bytes(self.data[p : self.buf_end]).find(b"\n")
            if i >= 0:
                self.pos = p + i + 1
                return bytes(self.data[p : p + i])
            p = self.pos = self.refill(p)
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
                raise _Stop(
                    "limit-exceeded",
                    Msg("text argument longer than {max_string}", max_string=Bytes(self.limits.max_string)),
                )
            raise _Stop("parse-error", Msg("pickle is truncated (no newline after byte {p})", p=p), truncated=True)
        self.pos = self.buf_end = i + 1
        return bytes(self.data[p:i])

    def sized(self, n: int) -> bytes | memoryview:
        if n > self.limits.max_string:
            raise _Stop(
                "limit-exceeded",
                Msg("string of {n} (limit {max_string})", n=Bytes(n), max_string=self.limits.max_string),
            )
        return self.take(n)

    def u8(self) -> int:
        p = self.pos
        if p >= self.end:
            raise _Stop("parse-error", Msg("pickle is truncated at byte {p}", p=p), truncated=True)
        self.pos = p + 1
        return self.data[p]

    def unpack(self, fmt: struct.Struct) -> Any:
        p = self.pos
        if p + fmt.size > self.end:
            raise _Stop(
                "parse-error",
                Msg("pickle is truncated (needs {size} at {p})", size=Bytes(fmt.size), p=p),
                truncated=True,
            )
        self.pos = p + fmt.size
        return fmt.unpack_from(self.data, p)[0]

    def stream_u8(self) -> int:
        return self.take(1)[0]

    def stream_unpack(self, fmt: struct.Struct) -> Any:
        return fmt.unpack(self.take(fmt.size))[0]

    # ---- the stack

    def pop(self) -> Any:
        if len(self.stack) <= self.fence:
            raise _Stop("parse-error", Msg("stack underflow"))
        return self.stack.pop()

    def top(self) -> Any:
        if len(self.stack) <= self.fence:
            raise _Stop("parse-error", Msg("stack underflow"))
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise _Stop("parse-error", Msg("MARK expected but not found"))
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
                raise error(self._at_byte(e)) from None
            sev = "dangerous" if e.code == "parse-error" and self.bad_seen else "suspicious"
            self.findings.append(Finding(sev, e.code, error_message(e), self.op_pos, self.member))
        except (RecursionError, MemoryError, OverflowError, ValueError, TypeError, KeyError, IndexError) as e:
            # Our own checks should catch everything first; never let a hostile file crash a scan.
            if self.strict:
                raise ModelReadError(
                    Msg(
                        "invalid pickle at byte {op_pos}{where}: {reason}",
                        op_pos=self.op_pos,
                        where=self._where(),
                        reason=error_message(e),
                    )
                ) from None
            sev = "dangerous" if self.bad_seen else "suspicious"
            self.findings.append(
                Finding(sev, "parse-error", Msg("invalid: {reason}", reason=error_message(e)), self.op_pos, self.member)
            )
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
        stream = self.stream
        while True:
            pos = self.pos
            if pos >= self.end:
                raise _Stop(
                    "parse-error", Msg("pickle is truncated (no STOP before byte {pos})", pos=pos), truncated=True
                )
            self.op_pos = pos
            self.pos = pos + 1
            if stream and pos >= self.buf_end:
                self.buf_end = pos + 1
            self.n_ops += 1
            if self.n_ops > max_ops:
                raise _Stop("limit-exceeded", Msg("more than {max_ops} opcodes", max_ops=max_ops))
            handler = handlers[data[pos]]
            if handler is None:
                raise _Stop("parse-error", Msg("unknown opcode {value!r}", value=bytes([data[pos]])))
            try:
                if handler() is _DONE:
                    return self.result
            except TypeProblem as e:
                if self.strict:
                    raise ModelReadError(
                        Msg("{reason} at byte {pos}{where}", reason=error_message(e), pos=pos, where=self._where())
                    ) from None
                self.finding(e.severity, e.code, error_message(e), pos)
            if self.frame_end is not None and self.pos >= self.frame_end and not self.stream:
                if self.pos > self.frame_end:
                    self.frame_problem(Msg("opcode at byte {pos} runs past the end of its frame", pos=pos))
                self.frame_end = None
            if len(stack) > max_stack:
                raise _Stop("limit-exceeded", Msg("stack deeper than {max_stack}", max_stack=max_stack))

    def frame_problem(self, message: Msg) -> None:
        if self.strict:
            raise ModelReadError(Msg("{message}{where}", message=message, where=self._where()))
        self.finding("suspicious", "frame-mismatch", message)

    # ---- opcodes: protocol, framing, stop

    @op(b"\x80")
    def op_proto(self) -> None:
        v = self.u8()
        if v > 5:
            raise _Stop("parse-error", Msg("unsupported pickle protocol {v}", v=v))
        if self.op_pos != self.start:
            self.finding("suspicious", "misplaced-proto", Msg("PROTO {v} not at the start of the pickle", v=v))
        self.protocol = v

    @op(b"\x95")
    def op_frame(self) -> None:
        n = self.unpack(_Q)
        if self.stream:  # the C unpickler loads the frame into its buffer (unless already there)
            if self.pos + n > self.buf_end:
                self.pos = self.refill(self.pos)
                if self.pos + n > self.end:
                    raise _Stop(
                        "parse-error", Msg("frame of {n} runs past the end of the pickle", n=Bytes(n)), truncated=True
                    )
                self.buf_end = self.pos + n
            return
        if self.frame_end is not None and self.op_pos != self.frame_end:
            self.frame_problem(Msg("new frame at byte {op_pos} before the end of the previous one", op_pos=self.op_pos))
        if self.pos + n > self.end:
            raise _Stop("parse-error", Msg("frame of {n} runs past the end of the pickle", n=Bytes(n)), truncated=True)
        self.frame_end = self.pos + n if n else None

    @op(b".")
    def op_stop(self) -> object:
        if len(self.stack) != 1 or self.marks:
            msg = Msg(
                "STOP with {values} values and {marks} marks on the stack",
                values=len(self.stack),
                marks=len(self.marks),
            )
            if self.strict:
                raise _Stop("parse-error", msg)
            self.finding("suspicious", "stack-not-empty", msg)
        if self.frame_end is not None and self.pos != self.frame_end and not self.stream:
            self.frame_problem(Msg("STOP before the end of its frame"))
            self.frame_end = None
        self.result = self.pop() if len(self.stack) > self.fence else None
        return _DONE

    # ---- scalars

    @op(b"N")
    def op_none(self) -> None:
        self.stack.append(None)

    @op(b"\x88")
    def op_newtrue(self) -> None:
        self.stack.append(True)

    @op(b"\x89")
    def op_newfalse(self) -> None:
        self.stack.append(False)

    @op(b"I")
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
            raise _Stop("limit-exceeded", Msg("integer of {s_count} digits", s_count=len(s)))
        try:
            return int(s)
        except ValueError:
            raise _Stop("parse-error", Msg("invalid integer {s!r}", s=s[:40])) from None

    @op(b"J")
    def op_binint(self) -> None:
        self.stack.append(self.unpack(_I4))

    @op(b"K")
    def op_binint1(self) -> None:
        self.stack.append(self.u8())

    @op(b"M")
    def op_binint2(self) -> None:
        self.stack.append(self.unpack(_U2))

    @op(b"L")
    def op_long(self) -> None:
        s = self.line()
        if s.endswith(b"L"):
            s = s[:-1]
        self.stack.append(self.parse_int(s))

    @op(b"\x8a")
    def op_long1(self) -> None:
        self.stack.append(self.long_bytes(self.u8()))

    @op(b"\x8b")
    def op_long4(self) -> None:
        n = self.unpack(_I4)
        if n < 0:
            raise _Stop("parse-error", Msg("LONG4 with a negative byte count"))
        self.stack.append(self.long_bytes(n))

    def long_bytes(self, n: int) -> int:
        if n > self.limits.max_long_bytes:
            raise _Stop(
                "limit-exceeded",
                Msg("integer of {n} (limit {max_long_bytes})", n=Bytes(n), max_long_bytes=self.limits.max_long_bytes),
            )
        return int.from_bytes(self.take(n), "little", signed=True)

    @op(b"F")
    def op_float(self) -> None:
        s = self.line()
        try:
            self.stack.append(float(s))
        except ValueError:
            raise _Stop("parse-error", Msg("invalid float {s!r}", s=s[:40])) from None

    @op(b"G")
    def op_binfloat(self) -> None:
        self.stack.append(self.unpack(_F8))

    # ---- strings

    @op(b"S")
    def op_string(self) -> None:
        s = self.line()
        if len(s) >= 2 and s[0] == s[-1] and s[:1] in (b"'", b'"'):
            s = s[1:-1]
        else:
            raise _Stop("parse-error", Msg("STRING argument is not quoted"))
        try:
            raw = codecs.escape_decode(s)[0]
        except ValueError as e:
            raise _Stop("parse-error", Msg("invalid STRING escape: {reason}", reason=error_message(e))) from None
        self.stack.append(_py2str(raw))

    @op(b"T")
    def op_binstring(self) -> None:
        n = self.unpack(_I4)
        if n < 0:
            raise _Stop("parse-error", Msg("BINSTRING with a negative length"))
        self.stack.append(_py2str(bytes(self.sized(n))))

    @op(b"U")
    def op_short_binstring(self) -> None:
        self.stack.append(_py2str(bytes(self.take(self.u8()))))

    @op(b"B")
    def op_binbytes(self) -> None:
        self.stack.append(bytes(self.take_into(self.unpack(_U4))))

    @op(b"C")
    def op_short_binbytes(self) -> None:
        self.stack.append(bytes(self.take_into(self.u8())))

    @op(b"\x8e")
    def op_binbytes8(self) -> None:
        self.stack.append(bytes(self.take_into(self.unpack(_Q))))

    @op(b"\x96")
    def op_bytearray8(self) -> None:
        self.stack.append(bytearray(self.take_into(self.unpack(_Q))))

    @op(b"V")
    def op_unicode(self) -> None:
        s = self.line()
        try:
            self.stack.append(s.decode("raw-unicode-escape"))
        except UnicodeDecodeError:
            raise _Stop("parse-error", Msg("invalid UNICODE argument")) from None

    def utf8(self, n: int) -> None:
        raw = self.sized(n)
        try:
            self.stack.append(str(raw, "utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise _Stop("parse-error", Msg("string is not valid UTF-8")) from None

    @op(b"\x8c")
    def op_short_binunicode(self) -> None:
        self.utf8(self.u8())

    @op(b"X")
    def op_binunicode(self) -> None:
        self.utf8(self.unpack(_U4))

    @op(b"\x8d")
    def op_binunicode8(self) -> None:
        self.utf8(self.unpack(_Q))

    @op(b"\x97", b"\x98")
    def op_buffer(self) -> None:
        raise _Stop("parse-error", Msg("out-of-band buffer opcode (NEXT_BUFFER/READONLY_BUFFER) in a file"))

    # ---- containers

    @op(b"]")
    def op_empty_list(self) -> None:
        self.stack.append([])

    @op(b")")
    def op_empty_tuple(self) -> None:
        self.stack.append(())

    @op(b"}")
    def op_empty_dict(self) -> None:
        self.stack.append({})

    @op(b"\x8f")
    def op_empty_set(self) -> None:
        self.stack.append(set())

    @op(b"l")
    def op_list(self) -> None:
        self.stack.append(self.pop_mark())

    @op(b"t")
    def op_tuple(self) -> None:
        self.stack.append(tuple(self.pop_mark()))

    @op(b"\x85")
    def op_tuple1(self) -> None:
        self.stack.append((self.pop(),))

    @op(b"\x86")
    def op_tuple2(self) -> None:
        b = self.pop()
        a = self.pop()
        self.stack.append((a, b))

    @op(b"\x87")
    def op_tuple3(self) -> None:
        c = self.pop()
        b = self.pop()
        a = self.pop()
        self.stack.append((a, b, c))

    @op(b"d")
    def op_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _Stop("parse-error", Msg("DICT with an odd number of items"))
        d: dict = {}
        self.stack.append(d)
        self.fill(d, items)

    @op(b"\x91")
    def op_frozenset(self) -> None:
        items = self.pop_mark()
        for k in items:
            check_key(k)
        self.stack.append(frozenset(items))

    @op(b"a")
    def op_append(self) -> None:
        v = self.pop()
        self.extend(self.top(), [v])

    @op(b"e")
    def op_appends(self) -> None:
        items = self.pop_mark()
        self.extend(self.top(), items)

    def extend(self, target: Any, items: list) -> None:
        if type(target) is list:
            target.extend(items)
        elif not isinstance(target, Opaque):
            raise TypeConfusion(Msg("APPEND to a {target}, not a list", target=kind_of(target)))

    @op(b"s")
    def op_setitem(self) -> None:
        v = self.pop()
        k = self.pop()
        self.fill(self.top(), [k, v])

    @op(b"u")
    def op_setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _Stop("parse-error", Msg("SETITEMS with an odd number of items"))
        self.fill(self.top(), items)

    def fill(self, target: Any, items: list) -> None:
        if not isinstance(target, dict):
            if isinstance(target, Opaque):
                return
            raise TypeConfusion(Msg("SETITEM on a {target}, not a dict", target=kind_of(target)))
        fill(target, items)

    @op(b"\x90")
    def op_additems(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if type(target) is not set:
            if isinstance(target, Opaque):
                return
            raise TypeConfusion(Msg("ADDITEMS on a {target}, not a set", target=kind_of(target)))
        for k in items:
            check_key(k)
        target.update(items)

    # ---- stack and memo

    @op(b"(")
    def op_mark(self) -> None:
        if len(self.marks) >= self.limits.max_marks:
            raise _Stop("limit-exceeded", Msg("more than {max_marks} nested MARKs", max_marks=self.limits.max_marks))
        self.fence = len(self.stack)
        self.marks.append(self.fence)

    @op(b"0")
    def op_pop(self) -> None:
        if len(self.stack) > self.fence:
            self.stack.pop()
        else:
            self.pop_mark()  # CPython: POP on an empty stack frame discards the MARK

    @op(b"1")
    def op_pop_mark(self) -> None:
        self.pop_mark()

    @op(b"2")
    def op_dup(self) -> None:
        self.stack.append(self.top())

    def get(self, i: int) -> None:
        try:
            self.stack.append(self.memo[i])
        except KeyError:
            raise _Stop("parse-error", Msg("memo key {i} read before it was written", i=i)) from None

    @op(b"g")
    def op_get(self) -> None:
        self.get(self.parse_int(self.line()))

    @op(b"h")
    def op_binget(self) -> None:
        self.get(self.u8())

    @op(b"j")
    def op_long_binget(self) -> None:
        self.get(self.unpack(_U4))

    def put(self, i: int) -> None:
        if i < 0:
            raise _Stop("parse-error", Msg("negative memo key"))
        memo = self.memo
        if len(memo) >= self.limits.max_memo and i not in memo:
            raise _Stop("limit-exceeded", Msg("more than {max_memo} memo entries", max_memo=self.limits.max_memo))
        memo[i] = self.top()

    @op(b"p")
    def op_put(self) -> None:
        self.put(self.parse_int(self.line()))

    @op(b"q")
    def op_binput(self) -> None:
        self.put(self.u8())

    @op(b"r")
    def op_long_binput(self) -> None:
        self.put(self.unpack(_U4))

    @op(b"\x94")
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
            self.unsafe("dotted-name", Msg("global {qual!r} uses a dotted, dunder or empty name", qual=qual))
            return Opaque(module, name, ref=ref)
        if qual in MODULE_PREFIXES:
            self.unsafe("module-as-object", Msg("global {qual} is a module, used as an object", qual=qual))
            return Opaque(module, name, ref=ref)
        rule = ALLOWED.get((module, name))
        if rule is None:
            if self.strict:
                raise UnsafePickleError(
                    Msg(
                        "forbidden global {qual} at byte {offset}{where}", qual=qual, offset=offset, where=self._where()
                    )
                )
            self.finding("suspicious", "global-not-allowed", Msg("global {qual} is not allow-listed", qual=qual))
            return Opaque(module, name, ref=ref)
        return GlobalObj(module, name, rule, ref)

    @op(b"c")
    def op_global(self) -> None:
        module, name = self.global_names()
        self.stack.append(self.lookup(module, name))

    def global_names(self) -> tuple[str, str]:
        try:
            return self.line().decode("utf-8"), self.line().decode("utf-8")
        except UnicodeDecodeError:
            raise _Stop("parse-error", Msg("global name is not valid UTF-8")) from None

    @op(b"\x93")
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
            Msg(
                "STACK_GLOBAL operands {module}, {name} are not two literal strings",
                module=short(module, 40),
                name=short(name, 40),
            ),
        )
        self.stack.append(Opaque(_operand(module), _operand(name)))

    def ext(self, code: int) -> None:
        self.unsafe("ext-code", Msg("extension code {code} (copyreg registry) names a global", code=code), "suspicious")
        self.stack.append(Opaque("copyreg", f"extension_{code}"))

    @op(b"\x82")
    def op_ext1(self) -> None:
        self.ext(self.u8())

    @op(b"\x83")
    def op_ext2(self) -> None:
        self.ext(self.unpack(_U2))

    @op(b"\x84")
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
            self.unsafe("persid-module", Msg("persistent id ('module', ...) rebuilds a module from source code"))
            self.stack.append(Opaque("persistent", "module", called=True))
            return
        try:
            self.stack.append(self.persistent_load(pid))
        except UnsafePickleError as e:
            self.unsafe("persid-module", e.message)
            self.stack.append(Opaque("persistent", "id", called=True))
        except ModelReadError as e:
            if self.strict:
                raise ModelReadError(self._at_byte(e)) from None
            self.finding("dangerous", "bad-storage", e.message)
            self.stack.append(Opaque("persistent", "id", called=True))

    @op(b"P")
    def op_persid(self) -> None:
        try:
            self.persid(self.line().decode("ascii"))
        except UnicodeDecodeError:
            raise _Stop("parse-error", Msg("PERSID argument is not ASCII")) from None

    @op(b"Q")
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
                self.unsafe("call", Msg("{opcode} calls {func}, which is not allow-listed", opcode=opcode, func=func))
            return result_of(func)
        if not isinstance(func, GlobalObj):
            raise _Stop(
                "parse-error", Msg("{opcode} on a {func}, which is not callable", opcode=opcode, func=kind_of(func))
            )
        if type(args) is not tuple:
            raise _Stop(
                "parse-error", Msg("{opcode} arguments are a {args}, not a tuple", opcode=opcode, args=kind_of(args))
            )
        rule = func.rule
        if not rule.sees_unknown and any(isinstance(a, Opaque) for a in args):
            return result_of(func)
        if rule.call is None:
            self.unsafe(
                "call",
                Msg("{opcode} calls {func}, which is allow-listed only as an inert value", opcode=opcode, func=func),
            )
            return result_of(func)
        try:
            return rule.call(args)
        except TypeProblem as e:
            if self.strict:
                raise ModelReadError(
                    Msg(
                        "{func}: {reason} at byte {op_pos}{where}",
                        func=func,
                        reason=error_message(e),
                        op_pos=self.op_pos,
                        where=self._where(),
                    )
                ) from None
            self.finding(e.severity, e.code, Msg("{func}: {reason}", func=func, reason=error_message(e)))
            return result_of(func)
        except UnsafeCall as e:
            self.unsafe("call", error_message(e))
            return result_of(func)
        except ModelReadError as e:  # tensor view metadata outside its storage
            if self.strict:
                raise type(e)(self._at_byte(e)) from None
            self.finding("suspicious" if isinstance(e, TensorExpansion) else "dangerous", "bad-tensor", e.message)
            return Opaque("torch._utils", "_rebuild_tensor", called=True)

    @op(b"R")
    def op_reduce(self) -> None:
        args = self.pop()
        func = self.pop()
        self.stack.append(self.call(func, args, "REDUCE"))

    @op(b"i")
    def op_inst(self) -> None:
        module, name = self.global_names()
        func = self.lookup(module, name)
        args = tuple(self.pop_mark())
        self.stack.append(self.call(func, args, "INST"))

    @op(b"o")
    def op_obj(self) -> None:
        items = self.pop_mark()
        if not items:
            raise _Stop("parse-error", Msg("OBJ without a class"))
        self.stack.append(self.call(items[0], tuple(items[1:]), "OBJ"))

    @op(b"\x81")
    def op_newobj(self) -> None:
        args = self.pop()
        cls = self.pop()
        self.stack.append(self.new(cls, args, {}, "NEWOBJ"))

    @op(b"\x92")
    def op_newobj_ex(self) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        self.stack.append(self.new(cls, args, kwargs, "NEWOBJ_EX"))

    def new(self, cls: Any, args: Any, kwargs: Any, opcode: str) -> Any:
        self.record_call(cls, opcode)
        if isinstance(cls, Opaque):
            if not cls.called:
                self.unsafe(
                    "call", Msg("{opcode} instantiates {cls}, which is not allow-listed", opcode=opcode, cls=cls)
                )
            return result_of(cls)
        if not isinstance(cls, GlobalObj):
            raise _Stop(
                "parse-error", Msg("{opcode} on a {cls}, which is not a class", opcode=opcode, cls=kind_of(cls))
            )
        if type(args) is not tuple or type(kwargs) is not dict:
            raise _Stop("parse-error", Msg("{opcode} arguments have the wrong types", opcode=opcode))
        factory = cls.rule.new
        if factory is None:
            self.unsafe(
                "call",
                Msg("{opcode} instantiates {cls}, which is allow-listed only as a value", opcode=opcode, cls=cls),
            )
            return result_of(cls)
        if args or kwargs:
            raise TypeProblem(Msg("{opcode} of {cls} with arguments", opcode=opcode, cls=cls))
        return factory()

    @op(b"b")
    def op_build(self) -> None:
        state = self.pop()
        inst = self.top()
        if isinstance(inst, (GlobalObj, Opaque)) and not getattr(inst, "called", False):
            self.record_call(inst, "BUILD")
            self.unsafe("call", Msg("BUILD sets attributes of the global {inst} itself", inst=inst))
            return
        if isinstance(inst, Opaque):
            return
        build(inst, state)


_DONE = object()
_Q = struct.Struct("<Q")
_I4 = struct.Struct("<i")
_U4 = struct.Struct("<I")
_U2 = struct.Struct("<H")
_F8 = struct.Struct(">d")


def _py2str(raw: bytes) -> str:
    """A protocol-0/1/2 ``str`` (py2 bytes): ASCII text, or latin-1 to keep every byte."""
    return raw.decode("latin-1")


def _operand(v: Any) -> str:
    """A global name operand as text, marking the ones that are not strings."""
    return v if type(v) is str else f"<{kind_of(v)}>"


def run_pickle(
    data: bytes | memoryview,
    *,
    start: int = 0,
    member: str | None = None,
    strict: bool = True,
    persistent_load: Callable[[Any], Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    stream: bool = False,
) -> PickleResult:
    """Interpret the pickle starting at ``data[start]`` without running anything.

    ``strict=True`` (load mode) raises UnsafePickleError on the first global outside
    :data:`~sdmodel.formats.pickle_allow.ALLOWED` and ModelReadError on any structural problem. ``strict=False`` (scan
    mode) never raises for content: problems become findings. ``persistent_load`` receives each
    persistent id (raising ModelReadError to reject it); without it, storage ids of either torch
    format become :class:`StorageRef` objects.

    ``stream=False`` reads the pickle as the C unpickler reads bytes in memory or a file with
    ``peek()`` (one byte after another, frames only checked); ``stream=True`` as it reads a file
    object without ``peek()``, such as the ``io.BytesIO`` that ``torch.load`` gives it for a zip's
    ``data.pkl``: an argument that straddles the end of a frame skips the rest of that frame
    (``_pickle.c``: ``_Unpickler_ReadFromFile`` replaces the buffer). The two readings differ only
    when frames and opcodes disagree.
    """
    if isinstance(data, memoryview):
        data = data.cast("B") if data.format != "B" or data.ndim != 1 else data
    return _VM(data, start, member, strict, persistent_load, limits, stream).run()
