"""How the scanner grades the globals a pickle names (policy; what each global may do is the
allow-list's business, :mod:`sdmodel.formats.pickle_allow`)."""

from __future__ import annotations

from sdmodel.formats.pickle_allow import ALLOWED_GLOBALS
from sdmodel.i18n import Msg
from sdmodel.security.denylist import denied

NOTE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("torch.nn.modules.container", "ParameterDict"),
    }
)
"""Allowed globals that make a verdict "safe with notes" (inert extras, not weights)."""


def grade_global(module: str, name: str, mapped: tuple[str, str]) -> tuple[str, Msg] | None:
    """(severity, reason) of a global beyond what the VM reported: ``info`` for an inert extra,
    ``dangerous`` for a deny-listed one (even uncalled); None for an ordinary allowed or unknown
    global. ``mapped`` is (module, name) after CPython's py2 renames."""
    if mapped in ALLOWED_GLOBALS:
        return ("info", Msg("known inert extra")) if mapped in NOTE_GLOBALS else None
    why = denied(module, name) or denied(*mapped)
    return ("dangerous", why) if why else None
