"""The one exception type for bad user input (its message is the one line a user sees), and the one way to make
any error's text one line."""

import re


class UserError(Exception):
    """Bad input (config value, path, name); the CLI prints `progprune: error: <message>` and exits 2."""


_COLOURS = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def first_line(error: BaseException | str) -> str:
    """The first non-blank line of an error's text (or its type's name): what a one-line message quotes of it."""
    text = error if isinstance(error, str) else str(error)
    # Libraries colour their messages (torch.export's ANSI codes); a quoted line is plain text in a log or a table.
    text = _COLOURS.sub("", text)
    fallback = "no message" if isinstance(error, str) else type(error).__name__
    return next((line.strip() for line in text.splitlines() if line.strip()), fallback)


def described(error: BaseException) -> str:
    """`Type: first line of its message` (just the type when it has none): an error quoted in one line."""
    line = first_line(error)
    return line if line == type(error).__name__ else f"{type(error).__name__}: {line}"
