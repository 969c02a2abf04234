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
from typing import TYPE_CHECKING, Callable, Literal, Optional

import torch

from selfens.decode import DecodeCost, Decoded, Prompt, sampler
from selfens.errors import SelfensError
from selfens.run.files import append_rows, read_lines

if TYPE_CHECKING:
    from selfens.progress import Progress

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
        # A line cut short by a crash is dropped (and said): that prompt is computed again.
        self.skipped: list[str] = []
        items = read_lines(self.path, self.skipped)
        self.values: dict[str, float] = {item["key"]: item["confidence"] for item in items}

    def key(self, settings: ConfidenceSettings, prompt_ids: list[int]) -> str:
        blob = json.dumps([self.model, settings.for_key(), prompt_ids])
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Optional[float]:
        return self.values.get(key)

    def put(self, key: str, confidence: float, **info) -> None:
        """Record one value; written at once, so an interrupted run keeps what it computed."""
        self.values[key] = confidence
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_rows(self.path, [{"key": key, "confidence": confidence, **info}])  # one short append: safe across ranks


def mean_token_prob(token_probs: list[float]) -> float:
    """Mean probability of the greedy answer's tokens (0 for an empty answer)."""
    return sum(token_probs) / len(token_probs) if token_probs else 0.0


def agreement(samples: list[str], greedy_answer: str, lemmatizer) -> float:
    """Share of sampled answers that lemma-match the greedy answer."""
    from selfens.metrics import lemma_match

    if not samples:
        return 0.0
    return sum(lemma_match(s, [greedy_answer], lemmatizer) for s in samples) / len(samples)


class MissingConfidence(SelfensError, RuntimeError):
    """A weighted method needs confidences that are not cached, and may not compute them."""


class Confidence:
    """The confidence of each paraphrase prompt of a batch, read from the cache or computed (and
    cached) with the model.

    `generate(prompt, **kwargs) -> Decoded` decodes with the model (greedy unless `choose` samples),
    `text(tokens) -> str` turns generated ids into an answer.
    """

    def __init__(
        self,
        settings: ConfidenceSettings,
        cache: ConfidenceCache,
        generate: Callable[..., Decoded],
        text: Callable[[list[int]], str],
        lemmatizer,
        compute_missing: bool = True,
    ):
        self.settings, self.cache, self.compute_missing = settings, cache, compute_missing
        self.generate, self.text, self.lemmatizer = generate, text, lemmatizer

    def __call__(self, prompt: Prompt, progress: Optional[Progress] = None) -> tuple[torch.Tensor, DecodeCost]:
        """Confidences of the R single prompts of `prompt` -> ([R], what computing them cost); each
        prompt is counted in `progress` ("prompts"), a cached one as skipped."""
        shared = prompt.prefix.input_ids[0].tolist() if prompt.prefix is not None else []
        prompts = [shared + row[mask].tolist() for row, mask in zip(prompt.input_ids.cpu(), prompt.valid.cpu())]
        keys = [self.cache.key(self.settings, p) for p in prompts]
        missing = [i for i, key in enumerate(keys) if self.cache.get(key) is None and key not in keys[:i]]
        if missing and not self.compute_missing:
            raise MissingConfidence(
                f"{len(missing)} prompt(s) have no cached {self.settings.measure!r} confidence in {self.cache.path}. "
                f"Compute them first with `selfens confidence --config <this config>`, "
                f"or set model.init_args.compute_confidence: true."
            )
        if progress is not None:
            progress.skip(prompts=len(keys) - len(missing))
        spent = DecodeCost()
        if missing:
            spent = self._compute(prompt.select(missing), [keys[i] for i in missing], progress)
        return torch.tensor([self.cache.get(k) for k in keys], dtype=torch.float32), spent

    def _compute(self, prompt: Prompt, keys: list[str], progress: Optional[Progress]) -> DecodeCost:
        greedy = self.generate(prompt)
        spent = greedy.cost
        answers = [self.text(t) for t in greedy.tokens]
        for row, key in enumerate(keys):
            if self.settings.measure == "token_prob":
                value = mean_token_prob(greedy.token_probs[row])
            else:
                sampled = self._samples(prompt.select([row]), key)
                spent.add(sampled.cost)
                value = agreement([self.text(t) for t in sampled.tokens], answers[row], self.lemmatizer)
            self.cache.put(key, value, greedy=answers[row], measure=self.settings.measure)
            if progress is not None:
                progress.advance(prompts=1)
        return spent

    def _samples(self, prompt: Prompt, key: str) -> Decoded:
        """K sampled answers of a one-row prompt; the generator is seeded from the cache key, so a
        value does not depend on batching or on which process computed it."""
        s = self.settings
        generator = torch.Generator(device=prompt.input_ids.device).manual_seed(int(key[:15], 16) + s.seed)
        return self.generate(
            prompt,
            choose=sampler(s.temperature, s.top_k, s.top_p, generator),
            max_new_tokens=s.max_new_tokens,
            copies=s.num_samples,
        )
