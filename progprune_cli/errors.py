"""The one exception type for bad user input: its message is the one line a user sees."""


class UserError(Exception):
    """Bad input (config value, path, name); the CLI prints `progprune: error: <message>` and exits 2."""
