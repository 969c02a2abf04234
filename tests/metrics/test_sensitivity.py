"""Prompt-sensitivity metrics against values worked by hand and a brute-force implementation."""

import itertools
import math
import random

import pytest
import torch

from selfens.metrics.sensitivity import SENSITIVITY, pair_agreement, sensitivity

# 3 facts x 4 phrasings (k = 0 is the original wording).
ANSWERS = [
    ["paris", "paris", "lyon", "paris"],  # gold paris
    ["rome", "milan", "milan", "turin"],  # gold naples: never right
    ["berlin", "berlin", "berlin", "berlin"],  # gold berlin
]
CORRECT = [
    [1.0, 1.0, 0.0, 1.0],
    [0.0, 0.0, 0.0, 0.0],
    [1.0, 1.0, 1.0, 1.0],
]
# 4 phrasings: 6 unordered pairs per fact.
#   fact 0: paris x3 -> 3 agreeing pairs: 3/6;  fact 1: milan x2 -> 1 pair: 1/6;  fact 2: 6/6
HAND = {
    "consistency": (3 / 6 + 1 / 6 + 6 / 6) / 3,  # = 5/9
    "consistent_facts": 1 / 3,  # fact 2 only
    "knowledgeable_consistency": (3 / 6 + 6 / 6) / 2,  # facts 0 and 2 have a right phrasing: 3/4
    "unknowledgeable_consistency": 1 / 6,  # fact 1
    "group_accuracy": 1 / 3,  # fact 2: every phrasing right
    "oracle": 2 / 3,  # facts 0 and 2: some phrasing right
    # accuracy per phrasing: acc = [2/3, 2/3, 1/3, 2/3] (a three-way tie for the best)
    "maxp": 2 / 3,
    "avgp": (2 + 2 + 1 + 2) / 3 / 4,  # = 7/12
    "cps": (1 - (2 / 3 - 7 / 12)) * 2 / 3,  # = 11/12 * 2/3 = 11/18
    "spread": 2 / 3 - 1 / 3,
    "original_gap": 2 / 3 - (2 / 3 + 1 / 3 + 2 / 3) / 3,  # = 2/3 - 5/9 = 1/9
}


def values(result: dict) -> dict:
    return {name: result[name]["value"] for name in SENSITIVITY}


def test_hand_worked_example():
    result = sensitivity(ANSWERS, CORRECT, resamples=0)
    assert list(result) == list(SENSITIVITY)
    assert values(result) == pytest.approx(HAND)
    assert all(r["ci95"] is None for r in result.values())


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["a", "a", "b", "b"], 2 / 6),  # a 2-2 tie: one pair each
        (["a", "b", "c"], 0.0),
        (["a", "a"], 1.0),
        (["", "", "x", ""], 3 / 6),  # empty answers agree with each other like any answer
        (["", ""], 1.0),
        (["a"], None),  # no pair
        ([], None),
    ],
)
def test_pair_agreement(answers, expected):
    assert pair_agreement(answers) == (pytest.approx(expected) if expected is not None else None)


def test_empty_answers_are_answers():
    result = values(sensitivity([["", "", ""], ["", "x", ""]], [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], resamples=0))
    assert result["consistency"] == pytest.approx((1 + 1 / 3) / 2)
    assert result["consistent_facts"] == 0.5
    assert result["knowledgeable_consistency"] == pytest.approx(1 / 3)
    assert result["unknowledgeable_consistency"] == 1.0


def test_ties_for_the_best_phrasing():
    # Both phrasings are right on one fact of two: MaxP = AvgP, no spread, CPS = MaxP.
    result = values(sensitivity([["a", "b"], ["c", "d"]], [[1.0, 0.0], [0.0, 1.0]], resamples=0))
    assert result["maxp"] == result["avgp"] == result["cps"] == 0.5
    assert result["spread"] == 0.0 and result["original_gap"] == 0.0
    assert result["group_accuracy"] == 0.0 and result["oracle"] == 1.0
    assert result["consistency"] == 0.0 and result["unknowledgeable_consistency"] is None


def test_one_phrasing():
    result = sensitivity([["a"], ["b"]], [[1.0], [0.0]])
    got = values(result)
    assert got["consistency"] is None and result["consistency"]["ci95"] is None
    assert got["knowledgeable_consistency"] is None and got["unknowledgeable_consistency"] is None
    assert got["original_gap"] is None and result["original_gap"]["ci95"] is None
    assert got["consistent_facts"] == 1.0
    assert got["group_accuracy"] == got["oracle"] == got["maxp"] == got["avgp"] == got["cps"] == 0.5
    assert got["spread"] == 0.0
    assert result["maxp"]["ci95"] is not None


def test_no_facts():
    result = sensitivity([], [])
    assert all(r == {"value": None, "ci95": None} for r in result.values())


@pytest.mark.parametrize(
    ("answers", "correct"),
    [
        ([["a", "b"], ["c"]], [[1.0, 0.0], [1.0]]),  # ragged
        ([["a", "b"]], [[1.0]]),  # scores and answers differ
        ([["a", "b"]], [[1.0, 0.5]]),  # not 0/1
        ([[]], [[]]),  # no phrasing
        ([["a"]], []),
    ],
)
def test_bad_input(answers, correct):
    with pytest.raises(ValueError):
        sensitivity(answers, correct)


def brute_force(answers: list[list[str]], correct: list[list[float]]) -> dict:
    """The definitions read literally, fact by fact and pair by pair."""
    facts, n = len(answers), len(answers[0])

    def share(flags):
        return sum(flags) / len(flags) if flags else None

    def agree(a):
        pairs = list(itertools.combinations(a, 2))
        return sum(x == y for x, y in pairs) / len(pairs)

    known = [i for i in range(facts) if max(correct[i]) == 1]
    unknown = [i for i in range(facts) if max(correct[i]) == 0]
    acc = [sum(correct[i][k] for i in range(facts)) / facts for k in range(n)]
    maxp, avgp = max(acc), sum(acc) / n
    return {
        "consistency": share([agree(a) for a in answers]) if n > 1 else None,
        "consistent_facts": share([all(x == a[0] for x in a) for a in answers]),
        "knowledgeable_consistency": share([agree(answers[i]) for i in known]) if n > 1 else None,
        "unknowledgeable_consistency": share([agree(answers[i]) for i in unknown]) if n > 1 else None,
        "group_accuracy": share([min(c) == 1 for c in correct]),
        "oracle": len(known) / facts,
        "maxp": maxp,
        "avgp": avgp,
        "cps": (1 - (maxp - avgp)) * maxp,
        "spread": maxp - min(acc),
        "original_gap": acc[0] - sum(acc[1:]) / (n - 1) if n > 1 else None,
    }


def random_set(rng: random.Random, facts: int, n: int) -> tuple[list[list[str]], list[list[float]]]:
    answers = [[rng.choice(["", "a", "b", "c"]) for _ in range(n)] for _ in range(facts)]
    correct = [[float(x == "a") for x in a] for a in answers]  # gold "a"
    return answers, correct


def approx_or_none(expected: dict) -> dict:
    return {k: (None if v is None else pytest.approx(v)) for k, v in expected.items()}


@pytest.mark.parametrize("trial", range(40))
def test_matches_brute_force(trial):
    rng = random.Random(trial)
    answers, correct = random_set(rng, rng.randint(1, 12), rng.randint(1, 6))
    assert values(sensitivity(answers, correct, resamples=0)) == approx_or_none(brute_force(answers, correct))


def test_bootstrap_resamples_facts():
    """The interval is the percentile interval of the statistic recomputed on resampled facts, with
    the draws of selfens.stats (a resample without a fact of the kind is left out)."""
    answers, correct = random_set(random.Random(7), 12, 4)
    resamples, seed = 50, 3
    draws = torch.randint(0, 12, (resamples, 12), generator=torch.Generator().manual_seed(seed))
    per_draw = [brute_force([answers[i] for i in d], [correct[i] for i in d]) for d in draws.tolist()]
    result = sensitivity(answers, correct, resamples=resamples, seed=seed)
    for name in SENSITIVITY:
        boot = torch.tensor([v[name] for v in per_draw if v[name] is not None], dtype=torch.float64)
        expected = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
        assert result[name]["ci95"] == pytest.approx(expected), name


def test_interval_holds_the_value_and_is_seeded():
    answers, correct = random_set(random.Random(1), 60, 5)
    result = sensitivity(answers, correct, resamples=300, seed=0)
    for name in SENSITIVITY:
        low, high = result[name]["ci95"]
        assert low <= result[name]["value"] <= high, name
    assert sensitivity(answers, correct, resamples=300, seed=0) == result
    assert sensitivity(answers, correct, resamples=300, seed=1) != result
    assert all(r["ci95"] is None for r in sensitivity(answers, correct, resamples=0).values())


def test_values_do_not_depend_on_the_bootstrap():
    answers, correct = random_set(random.Random(2), 20, 3)
    with_ci = values(sensitivity(answers, correct, resamples=100, seed=5))
    without = values(sensitivity(answers, correct, resamples=0))
    assert with_ci == without
    assert not any(isinstance(v, float) and math.isnan(v) for v in with_ci.values())
