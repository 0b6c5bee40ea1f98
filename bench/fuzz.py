"""A long mutation-fuzz run of the readers (the short one is part of ``make test``).

    .venv/bin/python bench/fuzz.py [--minutes 4] [--seed 1]

Mutates an honest file of every format row of ``tests/fuzzing.py`` (torch zip, legacy, embedding,
safetensors, and GGUF once its reader exists) and runs each mutant through ``inspect`` and ``scan``.
Prints mutants per format, failures (crash = an exception that is not an sdmodel error, hang = more
than 10 s on one file, or an internal scanner error) and the rate. Failing mutants are kept in
bench/_work/fuzz for reproduction.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzzing import fuzz  # noqa: E402

WORK = ROOT / "bench" / "_work" / "fuzz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    result = fuzz(WORK, args.minutes * 60, seed=args.seed)
    total = sum(result.files.values())
    print("| format | mutants |")
    print("|---|---|")
    for name, n in result.files.items():
        print(f"| {name} | {n} |")
    print(f"| total | {total} ({total / result.seconds:.0f}/s over {result.seconds:.0f} s) |")
    print(f"\nfailures: {len(result.failures)}")
    for fmt, path, problem in result.failures[:20]:
        print(f"  {fmt} {path}: {problem}")
    sys.exit(1 if result.failures else 0)


if __name__ == "__main__":
    main()
