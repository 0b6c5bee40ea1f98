"""Benchmark: dequantizing a Flux-shaped GGUF Q8_0 and a ComfyUI fp8-scaled file to bf16.

    .venv/bin/python bench/dequant.py                  # 4 double + 8 single blocks (~2.7 GB Q8_0)
    .venv/bin/python bench/dequant.py --double 19 --single 38   # the full 12B Flux (~12.7 GB Q8_0)
    .venv/bin/python bench/dequant.py --repeat 3 --baseline /tmp/old/src   # also an older package

``sdmodel`` runs as ``python -m sdmodel`` from this checkout's ``src`` (``--baseline``: another
``src`` directory, run alternately with ours), with an empty hash cache (the source is hashed, as
in a first conversion).

Inputs are built once in bench/_work/dequant (gitignored): the real Flux.1 names and shapes
(BFL / ComfyUI layout) with a chosen number of blocks, random Q8_0 blocks (finite fp16 scales)
written by gguf-py's GGUFWriter, and fp8 e4m3 weights with an fp32 ``scale_weight`` each plus the
``scaled_fp8`` marker (ComfyUI's legacy layout). Contenders, each in its own process after one
warm-up read of the input:

- ``sdmodel convert IN --dtype bf16``: the full streaming conversion, output written and fsynced;
- sdmodel's dequantization alone: every tensor read through ``DequantizedSource`` (no write, no
  hashes), the same work as the peer's;
- the peer's math alone over the same tensors, no output: gguf-py ``GGUFReader`` +
  ``gguf.quants.dequantize`` + cast to bf16; for fp8, torch ``w.to(bf16) * scale.to(bf16)``
  (ComfyUI's dequantization);
- reading the file once (16 MB chunks): the disk-read floor;
- writing as many bytes as the bf16 output holds, then fsync (through the page cache, and through
  sdmodel's output file, which bypasses it where the file system allows): the disk-write floor, which the
  whole command pays and the in-memory peers do not.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "_work" / "dequant"
PY = sys.executable
SDMODEL = [PY, "-m", "sdmodel"]
sys.path.insert(0, str(ROOT))

from bench.convert import measure  # noqa: E402


def flux_layout(double: int, single: int) -> dict[str, tuple[int, ...]]:
    """Flux.1-dev names and shapes (hidden 3072, MLP 12288, 24 heads of 128)."""
    h, m = 3072, 12288
    lay: dict[str, tuple[int, ...]] = {
        "img_in.weight": (h, 64),
        "img_in.bias": (h,),
        "txt_in.weight": (h, 4096),
        "txt_in.bias": (h,),
    }
    for emb, width in (("time_in", 256), ("guidance_in", 256), ("vector_in", 768)):
        lay |= {f"{emb}.in_layer.weight": (h, width), f"{emb}.in_layer.bias": (h,)}
        lay |= {f"{emb}.out_layer.weight": (h, h), f"{emb}.out_layer.bias": (h,)}
    for i in range(double):
        for s in ("img", "txt"):
            p = f"double_blocks.{i}.{s}_"
            lay |= {p + "mod.lin.weight": (6 * h, h), p + "mod.lin.bias": (6 * h,)}
            lay |= {p + "attn.qkv.weight": (3 * h, h), p + "attn.qkv.bias": (3 * h,)}
            lay |= {p + "attn.norm.query_norm.scale": (128,), p + "attn.norm.key_norm.scale": (128,)}
            lay |= {p + "attn.proj.weight": (h, h), p + "attn.proj.bias": (h,)}
            lay |= {
                p + "mlp.0.weight": (m, h),
                p + "mlp.0.bias": (m,),
                p + "mlp.2.weight": (h, m),
                p + "mlp.2.bias": (h,),
            }
    for i in range(single):
        p = f"single_blocks.{i}."
        lay |= {p + "linear1.weight": (3 * h + m, h), p + "linear1.bias": (3 * h + m,)}
        lay |= {p + "linear2.weight": (h, h + m), p + "linear2.bias": (h,)}
        lay |= {p + "norm.query_norm.scale": (128,), p + "norm.key_norm.scale": (128,)}
        lay |= {p + "modulation.lin.weight": (3 * h, h), p + "modulation.lin.bias": (3 * h,)}
    lay |= {"final_layer.linear.weight": (64, h), "final_layer.linear.bias": (64,)}
    lay |= {"final_layer.adaLN_modulation.1.weight": (2 * h, h), "final_layer.adaLN_modulation.1.bias": (2 * h,)}
    return lay


def build_gguf(path: Path, lay: dict[str, tuple[int, ...]]) -> None:
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path.with_suffix(".tmp")), "flux")
    for name, shape in lay.items():
        if len(shape) == 1:
            w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))
            continue
        blocks = shape[0] * shape[1] // 32
        raw = rng.integers(-127, 128, (blocks, 34), dtype=np.int8).view(np.uint8)
        raw[:, :2] = np.frombuffer(np.float16(0.0002).tobytes(), dtype=np.uint8)  # d: a real-scale fp16
        w.add_tensor(name, raw.reshape(shape[0], shape[1] // 32 * 34), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    path.with_suffix(".tmp").rename(path)


def build_fp8(path: Path, lay: dict[str, tuple[int, ...]]) -> None:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    sd = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    for name, shape in lay.items():
        if len(shape) == 1:
            sd[name] = (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16)
            continue
        codes = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        codes[(codes & 0x7F) == 0x7F] = 0  # no NaN codes
        sd[name] = codes.view(torch.float8_e4m3fn)
        sd[name[: -len("weight")] + "scale_weight"] = torch.tensor(float(np.float32(0.02 / 448 * 1.37)))
    save_file(sd, str(path.with_suffix(".tmp")))
    path.with_suffix(".tmp").rename(path)


PEER_GGUF = r"""
import sys, numpy as np, ml_dtypes, gguf
from gguf.quants import dequantize
r = gguf.GGUFReader(sys.argv[1])
for t in r.tensors:
    dequantize(t.data, t.tensor_type).astype(ml_dtypes.bfloat16)
"""

PEER_FP8 = r"""
import sys, torch
from safetensors import safe_open
with safe_open(sys.argv[1], "pt") as f:
    keys = set(f.keys())
    for k in keys:
        if k.endswith("scale_weight") or k == "scaled_fp8":
            continue
        w = f.get_tensor(k)
        s = k[: -len("weight")] + "scale_weight"
        if s in keys:
            w.to(torch.bfloat16) * f.get_tensor(s).to(torch.bfloat16)   # ComfyUI's math
        else:
            w.to(torch.bfloat16)
"""

WRITE = r"""
import os, sys
size, chunk = int(sys.argv[2]), bytearray(os.urandom(1 << 20)) * 16
with open(sys.argv[1], "wb") as f:
    for _ in range(size // len(chunk)):
        f.write(chunk)
    f.write(chunk[: size % len(chunk)])
    f.flush()
    os.fsync(f.fileno())
os.unlink(sys.argv[1])
"""

WRITE_OURS = r"""
import os, sys
from sdmodel.output_file import OutputFile
size, chunk = int(sys.argv[2]), bytearray(os.urandom(1 << 20)) * 16
with OutputFile(sys.argv[1]) as f:
    for _ in range(size // len(chunk)):
        f.write(chunk)
    f.write(chunk[: size % len(chunk)])
    f.flush()
    os.fsync(f.fileno())
os.unlink(sys.argv[1])
"""

OURS_IN_MEMORY = r"""
import sys
from sdmodel.formats import open_model
from sdmodel.quant.view import DequantizedSource
with DequantizedSource(open_model(sys.argv[1]), "BF16") as view:
    for name in view.tensors:
        view.read_bits(name)   # what the engine reads: bf16 as uint16 bits
"""

READ = r"""
import sys
with open(sys.argv[1], "rb", buffering=0) as f:
    buf = bytearray(16 << 20)
    while f.readinto(buf):
        pass
"""


def check_output(kind: str, src: Path, out: Path) -> str:
    """Compare the output with the peer's values on every weight: bit-identical or not."""
    import ml_dtypes  # also registers bfloat16, which safetensors' numpy loader needs
    import numpy as np
    from safetensors import safe_open

    with safe_open(str(out), "np") as fo:
        names = list(fo.keys())
        if kind == "gguf":
            import gguf

            r = gguf.GGUFReader(str(src))
            for t in r.tensors:
                want = gguf.quants.dequantize(t.data, t.tensor_type).astype(ml_dtypes.bfloat16)
                got = fo.get_tensor(t.name)
                if not np.array_equal(want.reshape(got.shape).view(np.uint16), got.view(np.uint16)):
                    return f"DIFFERS at {t.name}"
        else:
            import torch

            with safe_open(str(src), "pt") as fs:
                keys = set(fs.keys())
                for k in names:
                    w = fs.get_tensor(k)
                    s = k[: -len("weight")] + "scale_weight"
                    want = (
                        w.to(torch.bfloat16) * fs.get_tensor(s).to(torch.bfloat16)
                        if s in keys
                        else w.to(torch.bfloat16)
                    )
                    got = torch.from_numpy(fo.get_tensor(k).view(np.uint16).copy()).view(torch.bfloat16)
                    if not torch.equal(want.view(torch.int16), got.view(torch.int16)):
                        return f"DIFFERS at {k}"
    return f"bit-identical ({len(names)} tensors)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--double", type=int, default=4)
    ap.add_argument("--single", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each contender, alternated; the best is kept")
    ap.add_argument("--baseline", type=Path, help="another package's src directory, run as a contender too")
    ap.add_argument("--only", choices=("gguf", "fp8"), help="one input only")
    args = ap.parse_args()
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="sdmodel-bench-cache-")  # no cached source hashes
    WORK.mkdir(parents=True, exist_ok=True)
    lay = flux_layout(args.double, args.single)
    tag = f"{args.double}d{args.single}s"
    cases = [
        ("gguf", WORK / f"flux-{tag}-Q8_0.gguf", build_gguf, PEER_GGUF, "gguf-py dequantize + bf16 cast (no write)")
    ]
    cases.append(
        ("fp8", WORK / f"flux-{tag}-fp8-scaled.safetensors", build_fp8, PEER_FP8, "torch w.to(bf16)*scale (no write)")
    )
    rows = []
    for kind, src, build, peer, peer_name in cases:
        if args.only and kind != args.only:
            continue
        if not src.exists():
            t = time.perf_counter()
            build(src, lay)
            print(
                f"built {src.name} ({src.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", flush=True
            )
        out = WORK / f"{src.stem}-bf16.safetensors"
        out_size = 2 * sum(math.prod(shape) for shape in lay.values())  # the bf16 data section
        size = src.stat().st_size
        measure([PY, "-c", READ, str(src)])  # warm the page cache
        convert = [*SDMODEL, "convert", str(src), "--dtype", "bf16", "--overwrite", "-o"]
        contenders = [("sdmodel convert --dtype bf16", [*convert, str(out)], str(ROOT / "src"))]
        base_out = out.with_name(out.stem + "-baseline.safetensors")
        if args.baseline:
            contenders.append(("sdmodel convert --dtype bf16, baseline", [*convert, str(base_out)], str(args.baseline)))
        contenders += [
            ("sdmodel's dequantization alone (no write)", [PY, "-c", OURS_IN_MEMORY, str(src)], str(ROOT / "src")),
            (peer_name, [PY, "-c", peer, str(src)], None),
            ("read the file once", [PY, "-c", READ, str(src)], None),
            ("write the output's size once (+ fsync)", [PY, "-c", WRITE, str(out) + ".w", str(out_size)], None),
            (
                "the same through sdmodel's output file (direct I/O)",
                [PY, "-c", WRITE_OURS, str(out) + ".w", str(out_size)],
                str(ROOT / "src"),
            ),
        ]
        best: dict[str, tuple[float, int]] = {}
        for _ in range(args.repeat):  # round robin: a load change hits every contender alike
            for name, cmd, code in contenders:
                if code is not None:
                    os.environ["PYTHONPATH"] = code
                wall, peak, status = measure(cmd)
                os.environ.pop("PYTHONPATH", None)
                if status:
                    raise SystemExit(f"{name} failed with status {status}")
                print(f"{src.name}: {name}: {wall:.1f} s, {peak} MB, load {os.getloadavg()[0]:.1f}", flush=True)
                if name not in best or wall < best[name][0]:
                    best[name] = (wall, peak)
        for name, _, _ in contenders:
            rows.append((src.name, size, name, *best[name]))
        rows.append((src.name, size, "output check", check_output(kind, src, out), 0))
        out.unlink()
        base_out.unlink(missing_ok=True)
    print("\n| input | contender | wall s | MB/s of input | peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    for name, size, who, wall, peak in rows:
        if isinstance(wall, str):
            print(f"| {name} | output vs peer | {wall} | | |")
        else:
            print(f"| {name} ({size / 1e9:.2f} GB) | {who} | {wall:.1f} | {size / 1e6 / wall:,.0f} | {peak:,} MB |")


if __name__ == "__main__":
    main()
