"""Shared pytest fixtures."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builders import Layout, write_sparse_safetensors


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the hash cache and library database out of the user's home."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("XDG_CACHE_HOME", str(base / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(base / "data"))


@pytest.fixture(autouse=True)
def _english(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Messages in English whatever the machine's locale: the tests compare English output (the
    Russian tests ask for Russian themselves, with set_language or LANG for a subprocess, and a
    ``--lang ru`` run in this process does not carry over to the next test)."""
    from sdmodel.i18n import set_language

    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")
    set_language(None)
    yield
    set_language(None)


@pytest.fixture(autouse=True)
def _free_tmp_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remove a test's temp folder when it ends: the convert and library tests write real SD-sized
    outputs (hundreds of MB each), and a whole run would otherwise keep tens of GB on the disk."""
    yield
    path = getattr(request.node, "funcargs", {}).get("tmp_path")
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sparse(tmp_path: Path):
    """Factory: ``sparse(layout, name="model.safetensors", metadata=None) -> Path``."""

    def make(lay: Layout, name: str = "model.safetensors", metadata: dict[str, str] | None = None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_sparse_safetensors(path, lay, metadata)

    return make
