"""Click's own texts that users of ``sdmodel`` meet, listed so that ``make catalog`` (Babel) keeps
them in our catalog with their Russian. Click translates them with Python's module-level gettext
(https://github.com/pallets/click/blob/main/src/click/core.py: ``from gettext import gettext as _``);
``sdmodel.i18n.module_gettext`` points that at our catalog while a command runs. The msgids must be
Click's exactly (tests check them against the installed Click)."""

from __future__ import annotations

from sdmodel.i18n import N_, Msg, msg_n

CLICK_TEXTS: tuple[str, ...] = (
    N_("Usage:"),
    N_("Options"),
    N_("Commands"),
    N_("Positional arguments"),
    N_("Show this message and exit."),
    N_("Error: {message}"),
    N_("Try '{command} {option}' for help."),
    N_("Invalid value: {message}"),
    N_("Invalid value for {param_hint}: {message}"),
    N_("Missing argument"),
    N_("Missing option"),
    N_("Missing parameter"),
    N_("Missing parameter: {param_name}"),
    N_("Missing command."),
    N_("No such option {name!r}."),
    N_("No such command {name!r}."),
    N_("Option {name!r} does not take a value."),
    N_("Argument {name!r} takes {nargs} values."),
    N_("{value!r} is not a valid {number_type}."),
    N_("{value} is not in the range {range}."),
    N_("{value!r} is not a valid boolean. Recognized values: {states}"),
    N_("file"),
    N_("directory"),
    N_("path"),
    N_("{name} {filename!r} does not exist."),
    N_("{name} {filename!r} is a file."),
    N_("{name} {filename!r} is a directory."),
    N_("{name} {filename!r} is not readable."),
    N_("{name} {filename!r} is not writable."),
    N_("{name} {filename!r} is not executable."),
    N_("Could not open file {filename!r}: {message}"),
    N_("Aborted!"),
    N_("default: {default}"),
    N_("env var: {var}"),
    N_("(dynamic)"),
    N_("deprecated"),
    N_("Do you want to continue?"),
    N_("Confirm the action without prompting."),
)

# Counted ones (Russian has three forms); the count here is only a placeholder.
CLICK_PLURALS: tuple[Msg, ...] = (
    msg_n("Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})", 1),
    msg_n("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)", 1),
    msg_n("Option {name!r} requires an argument.", "Option {name!r} requires {nargs} arguments.", 1),
    msg_n("Takes {nargs} values but 1 was given.", "Takes {nargs} values but {len} were given.", 1),
    msg_n("{value!r} is not {choice}.", "{value!r} is not one of {choices}.", 1),
)
