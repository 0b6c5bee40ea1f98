"""Mutation fuzzing of the readers (bounded: about 20 s; ``bench/fuzz.py`` runs longer): every
mutant of every format row is refused with an sdmodel error or read, never a crash or a hang."""

from __future__ import annotations

from pathlib import Path

from tests.fuzzing import SEEDS, exercise, fuzz

SECONDS = 20.0


def test_seeds_are_honest_files(tmp_path: Path) -> None:
    for seed in SEEDS:
        if seed.available():
            path = tmp_path / f"{seed.name}{seed.suffix}"
            seed.build(path)
            assert exercise(path) is None, seed.name


def test_mutants_never_crash_or_hang(tmp_path: Path) -> None:
    result = fuzz(tmp_path, SECONDS, seed=20261205)
    assert result.failures == [], "\n".join(f"{fmt} {path}: {problem}" for fmt, path, problem in result.failures)
    assert all(result.files[s.name] >= 50 for s in SEEDS if s.available()), result.files
