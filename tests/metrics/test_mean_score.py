"""MeanScore, the exact mean every run averages its per-example scores with."""

import pytest
import torch
from torchmetrics.utilities import dim_zero_cat

from selfens.metrics import MeanScore, exact_match, f1_score, lemma_match, load_lemmatizer

PREDS = [
    "the Eiffel tower in Paris",
    "NYC",
    "London",
    "He was born in Paris.",
    "Cats are mammals.",
    "Barack Obama",
]
TARGETS = [
    ["Eiffel Tower"],
    ["New York City", "nyc"],
    ["Paris"],
    ["Paris", "France"],
    ["cat"],
    ["President Barack Obama", "Michelle Obama"],
]

# Summed left to right in float64, these give a different last bit depending on the order.
VALUES = [0.1, 0.2, 0.3, 1 / 3, 2 / 3, 0.7] * 5
HALF = len(VALUES) // 2


def _f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _mean(*batches) -> float:
    metric = MeanScore()
    for batch in batches:
        metric.update(_f64(batch))
    return metric.compute().item()


def test_hand_computed_values() -> None:
    lemmatizer = load_lemmatizer()
    # EM: only "NYC" matches -> 1/6
    # F1: 2/3, 1, 0, 1/3 ("paris" in 5 tokens), 0 ("cats" != "cat"), 0.8 (P 2/2, R 2/3) -> 2.8/6
    # Lemma: all but "London" and "Barack Obama" (neither alias is contained in it) -> 4/6
    em = [exact_match(p, t) for p, t in zip(PREDS, TARGETS)]
    f1 = [f1_score(p, t) for p, t in zip(PREDS, TARGETS)]
    lemma = [lemma_match(p, t, lemmatizer) for p, t in zip(PREDS, TARGETS)]
    assert em == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert f1 == pytest.approx([2 / 3, 1.0, 0.0, 1 / 3, 0.0, 0.8])
    assert lemma == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    for scores, expected in [(em, 1 / 6), (f1, 2.8 / 6), (lemma, 4 / 6)]:
        result = MeanScore()
        result.update(_f64(scores[:2]))
        result.update(_f64(scores[2:]))
        mean = result.compute()
        assert mean.ndim == 0 and mean.dtype == torch.float64
        assert mean.item() == pytest.approx(expected)


def test_mean_does_not_depend_on_order_or_batching() -> None:
    assert sum(VALUES) / len(VALUES) != sum(VALUES[::-1]) / len(VALUES)  # a plain sum would differ
    means = {
        _mean(VALUES),
        _mean(VALUES[::-1]),
        _mean(sorted(VALUES)),
        _mean(VALUES[:HALF], VALUES[HALF:]),
        _mean(*([v] for v in VALUES)),
    }
    assert len(means) == 1


def test_merge_halves_equals_whole_to_the_last_bit() -> None:
    whole, first, second = MeanScore(), MeanScore(), MeanScore()
    whole.update(_f64(VALUES))
    # Merged, the scores come second half first: a plain left-to-right sum would differ.
    first.update(_f64(VALUES[HALF:]))
    second.update(_f64(VALUES[:HALF]))
    assert sum(VALUES[HALF:] + VALUES[:HALF]) != sum(VALUES)
    first.merge_state(second)
    assert sum(len(x) for x in first.scores) == sum(len(x) for x in whole.scores) == len(VALUES)
    assert first.compute().item() == whole.compute().item()


def test_update_keeps_float64_flat_scores() -> None:
    metric = MeanScore()
    metric.update(torch.tensor([[1, 0], [0, 0]]))  # ints, 2-D
    metric.update(torch.tensor([0.5], dtype=torch.float32, requires_grad=True))
    assert [s.dtype for s in metric.scores] == [torch.float64, torch.float64]
    assert [s.shape for s in metric.scores] == [(4,), (1,)]
    assert not any(s.requires_grad for s in metric.scores)
    assert metric.compute().item() == pytest.approx(1.5 / 5)


def test_states_are_cat_reduced() -> None:
    metric = MeanScore()
    assert metric._defaults == {"scores": []}
    assert metric._reductions == {"scores": dim_zero_cat}
    assert not metric.is_differentiable and metric.higher_is_better and not metric.full_state_update


def test_sync_across_processes_concatenates_then_means() -> None:
    """compute() on one of two processes: the gather sees this process's scores as one tensor, and
    the mean over both processes' scores equals one process's mean over all, to the last bit."""
    other = MeanScore()
    other.update(_f64(VALUES[:HALF]))
    gathered = []

    def gather(tensor, group=None):  # stands in for all_gather: [this process's, the other's]
        gathered.append(tensor)
        return [tensor, dim_zero_cat(other.scores)]

    metric = MeanScore(dist_sync_fn=gather, distributed_available_fn=lambda: True)
    metric.update(_f64(VALUES[HALF : HALF + 5]))
    metric.update(_f64(VALUES[HALF + 5 :]))
    assert metric.compute().item() == _mean(VALUES)
    assert [t.shape for t in gathered] == [(len(VALUES) - HALF,)]
    assert len(metric.scores) == 2  # unsynced again after compute


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_compute_before_update_is_nan() -> None:
    result = MeanScore().compute()
    assert torch.isnan(result) and result.ndim == 0 and result.dtype == torch.float64


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_reset() -> None:
    metric = MeanScore()
    metric.update(_f64([1.0, 0.0]))
    assert metric.compute().item() == 0.5
    metric.reset()
    assert metric.scores == []
    assert torch.isnan(metric.compute())
    metric.update(_f64([1.0]))
    assert metric.compute().item() == 1.0
