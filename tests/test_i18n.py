"""Messages in English and Russian: catalogs complete and current, plurals, the language chosen."""

from __future__ import annotations

import gettext
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from sdmodel import i18n
from sdmodel.errors import ModelReadError, error_text
from sdmodel.glossary import TERMS, find_term
from sdmodel.i18n import (
    Bytes,
    Msg,
    OneOf,
    Size,
    detect_language,
    format_number,
    format_size,
    msg_n,
    ngettext,
    set_language,
    tr,
)
from sdmodel.metadata import check_entries
from sdmodel.quant.fp8_quantize import choose_fp8

SRC = Path(i18n.__file__).parent
POT = SRC / "locale" / "sdmodel.pot"
PO = SRC / "locale" / "ru" / "LC_MESSAGES" / "sdmodel.po"
MO = PO.with_suffix(".mo")
FIELDS = re.compile(r"\{[^{}]*\}")


def source_messages() -> set[str]:
    keywords = {**DEFAULT_KEYWORDS, "N_": None, "Msg": None, "msg_n": (1, 2)}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(SRC), keywords=keywords):
        found.add(message if isinstance(message, str) else message[0])
    return found


def catalog_ids(path: Path) -> set[str]:
    with open(path, "rb") as f:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}


def test_template_is_current() -> None:
    """A message added or changed in the code without 'make catalog' fails here."""
    assert catalog_ids(POT) == source_messages()


def test_every_message_has_a_russian_translation() -> None:
    with open(PO, "rb") as f:
        cat = read_po(f, locale="ru")
    assert {m.id if isinstance(m.id, str) else m.id[0] for m in cat if m.id} == catalog_ids(POT)
    for m in cat:
        if not m.id:
            continue
        assert not m.fuzzy, m.id
        forms = m.string if isinstance(m.string, tuple) else (m.string,)
        assert all(forms) and len(forms) == (3 if isinstance(m.id, tuple) else 1), m.id
        # A form has the fields of the singular or of the plural (some of Click's differ: "Did
        # you mean {possibility}?" / "(Did you mean one of: {possibilities}?)").
        sources = m.id if isinstance(m.id, tuple) else (m.id,)
        for form in forms:
            assert any(sorted(FIELDS.findall(form)) == sorted(FIELDS.findall(s)) for s in sources), m.id


def test_compiled_catalog_matches_the_po() -> None:
    with open(PO, "rb") as f:
        cat = read_po(f, locale="ru")
    buf = io.BytesIO()
    write_mo(buf, cat)
    buf.seek(0)
    fresh = gettext.GNUTranslations(buf)
    with open(MO, "rb") as f:
        shipped = gettext.GNUTranslations(f)
    messages = {k: v for k, v in fresh._catalog.items() if k != ""}  # type: ignore[attr-defined]
    assert {k: v for k, v in shipped._catalog.items() if k != ""} == messages  # type: ignore[attr-defined]


@pytest.fixture
def russian():
    set_language("ru")
    yield
    set_language(None)


def test_russian_plural_forms(russian: None) -> None:
    one = "{count} leftover tensor that no loader uses ('sdmodel convert --prune' drops it)."
    many = "{count} leftover tensors that no loader uses ('sdmodel convert --prune' drops them)."
    words = {n: ngettext(one, many, n).split()[2] for n in (1, 2, 5, 11, 21, 22, 25, 112)}
    assert words == {1: "тензор,", 2: "тензора,", 5: "тензоров,", 11: "тензоров,", 21: "тензор,", 22: "тензора,",
                     25: "тензоров,", 112: "тензоров,"}  # fmt: skip


def test_messages_are_made_in_english_and_shown_in_the_users_language(russian: None) -> None:
    one = "{count} leftover tensor that no loader uses ('sdmodel convert --prune' drops it)."
    many = "{count} leftover tensors that no loader uses ('sdmodel convert --prune' drops them)."
    message = msg_n(one, many, 3, count=3)
    assert str(message) == many.format(count=3)  # --json and logs
    assert tr(message).startswith("3 лишних тензора,")
    error = ModelReadError(Msg("outer: {inner}", inner=message))
    assert str(error) == "outer: " + many.format(count=3)
    assert "тензора" in error_text(error)
    assert tr("plain text") == "plain text"


def test_numbers_as_readers_write_them(russian: None) -> None:
    assert format_number(1234567.5, 1) == "1\u00a0234\u00a0567,5"
    assert format_size(6_130_000_000) == "6,13\u00a0ГБ"
    assert tr(Msg("saves {size}", size=Size(-3_070_000_000))) == "saves -3,07\u00a0ГБ"
    assert str(Msg("saves {size}", size=Size(-3_070_000_000))) == "saves -3.07 GB"
    set_language("en")
    assert format_number(1234567.5, 1) == "1,234,567.5"


def test_byte_counts_and_alternatives(russian: None) -> None:
    words = {n: tr(Msg("{b}", b=Bytes(n))) for n in (1, 3, 5, 12, 22, 1234)}
    assert words == {1: "1 байт", 3: "3 байта", 5: "5 байт", 12: "12 байт", 22: "22 байта",
                     1234: "1\u00a0234 байта"}  # fmt: skip
    assert (str(Msg("{b}", b=Bytes(1))), str(Msg("{b}", b=Bytes(1234)))) == ("1 byte", "1234 bytes")
    choice = Msg("--format must be {formats}", formats=OneOf(("safetensors", "gguf", "diffusers")))
    assert str(choice) == "--format must be safetensors, gguf or diffusers"
    assert tr(choice).endswith("safetensors, gguf или diffusers")


def test_refused_metadata_edit_in_russian(russian: None) -> None:
    (problem,) = check_entries({"modelspec.date": "yesterday"})
    assert str(problem.message) == (
        "modelspec.date: ModelSpec wants an ISO-8601 date such as 2024-05-01 or 2024-05-01T12:00:00, got 'yesterday'"
    )
    assert tr(problem.message).startswith("modelspec.date: ModelSpec ждёт дату ISO-8601")


@pytest.mark.parametrize(
    ("env", "lang"),
    [
        ({"LANG": "ru_RU.UTF-8"}, "ru"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LC_ALL": "C", "LANG": "ru_RU.UTF-8"}, "en"),
        ({"LANGUAGE": "ru:en", "LANG": "en_US.UTF-8"}, "ru"),
        ({"LC_MESSAGES": "ru_RU"}, "ru"),
        ({}, "en"),
    ],
)
def test_language_from_the_environment(env: dict[str, str], lang: str) -> None:
    assert detect_language(env) == lang


def test_every_term_is_found_by_its_words() -> None:
    for term in TERMS:
        assert find_term(term.id) is term
        for alias in term.aliases:
            if not any(ch in alias for ch in "\\[]()"):
                assert find_term(alias) is term, alias
    assert find_term("Q4_K_S") is find_term("q8_0") is find_term("gguf")
    assert find_term("noema") is find_term("EMA-only") is find_term("ema")
    assert find_term("nonsense") is None


def run(*args: str, lang: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env["LANG"] = lang
    return subprocess.run([sys.executable, "-m", "sdmodel", *args], capture_output=True, text=True, env=env, timeout=60)


def test_explain_speaks_the_users_language() -> None:
    ru = run("explain", "noema", lang="ru_RU.UTF-8")
    assert ru.returncode == 0 and "Для генерации:" in ru.stdout and "пачк" in ru.stdout
    en = run("--lang", "en", "explain", "noema", lang="ru_RU.UTF-8")
    assert "For generating:" in en.stdout
    listing = run("explain", lang="en_US.UTF-8")
    assert all(t.id in listing.stdout for t in TERMS)
    bad = run("explain", "nonsense", lang="en_US.UTF-8")
    assert bad.returncode == 2 and "no entry for 'nonsense'" in bad.stderr


def test_explain_a_file(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    f = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.zeros((4, 320), np.float16)}, str(f))
    res = run("explain", "safetensors", str(f), lang="ru_RU.UTF-8")
    assert res.returncode == 0, res.stderr
    assert "Этот файл: safetensors: при загрузке никакой код не выполнится." in res.stdout.replace("\n", " ")


def test_quantization_reasons_in_russian(russian: None) -> None:
    (kept,) = choose_fp8({"img_in.weight": ((8, 8), "F16")}, ("img_in",), legacy=False)
    assert kept.reason is not None and str(kept.reason) == "kept in full precision (family list)"
    assert tr(kept.reason) == "оставлен в полной точности (список семейства)"
