"""The one streaming engine that writes any plan into any sink (formats/sink.py).

The sink's header is computed first (sizes are known), then tensors are read, cast and written one
at a time by a pipeline (reader thread -> casting in the calling thread, big tensors split over two
worker threads -> encoder thread (the sink's encoding: GGUF quantizing) -> writer thread, then a
hasher thread), so resident memory is a few tensors whatever the model size. The output appears whole or not at all (sdmodel.atomic). The
engine installs no signal handler: a caller that wants SIGTERM to clean up like Ctrl-C (the CLI)
turns it into a KeyboardInterrupt.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

import numpy as np

from sdmodel.atomic import check_target, replacing, sync
from sdmodel.dtypes import FP8_DTYPES, FP8_MAX, NUMPY_DTYPES, bf16_bits, is_dtype
from sdmodel.errors import ModelReadError
from sdmodel.formats.base import TensorInfo
from sdmodel.formats.sink import Output, Sink
from sdmodel.formats.writers import make_sink
from sdmodel.i18n import Msg
from sdmodel.output_file import OutputFile
from sdmodel.plan import Plan, Step

Progress = Callable[[int, int], None]

CHUNK = 1 << 20  # elements per casting task: two worker threads cast chunks in parallel


@dataclass
class WriteResult:
    path: Path
    format: str
    bytes: int
    tensors: int
    seconds: float
    sha256_data: str | None = None  # hex SHA-256 of the safetensors data section, when computed
    clamped: dict[str, int] = field(default_factory=dict)  # fp8: output name -> values clamped
    verified: bool = False  # compared bit for bit with the reference reader
    filled: dict[str, str] = field(default_factory=dict)  # metadata placeholders filled at the end


# --- casting -----------------------------------------------------------------------------------


def _cast_range(src: np.ndarray, dst: np.ndarray, out_dtype: str) -> int:
    """Cast ``src`` into ``dst`` (1-D views); fp8 values beyond the range are clamped and counted;
    bf16 into uint16 bits when :func:`_bf16_bits` says so."""
    if dst.dtype == np.uint16 and out_dtype == "BF16":
        bf16_bits(src, out=dst)
        return 0
    if out_dtype in FP8_DTYPES:
        x = src if src.dtype == np.float32 else src.astype(np.float32)
        limit = FP8_MAX[out_dtype]
        n = 0
        if x.size and not (x.max() <= limit and x.min() >= -limit):  # cheap test first (NaN fails it)
            n = int(np.count_nonzero(x > limit) + np.count_nonzero(x < -limit))
            x = np.clip(x, -limit, limit, out=x if x is not src else None)
        dst[...] = x.astype(dst.dtype)
        return n
    np.copyto(dst, src, casting="unsafe")
    return 0


def _bf16_bits(a: np.ndarray, out_dtype: str) -> bool:
    """Casts to bf16 from fp32 or fp16 give uint16 bits (dtypes.round_bf16, ml_dtypes' rounding):
    the sinks store bytes as they are and the bfloat16 dtype would cost importing ml_dtypes."""
    return out_dtype == "BF16" and a.dtype in (np.float32, np.float16)


def _cast_dtype(a: np.ndarray, out_dtype: str) -> str:
    """The dtype the cast values of ``a`` are held in: ``out_dtype``, or U16 for bf16 bits."""
    return "U16" if _bf16_bits(a, out_dtype) else out_dtype


def cast_array(a: np.ndarray, out_dtype: str) -> tuple[np.ndarray, int]:
    """``a`` cast to ``out_dtype`` (safetensors name; bf16 from fp32/fp16 as uint16 bits) and the
    number of values clamped (fp8)."""
    if is_dtype(a.dtype, out_dtype):
        return a, 0
    out = np.empty(a.shape, dtype=NUMPY_DTYPES[_cast_dtype(a, out_dtype)])
    return out, _cast_range(a.reshape(-1), out.reshape(-1), out_dtype)


def step_values(step: Step, a: np.ndarray) -> np.ndarray:
    """Values of a step before the cast: fixed and reshaped as planned."""
    if step.fix is not None:
        a = step.fix(a)
    if a.shape != step.shape:
        a = a.reshape(step.shape)
    return a


def expected_bytes(plan: Plan, step: Step) -> np.ndarray:
    """What the output must hold for ``step`` (re-read and re-cast; used by --verify)."""
    a = step_values(step, plan.sources[step.source].read(step.name))
    return _contiguous(cast_array(a, step.out_dtype)[0])


def _as_bits(s: Step) -> bool:
    """bf16 values that reach the sink untouched (no fix, no cast) travel as their uint16 bits:
    sinks store bytes as they are and the GGUF quantizer reads uint16 as bf16 bits, while the
    bfloat16 dtype costs importing ml_dtypes (most of a second, holding the GIL: every thread
    stalls)."""
    return s.dtype == s.out_dtype == "BF16" and s.fix is None


def _contiguous(a: np.ndarray) -> np.ndarray:
    """C-contiguous, keeping 0-d arrays 0-d (np.ascontiguousarray makes them 1-d)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


# --- the pipeline ------------------------------------------------------------------------------

BUDGET = 160 * 1000 * 1000  # bytes of tensors (read + cast) in flight at once: bounds resident memory
PREFETCH = 256 * 1000 * 1000  # bytes of coming tensors the kernel is asked to read ahead (page cache, not RSS)


class _Read(NamedTuple):
    """A tensor as read (``buf``: the recycled buffer behind ``array``, if any)."""

    step: Step
    array: np.ndarray
    buf: np.ndarray | None


class _Cast(NamedTuple):
    """A tensor being cast by the workers (``futures`` give the clamp counts); the buffers are
    recycled after the write and after the hash."""

    step: Step
    out: np.ndarray
    futures: list[Future[int]]
    after_cast: np.ndarray | None
    after_hash: np.ndarray | None


class _Encoded(NamedTuple):
    """A tensor's bytes as the sink encoded them, waiting for the writer, then the hasher (the
    buffers are recycled after the hash: the bytes may be a view of any of them)."""

    step: Step
    data: memoryview
    after_hash: tuple[np.ndarray | None, ...]


T = TypeVar("T")


class _Pipe(Generic[T]):
    """A queue whose blocking calls give up when the run is aborted; ``None`` ends the stream."""

    def __init__(self, abort: threading.Event, size: int = 0) -> None:
        self.q: queue.Queue[T | None] = queue.Queue(maxsize=size)
        self.abort = abort

    def put(self, item: T | None) -> bool:
        while not self.abort.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> T | None:
        while not self.abort.is_set():
            try:
                return self.q.get(timeout=0.1)
            except queue.Empty:
                continue
        return None


class _Budget:
    """Bytes in flight. A tensor larger than the budget still goes through, alone."""

    def __init__(self, limit: int, abort: threading.Event) -> None:
        self.limit, self.used, self.abort = limit, 0, abort
        self.cv = threading.Condition()

    def acquire(self, n: int) -> bool:
        with self.cv:
            while self.used and self.used + n > self.limit:
                if self.abort.is_set():
                    return False
                self.cv.wait(0.1)
            self.used += n
            return True

    def release(self, n: int) -> None:
        with self.cv:
            self.used -= n
            self.cv.notify_all()


SMALL = 1 << 20  # smaller buffers are not recycled: the allocator reuses that memory itself


class _Buffers:
    """Recycled byte buffers for tensors read straight from the file and for cast results: reusing
    memory saves the page faults of fresh allocations (about 40% of the cost of a read)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.free: list[np.ndarray] = []
        self.lock = threading.Lock()

    def get(self, nbytes: int) -> np.ndarray:
        """A buffer of at least ``nbytes``: a free one at most twice as large (so that small
        tensors do not take the large buffers), else a new one."""
        if nbytes >= SMALL:
            with self.lock:
                fits = [i for i, b in enumerate(self.free) if nbytes <= b.size <= 2 * nbytes]
                if fits:
                    return self.free.pop(min(fits, key=lambda i: self.free[i].size))
        return np.empty(max(nbytes, 1), dtype=np.uint8)

    def put(self, buf: np.ndarray | None) -> None:
        if buf is None or buf.size < SMALL:
            return
        with self.lock:
            self.free.append(buf)
            self.free.sort(key=lambda b: b.size)
            while sum(b.size for b in self.free) > self.cap:
                self.free.pop(0)

    def array(self, buf: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        dt = NUMPY_DTYPES[dtype]
        n = math.prod(shape) * dt.itemsize
        return buf[:n].view(dt).reshape(shape)


class _DirectReader:
    """Reads a tensor whose bytes are one contiguous range of its file (safetensors, most torch
    checkpoints: the sources say so through ``data_range``) into a recycled buffer; anything else
    goes through ``TensorSource.read``."""

    def __init__(self, plan: Plan, buffers: _Buffers) -> None:
        self.plan, self.buffers = plan, buffers
        self.fds: dict[str, int] = {}

    def _range(self, s: Step) -> tuple[int, int] | None:
        source = self.plan.sources[s.source]
        rng = source.data_range(s.name) if source.path.is_file() else None
        return rng if rng is not None and rng[1] - rng[0] == s.in_bytes else None

    def _fd(self, s: Step) -> int:
        if s.source not in self.fds:
            self.fds[s.source] = os.open(self.plan.sources[s.source].path, os.O_RDONLY)
        return self.fds[s.source]

    def prefetch(self, s: Step) -> None:
        """Ask the kernel to start reading a coming tensor: the output order (the reference
        writer's) is not the input's, so plain readahead misses on a cold page cache."""
        rng = self._range(s)
        if rng is not None and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd(s), rng[0], rng[1] - rng[0], os.POSIX_FADV_WILLNEED)

    def read(self, s: Step) -> tuple[np.ndarray, np.ndarray | None]:
        source = self.plan.sources[s.source]
        rng = self._range(s)
        if rng is None:
            return (source.read_bits(s.name) if _as_bits(s) else source.read(s.name)), None
        self._fd(s)
        buf = self.buffers.get(s.in_bytes)
        view, pos, left = buf.data[: s.in_bytes], rng[0], s.in_bytes
        while left:
            got = os.preadv(self.fds[s.source], [view[s.in_bytes - left :]], pos)
            if got <= 0:
                self.buffers.put(buf)
                raise ModelReadError(Msg("{path}: tensor {name!r}: file is truncated", path=source.path, name=s.name))
            pos, left = pos + got, left - got
        return self.buffers.array(buf, "U16" if _as_bits(s) else s.dtype, s.shape), buf

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def _run(plan: Plan, sink: Sink, f: Output, progress: Progress | None) -> dict[str, int]:
    """Reader thread -> this thread (fix, reshape, cast dispatched in chunks to two workers, no
    waiting) -> encoder thread (waits for the chunks in order, has the sink encode: GGUF quantizes
    on both cores) -> writer thread (writes) -> hasher thread (SHA-256 of the data section). Memory
    in flight is bounded by BUDGET, so casting and encoding run ahead on both cores while the
    writer (whose writes may wait for the disk) and the hasher are busy."""
    steps = [plan.steps[i] for i in sink.order]
    total = sum(s.out_bytes for s in steps)
    abort = threading.Event()
    errors: list[BaseException] = []
    budget = _Budget(BUDGET, abort)
    buffers = _Buffers(BUDGET)
    direct = _DirectReader(plan, buffers)
    to_cast: _Pipe[_Read] = _Pipe(abort, 2)
    to_encode: _Pipe[_Cast] = _Pipe(abort)
    to_write: _Pipe[_Encoded] = _Pipe(abort)
    to_hash: _Pipe[_Encoded] = _Pipe(abort)
    clamped: dict[str, int] = {}

    def cost(s: Step) -> int:
        """Bytes a tensor holds until hashed: as read, as cast, as encoded (quantized blocks)."""
        cast = s.out_info.nbytes if s.out_dtype != s.dtype else 0
        return s.in_bytes + cast + (s.out_bytes if s.encoding is not None else 0) + s.fix_bytes

    def reader() -> None:
        try:
            ahead, pending = 0, 0  # steps before `ahead` were prefetched; `pending` bytes of them unread
            for i, s in enumerate(steps):
                while ahead < len(steps) and (ahead <= i or pending < PREFETCH):
                    direct.prefetch(steps[ahead])
                    pending += steps[ahead].in_bytes
                    ahead += 1
                pending -= s.in_bytes
                if not budget.acquire(cost(s)) or not to_cast.put(_Read(s, *direct.read(s))):
                    return
            to_cast.put(None)
        except BaseException as e:  # handed to the main thread
            errors.append(e)
            abort.set()

    def encoder() -> None:
        try:
            for index in sink.order:
                item = to_encode.get()
                if item is None:
                    return
                s, out, futures, after_cast, after_hash = item
                n = sum(fut.result() for fut in futures)
                if n:
                    clamped[s.out] = n
                buffers.put(after_cast)
                into = buffers.get(s.out_bytes) if s.encoding is not None else None
                data = sink.encode(index, out, into)
                if not to_write.put(_Encoded(s, data, (after_hash, into))):
                    return
                del item, out, futures
        except BaseException as e:  # handed to the main thread
            errors.append(e)
            abort.set()

    def writer() -> None:
        done = 0
        try:
            for index in sink.order:
                item = to_write.get()
                if item is None:
                    return
                sink.write(f, index, item.data)
                done += item.data.nbytes
                if not to_hash.put(item):
                    return
                del item
                if progress is not None:
                    progress(done, total)
        except BaseException as e:  # handed to the main thread
            errors.append(e)
            abort.set()

    def hasher() -> None:
        try:
            for _ in range(len(steps)):
                item = to_hash.get()
                if item is None:
                    return
                s, data, after_hash = item
                sink.hash(data)
                del item, data
                for buf in after_hash:
                    buffers.put(buf)
                budget.release(cost(s))
        except BaseException as e:  # handed to the main thread
            errors.append(e)
            abort.set()

    writing = threading.Thread(target=writer, daemon=True)
    hashing = threading.Thread(target=hasher, daemon=True)
    threads = [threading.Thread(target=reader, daemon=True), threading.Thread(target=encoder, daemon=True)]
    threads += [writing, hashing]
    pool = ThreadPoolExecutor(max_workers=2)
    for t in threads:
        t.start()
    try:
        while True:
            item = to_cast.get()
            if item is None:
                break
            s, a, in_buf = item
            a = _contiguous(step_values(s, a))
            if _as_bits(s) or is_dtype(a.dtype, s.out_dtype):
                out, futures, after_cast, after_hash = a, [], None, in_buf
            else:
                out_buf = buffers.get(s.out_info.nbytes)  # the cast values (out_bytes: as encoded)
                out = buffers.array(out_buf, _cast_dtype(a, s.out_dtype), s.shape)
                src, dst = a.reshape(-1), out.reshape(-1)
                futures = [
                    pool.submit(_cast_range, src[lo : lo + CHUNK], dst[lo : lo + CHUNK], s.out_dtype)
                    for lo in range(0, max(src.size, 1), CHUNK)
                ]
                after_cast, after_hash = in_buf, out_buf
            del a, item, in_buf
            if not to_encode.put(_Cast(s, out, futures, after_cast, after_hash)):
                break
        writing.join()
        hashing.join()
    finally:
        if errors or writing.is_alive() or hashing.is_alive():  # interrupted: stop the others
            abort.set()
        for t in threads:
            t.join()
        pool.shutdown(wait=True, cancel_futures=True)
        direct.close()
    if errors:
        raise errors[0]
    return clamped


def execute(
    plan: Plan,
    out: Path,
    *,
    fmt: str = "safetensors",
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
    verify: bool = False,
    progress: Progress | None = None,
    late: Callable[[], dict[str, str]] | None = None,
) -> WriteResult:
    """Write ``plan`` to ``out`` in format ``fmt`` (formats/writers.py). ``metadata`` (safetensors
    only) may hold ``modelspec.hash_sha256``: its value is replaced by the hash of the written data
    section; ``late()``, called once the data is written, gives the values of other placeholders
    (the source's hashes, sdmodel.provenance). ``progress(bytes_written, bytes_total)`` is called
    from the writer thread."""
    out = Path(out)
    check_target(out, [s.path for s in plan.sources.values()], overwrite)
    stored = [TensorInfo(s.out, s.stored_dtype, s.shape) for s in plan.steps]
    sink = make_sink(fmt, stored, {**plan.format_meta, **(metadata or {})} or None)
    started = time.monotonic()
    with replacing(out, overwrite) as tmp:
        with OutputFile(tmp) as f:
            sink.begin(f)
            clamped = _run(plan, sink, f, progress)
            filled = late() if late is not None else {}
            sink.fill(filled)
            sink.finish(f)
            sync(f)
        sink.check(tmp)
        if verify:
            sink.verify(tmp, lambda i: expected_bytes(plan, plan.steps[i]))
    return WriteResult(
        path=out,
        format=sink.format,
        bytes=out.stat().st_size,
        tensors=len(plan.steps),
        seconds=time.monotonic() - started,
        sha256_data=sink.digest,
        clamped=clamped,
        verified=verify,
        filled=filled,
    )
