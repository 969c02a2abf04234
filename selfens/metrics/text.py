"""torchmetrics wrappers around :mod:`selfens.metrics.functional`.

Each metric keeps its per-example scores (float64, concatenated across processes) and computes
their mean with one correctly rounded sum, so the result is the same for any batching and any
number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from selfens.metrics.functional import (
    BLANK_EN,
    _exact_match_update,
    _f1_update,
    _lemma_match_update,
    _mean_compute,
    load_lemmatizer,
)

__all__ = ["ExactMatch", "F1Score", "LemmaMatch", "MeanScore"]


class MeanScore(Metric):
    """Exact mean of per-example scores; `update` takes a tensor of them."""

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


class ExactMatch(MeanScore):
    """Fraction of predictions equal to some gold alias after SQuAD v1.1 normalisation."""

    def update(self, preds: Sequence[str], targets: Sequence[Sequence[str]]) -> None:
        """Add a batch: one prediction and a list of gold aliases per example."""
        super().update(_exact_match_update(preds, targets))


class F1Score(MeanScore):
    """Mean SQuAD v1.1 token F1 against the best gold alias."""

    def update(self, preds: Sequence[str], targets: Sequence[Sequence[str]]) -> None:
        """Add a batch: one prediction and a list of gold aliases per example."""
        super().update(_f1_update(preds, targets))


class LemmaMatch(MeanScore):
    """Fraction of predictions whose lemmas contain some gold alias's lemmas as a contiguous run.

    Args:
        lemmatizer_name: ``"blank_en"`` (lookup lemmatizer, offline) or an installed spaCy
            pipeline such as ``"en_core_web_lg"``.
    """

    def __init__(self, lemmatizer_name: str = BLANK_EN, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lemmatizer_name = lemmatizer_name
        self.lemmatizer = load_lemmatizer(lemmatizer_name)

    def update(self, preds: Sequence[str], targets: Sequence[Sequence[str]]) -> None:
        """Add a batch: one prediction and a list of gold aliases per example."""
        super().update(_lemma_match_update(preds, targets, self.lemmatizer))
