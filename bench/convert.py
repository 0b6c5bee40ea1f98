"""Benchmark: `sdmodel convert` against the load-everything peer (what the A1111 converter does).

    .venv/bin/python bench/convert.py            # SD1.5 7.7 GB fp32+EMA .ckpt -> fp16 no-EMA safetensors
    .venv/bin/python bench/convert.py --flux     # also: 24 GB bf16 Flux-shaped safetensors -> fp8
    .venv/bin/python bench/convert.py --cold     # each run starts with the page cache dropped (root)

Inputs are built once in bench/_work (gitignored): the real SD 1.5 layout plus EMA, values ~N(0, 0.02),
saved by torch.save; the Flux file is written in chunks with random bf16 values (real data, not a
sparse file). Each run is a subprocess measured with os.wait4 (wall time, peak RSS of that process)
after reading the input once so both start with the same page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work" / "convert"
PY = sys.executable
SDMODEL = str(Path(PY).parent / "sdmodel")
sys.path.insert(0, str(ROOT))

PEER = r"""
import sys, torch, safetensors.torch
src, out = sys.argv[1], sys.argv[2]
sd = torch.load(src, map_location="cpu", weights_only=True)
sd = sd.get("state_dict", sd)
sd = {k: (v.half() if v.is_floating_point() else v).contiguous()
      for k, v in sd.items() if not k.startswith("model_ema.")}
safetensors.torch.save_file(sd, out)
"""


def build_sd15(path: Path) -> None:
    import torch

    from sdmodel.dtypes import NUMPY_DTYPES
    from tests.builders import layout, with_ema

    lay = with_ema(layout("sd15"))
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, (shape, dtype) in lay.items():
        if "position_ids" in name:
            sd[name] = torch.arange(77, dtype=torch.int64).reshape(shape)
        elif dtype == "I32":
            sd[name] = torch.tensor(123456, dtype=torch.int32).reshape(shape)
        elif name == "model_ema.decay":
            sd[name] = torch.tensor(0.9999, dtype=torch.float32)
        elif len(shape) == 1 and shape[0] == 1000:
            sd[name] = torch.linspace(1e-4, 0.999, 1000)
        else:
            assert NUMPY_DTYPES[dtype].kind == "f"
            sd[name] = torch.randn(shape, generator=g) * 0.02
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": sd}, str(tmp))
    os.replace(tmp, path)


def flux_layout() -> dict[str, tuple[tuple[int, ...], str]]:
    """Flux.1-dev shapes (19 double blocks, 38 single blocks, hidden 3072): about 11.9 B parameters."""
    h, bf = 3072, "BF16"
    lay: dict[str, tuple[tuple[int, ...], str]] = {
        "img_in.weight": ((h, 64), bf),
        "img_in.bias": ((h,), bf),
        "txt_in.weight": ((h, 4096), bf),
        "txt_in.bias": ((h,), bf),
        "time_in.in_layer.weight": ((h, 256), bf),
        "time_in.out_layer.weight": ((h, h), bf),
        "vector_in.in_layer.weight": ((h, 768), bf),
        "vector_in.out_layer.weight": ((h, h), bf),
        "guidance_in.in_layer.weight": ((h, 256), bf),
        "guidance_in.out_layer.weight": ((h, h), bf),
        "final_layer.linear.weight": ((64, h), bf),
        "final_layer.adaLN_modulation.1.weight": ((2 * h, h), bf),
    }
    for i in range(19):
        for s in ("img", "txt"):
            b = f"double_blocks.{i}.{s}_"
            lay |= {
                b + "mod.lin.weight": ((6 * h, h), bf),
                b + "mod.lin.bias": ((6 * h,), bf),
                b + "attn.qkv.weight": ((3 * h, h), bf),
                b + "attn.qkv.bias": ((3 * h,), bf),
                b + "attn.norm.query_norm.scale": ((128,), bf),
                b + "attn.norm.key_norm.scale": ((128,), bf),
                b + "attn.proj.weight": ((h, h), bf),
                b + "attn.proj.bias": ((h,), bf),
                b + "mlp.0.weight": ((4 * h, h), bf),
                b + "mlp.0.bias": ((4 * h,), bf),
                b + "mlp.2.weight": ((h, 4 * h), bf),
                b + "mlp.2.bias": ((h,), bf),
            }
    for i in range(38):
        b = f"single_blocks.{i}."
        lay |= {
            b + "linear1.weight": ((7 * h, h), bf),
            b + "linear1.bias": ((7 * h,), bf),
            b + "linear2.weight": ((h, 5 * h), bf),
            b + "linear2.bias": ((h,), bf),
            b + "modulation.lin.weight": ((3 * h, h), bf),
            b + "modulation.lin.bias": ((3 * h,), bf),
            b + "norm.query_norm.scale": ((128,), bf),
            b + "norm.key_norm.scale": ((128,), bf),
        }
    return lay


def build_flux(path: Path) -> None:
    """Header first, then random bf16 values written in chunks (a few hundred MB in memory)."""
    import ml_dtypes
    import numpy as np

    from sdmodel.formats.base import TensorInfo
    from sdmodel.formats.safetensors import header_bytes, reference_order

    infos = reference_order([TensorInfo(k, d, s) for k, (s, d) in flux_layout().items()])
    head, _ = header_bytes(infos)
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(1 << 25, dtype=np.float32) * 0.05).astype(ml_dtypes.bfloat16)
    pool[::997] = 600.0  # a few values beyond fp8 e4m3's range, so that clamping is exercised
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(head)
        for t in infos:
            left = t.numel
            while left:
                n = min(left, pool.size)
                start = int(rng.integers(0, pool.size - n + 1))
                f.write(memoryview(pool[start : start + n].view(np.uint8)))
                left -= n
    os.replace(tmp, path)


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def drop_caches(path: Path) -> None:
    """Start from a cold page cache, as a freshly downloaded file is (needs root)."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as e:
        raise SystemExit(f"--cold needs root to drop the page cache: {e}") from None


def measure(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MB, exit status) of a child process. The peak is the child's
    VmHWM, polled: ru_maxrss would include what the parent had resident when it forked."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak = 0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.02)
    return time.perf_counter() - t, peak // 1024, os.waitstatus_to_exitcode(status)


def compare(a: Path, b: Path) -> tuple[int, list[str]]:
    """(tensors bit-identical, names that differ) between two safetensors files."""
    import numpy as np
    from safetensors import safe_open

    same, differ = 0, []
    with safe_open(str(a), "np") as fa, safe_open(str(b), "np") as fb:
        keys_a, keys_b = set(fa.keys()), set(fb.keys())
        for k in sorted(keys_a | keys_b):
            if k not in keys_a or k not in keys_b:
                differ.append(k)
                continue
            x, y = fa.get_tensor(k), fb.get_tensor(k)
            if x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x.view(np.uint8), y.view(np.uint8)):
                same += 1
            else:
                differ.append(k)
    return same, differ


def sd15_case(rows: list[dict], repeat: int, cold: bool = False) -> None:
    src = WORK / "sd15-ema-fp32.ckpt"
    if not src.exists():
        print("building", src, "...", flush=True)
        t = time.perf_counter()
        # in a child process: the 7.7 GB of tensors never live in this one
        subprocess.run([PY, __file__, "--build-sd15", str(src)], check=True)
        print(f"  built {src.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s", flush=True)
    peer_out, ours_out = WORK / "peer-fp16.safetensors", WORK / "ours-fp16.safetensors"
    for p in (peer_out, ours_out):
        p.unlink(missing_ok=True)
    peers, ourses = [], []
    prepare = drop_caches if cold else warm
    for _ in range(repeat):
        prepare(src)
        peers.append(measure([PY, "-c", PEER, str(src), str(peer_out)]))
        prepare(src)
        ourses.append(
            measure(
                [SDMODEL, "convert", str(src), "-o", str(ours_out), "--dtype", "fp16", "--ema", "drop", "--overwrite"]
            )
        )
    peer = (statistics.median(p[0] for p in peers), max(p[1] for p in peers), max(p[2] for p in peers))
    ours = (statistics.median(p[0] for p in ourses), max(p[1] for p in ourses), max(p[2] for p in ourses))
    print("  runs (s): peer", [round(p[0], 1) for p in peers], "ours", [round(p[0], 1) for p in ourses])
    same, differ = compare(peer_out, ours_out)
    schedule = [k for k in differ if "." not in k]
    rows.append(
        {
            "case": "SD1.5 7.7 GB fp32+EMA ckpt -> fp16 no-EMA safetensors" + (" (cold cache)" if cold else ""),
            "input_gb": round(src.stat().st_size / 1e9, 2),
            "peer_s": round(peer[0], 1),
            "peer_rss_mb": peer[1],
            "peer_exit": peer[2],
            "ours_s": round(ours[0], 1),
            "ours_rss_mb": ours[1],
            "ours_exit": ours[2],
            "ratio": round(ours[0] / peer[0], 2),
            "identical_tensors": same,
            "different": f"{len(differ)} ({len(schedule)} noise-schedule buffers kept fp32 on purpose)"
            if set(differ) == set(schedule)
            else differ[:10],
        }
    )


def flux_case(rows: list[dict]) -> None:
    src = WORK / "flux-bf16.safetensors"
    if not src.exists():
        print("building", src, "...", flush=True)
        t = time.perf_counter()
        build_flux(src)
        print(f"  built {src.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s", flush=True)
    out = WORK / "flux-fp8.safetensors"
    out.unlink(missing_ok=True)
    ours = measure([SDMODEL, "convert", str(src), "-o", str(out), "--dtype", "fp8_e4m3fn", "--overwrite", "--json"])
    rows.append(
        {
            "case": "Flux-shaped 24 GB bf16 safetensors -> fp8_e4m3fn",
            "input_gb": round(src.stat().st_size / 1e9, 2),
            "peer_s": None,
            "peer_rss_mb": None,
            "peer_exit": None,
            "ours_s": round(ours[0], 1),
            "ours_rss_mb": ours[1],
            "ours_exit": ours[2],
            "ratio": None,
            "identical_tensors": None,
            "different": f"output {out.stat().st_size / 1e9:.2f} GB" if out.exists() else "no output",
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flux", action="store_true", help="also run the 24 GB Flux bf16 -> fp8 case")
    ap.add_argument("--only-flux", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the outputs")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side (median time, max peak memory)")
    ap.add_argument("--cold", action="store_true", help="drop the page cache before each run (root)")
    ap.add_argument("--build-sd15", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_sd15:
        build_sd15(Path(args.build_sd15))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    if not args.only_flux:
        sd15_case(rows, args.repeat, args.cold)
    if args.flux or args.only_flux:
        flux_case(rows)
    print()
    print(f"{'case':58} {'peer s':>7} {'peer MB':>8} {'ours s':>7} {'ours MB':>8} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['case']:58} {r['peer_s'] or '-':>7} {r['peer_rss_mb'] or '-':>8} {r['ours_s']:>7} "
            f"{r['ours_rss_mb']:>8} {r['ratio'] or '-':>6}"
        )
        print(
            f"  identical tensors: {r['identical_tensors']}; different: {r['different']}; "
            f"exit codes peer {r['peer_exit']} ours {r['ours_exit']}"
        )
    print(json.dumps(rows, indent=1))
    if not args.keep:
        for name in ("peer-fp16.safetensors", "ours-fp16.safetensors", "flux-fp8.safetensors"):
            (WORK / name).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
