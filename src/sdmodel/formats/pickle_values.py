"""The inert values the pickle VM puts on its stack in place of real objects.

A global becomes a :class:`GlobalObj` when the allow-list (:mod:`sdmodel.formats.pickle_allow`)
knows it, an :class:`Opaque` otherwise; calling an unknown global gives another ``Opaque``. Nothing
here imports or runs anything. The exceptions are how an allowed behaviour reports a bad argument
back to the VM (skipped in scan mode, fatal in load mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sdmodel.i18n import Msg

if TYPE_CHECKING:  # the rule table imports this module
    from sdmodel.formats.pickle_allow import Rule


class Placeholder:
    """Base of the inert objects the VM creates (hashable by identity, usable as dict keys)."""

    __slots__ = ()


@dataclass(frozen=True)
class GlobalRef:
    """Where a global was named: (module, name) after the py2 mapping, the opcode's byte offset,
    and the spelling in the file when the mapping changed it."""

    module: str
    name: str
    offset: int
    original: str | None = None

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Opaque(Placeholder):
    """A global outside the allow-list (``called=False``), or the result of calling/using one."""

    module: str
    name: str
    called: bool = False
    ref: GlobalRef | None = None

    def __str__(self) -> str:
        return f"{self.module}.{self.name}{'(...)' if self.called else ''}"


@dataclass(eq=False)
class GlobalObj(Placeholder):
    """An allow-listed global; ``rule`` is everything it may do."""

    module: str
    name: str
    rule: Rule
    ref: GlobalRef | None = None

    def __str__(self) -> str:
        return f"{self.module}.{self.name}"


class TypeProblem(Exception):
    """An operation with the wrong argument types: skipped in scan mode, fatal in load mode."""

    code = "type-error"
    severity = "suspicious"


class TypeConfusion(TypeProblem):
    """An opcode that fills or rebuilds a container of the wrong type (SETITEM on a tuple, BUILD on
    a tensor...): torch's weights_only loader did this without checking, the memory corruption of
    CVE-2026-24747."""

    code = "type-confusion"
    severity = "dangerous"

    def __init__(self, what: Msg) -> None:
        super().__init__(
            Msg("{what} (container type confusion, the memory-corruption class of CVE-2026-24747)", what=what)
        )


class UnsafeCall(Exception):
    """An allowed global asked to call something outside the allow-list (refused, or a finding)."""


_SCALAR_KEYS = frozenset({str, int, float, bool, bytes, type(None), complex, np.str_})


def check_key(k: Any, depth: int = 0) -> None:
    """Only cheap, bounded, identity- or value-hashable keys (no hostile deep tuples)."""
    t = type(k)
    if t in _SCALAR_KEYS or isinstance(k, Placeholder):
        return
    if (t is tuple or t is frozenset) and depth < 8 and len(k) <= 64:
        for x in k:
            check_key(x, depth + 1)
        return
    raise TypeProblem(Msg("unhashable or oversized {k} used as a key", k=kind_of(k)))


def fill(target: dict, items: list) -> None:
    """SETITEMS: key, value, key, value... into a dict, each key checked."""
    for i in range(0, len(items), 2):
        check_key(items[i])
        target[items[i]] = items[i + 1]


def short(v: Any, n: int = 80) -> str:
    """A bounded repr for messages (a hostile value must not break or flood them)."""
    if isinstance(v, (list, tuple, dict, set, frozenset)) and len(v) > 16:
        return f"<{type(v).__name__} of {len(v)} items>"
    try:
        s = repr(v)
    except Exception:  # a hostile value should not break an error message
        s = f"<{type(v).__name__}>"
    return s if len(s) <= n else s[: n - 3] + "..."


def kind_of(v: Any) -> str:
    if isinstance(v, (Opaque, GlobalObj)):
        return str(v)
    return type(v).__name__


def result_of(func: Opaque | GlobalObj) -> Opaque:
    """The inert placeholder for what calling ``func`` returned (a call we did not perform)."""
    return Opaque(func.module, func.name, called=True, ref=func.ref)
