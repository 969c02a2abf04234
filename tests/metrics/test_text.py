"""The torchmetrics classes: equal to the functional scores, mergeable, NaN when empty."""

import pytest
import torch

from selfens.metrics import (
    ExactMatch,
    F1Score,
    LemmaMatch,
    exact_match_scores,
    f1_scores,
    lemma_match_scores,
    load_lemmatizer,
)

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


def _functional_mean(metric_cls) -> float:
    if metric_cls is ExactMatch:
        scores = exact_match_scores(PREDS, TARGETS)
    elif metric_cls is F1Score:
        scores = f1_scores(PREDS, TARGETS)
    else:
        scores = lemma_match_scores(PREDS, TARGETS, load_lemmatizer())
    return sum(scores) / len(scores)


METRICS = [ExactMatch, F1Score, LemmaMatch]


@pytest.mark.parametrize("metric_cls", METRICS)
def test_class_equals_functional(metric_cls) -> None:
    metric = metric_cls()
    metric.update(PREDS[:2], TARGETS[:2])
    metric.update(PREDS[2:], TARGETS[2:])
    result = metric.compute()
    assert result.ndim == 0
    assert 0.0 <= result.item() <= 1.0
    assert result.item() == pytest.approx(_functional_mean(metric_cls))


def test_hand_computed_values() -> None:
    # EM: only "NYC" matches -> 1/6
    # F1: 2/3, 1, 0, 1/3 ("paris" in 5 tokens), 0 ("cats" != "cat"), 0.8 (P 2/2, R 2/3) -> 2.8/6
    # Lemma: all but "London" and "Barack Obama" (neither alias is contained in it) -> 4/6
    for metric, expected in [(ExactMatch(), 1 / 6), (F1Score(), 2.8 / 6), (LemmaMatch(), 4 / 6)]:
        metric.update(PREDS, TARGETS)
        assert metric.compute().item() == pytest.approx(expected)


@pytest.mark.parametrize("metric_cls", METRICS)
def test_merge_halves_equals_whole(metric_cls) -> None:
    whole, first, second = metric_cls(), metric_cls(), metric_cls()
    whole.update(PREDS, TARGETS)
    first.update(PREDS[:3], TARGETS[:3])
    second.update(PREDS[3:], TARGETS[3:])
    first.merge_state(second)
    assert sum(len(x) for x in first.scores) == sum(len(x) for x in whole.scores) == len(PREDS)
    assert first.compute().item() == whole.compute().item()


@pytest.mark.parametrize("metric_cls", METRICS)
def test_states_and_attributes(metric_cls) -> None:
    metric = metric_cls()
    metric.update(PREDS, TARGETS)
    assert all(s.dtype == torch.float64 for s in metric.scores)
    assert not metric.is_differentiable and metric.higher_is_better and not metric.full_state_update


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
@pytest.mark.parametrize("metric_cls", METRICS)
def test_compute_before_update_is_nan(metric_cls) -> None:
    assert torch.isnan(metric_cls().compute())


def test_reset_and_clone_share_lemmatizer() -> None:
    metric = LemmaMatch()
    metric.update(PREDS, TARGETS)
    clone = metric.clone()
    assert clone.lemmatizer is metric.lemmatizer  # pickled by name, not copied
    metric.reset()
    assert metric.scores == []


def test_unknown_pipeline_error() -> None:
    with pytest.raises(OSError, match="python -m spacy download"):
        LemmaMatch("en_core_web_nonexistent")
