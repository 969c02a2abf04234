"""One progress line for a whole study: the cell, the facts done of all, the time left."""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from selfens.run.progress import Progress
from selfens.study.grid import Cell


class StudyProgress(Callback):
    """Counts the facts every cell decodes (on rank 0; each process decodes its share) and shows
    `study: cell k of K (model/cell), facts d of D, elapsed, ~left` (`selfens.run.progress.Progress`): on
    a terminal one line rewritten in place, elsewhere a line at each cell's end and at most every
    `every` seconds."""

    def __init__(self, cells: int, facts: int, done: int, every: float = 60.0, stream=None):
        self.cells = cells
        # done: finished before this session, not in the pace of the estimate
        self.progress = Progress("study", {"facts": facts}, done={"facts": done}, every=every, stream=stream)

    def start_cell(self, k: int, cell: Cell) -> None:
        self.progress.context = f"cell {k} of {self.cells} ({cell.title}), "
        self.progress.show(force=True)

    def end_cell(self) -> None:
        self.progress.close()

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.is_global_zero:
            self.progress.advance(facts=len(outputs) * trainer.world_size)
