"""Errors sdmodel raises on purpose: each carries a one-line message a user can act on."""

from __future__ import annotations

from sdmodel.i18n import Msg, tr


class SdmodelError(Exception):
    """Base of every error the CLI turns into a one-line message and exit status 2. ``code`` names
    the problem for programs (e.g. ``trailing-bytes``) where callers need to tell problems apart.
    The message may be a ``Msg``: ``str(error)`` is English, ``error_text(error)`` the user's language."""

    def __init__(self, message: str | Msg, code: str | None = None) -> None:
        super().__init__(str(message))
        self.message = message
        self.code = code


class ModelReadError(SdmodelError):
    """The file cannot be read as a model: truncated, corrupt, unsupported or not a model at all."""


class UnsafePickleError(ModelReadError):
    """The pickle asks for something outside the allow-list; nothing from it was run."""


class ConversionError(SdmodelError):
    """A conversion cannot be done as asked (missing EMA, shape mismatch, existing output...)."""


class OutputExistsError(ConversionError):
    """The output file exists and overwriting was not asked for."""


class RemoteError(ModelReadError, OSError):
    """A remote file cannot be read: the server refused, failed, timed out, changed the file between
    two requests or ignores byte ranges. Also an OSError, like the local read errors it stands for."""

    def __new__(cls, message: str | Msg, code: str | None = None) -> RemoteError:
        return super().__new__(cls, str(message))  # one argument: OSError would read two as (errno, strerror)


def error_message(error: BaseException) -> str | Msg:
    """An error's message to put inside another message: a Msg for sdmodel's own errors and for any
    exception made from one (so the whole line is translated), Python's wording for the others."""
    if isinstance(error, SdmodelError):
        return error.message
    return error.args[0] if len(error.args) == 1 and isinstance(error.args[0], Msg) else str(error)


def error_text(error: BaseException) -> str:
    """An error's one-line message in the user's language (other exceptions as Python words them)."""
    message = error_message(error)
    return tr(message) if isinstance(message, Msg) else message
