"""One progress line for a whole study: the cell, the facts done of all, the time left."""

from __future__ import annotations

import sys
import time

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from selfens.study.grid import Cell


class StudyProgress(Callback):
    """Counts the facts every cell decodes (on rank 0; each process decodes its share) and shows
    `study: cell k of K (model/cell), facts d of D, elapsed, ~left`: on a terminal one line
    rewritten in place, elsewhere a line at each cell's end and at most every `every` seconds."""

    def __init__(self, cells: int, facts: int, done: int, every: float = 60.0, stream=None):
        self.cells, self.facts, self.done = cells, facts, done  # done: finished before this session
        self.decoded = 0  # facts decoded in this session: the pace of the estimate
        self.every, self.stream = every, stream or sys.stderr
        self.started = time.monotonic()
        self.shown = 0.0
        self.cell: tuple[int, Cell] | None = None

    def start_cell(self, k: int, cell: Cell) -> None:
        self.cell = (k, cell)
        self.show(force=True)

    def end_cell(self) -> None:
        self.show(force=True, end="\n")

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.is_global_zero:
            counted = len(outputs) * trainer.world_size
            self.done, self.decoded = self.done + counted, self.decoded + counted
            self.show()

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        k, cell = self.cell if self.cell else (0, None)
        left = "~? left"
        if self.decoded:
            left = f"~{_duration(elapsed / self.decoded * max(self.facts - self.done, 0))} left"
        where = f" ({cell.title})" if cell else ""
        return f"study: cell {k} of {self.cells}{where}, facts {self.done} of {self.facts}, {_duration(elapsed)} elapsed, {left}"

    def show(self, force: bool = False, end: str = "") -> None:
        if rank_zero_only.rank != 0:  # under DDP every process runs the study; one shows it
            return
        now = time.monotonic()
        tty = self.stream.isatty()
        if not (force or tty or now - self.shown >= self.every):
            return
        self.shown = now
        if tty:
            self.stream.write("\r\033[K" + self.line() + end)
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"
