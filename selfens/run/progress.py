"""One progress line for a long job: units done of all, the time elapsed and an estimate of the time
left, e.g. `paraphrase: questions 3 of 20, paraphrases 17 of 100, 1m02s elapsed, ~4m40s left`."""

from __future__ import annotations

import sys
import time
from typing import Optional

from lightning.fabric.utilities.rank_zero import rank_zero_only

EVERY = 30.0  # seconds between plain lines (a log file, a pipe)
TTY_EVERY = 2.0  # seconds between redraws of the line on a terminal


class Progress:
    """Counts units (e.g. questions and paraphrases) against their totals and shows one line.

    The estimate of the time left paces one unit (`pace`, the first by default): the time so far over
    the `pace` units done in this session (`advance`), times those left; units done before or found
    done at no cost (`skip`, e.g. a cached value) count as done but not in the pace, and units done
    while others are under way (`count`) join the pace at the next `advance`. Before the first paced
    unit the estimate is `~? left`. On a terminal the line is rewritten in place at most every
    `tty_every` seconds; elsewhere a plain line is written at most every `every` seconds. Only rank 0
    shows it (under DDP every process counts its own share; `processes` scales it to the whole).

    >>> import io
    >>> p = Progress("job", {"questions": 2}, stream=io.StringIO())
    >>> p.advance(questions=1)
    >>> p.line()
    'job: questions 1 of 2, 0m00s elapsed, ~0m00s left'
    """

    def __init__(
        self,
        label: str,
        totals: dict[str, int],
        done: Optional[dict[str, int]] = None,
        pace: Optional[str] = None,
        processes: int = 1,
        every: Optional[float] = None,
        tty_every: Optional[float] = None,
        stream=None,
    ):
        self.label, self.totals = label, dict(totals)
        self.done = {unit: (done or {}).get(unit, 0) for unit in self.totals}
        self.pace = pace or next(iter(self.totals))
        self.paced = 0  # `pace` units done in this session, as of the last `advance`
        self.pending = 0  # `pace` units `count`ed since
        self.processes = processes
        self.every = EVERY if every is None else every
        self.tty_every = TTY_EVERY if tty_every is None else tty_every
        self.stream = stream or sys.stderr
        self.context = ""  # shown before the counts, e.g. "cell 2 of 6 (model/cell), "
        self.started = time.monotonic()
        self.shown: Optional[float] = None

    def advance(self, **counts: int) -> None:
        """Units done now, by this process (scaled by `processes`); shown if it is time. The pace is
        measured now, with the units `count`ed since the last advance."""
        self._count(counts)
        self.paced += self.pending + counts.get(self.pace, 0) * self.processes
        self.pending = 0
        self.show()

    def count(self, **counts: int) -> None:
        """Units done now while others are still under way (e.g. samples of a decode that goes on):
        counted and shown, but in the pace only from the next `advance`. Early in the work, units
        partly done and costs paid once (e.g. a prefill) would make the pace look far slower."""
        self._count(counts)
        self.pending += counts.get(self.pace, 0) * self.processes
        self.show()

    def skip(self, **counts: int) -> None:
        """Units found done without work (e.g. cached): done, but not in the pace of the estimate."""
        self._count(counts)
        self.show()

    def _count(self, counts: dict[str, int]) -> None:
        for unit, n in counts.items():
            self.done[unit] = min(self.done[unit] + n * self.processes, self.totals[unit])

    def left(self, now: float) -> str:
        if not self.paced:
            return "~? left"
        per_unit = (now - self.started) / self.paced
        return f"~{duration(per_unit * max(self.totals[self.pace] - self.done[self.pace], 0))} left"

    def line(self, now: Optional[float] = None) -> str:
        now = time.monotonic() if now is None else now
        counts = ", ".join(f"{unit} {self.done[unit]} of {total}" for unit, total in self.totals.items())
        return f"{self.label}: {self.context}{counts}, {duration(now - self.started)} elapsed, {self.left(now)}"

    def show(self, force: bool = False, end: str = "") -> None:
        """The line, if forced or if its interval has passed since the last one."""
        if rank_zero_only.rank != 0:
            return
        now, tty = time.monotonic(), self.stream.isatty()
        if not force and self.shown is not None and now - self.shown < (self.tty_every if tty else self.every):
            return
        self.shown = now
        self.stream.write("\r\033[K" + self.line(now) + end if tty else self.line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """The last line (ending the terminal's line)."""
        self.show(force=True, end="\n")


def instead_of_bar(trainer, label: str, totals: dict[str, int], **kwargs) -> Optional[Progress]:
    """A Progress for a Lightning job whose batches are too slow for a bar of batches, shown in place
    of the trainer's bar (which it disables); None when the trainer has no bar
    (`enable_progress_bar: false`). `kwargs`: see Progress."""
    bar = trainer.progress_bar_callback
    if bar is None:
        return None
    bar.disable()
    return Progress(label, totals, processes=trainer.world_size, **kwargs)


def duration(seconds: float) -> str:
    """`1h02m` or `3m07s`."""
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"
