"""The figures `selfens paraphrase` writes into a paraphrase file's sidecar: how many paraphrases were
kept, missing and rejected (by reason), and how different the kept ones are."""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Optional

from selfens.paraphrase.filters import REASONS, words


def summary(rows: list[dict], num_paraphrases: int) -> dict:
    """Counts over a finished file: kept, missing and rejected paraphrases (by reason), diversity."""
    kept = sum(len(r["paraphrases"]) for r in rows)
    rejected = Counter(x["reason"] for r in rows for x in r.get("rejected", []))
    return {
        "questions": len(rows),
        "paraphrases_asked": num_paraphrases * len(rows),
        "paraphrases_kept": kept,
        "questions_complete": sum(len(r["paraphrases"]) >= num_paraphrases for r in rows),
        "samples_drawn": kept + sum(rejected.values()),
        "rejected": {reason: rejected.get(reason, 0) for reason in REASONS},
        "diversity": diversity(rows),
    }


def diversity(rows: list[dict]) -> dict[str, Optional[float]]:
    """How different the kept paraphrases are: from their original (word-set Jaccard overlap, 1 =
    the same words), from each other, and distinct word n-grams over all of them."""
    to_original, between, grams = [], [], {1: Counter(), 2: Counter()}
    for row in rows:
        original = set(words(row["original"]))
        for text in row["paraphrases"]:
            to_original.append(_jaccard(set(words(text)), original))
            tokens = words(text)
            for n in grams:
                grams[n].update(zip(*(tokens[i:] for i in range(n))))
        between += [_jaccard(set(words(a)), set(words(b))) for a, b in combinations(row["paraphrases"], 2)]
    distinct = {f"distinct_{n}": round(len(c) / sum(c.values()), 4) if c else None for n, c in grams.items()}
    return {"overlap_with_original": _mean(to_original), "overlap_between_paraphrases": _mean(between), **distinct}


def _mean(values: list[float]) -> Optional[float]:
    return round(sum(values) / len(values), 4) if values else None


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0
