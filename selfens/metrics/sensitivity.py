"""Prompt sensitivity: how much a model's answers to one fact change with its wording.

Input is facts x phrasings: ``answers[i][k]`` is the (normalized) answer of phrasing k to fact i
(k = 0 is the original wording), ``correct[i][k]`` its exact match (0.0 or 1.0). Every fact has the
same N phrasings. All values are fractions in [0, 1] (``original_gap`` in [-1, 1]).

Sources of the definitions:

- ``consistency``, ``consistent_facts``, ``knowledgeable_consistency``,
  ``unknowledgeable_consistency``, ``group_accuracy`` and ``oracle``: Elazar et al. 2021, "Measuring
  and Improving Consistency in Pretrained Language Models" (TACL; ParaRel), as computed in
  pararel/consistency/encode_consistency_probe.py (``analyze_results``: consistency,
  consistent_subjects, successful_subjects, knowledgable/unknowledgable_consistency;
  ``group_score_lama_eval``: group accuracy). Their script counts agreeing pattern pairs pooled
  over the subjects of one relation, and the paper averages relations. With the same N for every
  fact, the pooled share is the mean over facts of each fact's share; we average over all facts
  given (micro), which the bootstrap over facts needs. For their per-relation numbers, call
  :func:`sensitivity` on one relation's facts and average the values. Where no fact is (un)knowledgeable
  their script reports 0; we report None.
- ``maxp``, ``avgp`` and ``cps`` (combined performance score): Mizrahi et al. 2024, "State of What
  Art? A Call for Multi-Prompt LLM Evaluation" (TACL).
- ``spread``: Sclar et al. 2023, "Quantifying Language Models' Sensitivity to Spurious Features in
  Prompt Design" (FormatSpread: best minus worst prompt's accuracy).
- ``original_gap``: ours; how much the original wording beats the average paraphrase.

Intervals are percentile bootstraps over facts, drawn as :func:`selfens.stats.bootstrap_means`
draws examples (so, on the same facts and seed, the draws of the EM intervals), every statistic
recomputed from the same draws.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from selfens.stats import bootstrap_means, percentile_interval

if TYPE_CHECKING:
    import torch

__all__ = ["SENSITIVITY", "pair_agreement", "sensitivity"]

SENSITIVITY = (
    "consistency",
    "consistent_facts",
    "knowledgeable_consistency",
    "unknowledgeable_consistency",
    "group_accuracy",
    "oracle",
    "maxp",
    "avgp",
    "cps",
    "spread",
    "original_gap",
)


def pair_agreement(answers: Sequence[str]) -> float | None:
    """Share of the unordered pairs of one fact's phrasings that gave the same answer (Elazar et al.
    2021's consistency of one fact); None with fewer than 2 phrasings, which have no pair."""
    n = len(answers)
    if n < 2:
        return None
    agreeing = sum(c * (c - 1) // 2 for c in Counter(answers).values())
    return agreeing / (n * (n - 1) // 2)


def sensitivity(
    answers: list[list[str]], correct: list[list[float]], resamples: int = 1000, seed: int = 0
) -> dict[str, dict]:
    """Per metric of SENSITIVITY: ``{"value", "ci95"}``, the value over all facts and its 95% percentile
    bootstrap interval over facts (None without resamples, or where the value is undefined)."""
    n = _phrasings(answers, correct)
    columns = _columns(answers, correct, n)
    values = _statistics({name: _mean(col) for name, col in columns.items()}, n)
    boot = _statistics(bootstrap_means(columns, resamples, seed), n) if resamples > 0 and answers else {}
    out = {}
    for name in SENSITIVITY:
        value = _value(values.get(name))
        out[name] = {"value": value, "ci95": _interval(boot.get(name)) if value is not None else None}
    return out


def _phrasings(answers: list[list[str]], correct: list[list[float]]) -> int:
    """N, after checking that every fact has N answers and N 0/1 scores (0 for no facts)."""
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} facts of answers but {len(correct)} of correct")
    n = len(answers[0]) if answers else 0
    for i, (a, c) in enumerate(zip(answers, correct)):
        if len(a) != n or len(c) != n or n < 1:
            raise ValueError(f"fact {i}: {len(a)} answers and {len(c)} scores, expected {max(n, 1)} of each")
        if any(x not in (0.0, 1.0) for x in c):
            raise ValueError(f"fact {i}: correct must be 0.0 or 1.0, got {list(c)}")
    return n


def _columns(answers: list[list[str]], correct: list[list[float]], n: int) -> dict[str, list[float]]:
    """Per-fact values whose means over facts give every statistic (so one bootstrap serves all)."""
    known = [float(any(c)) for c in correct]
    columns = {
        "consistent_facts": [float(len(set(a)) == 1) for a in answers],
        "known": known,
        "unknown": [1.0 - k for k in known],
        "group_accuracy": [float(all(c)) for c in correct],
        **{f"acc{k}": [float(c[k]) for c in correct] for k in range(n)},
    }
    if n >= 2:
        pairs = [pair_agreement(a) for a in answers]
        columns["consistency"] = pairs
        columns["known_pairs"] = [p * k for p, k in zip(pairs, known)]
        columns["unknown_pairs"] = [p * (1.0 - k) for p, k in zip(pairs, known)]
    return columns


def _statistics(means: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """Every metric from the column means: scalars for the value, [resamples] for the bootstrap."""
    import torch

    if not means or n == 0:
        return {}
    acc = torch.stack([means[f"acc{k}"] for k in range(n)], -1)  # [..., N] accuracy per phrasing
    maxp, avgp = acc.max(-1).values, acc.mean(-1)
    out = {
        "consistent_facts": means["consistent_facts"],
        "group_accuracy": means["group_accuracy"],
        "oracle": means["known"],
        "maxp": maxp,
        "avgp": avgp,
        "cps": (1 - (maxp - avgp)) * maxp,
        "spread": maxp - acc.min(-1).values,
    }
    if n >= 2:
        out["consistency"] = means["consistency"]
        # A share among the facts of one kind: NaN (undefined) where none is drawn.
        out["knowledgeable_consistency"] = means["known_pairs"] / means["known"]
        out["unknowledgeable_consistency"] = means["unknown_pairs"] / means["unknown"]
        out["original_gap"] = acc[..., 0] - acc[..., 1:].mean(-1)
    return out


def _mean(values: list[float]) -> torch.Tensor:
    import torch

    return torch.tensor(math.fsum(values) / len(values) if values else math.nan, dtype=torch.float64)


def _value(value: torch.Tensor | None) -> float | None:
    return None if value is None or math.isnan(value.item()) else value.item()


def _interval(means: torch.Tensor | None) -> list[float] | None:
    """The percentile interval of the bootstrap values, leaving out the resamples where the
    statistic is undefined (no knowledgeable fact drawn); None if it never is."""
    if means is None:
        return None
    means = means[~means.isnan()]
    return percentile_interval(means) if means.numel() else None
