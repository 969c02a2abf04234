"""The `selfens` command: `selfens COMMAND [options]`, each command from the table in
`selfens.cli.commands`.

Expected failures (bad data, settings or options) print one line and exit with status 2; `--debug`
or SELFENS_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import warnings

from selfens.cli import on_terminal
from selfens.cli.commands import COMMANDS, LIGHTNING, entry_point
from selfens.errors import SelfensError
from selfens.run.interrupt import Interrupted, stop_on_signals

NOT_A_TERMINAL = (
    "selfens: no terminal here to ask on: run a config, e.g. selfens test --config configs/pararel/origin.yaml "
    "(on a terminal, selfens alone or selfens run asks for the dataset, methods and model)"
)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: selfens COMMAND [options]      (selfens COMMAND --help: the options of a command)",
        "       selfens                        (on a terminal: as selfens run, asks what to evaluate)",
        "",
        "Does asking a model in several phrasings, and fusing what it says, give better answers?",
        "",
        "commands:",
        *(f"  {name.ljust(width)}  {c.help:<52} {c.example}" for name, c in COMMANDS.items()),
        "",
        "  --resume lightning_logs/<name>/version_<k>-<method>   (test/predict/validate) finish an interrupted run",
        "  --debug                                      show the traceback of an error (or SELFENS_DEBUG=1)",
    ]
    return "\n".join(lines)


def _quiet_known_warnings() -> None:
    # Lightning's own use of a deprecated torch API: not actionable by users.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # Metric values are logged after torchmetrics has synced them across processes.
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")


def main(argv: list[str] | None = None) -> None:
    _quiet_known_warnings()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SELFENS_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    if not args and on_terminal():
        args = ["run"]
    elif not args or args[0] in ("-h", "--help"):
        print(usage())
        if not args:
            print(f"\n{NOT_A_TERMINAL}")
        return
    try:
        with stop_on_signals():
            _run(args, from_argv=argv is None)
        _leave_process_group()
    except Interrupted as stop:
        print(stop.message(args), file=sys.stderr)
        raise SystemExit(stop.exit_status) from None
    except Exception as error:
        expected = _expected(error)
        if expected is None or debug:
            raise
        print(f"selfens: error: {expected}", file=sys.stderr)
        raise SystemExit(2) from None


def _run(args: list[str], from_argv: bool) -> None:
    command = COMMANDS.get(args[0])
    if command is None or command.entry == LIGHTNING:
        # Lightning's subcommands, and the parser's own message (with a suggestion) for an unknown one.
        if from_argv:
            sys.argv[1:] = args  # LightningCLI reads sys.argv itself
        entry_point("test")(None if from_argv else args)
    else:
        entry_point(args[0])(args[1:])


def _leave_process_group() -> None:
    """End a finished multi-process run's process group while the interpreter is whole: gloo's worker
    threads, still alive at interpreter exit, can abort a run that has written everything
    ("terminate called without an active exception", exit -6). Only on success: a rank that failed
    may leave others inside a collective, which destroying the group would hang."""
    dist = sys.modules.get("torch.distributed")  # not imported: no group to end (and --help stays quick)
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _expected(error: BaseException | None) -> SelfensError | None:
    """The SelfensError behind an error, if any (jsonargparse wraps what a class's __init__ raises)."""
    while error is not None and not isinstance(error, SelfensError):
        error = error.__cause__ or error.__context__
    return error
