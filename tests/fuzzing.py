"""Mutation fuzzing of the readers, shared by ``tests/test_scan_fuzz.py`` (a short run in
``make test``) and ``bench/fuzz.py`` (a long one).

Each row of :data:`SEEDS` writes one small honest file of a format; :func:`fuzz` mutates it (flipped
and boundary bytes, overwritten length fields, truncation, inserted, deleted and repeated chunks,
mostly in the headers, pickles and directories where parsers decide things) and runs every mutant
through ``inspect`` (plus reading a few tensors) and ``scan``. A mutant may be refused, but only with
an sdmodel error, within a time limit, and ``scan`` must never fail internally. A new format is one
more row.
"""

from __future__ import annotations

import importlib.util
import random
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sdmodel.errors import SdmodelError
from sdmodel.formats import open_model
from sdmodel.inspection import inspect_source
from sdmodel.security.scanner import scan
from tests.security_corpus import CASES, SD_TENSORS, honest_zip_parts, write_torch_zip

PER_FILE_SECONDS = 10.0


@dataclass(frozen=True)
class Seed:
    """One honest file to mutate. ``requires``: a module that must exist for the row to run."""

    name: str
    suffix: str
    build: Callable[[Path], object]
    requires: str | None = None

    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


def _safetensors(path: Path) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {name: rng.standard_normal(size).astype(np.float16) for name, _, size in SD_TENSORS}
    save_file(tensors, str(path), metadata={"modelspec.architecture": "stable-diffusion-v1"})


def _corpus(case_id: str) -> Callable[[Path], object]:
    case = next(c for c in CASES if c.id == case_id)
    return case.build


def _gguf(path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "sd1")
    rng = np.random.default_rng(0)
    for name, _, size in SD_TENSORS[:4]:
        writer.add_tensor(name, rng.standard_normal(size).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


SEEDS: list[Seed] = [
    Seed("torch-zip", ".ckpt", lambda p: write_torch_zip(p, *honest_zip_parts())),
    Seed("torch-legacy", ".pt", _corpus("c02-legacy")),
    Seed("embedding", ".pt", _corpus("c05-embedding")),
    Seed("safetensors", ".safetensors", _safetensors),
    Seed("gguf", ".gguf", _gguf, requires="sdmodel.formats.gguf"),
]


# ---- mutations

_BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1]


def _position(rng: random.Random, size: int) -> int:
    """Mostly where parsers decide things: the first KBs (headers, pickles) and the last KB
    (zip directory), sometimes anywhere."""
    r = rng.random()
    if r < 0.5:
        return rng.randrange(min(size, 4096))
    if r < 0.75:
        return max(0, size - 1 - rng.randrange(min(size, 1024)))
    return rng.randrange(size)


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        if not out:
            break
        p = _position(rng, len(out))
        op = rng.randrange(7)
        if op == 0:
            out[p] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[p] = rng.choice((0, 0xFF, 0x7F, 0x80, ord("."), ord("("), 0x95))
        elif op == 2:
            width = rng.choice((2, 4, 8))
            value = rng.choice(_BOUNDARY) & ((1 << (8 * width)) - 1)
            out[p : p + width] = value.to_bytes(width, "little")[: len(out) - p]
        elif op == 3:
            del out[p:]
        elif op == 4:
            del out[p : p + rng.randrange(1, 64)]
        elif op == 5:
            out[p:p] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        else:
            n = rng.randrange(1, 256)
            out[p:p] = out[p : p + n] * rng.randrange(1, 4)
    return bytes(out)


# ---- running a mutant


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"more than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def exercise(path: Path) -> str | None:
    """None when the readers behave; else what went wrong."""
    try:
        with time_limit(PER_FILE_SECONDS):
            try:
                with open_model(path) as source:
                    inspect_source(source)
                    for name in list(source.tensors)[:3]:
                        source.read(name)
            except SdmodelError:
                pass
            report = scan(path)
    except Hang as e:
        return f"hang: {e}"
    except Exception as e:  # the finding this fuzzer exists for
        return f"{type(e).__name__}: {e}"
    failures = [f.message for f in report.findings if f.code == "scanner-failure"]
    return f"scan: {failures[0]}" if failures else None


@dataclass
class FuzzResult:
    files: Counter = field(default_factory=Counter)
    failures: list[tuple[str, Path, str]] = field(default_factory=list)
    seconds: float = 0.0


def fuzz(workdir: Path, seconds: float, seed: int = 0, keep_failures: bool = True) -> FuzzResult:
    """Mutate every available seed in turn until ``seconds`` have passed."""
    rng = random.Random(seed)
    seeds = [s for s in SEEDS if s.available()]
    originals = {}
    for s in seeds:
        path = workdir / f"seed-{s.name}{s.suffix}"
        s.build(path)
        originals[s.name] = path.read_bytes()
    result = FuzzResult()
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        s = seeds[n % len(seeds)]
        n += 1
        path = workdir / f"mutant-{s.name}{s.suffix}"
        path.write_bytes(mutate(originals[s.name], rng))
        problem = exercise(path)
        result.files[s.name] += 1
        if problem is not None:
            kept = workdir / f"failure-{len(result.failures)}-{s.name}{s.suffix}"
            if keep_failures:
                path.rename(kept)
            result.failures.append((s.name, kept, problem))
    result.seconds = time.monotonic() - started
    return result
