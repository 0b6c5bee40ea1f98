"""``scan|info --from LIST --jobs N --json-lines``: processes, resume, and the same work on Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdmodel import batch
from tests import families as fam
from tests.builders import write_sparse_safetensors


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sdmodel", *args], capture_output=True, text=True, timeout=180, cwd=cwd
    )


@pytest.fixture
def model_list(tmp_path: Path) -> Path:
    write_sparse_safetensors(tmp_path / "sd15.safetensors", fam.sd1())
    write_sparse_safetensors(tmp_path / "vae.safetensors", fam.vae_only())
    write_sparse_safetensors(tmp_path / "lora.safetensors", fam.lora_kohya())
    (tmp_path / "broken.ckpt").write_bytes(b"PK\x03\x04 not really a zip")
    names = ["sd15.safetensors", "vae.safetensors", "lora.safetensors", "broken.ckpt"]
    listing = tmp_path / "list.txt"
    listing.write_text(
        "# models\n" + "\n".join(str(tmp_path / n) for n in names) + "\n\n" + str(tmp_path / names[0]) + "\n"
    )
    return listing


def lines(text: str) -> dict[str, dict]:
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {Path(r["path"]).name: r for r in records}


def test_info_json_lines_one_per_file(model_list):
    r = run("info", "--from", str(model_list), "--json-lines")
    assert r.returncode == 2, r.stderr  # one file cannot be read
    out = lines(r.stdout)
    assert set(out) == {"sd15.safetensors", "vae.safetensors", "lora.safetensors", "broken.ckpt"}
    assert out["sd15.safetensors"]["family"] == "sd1" and out["vae.safetensors"]["kind"] == "vae"
    assert "error" in out["broken.ckpt"] and "zip" in out["broken.ckpt"]["error"]
    assert "4 files in" in r.stderr and "1 unreadable" in r.stderr


def test_jobs_2_gives_the_same_records(model_list):
    one = lines(run("scan", "--from", str(model_list), "--json-lines").stdout)
    two = lines(run("scan", "--from", str(model_list), "--jobs", "2").stdout)

    def strip(d: dict) -> dict:
        return {k: {kk: vv for kk, vv in v.items() if kk != "seconds"} for k, v in d.items()}

    assert strip(one) == strip(two)
    assert one["sd15.safetensors"]["verdict"] == "safe" and one["broken.ckpt"]["verdict"] == "error"


def test_resume_skips_what_the_output_holds(model_list, tmp_path):
    out = tmp_path / "out.jsonl"
    sd15 = str(tmp_path / "sd15.safetensors")
    broken = str(tmp_path / "broken.ckpt")
    # A previous run: one good record, one failure, and a line torn by an interruption.
    out.write_text(
        json.dumps({"path": sd15, "verdict": "safe"})
        + "\n"
        + json.dumps({"path": broken, "error": "x"})
        + '\n{"path": "'
    )
    assert batch.done_items(out) == {sd15}
    r = run("scan", "--from", str(model_list), "--output", str(out))
    assert "1 already in" in r.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()[3:] if line.strip()]
    assert sorted(Path(x["path"]).name for x in records) == ["broken.ckpt", "lora.safetensors", "vae.safetensors"]
    r = run("scan", "--from", str(model_list), "--output", str(out))
    assert "3 already in" in r.stderr and "1 file in" in r.stderr  # only the unreadable one again


def test_bad_arguments(tmp_path):
    r = run("info", "--from", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot read the list" in r.stderr
    r = run("scan", "--jobs", "0", "x")
    assert r.returncode == 2
    with pytest.raises(ValueError, match="kind must be one of scan, info"):
        batch.BatchOptions("hash")  # type: ignore[arg-type]


def test_read_list(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text(" a \n#c\n\nb\na\n")
    assert batch.read_list(p) == ["a", "b"]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"Ray cannot start here: {e}")
    yield ray
    ray.shutdown()


def test_ray_runs_the_same_work(model_list, local_ray, tmp_path):
    items = batch.read_list(model_list)
    got: list[dict] = []
    summary = batch.run(batch.BatchOptions("scan"), items, got.append, ray_address=batch.LOCAL_RAY)
    local: list[dict] = []
    batch.run(batch.BatchOptions("scan"), items, local.append)
    assert summary.done == 4 and summary.failed == 1
    key = {r["path"]: r["verdict"] for r in local}
    assert {r["path"]: r["verdict"] for r in got} == key
    # The CLI pointed at that running instance by address, as at a cluster.
    address = local_ray.get_runtime_context().gcs_address
    r = run("info", "--from", str(model_list), "--ray", address, "--json-lines")
    assert set(lines(r.stdout)) == {Path(p).name for p in items}, r.stderr
    assert f"Ray ({address})" in r.stderr


def test_local_ray_prints_no_token_and_no_auth_notice(model_list, tmp_path):
    """Ray's own notice about its cluster token is silenced for the instance we start; no token
    (ours from the environment, or Ray's) appears in the output."""
    pytest.importorskip("ray")
    secret = "hf_NotShownAnywhere0123456789"
    r = subprocess.run(
        [sys.executable, "-m", "sdmodel", "scan", "--from", str(model_list), "--ray", "--json-lines"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "HF_TOKEN": secret, "CIVITAI_TOKEN": secret, "RAY_ADDRESS": ""},
    )
    assert "Ray (local)" in r.stderr, r.stderr
    assert "Token authentication" not in r.stderr
    assert secret not in r.stdout + r.stderr
    ray_token = Path.home() / ".ray" / "auth_token"
    if ray_token.is_file() and ray_token.read_text().strip():
        assert ray_token.read_text().strip() not in r.stdout + r.stderr
