"""`sdmodel info` on a 7.7 GB fp32 SD 1.5 checkpoint with EMA (torch zip), against listing its
tensors with torch.load(weights_only=True), in the same run.

    .venv/bin/python -m bench.info
"""

from __future__ import annotations

from bench.common import print_table, sd15_ema_ckpt, timed_subprocess, warm


def main() -> None:
    path = sd15_ema_ckpt()
    warm(path)
    ours, ours_rss = timed_subprocess(
        f"import sdmodel\nr = sdmodel.inspect({str(path)!r})\nassert r.kind == 'checkpoint'\n"
    )
    cli, _ = timed_subprocess(
        "import sys\nfrom sdmodel.cli import main\nsys.argv=['sdmodel','info','--json',"
        f"{str(path)!r}]\nimport contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
    )
    peer, peer_rss = timed_subprocess(
        "import torch\n"
        f"sd = torch.load({str(path)!r}, map_location='cpu', weights_only=True)['state_dict']\n"
        "names = [(k, tuple(v.shape), v.dtype) for k, v in sd.items()]\n",
        repeat=2,
    )
    size = path.stat().st_size / 1e9
    print_table(
        f"info on {path.name} ({size:.2f} GB, torch zip)",
        ["contender", "wall s (median)", "peak RSS MB", "ratio vs peer"],
        [
            ["sdmodel.inspect (API)", f"{ours:.3f}", f"{ours_rss / 1e6:.0f}", f"{peer / ours:.0f}x faster"],
            ["sdmodel info --json (CLI in-process)", f"{cli:.3f}", "-", f"{peer / cli:.0f}x faster"],
            ["torch.load(weights_only=True) + list", f"{peer:.3f}", f"{peer_rss / 1e6:.0f}", "1x"],
        ],
    )


if __name__ == "__main__":
    main()
