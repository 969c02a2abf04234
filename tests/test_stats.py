"""Standard errors, bootstrap intervals and the exact McNemar test, on cases worked by hand."""

import math

import pytest

from selfens.stats import (
    bootstrap_means,
    mcnemar_exact,
    paired_comparison,
    percentile_interval,
    standard_error,
    uncertainty,
)


def test_standard_error():
    assert standard_error([1, 0, 1, 0]) == pytest.approx(math.sqrt((4 * 0.25) / 3 / 4))
    assert standard_error([1, 1, 1]) == 0.0
    assert standard_error([0.5]) == 0.0


@pytest.mark.parametrize(
    "a_only, b_only, p",
    [
        (0, 0, 1.0),
        (0, 5, 2 / 32),  # all 5 discordant examples one way: 2 * 0.5**5
        (1, 9, 2 * (1 + 10) / 1024),  # 2 * P(X <= 1), X ~ Bin(10, 1/2)
        (5, 5, 1.0),
        (3, 4, 1.0),  # 2 * P(X <= 3) > 1, capped
        (2, 10, 2 * (1 + 12 + 66) / 4096),
    ],
)
def test_mcnemar_exact(a_only, b_only, p):
    assert mcnemar_exact(a_only, b_only) == pytest.approx(p)
    assert mcnemar_exact(b_only, a_only) == pytest.approx(p)  # two-sided: symmetric


def test_bootstrap_is_seeded_and_paired():
    values = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    a = bootstrap_means({"x": values, "y": values}, 500, seed=3)
    assert a["x"].tolist() == a["y"].tolist(), "columns are resampled with the same draws"
    assert a["x"].tolist() == bootstrap_means({"x": values}, 500, seed=3)["x"].tolist()
    assert a["x"].tolist() != bootstrap_means({"x": values}, 500, seed=4)["x"].tolist()


def test_interval_agrees_with_the_normal_approximation_on_a_large_sample():
    values = [float(i % 10 < 3) for i in range(1000)]  # mean 0.3
    stats = uncertainty({"em": values}, resamples=2000, seed=0)["em"]
    se = standard_error(values)
    low, high = stats["ci95"]
    assert stats["mean"] == pytest.approx(0.3)
    assert low == pytest.approx(0.3 - 1.96 * se, abs=0.006) and high == pytest.approx(0.3 + 1.96 * se, abs=0.006)


def test_no_resamples_no_interval():
    assert uncertainty({"em": [1.0, 0.0]}, resamples=0)["em"]["ci95"] is None


def test_percentile_interval():
    import torch

    means = torch.arange(1001, dtype=torch.float64) / 1000  # 0, 0.001, ..., 1
    assert percentile_interval(means) == pytest.approx([0.025, 0.975])


def test_paired_comparison():
    a = {"em": [1, 1, 0, 1, 0, 1], "f1": [1, 1, 0.5, 1, 0, 1], "lemma": [1, 1, 0, 1, 0, 1]}
    b = {"em": [1, 0, 0, 0, 1, 0], "f1": [1, 0, 0.5, 0, 1, 0], "lemma": [1, 0, 0, 0, 1, 0]}
    result = paired_comparison(a, b, changed=4, resamples=200, seed=0)
    assert result["n"] == 6 and result["changed_answers"] == 4
    assert result["difference"]["em"]["mean"] == pytest.approx((4 - 2) / 6)
    assert result["mcnemar_em"] == {"a_right_b_wrong": 3, "a_wrong_b_right": 1, "p": pytest.approx(2 * 5 / 16)}
    low, high = result["difference"]["em"]["ci95"]
    assert -1 <= low <= result["difference"]["em"]["mean"] <= high <= 1
