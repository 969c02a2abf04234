"""Per-example scores and the metric states of a run, grouped by "view".

A view is one way to read a method's answers: `origin`, `avg`, or for `per_prompt` each
paraphrase (`p1`..), their `mean`, `majority` vote and `oracle` (any paraphrase correct).
Metric names are `<stage>/<view>/<em|f1|lemma>`; the main view's (the method's own answer) are
also named `<stage>/<em|f1|lemma>`, common to every method. `metric_name` and `common_name` own
that scheme.

Each example is scored once: its per-view scores go into its predictions.jsonl row, and the very
same values into the metric states, so the file and the metrics cannot disagree.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from selfens.metrics.functional import METRICS, exact_match, f1_score, lemma_match, normalize_answer
from selfens.metrics.mean_score import MeanScore

ViewScores = dict[str, dict[str, float]]  # view -> metric -> score of one example


def metric_name(stage: str, view: str, metric: str) -> str:
    return f"{stage}/{view}/{metric}"


def common_name(stage: str, metric: str) -> str:
    """The name every method logs its own answer's score under, so that runs share one chart."""
    return f"{stage}/{metric}"


def common_names(stage: str) -> list[str]:
    return [common_name(stage, m) for m in METRICS]


def score(prediction: str, answers: list[str], lemmatizer) -> dict[str, float]:
    """EM, F1 and lemma match of one prediction against its gold aliases."""
    return {
        "em": exact_match(prediction, answers),
        "f1": f1_score(prediction, answers),
        "lemma": lemma_match(prediction, answers, lemmatizer),
    }


def majority(predictions: list[str]) -> tuple[str, float]:
    """The most common answer (after SQuAD normalisation; ties -> earliest paraphrase) and the share
    of paraphrases that gave it."""
    keys = [normalize_answer(p) for p in predictions]
    counts = Counter(keys)
    best = max(keys, key=lambda k: (counts[k], -keys.index(k)))
    return predictions[keys.index(best)], counts[best] / len(keys)


class Scores(nn.Module):
    """One exact-mean state per (view, metric), plus per-example `extra` values (e.g. agreement).

    Plain `MeanScore`s, deliberately not a `MetricCollection`: its compute groups merge metrics
    whose states look equal after the first batch, which once turned F1 and lemma into copies of EM.
    All states concatenate across processes.
    """

    def __init__(self, views: list[str], extra: list[str] = ()):
        super().__init__()
        self.views = nn.ModuleDict({v: nn.ModuleDict({m: MeanScore() for m in METRICS}) for v in views})
        self.extra = nn.ModuleDict({name: MeanScore() for name in extra})

    def update(self, rows: list[dict]) -> None:
        """Add scored predictions.jsonl rows: each has `scores` (view -> metric -> value) and the extras."""
        for row in rows:
            if set(row["scores"]) != set(self.views):
                raise ValueError(
                    f"row {row['id']!r} scores views {sorted(row['scores'])}, expected {sorted(self.views)}"
                )
        for view, metrics in self.views.items():
            for m, state in metrics.items():
                state.update(torch.tensor([row["scores"][view][m] for row in rows], dtype=torch.float64))
        for name, state in self.extra.items():
            state.update(torch.tensor([row[name] for row in rows], dtype=torch.float64))

    def compute(self, stage: str) -> dict[str, torch.Tensor]:
        out = {
            metric_name(stage, view, m): state.compute()
            for view, metrics in self.views.items()
            for m, state in metrics.items()
        }
        out.update({common_name(stage, name): state.compute() for name, state in self.extra.items()})
        return out

    def reset(self) -> None:
        for state in self.modules():
            if isinstance(state, MeanScore):
                state.reset()


def score_columns(rows: list[dict], stage: str, main_view: str) -> dict[str, list[float]]:
    """Per metric name (`<stage>/<view>/<metric>`, and the common `<stage>/<metric>` of the main view):
    the per-example scores of scored predictions.jsonl rows, in row order."""
    if not rows:
        return {}
    columns = {
        metric_name(stage, view, m): [row["scores"][view][m] for row in rows]
        for view in rows[0]["scores"]
        for m in METRICS
    }
    columns.update({common_name(stage, m): columns[metric_name(stage, main_view, m)] for m in METRICS})
    return columns
