"""Calibration metrics against values worked by hand and a textbook ECE."""

import math
import random

import pytest

from selfens.metrics.calibration import CALIBRATION, calibration

# 8 answers, 10 bins of width 0.1.
CONFIDENCE = [0.05, 0.15, 0.15, 0.85, 0.95, 0.95, 0.95, 0.95]
CORRECT = [0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
# bin 0: {0.05}, acc 0       -> 1/8 * |0    - 0.05| = 0.05 / 8
# bin 1: {0.15, 0.15}, acc .5 -> 2/8 * |0.5  - 0.15| = 0.70 / 8
# bin 8: {0.85}, acc 0       -> 1/8 * |0    - 0.85| = 0.85 / 8
# bin 9: {0.95 x4}, acc .75   -> 4/8 * |0.75 - 0.95| = 0.80 / 8
# ECE = (0.05 + 0.70 + 0.85 + 0.80) / 8 = 2.4 / 8 = 0.3
HAND_ECE = 0.3
# Brier: 0.05^2 + 0.85^2 + 0.15^2 + 0.85^2 + 3 * 0.05^2 + 0.95^2
#      = 0.0025 + 0.7225 + 0.0225 + 0.7225 + 0.0075 + 0.9025 = 2.38;  / 8 = 0.2975
HAND_BRIER = 0.2975
# mean confidence (0.05 + 0.30 + 0.85 + 3.80) / 8 = 0.625, accuracy 4/8: 0.625 - 0.5 = 0.125
HAND_OVERCONFIDENCE = 0.125


def test_hand_worked_example():
    result = calibration(CONFIDENCE, CORRECT, bins=10, resamples=0)
    assert result["ece"]["value"] == pytest.approx(HAND_ECE)
    assert result["brier"]["value"] == pytest.approx(HAND_BRIER)
    assert result["overconfidence"]["value"] == pytest.approx(HAND_OVERCONFIDENCE)
    assert all(result[name]["ci95"] is None for name in CALIBRATION)
    assert result["bins"] == 10 and result["n"] == 8
    table = result["reliability"]
    assert [row["count"] for row in table] == [1, 2, 0, 0, 0, 0, 0, 0, 1, 4]
    assert table[1] == {"low": 0.1, "high": 0.2, "count": 2, "confidence": pytest.approx(0.15), "accuracy": 0.5}
    assert table[9]["confidence"] == pytest.approx(0.95) and table[9]["accuracy"] == 0.75
    assert table[2]["confidence"] is None and table[2]["accuracy"] is None


def test_perfectly_calibrated_set_has_no_ece():
    # In every bin the accuracy equals the mean confidence.
    confidence = [0.0] + [0.25] * 4 + [0.3, 0.35, 0.35] + [0.5] * 2 + [0.75] * 4 + [1.0] * 2
    correct = [0.0] + [1.0, 0.0, 0.0, 0.0] + [1.0, 0.0, 0.0] + [1.0, 0.0] + [1.0, 1.0, 1.0, 0.0] + [1.0, 1.0]
    result = calibration(confidence, correct, resamples=0)
    assert result["ece"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert result["overconfidence"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert result["brier"]["value"] > 0  # calibrated is not certain


@pytest.mark.parametrize(
    ("confidence", "bins", "expected_bin"),
    [
        (0.0, 10, 0),
        (0.0999999, 10, 0),
        (0.1, 10, 1),  # a lower edge opens its bin
        (0.3, 10, 3),
        (0.5, 10, 5),
        (0.9, 10, 9),
        (0.9999999, 10, 9),
        (1.0, 10, 9),  # the last bin is closed at 1.0
        (1 / 49, 49, 1),  # floor(c * 49) would say 0: (1/49) * 49 == 0.9999999999999999
        (0.7, 1, 0),
        (1.0, 1, 0),
    ],
)
def test_bin_edges(confidence, bins, expected_bin):
    counts = [row["count"] for row in calibration([confidence], [1.0], bins=bins, resamples=0)["reliability"]]
    assert counts == [int(b == expected_bin) for b in range(bins)]


def test_reliability_edges():
    table = calibration([0.5], [1.0], bins=4, resamples=0)["reliability"]
    assert [(row["low"], row["high"]) for row in table] == [(0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0)]


def test_one_bin_ece_is_the_absolute_overconfidence():
    result = calibration(CONFIDENCE, CORRECT, bins=1, resamples=0)
    assert result["ece"]["value"] == pytest.approx(abs(HAND_OVERCONFIDENCE))


def textbook_ece(confidence: list[float], correct: list[float], bins: int) -> float:
    """Guo et al. 2017, eq. 3, with the bins found by comparing against each bin's edges."""
    n, total = len(confidence), 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [i for i, c in enumerate(confidence) if low <= c < high or (b == bins - 1 and c == 1.0)]
        if members:
            acc = sum(correct[i] for i in members) / len(members)
            conf = sum(confidence[i] for i in members) / len(members)
            total += len(members) / n * abs(acc - conf)
    return total


@pytest.mark.parametrize("trial", range(20))
def test_matches_textbook_ece(trial):
    rng = random.Random(trial)
    n, bins = rng.randint(1, 60), rng.choice([1, 5, 10, 15])
    confidence = [rng.choice([rng.random(), round(rng.random(), 1), 1.0]) for _ in range(n)]
    correct = [float(rng.random() < c) for c in confidence]
    result = calibration(confidence, correct, bins=bins, resamples=0)
    assert result["ece"]["value"] == pytest.approx(textbook_ece(confidence, correct, bins))
    assert result["brier"]["value"] == pytest.approx(sum((c - y) ** 2 for c, y in zip(confidence, correct)) / n)
    assert result["overconfidence"]["value"] == pytest.approx((sum(confidence) - sum(correct)) / n)
    assert sum(row["count"] for row in result["reliability"]) == n


@pytest.mark.parametrize("bad", [-0.1, 1.0000001, math.nan, math.inf])
def test_bad_confidence_names_the_index(bad):
    with pytest.raises(ValueError, match=r"confidence\[2\]"):
        calibration([0.5, 0.5, bad], [1.0, 0.0, 1.0])


def test_bad_input():
    with pytest.raises(ValueError):
        calibration([0.5], [1.0, 0.0])
    with pytest.raises(ValueError):
        calibration([0.5], [1.0], bins=0)


def test_empty():
    result = calibration([], [])
    assert all(result[name] == {"value": None, "ci95": None} for name in CALIBRATION)
    assert result["n"] == 0 and len(result["reliability"]) == 10
    assert all(row["count"] == 0 and row["confidence"] is None for row in result["reliability"])


def test_interval_holds_the_value_and_is_seeded():
    rng = random.Random(0)
    confidence = [rng.random() for _ in range(200)]
    correct = [float(rng.random() < c * 0.8) for c in confidence]
    result = calibration(confidence, correct, resamples=300, seed=0)
    for name in CALIBRATION:
        low, high = result[name]["ci95"]
        assert low <= result[name]["value"] <= high, name
    assert calibration(confidence, correct, resamples=300, seed=0) == result
    assert calibration(confidence, correct, resamples=300, seed=1) != result
    assert all(calibration(confidence, correct, resamples=0)[name]["ci95"] is None for name in CALIBRATION)


def test_bootstrap_resamples_examples():
    """The interval is the percentile interval of the textbook statistics on resampled examples,
    with the draws of selfens.stats."""
    import torch

    rng = random.Random(3)
    confidence = [rng.random() for _ in range(30)]
    correct = [float(rng.random() < 0.6) for _ in confidence]
    resamples, seed = 40, 2
    draws = torch.randint(0, 30, (resamples, 30), generator=torch.Generator().manual_seed(seed)).tolist()
    result = calibration(confidence, correct, bins=5, resamples=resamples, seed=seed)
    statistics = {
        "ece": lambda c, y: textbook_ece(c, y, 5),
        "brier": lambda c, y: sum((a - b) ** 2 for a, b in zip(c, y)) / len(c),
        "overconfidence": lambda c, y: (sum(c) - sum(y)) / len(c),
    }
    for name, statistic in statistics.items():
        boot = torch.tensor(
            [statistic([confidence[i] for i in d], [correct[i] for i in d]) for d in draws], dtype=torch.float64
        )
        expected = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
        assert result[name]["ci95"] == pytest.approx(expected), name
