"""The CLI in Russian: reports and advice translated, JSON the same in every language."""

from __future__ import annotations

import gettext
import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from safetensors.numpy import save_file

from sdmodel.cli import main
from sdmodel.cli.click_texts import CLICK_PLURALS, CLICK_TEXTS
from tests import families as fam
from tests.builders import arrays, shrink, with_ema

CLIP_KEY = "cond_stage_model.transformer.text_model.embeddings.position_ids"


def demo_like(path: Path) -> Path:
    """What scripts/make_demo.py writes, small: SD 1.5 with a full EMA set, a junk key and CLIP
    position ids broken the way float merges break them."""
    tensors = arrays(shrink(with_ema(fam.sd1())))
    tensors["embedding_manager.embedder.transformer.text_model.final_layer_norm.weight"] = np.ones(8, np.float32)
    ids = np.arange(77, dtype=np.float32)
    ids[[38, 76]] -= np.float32(0.0025)
    tensors[CLIP_KEY] = ids.reshape(1, 77)
    save_file(tensors, str(path), metadata={"modelspec.title": "sdmodel demo"})
    return path


def run(*args: str, lang: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env |= {"LANG": lang, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "sdmodel", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_info_in_russian(tmp_path: Path) -> None:
    model = demo_like(tmp_path / "sd15-demo.safetensors")
    out = run("info", str(model), lang="ru_RU.UTF-8")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for phrase in (
        "совет: это чекпоинт SD 1.x: положите файл в ComfyUI/models/checkpoints",
        "для генерации: fp16 safetensors, без EMA",
        "1 мусорный тензор, который не нужен ни одному загрузчику",
        "СЛОМАНЫ в 2 позициях",
        "для обучения: fp32 safetensors с EMA",
        "есть: ",
        "тензоров",
    ):
        assert phrase in text, phrase
    for english in ("advice:", "for generating", "for training", "junk tensor", "BROKEN", "saves"):
        assert english not in text, english
    words = " ".join(text.split())  # the command may wrap after a long temporary path
    assert "Load Checkpoint" in words and "--ema drop" in words  # names and commands stay as they are


def test_json_is_the_same_in_every_language(tmp_path: Path) -> None:
    model = demo_like(tmp_path / "sd15-demo.safetensors")
    for command in (["info", "--json", str(model)], ["scan", "--json", str(model)]):
        ru = run(*command, lang="ru_RU.UTF-8")
        en = run(*command, lang="C")
        assert ru.returncode == en.returncode == 0, ru.stderr
        assert ru.stdout == en.stdout
        assert "safetensors" in en.stdout and not any("\u0400" <= ch <= "\u04ff" for ch in ru.stdout)


def test_convert_plan_and_help_in_russian(tmp_path: Path) -> None:
    model = demo_like(tmp_path / "sd15-demo.safetensors")
    out = run("convert", str(model), "--dtype", "fp16", "--ema", "drop", "--prune", "--dry-run", lang="ru_RU.UTF-8")
    assert out.returncode == 0, out.stderr
    assert "EMA: убрано 688 тензоров" in out.stdout and "prune: убран 1 тензор" in out.stdout
    assert "пробный запуск: ничего не записано" in out.stdout
    helped = run("--lang", "ru", "convert", "--help", lang="C")
    assert "Сконвертировать модель" in helped.stdout and "Показать план и ничего не записывать." in helped.stdout


def test_clicks_own_texts_in_russian() -> None:
    helped = run("--lang", "ru", "info", "--help", lang="C")
    assert helped.stdout.startswith("Использование: sdmodel info") and "Параметры:" in helped.stdout
    assert "Показать эту справку и выйти." in helped.stdout
    wrong = run("info", "--nope", lang="ru_RU.UTF-8")
    assert wrong.returncode == 2
    assert (
        "Справка: 'sdmodel info --help'." in wrong.stderr and "Ошибка: Нет такого параметра: '--nope'." in wrong.stderr
    )
    english = run("--lang", "en", "info", "--nope", lang="ru_RU.UTF-8")
    assert english.returncode == 2 and "Error: No such option '--nope'." in english.stderr


def test_clicks_texts_are_clicks(capsys: pytest.CaptureFixture[str]) -> None:
    """Our list of Click's msgids matches the installed Click, and running a command in Russian
    leaves Python's gettext settings as they were."""
    keywords = {**DEFAULT_KEYWORDS}
    clicks = {
        m if isinstance(m, str) else m[0]
        for _f, _l, m, _c, _x in extract_from_dir(str(Path(click.__file__).parent), keywords=keywords)
    }
    ours = set(CLICK_TEXTS) | {m.template for m in CLICK_PLURALS}
    assert ours <= clicks, ours - clicks
    before = (gettext.textdomain(), os.environ.get("LANGUAGE"))
    with pytest.raises(SystemExit) as exit_:
        main(["--lang", "ru", "info", "--nope"])
    assert exit_.value.code == 2 and "Нет такого параметра" in capsys.readouterr().err
    assert (gettext.textdomain(), os.environ.get("LANGUAGE")) == before
