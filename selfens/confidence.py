"""Per-paraphrase confidence for the weighted fusion methods, cached on disk.

`sampling` (the seed's measure): the share of K sampled answers of a prompt that agree with its
greedy answer by lemma match. `token_prob` (a cheaper measure, named as such): the mean
probability the model gave the tokens of its greedy answer. Values are cached in a JSONL file per
model, keyed by model, measure, settings and the prompt's token ids, so a later run (or a rerun
after a crash) samples nothing it already has.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

Measure = Literal["sampling", "token_prob"]


@dataclass(frozen=True)
class ConfidenceSettings:
    measure: Measure
    answer_max_new_tokens: int  # the greedy answer being scored depends on these two
    stop_strings: tuple[str, ...]
    num_samples: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int

    def for_key(self) -> dict:
        settings = asdict(self)
        if self.measure == "token_prob":  # no sampling: its settings do not matter
            for name in ("num_samples", "max_new_tokens", "temperature", "top_k", "top_p", "seed"):
                del settings[name]
        return settings


class ConfidenceCache:
    """Append-only JSONL store of confidences for one model: one `{"key", "confidence", ...}` a line."""

    def __init__(self, folder: Path, model: str):
        self.model = model
        self.path = Path(folder) / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', model)}.jsonl"
        self.values: dict[str, float] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: that prompt is computed again
                self.values[item["key"]] = item["confidence"]

    def key(self, settings: ConfidenceSettings, prompt_ids: list[int]) -> str:
        blob = json.dumps([self.model, settings.for_key(), prompt_ids])
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Optional[float]:
        return self.values.get(key)

    def put(self, key: str, confidence: float, **info) -> None:
        """Record one value; written at once, so an interrupted run keeps what it computed."""
        self.values[key] = confidence
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:  # one short append per line: safe across ranks
            f.write(json.dumps({"key": key, "confidence": confidence, **info}, ensure_ascii=False) + "\n")


def mean_token_prob(token_probs: list[float]) -> float:
    """Mean probability of the greedy answer's tokens (0 for an empty answer)."""
    return sum(token_probs) / len(token_probs) if token_probs else 0.0


def agreement(samples: list[str], greedy_answer: str, lemmatizer) -> float:
    """Share of sampled answers that lemma-match the greedy answer."""
    from selfens.metrics import lemma_match

    if not samples:
        return 0.0
    return sum(lemma_match(s, [greedy_answer], lemmatizer) for s in samples) / len(samples)
