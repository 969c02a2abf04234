"""Per-example scores and the metric states of a run, grouped by "view".

A view is one way to read a method's answers: `origin`, `avg`, or for `per_prompt` each
paraphrase (`p1`..), their `mean`, `majority` vote and `oracle` (any paraphrase correct).
Metric names are `<stage>/<view>/<em|f1|lemma>`.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn
from torchmetrics import MetricCollection

from selfens.metrics import ExactMatch, F1Score, LemmaMatch, MeanScore, exact_match, f1_score, lemma_match, normalize_answer

METRICS = ("em", "f1", "lemma")


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
    """Metric states for a set of views; each view holds EM / F1 / lemma match.

    `answer_views` score answer strings with the torchmetrics text metrics; `value_views` average
    per-example values (e.g. the oracle's max over paraphrases). All states sum across processes.
    """

    def __init__(self, answer_views: list[str], value_views: list[str] = (), extra: list[str] = (), lemmatizer: str = "blank_en"):
        super().__init__()
        self.answer = nn.ModuleDict({
            v: MetricCollection({"em": ExactMatch(), "f1": F1Score(), "lemma": LemmaMatch(lemmatizer)})
            for v in answer_views
        })
        self.value = nn.ModuleDict({v: MetricCollection({m: MeanScore() for m in METRICS}) for v in value_views})
        self.extra = nn.ModuleDict({name: MeanScore() for name in extra})

    def update_answers(self, view: str, predictions: list[str], answers: list[list[str]]) -> None:
        self.answer[view].update(predictions, answers)

    def update_values(self, view: str, values: list[dict[str, float]]) -> None:
        for m in METRICS:
            self.value[view][m].update(torch.tensor([v[m] for v in values], dtype=torch.float64))

    def update_extra(self, name: str, values: list[float]) -> None:
        self.extra[name].update(torch.tensor(values, dtype=torch.float64))

    def compute(self, stage: str) -> dict[str, torch.Tensor]:
        out = {}
        for group in (self.answer, self.value):
            for view, metrics in group.items():
                for m, value in metrics.compute().items():
                    out[f"{stage}/{view}/{m}"] = value
        for name, metric in self.extra.items():
            out[f"{stage}/{name}"] = metric.compute()
        return out

    def reset(self) -> None:
        for group in (self.answer, self.value):
            for metrics in group.values():
                metrics.reset()
        for metric in self.extra.values():
            metric.reset()
