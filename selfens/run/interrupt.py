"""Stopping a run on Ctrl-C (SIGINT) or a scheduler's SIGTERM: the signal raises `Interrupted` in the
main thread, at once (within the decode step in flight), so the run stops where it is. What finished
is on disk already (rows are written batch by batch); the batch in flight is decoded again when the
run is resumed. A second signal while stopping has its default effect."""

from __future__ import annotations

import shlex
import signal
from contextlib import contextmanager
from typing import Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A run stopped by a signal; not an Exception, so that no `except Exception` takes it for a failure.
    Whoever knows more on its way out says it: where the finished part is and how to go on."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.folder: Optional[str] = None  # where what finished is kept
        self.done: Optional[int] = None  # examples finished, of `total`
        self.total: Optional[int] = None
        self.resume: Optional[str] = None  # the command that goes on; None: the same command again

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # as a shell reports a process ended by the signal

    def message(self, command: list[str]) -> str:
        """What a user reads: where the run stopped, what is kept, and the exact command to go on."""
        said = f"selfens: stopped by {signal.Signals(self.signum).name}"
        if self.done is not None:
            said += f" after {self.done} of {self.total} examples"
        if self.folder is not None and self.done != 0:
            said += f"; what finished is kept in {self.folder}"
        go_on = self.resume or shlex.join(["selfens", *command])
        return f"{said}\nselfens: to go on, run: {go_on}"


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While open, SIGINT and SIGTERM raise `Interrupted` (the handlers before are put back after)."""
    before = {s: signal.getsignal(s) for s in SIGNALS}

    def stop(signum, frame):
        for s, handler in before.items():  # a second signal: what it did before (e.g. KeyboardInterrupt)
            signal.signal(s, handler)
        raise Interrupted(signum)

    for s in SIGNALS:
        signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
