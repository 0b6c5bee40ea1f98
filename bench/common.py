"""Shared pieces of the benchmarks: the work folder, the big SD-shaped inputs, timing, tables.

The inputs are built once into bench/_work (gitignored) and reused while their size matches.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / "_work"
sys.path.insert(0, str(REPO))


def work_dir() -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    return WORK


def sd15_ema_ckpt() -> Path:
    """A 7.7 GB fp32 SD 1.5 checkpoint with EMA, a torch zip written by torch.save: the real
    layout's names and shapes, values ~N(0, 0.02) (real-scale weights)."""
    import torch

    from tests.builders import layout, with_ema

    path = work_dir() / "sd15-full-ema.ckpt"
    lay = with_ema(layout("sd15"))
    want = sum(4 * max(1, _numel(s)) for s, _ in lay.values())
    if path.exists() and path.stat().st_size > want:
        return path
    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, (shape, dtype) in lay.items():
        if dtype == "I64":
            state[name] = torch.arange(_numel(shape), dtype=torch.int64).reshape(shape)
        elif dtype == "I32":
            state[name] = torch.tensor(1000, dtype=torch.int32)
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.02
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": state, "global_step": 840000}, str(tmp))
    del state
    os.replace(tmp, path)
    return path


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def timed_subprocess(code: str, repeat: int = 3) -> tuple[float, int]:
    """Median wall seconds and peak RSS (bytes) of running ``code`` in a fresh Python."""
    times, peaks = [], []
    for _ in range(repeat):
        wrapper = (
            "import time, sys\n"
            "t = time.perf_counter()\n"
            f"exec(compile({code!r}, '<bench>', 'exec'))\n"
            "dt = time.perf_counter() - t\n"
            # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report the parent's peak.
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print('BENCH', dt, int(hwm) * 1024, file=sys.stderr)\n"
        )
        r = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, cwd=REPO)
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        line = [ln for ln in r.stderr.splitlines() if ln.startswith("BENCH")][-1]
        _, dt, rss = line.split()
        times.append(float(dt))
        peaks.append(int(rss))
    return statistics.median(times), max(peaks)


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in headers:
        table.add_column(h)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def warm(path: Path) -> None:
    """Read a file once so every contender starts with it in the page cache."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M")
