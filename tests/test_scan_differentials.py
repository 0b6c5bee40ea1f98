"""Files where torch's readers and the format specs disagree (docs/loader-differentials.md): torch
really runs each one, and ``sdmodel scan`` calls each one dangerous.

The proof loads the file with ``torch.load(weights_only=False)``; the payload only creates a marker
file in the test's temporary directory (``os.system('touch sdmodel-loader-marker')``).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from sdmodel.formats.pickle_vm import run_pickle
from sdmodel.security.scanner import scan
from tests.security_corpus import CASES, MARKER, Case, _frame_split

DIFFERENTIALS = [c for c in CASES if c.runs_in_torch]


@pytest.mark.parametrize("case", DIFFERENTIALS, ids=[c.id for c in DIFFERENTIALS])
def test_torch_runs_it_and_scan_says_dangerous(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    path = case.write(tmp_path)
    report = scan(path)
    assert report.verdict == "dangerous", [(f.code, f.message) for f in report.findings]
    assert any("os.system" in str(f.message) for f in report.findings if f.severity == "dangerous")
    with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
        torch.load(path, weights_only=False)  # the harmless payload creates MARKER, then torch may fail
    assert (tmp_path / MARKER).exists(), f"{case.id}: torch.load did not run the payload"


def test_frame_split_readings_differ_as_in_cpython() -> None:
    """pickle.loads (bytes in memory) reads the hidden call as string data, the stream reading runs it."""
    data = _frame_split(b"B")
    spec = run_pickle(data, strict=False)
    stream = run_pickle(data, strict=False, stream=True)
    assert spec.complete and not spec.calls and "frame-mismatch" in [f.code for f in spec.findings]
    assert [c.func.qualname for c in stream.calls if c.func] == ["os.system"]
    assert "frame-split" in [f.code for f in stream.findings]


def test_corpus_has_differentials_for_zip_frames_and_tar() -> None:
    ids = {c.id.split("-")[1] for c in DIFFERENTIALS}
    assert {"zip", "frame", "tar"} <= ids
