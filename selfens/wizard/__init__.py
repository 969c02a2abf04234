"""`selfens run` (and `selfens` alone on a terminal): choose a dataset, methods, a model and how many
examples step by step; the answers become ordinary `selfens test` configs (`plan`), asked for at a
terminal and run in this process (`command`)."""

import sys


def on_terminal() -> bool:
    """Whether there is a terminal to ask on (the CLI's bare `selfens` and `selfens run` check it)."""
    return sys.stdin.isatty() and sys.stdout.isatty()
