"""`sdmodel info` end to end as a user runs it: JSON fields, directories, bad files, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from sdmodel.cli import main_group
from tests import families as fam
from tests.builders import shrink, with_ema, write_ckpt

ISSUE_FIELDS = {
    "path",
    "format",
    "size_bytes",
    "kind",
    "family",
    "variant",
    "prediction",
    "components",
    "ema",
    "clip_position_ids",
    "junk",
    "markers",
    "a1111_config",
    "modelspec_architecture",
    "metadata",
    "sidecars",
    "advice",
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdmodel", *args], capture_output=True, text=True, timeout=120)


def test_info_json_single_file(sparse):
    path = sparse(with_ema(fam.sd1()), name="sd15.safetensors")
    r = run("info", str(path), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) >= ISSUE_FIELDS
    assert d["kind"] == "checkpoint" and d["family"] == "sd1" and d["ema"]["present"]


def test_info_human_output(sparse):
    r = run("info", str(sparse(fam.sdxl(), name="xl.safetensors")))
    assert r.returncode == 0, r.stderr
    assert "SDXL checkpoint" in r.stdout and "text_encoder_2" in r.stdout and "sd_xl_base.yaml" in r.stdout


def test_info_directory_walk_goes_on_after_a_bad_file(sparse, tmp_path):
    sparse(fam.sd1(), name="models/a/sd15.safetensors")
    sparse(fam.vae_only(), name="models/vae.safetensors")
    bad = tmp_path / "models" / "b" / "broken.ckpt"
    bad.parent.mkdir(parents=True)
    bad.write_text("not a checkpoint at all")
    (tmp_path / "models" / "readme.txt").write_text("ignored")
    r = run("info", str(tmp_path / "models"), "--json")
    assert r.returncode == 2
    out = json.loads(r.stdout)
    errors = {o["path"].split("/")[-1]: "error" in o for o in out}
    assert errors == {"sd15.safetensors": False, "vae.safetensors": False, "broken.ckpt": True}
    assert "not a model file" in next(o["error"] for o in out if "error" in o)
    assert "Traceback" not in r.stderr


def test_info_torch_checkpoint(tmp_path):
    path = write_ckpt(tmp_path / "sd15.ckpt", shrink(with_ema(fam.sd1())), extras={"global_step": 840000})
    r = run("info", str(path), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["format"], d["kind"], d["family"]) == ("torch-zip", "checkpoint", "sd1")
    assert d["extras"].get("global_step") == 840000
    assert any("safetensors" in w for w in d["advice"]["generate"]["why"])


def test_info_legacy_checkpoint(tmp_path):
    path = write_ckpt(tmp_path / "old.ckpt", shrink(fam.sd1()), legacy=True)
    r = run("info", str(path), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["format"] == "torch-legacy"


def test_bad_inputs_one_line_exit_2(tmp_path):
    cases = {
        "empty.safetensors": b"",
        "text.ckpt": b"just some text renamed to ckpt\n",
        "trunc.safetensors": (100).to_bytes(8, "little") + b'{"a":',
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        r = run("info", str(p))
        assert r.returncode == 2, name
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and "Traceback" not in r.stderr


def test_missing_path(tmp_path):
    r = run("info", str(tmp_path / "nope.safetensors"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_forbidden_global_and_missing_storage_are_one_line_errors(tmp_path):
    import zipfile

    import torch

    evil = tmp_path / "evil.ckpt"
    payload = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00echoq\x01\x85q\x02Rq\x03."  # never unpickled
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    r = run("info", str(evil))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "forbidden global posix.system" in r.stderr

    good = tmp_path / "good.ckpt"
    torch.save({"a": torch.ones(3), "b": torch.zeros(2)}, str(good))
    broken = tmp_path / "missing-storage.ckpt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(broken, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("/data/1"):
                dst.writestr(item, src.read(item))
    r = run("info", str(broken))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "missing-storage.ckpt" in r.stderr


def test_a_folder_without_models_is_a_usage_error(tmp_path: Path) -> None:
    for command in ("info", "scan"):
        res = CliRunner().invoke(main_group, [command, str(tmp_path)])
        assert res.exit_code == 2 and "no model files found in" in res.output, res.output
