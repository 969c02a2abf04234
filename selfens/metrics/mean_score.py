"""The exact mean of per-example scores, as a torchmetrics state.

The scores themselves come from :mod:`selfens.metrics.functional`, one example at a time.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["MeanScore"]


class MeanScore(Metric):
    """Exact mean of per-example scores; `update` takes a tensor of them.

    Keeps every score (float64, concatenated across processes) and sums them with one correctly
    rounded sum, so the mean is the same for any batching and any number of processes.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    scores: list[Tensor]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def update(self, scores: Tensor) -> None:
        self.scores.append(scores.detach().to(torch.float64).flatten())

    def compute(self) -> Tensor:
        """Mean score so far; NaN before any update."""
        scores = dim_zero_cat(self.scores) if len(self.scores) else torch.zeros(0, dtype=torch.float64)
        return _mean_compute(scores)


def _mean_compute(scores: Tensor) -> Tensor:
    """Mean of per-example scores as a 0-dim float64 tensor; NaN when there are none.

    math.fsum rounds the sum once, so the mean does not depend on how examples were split into
    batches or processes: one process and several give the same number, to the last bit.
    """
    if scores.numel() == 0:
        return torch.tensor(float("nan"), dtype=torch.float64, device=scores.device)
    return torch.tensor(math.fsum(scores.tolist()) / scores.numel(), dtype=torch.float64, device=scores.device)
