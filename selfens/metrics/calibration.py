"""Calibration: whether the confidence a model puts in its answers matches how often they are right.

Sources of the definitions:

- ``ece`` (expected calibration error) over B equal-width bins, bin b holding the confidences in
  [b/B, (b+1)/B) and the last bin also 1.0: sum_b (n_b / n) |acc_b - conf_b|. Naeini et al. 2015,
  "Obtaining Well Calibrated Probabilities Using Bayesian Binning"; Guo et al. 2017, "On Calibration
  of Modern Neural Networks" (eq. 3, and their reliability diagrams: ``reliability`` here).
- ``brier``: mean (confidence - correct)^2; Brier 1950, "Verification of Forecasts Expressed in
  Terms of Probability".
- ``overconfidence``: mean confidence - mean correct (> 0: the model is surer than it is right).

Intervals are percentile bootstraps over examples, drawn as :func:`selfens.stats.bootstrap_means`
draws them, all three statistics recomputed from the same draws.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

from selfens.stats import bootstrap_means, percentile_interval

__all__ = ["CALIBRATION", "calibration"]

CALIBRATION = ("ece", "brier", "overconfidence")


def calibration(
    confidence: Sequence[float], correct: Sequence[float], bins: int = 10, resamples: int = 1000, seed: int = 0
) -> dict:
    """ECE, Brier score and overconfidence, each ``{"value", "ci95"}`` (None for no examples; ci95
    None without resamples), with the reliability table (one row per bin), ``bins`` and ``n``."""
    _check(confidence, correct, bins)
    n = len(confidence)
    which = [_bin(c, bins) for c in confidence]
    columns = _columns(confidence, correct, which, bins)
    point = {name: math.fsum(values) / n for name, values in columns.items()} if n else None
    boot = bootstrap_means(columns, resamples, seed) if resamples > 0 and n else None
    out = {}
    for name in CALIBRATION:
        value = _statistic(name, point, bins) if point is not None else None
        interval = percentile_interval(_statistic(name, boot, bins)) if boot is not None else None
        out[name] = {"value": value, "ci95": interval}
    out["reliability"] = _reliability(confidence, correct, which, bins)
    out["bins"] = bins
    out["n"] = n
    return out


def _check(confidence: Sequence[float], correct: Sequence[float], bins: int) -> None:
    if len(confidence) != len(correct):
        raise ValueError(f"{len(confidence)} confidences but {len(correct)} correctness scores")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    for name, values in (("confidence", confidence), ("correct", correct)):
        for i, v in enumerate(values):
            if not 0.0 <= v <= 1.0:  # False for NaN too
                raise ValueError(f"{name}[{i}] = {v} is not a probability in [0, 1]")


def _bin(confidence: float, bins: int) -> int:
    """The bin whose [low, high) holds the confidence, 1.0 in the last. Compared with the edges
    b / bins themselves (not floor(c * bins), which puts 1/49 in bin 0 of 49)."""
    lows = [b / bins for b in range(bins)]
    return min(bisect.bisect_right(lows, confidence) - 1, bins - 1)


def _columns(
    confidence: Sequence[float], correct: Sequence[float], which: list[int], bins: int
) -> dict[str, list[float]]:
    """Per-example values whose means give every statistic. ECE is one too: n_b / n |acc_b - conf_b|
    = |mean over all examples of (correct - confidence) * [example in bin b]|."""
    gaps = [y - c for c, y in zip(confidence, correct)]
    return {
        "brier": [g * g for g in gaps],
        "overconfidence": [-g for g in gaps],
        **{f"bin{b}": [g if w == b else 0.0 for g, w in zip(gaps, which)] for b in range(bins)},
    }


def _statistic(name: str, means: dict, bins: int):
    """One statistic from the column means: floats for the value, [resamples] tensors for the bootstrap."""
    if name == "ece":
        return sum(abs(means[f"bin{b}"]) for b in range(bins))
    return means[name]


def _reliability(confidence: Sequence[float], correct: Sequence[float], which: list[int], bins: int) -> list[dict]:
    """Per bin: its edges, how many examples it holds, and their mean confidence and accuracy."""
    rows = []
    for b in range(bins):
        members = [i for i, w in enumerate(which) if w == b]
        rows.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": len(members),
                "confidence": math.fsum(confidence[i] for i in members) / len(members) if members else None,
                "accuracy": math.fsum(correct[i] for i in members) / len(members) if members else None,
            }
        )
    return rows
