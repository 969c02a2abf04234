"""The `selfens` commands: `main` reads the command table (`commands`) and runs one; each command is a
module here (`lightning` builds test/predict/validate runs from a config file)."""

import sys


def on_terminal() -> bool:
    """Whether there is a terminal to ask on (the bare `selfens` and `selfens run` check it)."""
    return sys.stdin.isatty() and sys.stdout.isatty()
