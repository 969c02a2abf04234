"""torchmetrics wrappers around :mod:`selfens.metrics.functional`.

Each metric keeps a float64 ``total`` of per-example scores and a ``count`` of examples,
both summed across processes, so ``compute`` is the mean score in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from selfens.metrics.functional import (
    BLANK_EN,
    _exact_match_update,
    _f1_update,
    _lemma_match_update,
    _mean_compute,
    load_lemmatizer,
)

__all__ = ["ExactMatch", "F1Score", "LemmaMatch"]


class _MeanAnswerScore(Metric):
    """Shared state and ``compute`` for metrics that average one score per example."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    total: Tensor
    count: Tensor

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def compute(self) -> Tensor:
        """Mean score so far; NaN before any update."""
        return _mean_compute(self.total, self.count)


class ExactMatch(_MeanAnswerScore):
    """Fraction of predictions equal to some gold alias after SQuAD v1.1 normalisation."""

    def update(self, preds: Sequence[str], targets: Sequence[Sequence[str]]) -> None:
        """Add a batch: one prediction and a list of gold aliases per example."""
        total, count = _exact_match_update(preds, targets)
        self.total += total
        self.count += count


class F1Score(_MeanAnswerScore):
    """Mean SQuAD v1.1 token F1 against the best gold alias."""

    def update(self, preds: Sequence[str], targets: Sequence[Sequence[str]]) -> None:
        """Add a batch: one prediction and a list of gold aliases per example."""
        total, count = _f1_update(preds, targets)
        self.total += total
        self.count += count


class LemmaMatch(_MeanAnswerScore):
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
        total, count = _lemma_match_update(preds, targets, self.lemmatizer)
        self.total += total
        self.count += count
