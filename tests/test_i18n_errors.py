"""Errors in the user's language: one line, exit status 2, the same English as str(error) under C."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sdmodel.errors import ConversionError, ModelReadError, error_message, error_text
from sdmodel.formats import open_model
from sdmodel.i18n import Msg, set_language


class _System:
    """Pickles as a call of os.system: what a hostile checkpoint asks for."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo owned",))


def truncated_safetensors(path: Path) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(100))
    return path


def not_a_model(path: Path) -> Path:
    path.write_text("hello, not a model")
    return path


def hostile_pickle(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": _System()}, protocol=2))
        z.writestr("archive/version", "3\n")
    return path


def run(*args: str, lang: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env["LANG"] = lang
    env["COLUMNS"] = "200"  # findings on one line each
    return subprocess.run([sys.executable, "-m", "sdmodel", *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize(
    ("make", "russian"),
    [
        (truncated_safetensors, "файл обрезан: тензорам нужно 4000 байт данных, а в файле 100"),
        (not_a_model, "это не файл модели (не safetensors, не GGUF, не чекпойнт PyTorch и не папка diffusers)"),
        (hostile_pickle, "запрещённый global posix.system на байте 13 в archive/data.pkl"),
    ],
)
def test_cli_errors_in_russian_and_english(tmp_path: Path, make, russian: str) -> None:
    path = make(tmp_path / "model.bin")
    with pytest.raises(ModelReadError) as caught:
        open_model(path)
    ru = run("info", str(path), lang="ru_RU.UTF-8")
    assert ru.returncode == 2 and ru.stdout == ""
    assert ru.stderr.count("\n") == 1 and f"{path}: {russian}" in ru.stderr
    en = run("info", str(path), lang="C")
    assert en.returncode == 2 and en.stderr.count("\n") == 1
    assert en.stderr.rstrip("\n").endswith(str(caught.value))  # the English of --json and logs
    assert not any("\u0400" <= ch <= "\u04ff" for ch in en.stderr)


def test_usage_errors_in_russian(tmp_path: Path) -> None:
    ru = run("convert", str(tmp_path), lang="ru_RU.UTF-8")
    assert ru.returncode == 2 and "это папка: добавьте --recursive" in ru.stderr


@pytest.fixture
def russian():
    set_language("ru")
    yield
    set_language(None)


def test_a_wrapped_error_is_translated_as_a_whole(russian: None) -> None:
    inner = ModelReadError(Msg("{path}: file is empty", path="a.ckpt"))
    outer = ConversionError(Msg("{path}: could not hash the source: {error}", path="b", error=error_message(inner)))
    assert str(outer) == "b: could not hash the source: a.ckpt: file is empty"
    assert error_text(outer) == "b: не удалось посчитать хеш исходного файла: a.ckpt: файл пустой"
    assert error_message(ValueError(Msg("file too short"))) == Msg("file too short")  # made from a Msg
    assert error_text(OSError(2, "No such file or directory")) == "[Errno 2] No such file or directory"


def test_scan_findings_in_russian_json_in_english(tmp_path: Path) -> None:
    path = hostile_pickle(tmp_path / "model.ckpt")
    ru = run("scan", str(path), lang="ru_RU.UTF-8")
    assert ru.returncode == 1 and "выполняет код" in ru.stdout and "разрешённых" in ru.stdout
    shown = run("scan", "--json", str(path), lang="ru_RU.UTF-8")
    messages = [f["message"] for f in json.loads(shown.stdout)["findings"]]
    assert "REDUCE calls posix.system, which is not allow-listed" in messages
    assert "global posix.system: module posix runs code or touches the system" in messages
