"""The 95% intervals are right, not just ordered: results.json's standard errors and percentile
intervals equal an independent numpy implementation on the same bootstrap resamples, and on
seeded synthetic runs the intervals cover the true mean about 95% of the time.

Only the resample indices are drawn with torch (as selfens draws them, so that both sides use the
same resamples); the means, standard errors and quantiles below are numpy's. The 2.5 and 97.5
percentiles are written out here, not read from selfens.stats.LEVEL, so that these tests fail if
the level changes (at 90% the intervals cover the truth about 90% of the time).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from selfens.stats import paired_comparison, uncertainty
from tests.helpers import PER_PROMPT, logger_name, own_answers_data, read_jsonl, run_folder, selfens

RUNS, N, RESAMPLES = 400, 200, 1000  # synthetic runs, examples per run, bootstrap resamples
SEED = 0  # of the synthetic data; the bootstrap uses seed 0, as results.json does
COVERAGE = (0.93, 0.97)  # 95% +- about two binomial standard errors of 400 runs (0.011)

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: extra threads only contend


def numpy_uncertainty(values: list[float], resamples: int, seed: int) -> dict:
    """Mean, standard error and 95% percentile interval of `values`, on selfens's resamples."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    draws = torch.randint(0, n, (resamples, n), generator=torch.Generator().manual_seed(seed)).numpy()
    means = x[draws].mean(axis=1)
    return {
        "mean": x.mean(),
        "se": x.std(ddof=1) / math.sqrt(n),
        "ci95": np.percentile(means, [2.5, 97.5]).tolist(),  # 'linear', as torch.quantile
    }


@pytest.fixture(scope="module")
def scored_run(tiny_model_path, tmp_path_factory):
    """A per_prompt test run whose gold answers are the tiny model's own answers, so that every view
    scores something and the intervals are not [0, 0]."""
    folder = tmp_path_factory.mktemp("intervals")
    _, args = own_answers_data(tiny_model_path, folder)
    selfens("test", *args, "--trainer.logger.init_args.save_dir", folder / "test")
    return run_folder(folder / "test" / logger_name(PER_PROMPT))


def test_results_json_intervals_equal_numpy(scored_run):
    results = json.loads((scored_run / "results.json").read_text())
    rows = read_jsonl(scored_run / "predictions.jsonl")
    recorded = results["uncertainty"]
    assert recorded["level"] == 0.95
    assert recorded["resamples"] > 0
    for key, stats in recorded["metrics"].items():
        # test/<view>/<metric>, or test/<metric> for the main view
        *view, metric = key.split("/")[1:]
        view = view[0] if view else results["main_view"]
        expected = numpy_uncertainty([r["scores"][view][metric] for r in rows], recorded["resamples"], recorded["seed"])
        assert stats["mean"] == pytest.approx(expected["mean"], abs=1e-9), key
        assert stats["se"] == pytest.approx(expected["se"], abs=1e-9), key
        assert stats["ci95"] == pytest.approx(expected["ci95"], abs=1e-9), key
    widths = [s["ci95"][1] - s["ci95"][0] for s in recorded["metrics"].values()]
    assert sum(w > 0 for w in widths) >= len(widths) / 2, "most intervals must have a width to compare"


def coverage(low: np.ndarray, high: np.ndarray, true: float) -> float:
    return float(np.mean((low <= true) & (true <= high)))


def test_intervals_cover_the_true_mean():
    """EM-like 0/1 scores (p = 0.3) and F1-like scores in [0, 1] (0 half the time, 1 a fifth, else
    uniform: mean 0.35), RUNS runs of N examples, scored as results.json is (seed 0). mean +- 1.96
    se checks the standard error's scale, which LEVEL does not change."""
    rng = np.random.default_rng(SEED)
    em = (rng.random((RUNS, N)) < 0.3).astype(np.float64)
    kind = rng.random((RUNS, N))
    f1 = np.where(kind < 0.5, 0.0, np.where(kind < 0.7, 1.0, rng.random((RUNS, N))))
    covered = {}
    for name, runs, true in (("em", em, 0.3), ("f1", f1, 0.35)):
        # One call resamples every run with the same seed-0 draws, as each run's results.json would.
        stats = uncertainty({f"run{i}": run.tolist() for i, run in enumerate(runs)}, RESAMPLES, seed=0)
        low, high = np.array([s["ci95"] for s in stats.values()]).T
        mean, se = np.array([[s["mean"], s["se"]] for s in stats.values()]).T
        covered[f"{name} ci95"] = coverage(low, high, true)
        covered[f"{name} mean +- 1.96 se"] = coverage(mean - 1.96 * se, mean + 1.96 * se, true)
    assert all(COVERAGE[0] <= c <= COVERAGE[1] for c in covered.values()), covered


def test_paired_difference_interval_covers_the_true_difference():
    """Two methods on the same examples: A right 40% of the time, B 30%, both right 25%, so the
    examples are correlated across methods and the true EM difference is 0.1."""
    u = np.random.default_rng(SEED).random((RUNS, N))
    a = (u < 0.4).astype(np.float64)
    b = ((u < 0.25) | ((0.4 <= u) & (u < 0.45))).astype(np.float64)
    intervals = [
        paired_comparison({"em": x.tolist()}, {"em": y.tolist()}, changed=0, resamples=RESAMPLES)["difference"]["em"]
        for x, y in zip(a, b)
    ]
    low, high = np.array([d["ci95"] for d in intervals]).T
    covered = coverage(low, high, 0.1)
    assert COVERAGE[0] <= covered <= COVERAGE[1], f"the paired interval covers {covered:.4f}"
