"""Messages in the user's language: English source strings, Russian from a gettext catalog.

The language comes from ``--lang`` or, as gettext chooses, from ``LANGUAGE``, ``LC_ALL``,
``LC_MESSAGES`` and ``LANG``. Only human-readable text is translated: ``--json``, exit codes and ids
(``sdxl``, ``fp16``) are the same in every language. Catalogs live in ``sdmodel/locale`` (``make
catalog`` extracts the messages with Babel and compiles them).
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, get_args

from sdmodel.units import human_bytes, human_count

Language = Literal["en", "ru"]
LANGUAGES: tuple[Language, ...] = get_args(Language)
DOMAIN = "sdmodel"
LOCALE_DIR = Path(__file__).parent / "locale"
_ENV_ORDER = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_current: ContextVar[Language | None] = ContextVar("sdmodel_language", default=None)


def parse_language(value: str | None) -> Language | None:
    """``ru_RU.UTF-8``, ``ru``, ``ru:en`` -> ``ru``; ``C``, ``POSIX``, unknown -> None."""
    for item in (value or "").split(":"):
        code = item.split(".")[0].split("@")[0].split("_")[0].split("-")[0].lower()
        if code in LANGUAGES:
            return code  # checked against LANGUAGES
        if code:
            return None
    return None


def detect_language(environ: Mapping[str, str] = os.environ) -> Language:
    """The language the environment asks for, as gettext reads it (first variable that is set)."""
    for name in _ENV_ORDER:
        value = environ.get(name)
        if value:
            return parse_language(value) or "en"
    return "en"


def set_language(lang: Language | None) -> None:
    """Use ``lang`` from now on in this context (None: the environment's language)."""
    _current.set(lang)


def current_language() -> Language:
    return _current.get() or detect_language()


@cache
def _translations(lang: Language) -> gettext.NullTranslations:
    return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[lang], fallback=True)


def _(message: str) -> str:
    """``message`` in the current language."""
    return _translations(current_language()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of a counted phrase for ``n`` (Russian has three: 1 файл, 2 файла, 5 файлов)."""
    return _translations(current_language()).ngettext(singular, plural, n)


@contextmanager
def module_gettext(lang: Language) -> Iterator[None]:
    """Python's module-level ``gettext.gettext``/``ngettext`` answer from our catalog in ``lang``
    while inside: libraries that translate their own texts with them (Click: "Usage:", "Error: ...")
    speak the user's language. They read the domain set by ``gettext.textdomain`` and the language
    from ``LANGUAGE`` (https://docs.python.org/3/library/gettext.html#gnu-gettext-api), so both are
    set for the duration and put back after, for callers in the same process (tests)."""
    saved_domain = gettext.textdomain()
    saved_language = os.environ.get("LANGUAGE")
    gettext.bindtextdomain(DOMAIN, str(LOCALE_DIR))
    gettext.textdomain(DOMAIN)
    os.environ["LANGUAGE"] = lang
    try:
        yield
    finally:
        gettext.textdomain(saved_domain)
        if saved_language is None:
            os.environ.pop("LANGUAGE", None)
        else:
            os.environ["LANGUAGE"] = saved_language


def N_(message: str) -> str:  # the gettext convention Babel extracts
    """Mark a string for translation where it is defined; ``_()`` translates it where it is shown."""
    return message


@dataclass(frozen=True)
class Size:
    """A byte count inside a Msg: ``6.13 GB`` in English, ``6,13 ГБ`` in Russian."""

    bytes: float | None

    def render(self, translate: bool) -> str:
        return format_size(self.bytes) if translate else human_bytes(self.bytes)


@dataclass(frozen=True)
class Number:
    """A number inside a Msg: ``1234.5`` in English (as it always read in the output), ``1 234,5``
    in Russian."""

    value: float
    digits: int = 0

    def render(self, translate: bool) -> str:
        return format_number(self.value, self.digits) if translate else f"{self.value:.{self.digits}f}"


@dataclass(frozen=True)
class Join:
    """Items (Msgs, Sizes, Numbers or plain text) joined by a separator that reads the same in
    every language (``, ``, `` + ``), for lists inside a Msg."""

    items: tuple[object, ...]
    sep: str = ", "

    def render(self, translate: bool) -> str:
        return self.sep.join(str(_render(v, translate)) for v in self.items)


@dataclass(frozen=True)
class Bytes:
    """A byte count with its word inside a Msg: ``1234 bytes`` / ``1 234 байта`` (Russian has
    three forms: 1 байт, 2 байта, 5 байт)."""

    n: int

    def render(self, translate: bool) -> str:
        return msg_n("{n} byte", "{n} bytes", self.n, n=Number(self.n)).render(translate)


_OR = N_("{items} or {last}")


@dataclass(frozen=True)
class OneOf:
    """Alternatives inside a Msg: ``a, b or c`` / ``a, b или c``."""

    items: tuple[object, ...]

    def render(self, translate: bool) -> str:
        texts = [str(_render(v, translate)) for v in self.items]
        if len(texts) < 2:
            return "".join(texts)
        return (_(_OR) if translate else _OR).format(items=", ".join(texts[:-1]), last=texts[-1])


def _render(value: object, translate: bool) -> object:
    return value.render(translate) if isinstance(value, (Msg, Size, Number, Join, OneOf, Bytes)) else value


@dataclass(frozen=True, init=False)
class Msg:
    """A message made where the facts are and translated where it is shown: pure code builds
    ``Msg("{n} bad keys", n=3)``; ``str()`` gives English (``--json``, logs), ``tr()`` the user's
    language. Field values may be Msgs, Sizes, Numbers, Bytes, Joins or OneOfs; they are rendered in the same language."""

    template: str
    fields: tuple[tuple[str, object], ...]
    plural: str | None
    count: int

    def __init__(self, template: str, /, *, plural_: str | None = None, count_: int = 1, **fields: object) -> None:
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "fields", tuple(fields.items()))
        object.__setattr__(self, "plural", plural_)
        object.__setattr__(self, "count", count_)

    def render(self, translate: bool) -> str:
        if translate:
            text = ngettext(self.template, self.plural, self.count) if self.plural else _(self.template)
        else:
            text = self.template if not self.plural or self.count == 1 else self.plural
        values = {k: _render(v, translate) for k, v in self.fields}
        return text.format(**values) if values else text

    def __str__(self) -> str:
        return self.render(translate=False)


def msg_n(singular: str, plural: str, n: int, /, **fields: object) -> Msg:
    """A counted message: ``msg_n("{n} file", "{n} files", n, n=n)`` (Russian picks one of three forms)."""
    return Msg(singular, plural_=plural, count_=n, **fields)


def tr(message: str | Msg) -> str:
    """``message`` in the current language: a Msg rendered from its translated template, a string
    through the catalog (one marked with ``N_`` where it was defined; any other comes back as it is)."""
    return message.render(translate=True) if isinstance(message, Msg) else _(message)


def format_number(value: float, digits: int = 0) -> str:
    """A number as readers of the current language write it: ``1,234.5`` / ``1 234,5``."""
    text = f"{value:,.{digits}f}"
    if current_language() == "ru":
        return text.replace(",", "\u00a0").replace(".", ",")
    return text


_RU_UNITS = {"B": "Б", "KB": "КБ", "MB": "МБ", "GB": "ГБ", "TB": "ТБ"}


def format_size(n: float | None, digits: int = 2) -> str:
    """A size as readers of the current language write it: ``6.13 GB`` / ``6,13 ГБ``."""
    text = human_bytes(n, digits)
    if current_language() != "ru" or " " not in text:
        return text
    number, _space, unit = text.rpartition(" ")
    return f"{number.replace('.', ',')}\u00a0{_RU_UNITS.get(unit, unit)}"


_RU_COUNTS = {"B": "\u00a0млрд", "M": "\u00a0млн", "K": "\u00a0тыс."}


def format_count(n: int) -> str:
    """A parameter count, short: ``146.06M`` / ``146,06 млн``."""
    text = human_count(n)
    if current_language() != "ru" or text[-1] not in _RU_COUNTS:
        return text
    return text[:-1].replace(".", ",") + _RU_COUNTS[text[-1]]
