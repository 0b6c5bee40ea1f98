"""``sdmodel scan`` command line: tables, JSON, folders, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from sdmodel.cli import main_group
from tests.security_corpus import CASES


def _write(case_id: str, directory: Path) -> Path:
    return next(c for c in CASES if c.id == case_id).write(directory)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main_group, ["scan", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_exit_status_safe_dangerous_error(tmp_path: Path) -> None:
    safe = _write("c01-modern-zip", tmp_path)
    bad = _write("c07-obj", tmp_path)
    sus = _write("c23-crc-benign", tmp_path)
    err = _write("c33-7z", tmp_path)
    assert _run(str(safe))[0] == 0
    code, out = _run(str(bad))
    assert code == 1 and "dangerous" in out and "1 file" in out
    assert _run(str(sus))[0] == 1
    assert _run(str(err))[0] == 2
    assert _run(str(safe), str(bad), str(err))[0] == 2
    assert _run(str(tmp_path / "missing.ckpt"))[0] == 2


def test_json_single_and_many(tmp_path: Path) -> None:
    bad = _write("c18-second-pickle", tmp_path)
    safe = _write("c05-embedding", tmp_path)
    code, out = _run(str(bad), "--json")
    obj = json.loads(out)
    assert code == 1 and obj["verdict"] == "dangerous" and obj["path"] == str(bad)
    assert all({"severity", "code", "message", "member", "offset"} <= f.keys() for f in obj["findings"])
    code, out = _run(str(bad), str(safe), "--json")
    items = json.loads(out)
    assert [i["verdict"] for i in items] == ["dangerous", "safe"] and items[1]["notes"] is True


def test_folder_recursion_sniffs_content(tmp_path: Path) -> None:
    sub = tmp_path / "models" / "deep"
    sub.mkdir(parents=True)
    _write("h-yaml-sidecar", sub)  # .ckpt + .yaml sidecar: one row
    hidden = _write("c07-global-reduce-p2", sub).rename(sub / "weights")  # no extension, pickle content
    (sub / "README.txt").write_text("not a model")
    code, out = _run(str(tmp_path), "--json")
    items = json.loads(out)
    assert sorted(Path(i["path"]).name for i in items) == ["h-yaml-sidecar.ckpt", hidden.name]
    assert code == 1


def test_yaml_sidecar_flags_the_checkpoint(tmp_path: Path) -> None:
    ckpt = _write("y-yaml-target", tmp_path)
    code, out = _run(str(ckpt), "--json")
    obj = json.loads(out)
    assert code == 1
    assert any(f["code"] == "yaml-target" and f["member"].endswith(".yaml") for f in obj["findings"])


def test_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main_group, ["scan", str(tmp_path)])
    assert result.exit_code == 2 and "no model files" in result.output
