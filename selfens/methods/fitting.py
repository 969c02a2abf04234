"""Fusion fitted on a development split: what `selfens fit` learns, and the three rules that use it.

A fit is the accuracy (EM) of each phrasing asked alone on the development facts, overall and per
group (ParaRel's relation, your JSONL's `group`), counted by a `per_prompt` run of the dev split.
From those counts, with a group's accuracies shrunk toward the overall ones (and those toward equal
accuracies) by `shrinkage` pseudo-facts, so that a small group does not decide on a few facts:

- `best`: the phrasing with the highest accuracy in the example's group, asked alone (LPAQA's
  "top-1 prompt chosen on training data", Jiang et al. 2020); ties go to the original wording.
- `weighted`: every phrasing, fused with weights proportional to its accuracy (the classic
  accuracy-weighted vote; `weighted_avg` over the logits).
- `filtered`: the phrasings whose accuracy is within `margin` of the best, fused with equal weights.

Pure functions of the counts: no model, no test data.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

from selfens.errors import ConfigError

ALL = "*"  # the counts over every dev fact
FIT_FORMAT = 1
Rule = Literal["best", "weighted", "filtered"]


@dataclass(frozen=True)
class Fit:
    """What a fitted-weights file holds."""

    evaluation: dict  # the model and decoding the dev answers came from (`EnsembleModule.evaluation_identity`)
    N: int
    dev: dict  # the dev split: its dataset, settings and examples hash, and the run that decoded it
    dev_ids: list[str]
    facts: dict[str, int]  # group -> dev facts (ALL: every one)
    correct: dict[str, list[float]]  # group -> per phrasing, the dev facts it answered right (EM)

    def accuracy(self, group: Optional[str], shrinkage: float) -> list[float]:
        """Each phrasing's dev accuracy in `group` (None, or a group the dev split lacks: overall),
        shrunk toward the overall accuracies, which are shrunk toward their mean (equal weights)."""
        n, right = self.facts[ALL], self.correct[ALL]
        equal = sum(right) / (n * self.N) if n else 0.0
        overall = [(c + shrinkage * equal) / (n + shrinkage) if n + shrinkage else equal for c in right]
        if group is None or group not in self.facts or group == ALL:
            return overall
        n, right = self.facts[group], self.correct[group]
        return [(c + shrinkage * o) / (n + shrinkage) if n + shrinkage else o for c, o in zip(right, overall)]

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


def count(rows: list[dict], n: int) -> tuple[dict[str, int], dict[str, list[float]]]:
    """(facts, correct) per group and overall from a scored `per_prompt` run's rows (views p1..pN)."""
    facts: dict[str, int] = {}
    correct: dict[str, list[float]] = {}
    for row in rows:
        right = [row["scores"][f"p{k + 1}"]["em"] for k in range(n)]
        for group in {ALL, row.get("group") or ALL}:
            facts[group] = facts.get(group, 0) + 1
            correct[group] = [a + b for a, b in zip(correct.get(group, [0.0] * n), right)]
    return facts, correct


def weights(accuracy: list[float], rule: Rule, margin: float) -> list[float]:
    """The per-phrasing weights of a rule from the (shrunk) accuracies: one-hot for `best`."""
    best = max(accuracy)
    if rule == "best":
        chosen = accuracy.index(best)  # the first: the original wording wins a tie
        return [1.0 if k == chosen else 0.0 for k in range(len(accuracy))]
    if rule == "filtered":
        return [1.0 if a >= best - margin else 0.0 for a in accuracy]
    return list(accuracy)


def key(evaluation: dict, dev: dict, n: int) -> str:
    """The name of a fit's file: which model and decoding, which dev split, which N."""
    blob = json.dumps({"evaluation": evaluation, "dev": dev, "N": n}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save(fit: Fit, path: Path, notes: Optional[dict] = None) -> None:
    """Write the fit, with `notes` for a reader (e.g. the dev run's folder) and each phrasing's dev
    accuracy; a temporary file renamed into place, so a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shares = {g: [round(c / fit.facts[g], 4) for c in right] for g, right in fit.correct.items()}
    text = json.dumps({"format": FIT_FORMAT, **asdict(fit), "dev_accuracy": shares, **(notes or {})}, indent=1)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text + "\n", encoding="utf-8")
    partial.replace(path)


def load(path: Path, remedy: str) -> Fit:
    """The fit in `path`; a missing or unreadable file is a ConfigError that says `remedy`."""
    if not path.exists():
        raise ConfigError(f"no fitted weights at {path}: {remedy}")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("format") != FIT_FORMAT:
            raise ValueError(f"format {saved.get('format')!r}, expected {FIT_FORMAT}")
        fields = {k: saved[k] for k in Fit.__dataclass_fields__}
    except (ValueError, KeyError, AttributeError) as error:
        raise ConfigError(f"{path} is not a selfens fitted-weights file ({error}): {remedy}") from None
    return Fit(**fields)


def check(fit: Fit, path: Path, evaluation: dict, n: int, test_ids: list[str], remedy: str) -> None:
    """Refuse a fit of another model or decoding, another N, or whose dev facts include test facts."""
    from selfens.run.identity import differences

    differ = differences(fit.evaluation, evaluation)
    if differ:
        raise ConfigError(f"{path} was fitted with another model or decoding ({'; '.join(differ)}): {remedy}")
    if fit.N != n:
        raise ConfigError(f"{path} was fitted at N = {fit.N}, this run has N = {n}: {remedy}")
    overlap(fit.dev_ids, test_ids, str(path))


def overlap(dev_ids: list[str], test_ids: list[str], where: str) -> None:
    """Refuse a development split that shares a fact (by id) with the test facts."""
    shared = sorted(set(dev_ids) & set(test_ids))
    if shared:
        raise ConfigError(
            f"{where}: {len(shared)} of the test facts are in the development split (e.g. "
            f"{', '.join(shared[:3])}): fit on facts apart from the test facts"
        )
