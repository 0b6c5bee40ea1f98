"""Benchmark: GGUF quantizing and scaled fp8, against GGML's C quantizer and gguf-py, same tensors, same run.

    .venv/bin/python bench/quantize.py             # kernels + whole command on a Flux-shaped real-data file
    .venv/bin/python bench/quantize.py --memory    # also: peak memory, 24 GB bf16 Flux-shaped (sparse) file
    .venv/bin/python bench/quantize.py --skip-kernels --quant Q8_0 --runs 2 --baseline /tmp/before/src
                                                   # whole command only, this tree against another build

1. Kernels: one real Flux tensor shape (3072 x 3072, values ~N(0, 0.02)) quantized in memory by GGML's
   C reference (``quantize_row_*_ref``, compiled as in tests/ggml_reference.py, one thread), by gguf-py's
   numpy ``quantize`` (the types it has) and by ours on one and on two threads, taking turns; MB/s of
   fp32 input (best run), and the one-thread ratio to C also in CPU seconds.
2. Whole command: ``sdmodel convert --format gguf`` of this tree's ``src`` (read bf16, quantize,
   write, fsync, hash the source) on a Flux-shaped file with random bf16 values, against the
   references quantizing the same tensors in memory alone (their read and write not counted), and
   optionally against another build (``--baseline``: its ``src`` directory, e.g. ``git archive``d
   from an older commit), the runs alternating so that both see the same load. The source is never
   found in a hash cache (a fresh one per run).
3. --memory: peak RSS of ``sdmodel convert`` of a sparse 24 GB bf16 Flux-shaped file to Q4_K_S and
   to fp8_e4m3fn_scaled (sparse input: the memory, not the speed, is measured).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work" / "quantize"
PY = sys.executable
SDMODEL = [PY, "-m", "sdmodel"]  # run with PYTHONPATH set to the package to measure (_env)
sys.path.insert(0, str(ROOT))

KERNEL_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
GGUF_PY = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}


def _best(fn, repeat: int = 3, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def kernels(repeat: int) -> list[tuple]:
    import gguf

    from sdmodel.quant.ggml_quantize import quantize
    from tests.ggml_reference import Reference, build

    ref = Reference(build())
    x = (np.random.default_rng(0).standard_normal((3072, 3072)) * 0.02).astype(np.float32)
    mb = x.nbytes / 1e6
    rows = []
    for q in KERNEL_TYPES:
        contenders = {
            "c": lambda q=q: ref.quantize(x, q),
            "one": lambda q=q: quantize(x, q, threads=1),
            "two": lambda q=q: quantize(x, q, threads=2),
        }
        wall = {name: float("inf") for name in contenders}
        cpu = dict(wall)
        for _ in range(repeat):  # the contenders take turns, so that each sees the same load
            for name, fn in contenders.items():
                w, c = time.perf_counter(), time.process_time()
                fn()
                wall[name] = min(wall[name], time.perf_counter() - w)
                cpu[name] = min(cpu[name], time.process_time() - c)
        same = np.array_equal(quantize(x, q).reshape(-1), ref.quantize(x, q))
        py = _best(lambda q=q: gguf.quants.quantize(x, gguf.GGMLQuantizationType[q]), 1) if q in GGUF_PY else None
        c, one, two = wall["c"], wall["one"], wall["two"]
        rows.append((q, mb / c, mb / one, mb / two, mb / py if py else None, one / c, cpu["one"] / cpu["c"], same))
    return rows


def _flux_file(path: Path, double: int, single: int, sparse: bool) -> Path:
    """A Flux-shaped bf16 safetensors file: random values (written tensor by tensor) or sparse."""
    from tests.builders import write_sparse_safetensors
    from tests.quant_layouts import flux_layout

    lay = flux_layout(double, single)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if sparse:
        return write_sparse_safetensors(path, lay, None)
    import ml_dtypes

    from sdmodel.formats.base import TensorInfo
    from sdmodel.formats.safetensors import header_bytes, reference_order

    order = reference_order([TensorInfo(k, d, s) for k, (s, d) in lay.items()])
    prefix, _ = header_bytes(order, None)
    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(prefix)
        for t in order:
            a = (rng.standard_normal(t.shape, dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)
            f.write(a.tobytes())
    os.replace(tmp, path)
    return path


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS and CPU seconds (user + system: what a loaded machine does not
    inflate) of one command."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t
    err = proc.stderr.read().decode() if proc.stderr else ""
    if status != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {err[-2000:]}")
    return dt, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def _env(code: Path, cache: str) -> dict[str, str]:
    """The environment of a command run from the package in ``code`` with the hash cache ``cache``."""
    return {**os.environ, "PYTHONPATH": str(code), "XDG_CACHE_HOME": cache}


def _convert(src: Path, out: Path, quant: str, code: Path) -> tuple[float, int, float]:
    """``sdmodel convert`` to GGUF run from the package in ``code`` (a ``src`` directory), with an
    empty hash cache: wall seconds, peak RSS, CPU seconds."""
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        args = [*SDMODEL, "convert", str(src), "--format", "gguf", "--quant", quant]
        return _run([*args, "-o", str(out), "--overwrite"], _env(code, cache))


def whole_command(quants: list[str], runs: int, baseline: Path | None) -> list[tuple]:
    """Per quant: fp32 MB, our runs, their peak RSS, the baseline's runs (alternating with ours),
    GGML C and gguf-py in-memory seconds."""
    import gguf

    from sdmodel.formats.safetensors import SafetensorsSource
    from sdmodel.quant.gguf_policy import choose_types, detect_architecture
    from tests.ggml_reference import Reference, build

    ref = Reference(build())
    src = _flux_file(WORK / "flux-1double-1single-bf16.safetensors", 1, 1, sparse=False)
    rows = []
    for quant in quants:
        out = WORK / f"flux-small-{quant}.gguf"
        ours, before, rss = [], [], 0
        for _ in range(runs):
            dt, peak, cpu = _convert(src, out, quant, ROOT / "src")
            ours.append((dt, cpu))
            rss = max(rss, peak)
            if baseline is not None:
                dt, _, cpu = _convert(src, out, quant, baseline)
                before.append((dt, cpu))
        out.unlink(missing_ok=True)
        with SafetensorsSource(src) as s:
            lay = {k: (t.shape, t.dtype) for k, t in s.tensors.items()}
            arch = detect_architecture(list(lay))
            choices = [c for c in choose_types(arch, lay, quant) if c.qtype not in ("F32", "F16", "BF16")]
            c_time, py_time = np.zeros(2), np.zeros(2)  # wall and CPU seconds (one thread each)
            values = 0
            for c in choices:
                x = s.read(c.source).astype(np.float32)
                values += x.size
                for i, clock in enumerate((time.perf_counter, time.thread_time)):
                    c_time[i] += _best(lambda x=x, c=c: ref.quantize(x, c.qtype), 1, clock)
                    if quant == "Q8_0":
                        q8 = gguf.GGMLQuantizationType.Q8_0
                        py_time[i] += _best(lambda x=x, q8=q8: gguf.quants.quantize(x, q8), 1, clock)
        mb = values * 4 / 1e6
        rows.append((quant, mb, ours, rss, before, c_time, py_time if py_time.any() else None))
    return rows


def _run_limited(args: list[str], limit: float | None, env: dict[str, str]) -> tuple[float, int, bool]:
    """Wall seconds, peak RSS (the child's VmHWM, polled) and whether it finished within ``limit``
    seconds (stopped there otherwise: the peak of a streaming run is reached within its first
    tensors, each of Flux's block shapes repeating through the whole model)."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                peak = max([peak] + [int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM")])
        except OSError:
            pass
        if limit is not None and time.perf_counter() - t > limit:
            proc.terminate()
            proc.wait()
            return time.perf_counter() - t, peak, False
        time.sleep(0.05)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"{' '.join(args)} failed: {err[-2000:]}")
    return time.perf_counter() - t, peak, True


def memory(targets: list[list[str]], limit: float | None) -> list[tuple]:
    src = _flux_file(WORK / "flux-full-sparse-bf16.safetensors", 19, 38, sparse=True)
    rows = []
    for extra in targets:
        out = WORK / (
            "flux-full-" + "-".join(e.strip("-") for e in extra) + (".gguf" if "gguf" in extra else ".safetensors")
        )
        out.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as cache:
            args = [*SDMODEL, "convert", str(src), *extra, "-o", str(out), "--overwrite"]
            dt, rss, done = _run_limited(args, limit, _env(ROOT / "src", cache))
        rows.append((" ".join(extra), src.stat().st_size, out.stat().st_size if done else 0, dt, rss, done))
        out.unlink(missing_ok=True)
        for tmp in WORK.glob(".*sdmodel-tmp*"):  # a stopped run's temporary output
            tmp.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory", action="store_true", help="also the 24 GB sparse Flux file")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-kernels", action="store_true")
    parser.add_argument("--skip-command", action="store_true")
    parser.add_argument("--quant", action="append", help="whole command: this quant (repeatable; Q8_0 and Q4_K_S)")
    parser.add_argument("--runs", type=int, default=1, help="whole command: runs of each build, alternating")
    parser.add_argument("--baseline", type=Path, help="whole command: also run the sdmodel package in this src dir")
    parser.add_argument("--memory-limit", type=float, help="stop each --memory run after this many seconds")
    parser.add_argument("--memory-only", choices=["gguf", "fp8"], help="only this --memory target")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_kernels:
        print("\nKernels, 3072 x 3072 fp32 in memory (MB/s of fp32 input)")
        print("(the single-thread ratio also in CPU seconds: what other jobs on the machine inflate least)")
        header = f"{'type':6} {'GGML C 1T':>10} {'ours 1T':>9} {'ours 2T':>9} {'gguf-py':>9} {'1T/C':>6} {'CPU':>6}"
        print(header + "  same bytes")
        for q, c, one, two, py, ratio, cpu_ratio, same in kernels(args.repeat):
            print(f"{q:6} {c:10.1f} {one:9.1f} {two:9.1f} {py if py else 0:9.1f} {ratio:6.2f} {cpu_ratio:6.2f}  {same}")
    if not args.skip_command:
        print("\nWhole command (read bf16, quantize, write, fsync, hash the source) vs in-memory quantizing")
        print("of the same tensors; seconds of each run (baseline: the other build, alternating)")
        for quant, mb, ours, rss, before, c_time, py_time in whole_command(
            args.quant or ["Q8_0", "Q4_K_S"], args.runs, args.baseline
        ):
            print(
                f"{quant}: {mb:.0f} MB of fp32 values; wall / CPU seconds, GGML C 1T {c_time[0]:.2f} / {c_time[1]:.2f}",
                end="",
            )
            print(f", gguf-py {py_time[0]:.2f} / {py_time[1]:.2f}" if py_time is not None else "")
            for name, runs in (("sdmodel", ours), ("baseline", before)):
                if runs:
                    wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
                    ratios = f"wall /C {wall / c_time[0]:.2f}, CPU /C {cpu / c_time[1]:.2f}"
                    if py_time is not None:
                        ratios += f"; wall /gguf-py {wall / py_time[0]:.2f}, CPU /gguf-py {cpu / py_time[1]:.2f}"
                    print(f"  {name:8} {' '.join(f'{w:.2f}/{c:.2f}' for w, c in runs)} s  (best: {ratios})")
            print(f"  sdmodel peak RSS {rss / 1e6:.0f} MB")
    if args.memory:
        print("\nPeak memory, 24 GB bf16 Flux-shaped file (sparse)")
        targets = [["--format", "gguf", "--quant", "Q4_K_S"], ["--dtype", "fp8_e4m3fn_scaled"]]
        if args.memory_only:
            targets = [t for t in targets if (args.memory_only == "gguf") == ("gguf" in t)]
        for what, size, out_size, dt, rss, done in memory(targets, args.memory_limit):
            end = f"{out_size / 1e9:6.1f} GB" if done else "stopped"
            print(f"{what:32} {size / 1e9:6.1f} GB -> {end}  {dt:7.1f} s  peak RSS {rss / 1e6:6.0f} MB")


if __name__ == "__main__":
    main()
