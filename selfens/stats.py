"""How sure a score is: standard errors, bootstrap confidence intervals over examples, and paired
comparisons of two methods on the same examples. Pure functions over per-example scores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LEVEL = 0.95


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean: sample standard deviation / sqrt(n) (0 for fewer than 2 values)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1) / n)


def bootstrap_means(columns: dict[str, Sequence[float]], resamples: int, seed: int) -> dict[str, torch.Tensor]:
    """The means of `resamples` bootstrap samples of the examples, per column ([resamples] each).

    Every column is resampled with the same draws of examples, so columns stay paired (a view's
    EM and F1, or the two methods of a comparison)."""
    import torch  # here: `selfens report` and its --help start without it

    n = len(next(iter(columns.values())))
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n, (resamples, n), generator=generator)  # [R, n] example indices
    return {name: torch.tensor(values, dtype=torch.float64)[draws].mean(-1) for name, values in columns.items()}


def percentile_interval(means: torch.Tensor, level: float = LEVEL) -> list[float]:
    """The percentile interval that holds `level` of the bootstrap means."""
    import torch

    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=means.dtype)).tolist()
    return [low, high]


def uncertainty(columns: dict[str, Sequence[float]], resamples: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Per column: mean, standard error and 95% bootstrap interval (None without resamples)."""
    means = bootstrap_means(columns, resamples, seed) if resamples > 0 and _n(columns) else {}
    return {
        name: {
            "mean": math.fsum(values) / len(values) if values else float("nan"),
            "se": standard_error(values),
            "ci95": percentile_interval(means[name]) if name in means else None,
        }
        for name, values in columns.items()
    }


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar test: under "A and B are equally good", each discordant example is a
    fair coin; p = P(a split at least as uneven as the one seen)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = math.fsum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_comparison(
    a: dict[str, Sequence[float]],
    b: dict[str, Sequence[float]],
    changed: int,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """A - B on the same examples, per metric (a[m][i] and b[m][i] score example i): the mean
    difference with its paired bootstrap interval; an exact McNemar test on EM; and how many
    examples changed answer (`changed`, counted by the caller)."""
    diffs = {m: [x - y for x, y in zip(a[m], b[m])] for m in a}
    stats = uncertainty(diffs, resamples, seed)
    a_only = sum(1 for x, y in zip(a["em"], b["em"]) if x == 1 and y == 0)
    b_only = sum(1 for x, y in zip(a["em"], b["em"]) if x == 0 and y == 1)
    return {
        "n": _n(a),
        "difference": {m: {"mean": s["mean"], "ci95": s["ci95"]} for m, s in stats.items()},
        "mcnemar_em": {"a_right_b_wrong": a_only, "a_wrong_b_right": b_only, "p": mcnemar_exact(a_only, b_only)},
        "changed_answers": changed,
    }


def _n(columns: dict[str, Sequence[float]]) -> int:
    return len(next(iter(columns.values()))) if columns else 0
