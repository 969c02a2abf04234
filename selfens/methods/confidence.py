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

from selfens.decoding.prompt import Prompt
from selfens.decoding.result import DecodeCost, Decoded
from selfens.decoding.sampling import Choose, per_prompt_sampler
from selfens.errors import SelfensError
from selfens.run.files import append_rows, read_lines

if TYPE_CHECKING:
    from selfens.run.progress import Progress

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
        # The greedy answer each value was computed for (None in a line that lacks it).
        self.answers: dict[str, Optional[str]] = {item["key"]: item.get("greedy") for item in items}

    def key(self, settings: ConfidenceSettings, prompt_ids: list[int]) -> str:
        blob = json.dumps([self.model, settings.for_key(), prompt_ids])
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Optional[float]:
        return self.values.get(key)

    def put(self, key: str, confidence: float, **info) -> None:
        """Record one value; written at once, so an interrupted run keeps what it computed."""
        self.values[key] = confidence
        self.answers[key] = info.get("greedy")
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


def chunks(count: int, size: int) -> list[list[int]]:
    """0 .. count-1 in consecutive runs of at most `size`."""
    return [list(range(start, min(start + size, count))) for start in range(0, count, size)]


def _token_rows(prompt: Prompt) -> list[list[int]]:
    """The token ids of each single prompt of `prompt`, its shared prefix included."""
    shared = prompt.prefix.input_ids[0].tolist() if prompt.prefix is not None else []
    return [shared + row[mask].tolist() for row, mask in zip(prompt.input_ids.cpu(), prompt.valid.cpu())]


class _Rows:
    """Some rows of a list of prompts, numbered across them in order: `chosen[i]` is the i-th."""

    def __init__(self, prompts: list[Prompt], chosen: list[int]):
        self.all, self.chosen = prompts, chosen
        self.starts = [0]
        for prompt in prompts:
            self.starts.append(self.starts[-1] + prompt.input_ids.shape[0])

    def prompts(self, which) -> list[Prompt]:
        """The prompts that hold the chosen rows `which` (ascending), cut to them, in order."""
        out = []
        for p, prompt in enumerate(self.all):
            start, end = self.starts[p], self.starts[p + 1]
            mine = [self.chosen[i] - start for i in which if start <= self.chosen[i] < end]
            if mine:
                out.append(prompt if len(mine) == end - start else prompt.select(mine))
        return out


class _Counted:
    """Counts the samples of one decode in `progress` ("samples"; None: not counted) as they finish.
    The decode loop asks its sampling rule for each step's tokens, naming the examples decoding;
    examples join in order, so those below the last one named that are named no more have finished."""

    def __init__(self, progress: Optional[Progress]):
        self.progress, self.joined, self.done = progress, 0, 0

    def choosing(self, choose: Choose) -> Choose:
        """`choose`, counting the samples finished at each step."""
        if self.progress is None:
            return choose

        def counting(logits: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
            self.joined = max(self.joined, int(examples.max()) + 1)
            done = self.joined - len(examples)
            if done > self.done:
                self.progress.count(samples=done - self.done)  # the others go on: not in the pace yet
            self.done = done
            return choose(logits, examples)

        return counting

    def end(self, samples: int) -> None:
        """The decode of `samples` is over (its last step's were not named): all are done, in the pace."""
        if self.progress is not None:
            self.progress.advance(samples=samples - self.done)


class MissingConfidence(SelfensError, RuntimeError):
    """A weighted method needs confidences that are not cached, and may not compute them."""


class Confidence:
    """The confidence of each paraphrase prompt of a batch, read from the cache or computed (and
    cached) with the model.

    `generate(prompt, **kwargs) -> Decoded` decodes with the model (greedy unless `choose` samples),
    `text(tokens) -> str` turns generated ids into an answer. The K samples of the missing prompts
    are decoded together, at most `max_rows` rows (prompts x K) a call; a prompt's K copies are never
    split, so a chunk holds at least one prompt (K rows) even when K > `max_rows`.
    """

    def __init__(
        self,
        settings: ConfidenceSettings,
        cache: ConfidenceCache,
        generate: Callable[..., Decoded],
        text: Callable[[list[int]], str],
        lemmatizer,
        compute_missing: bool = True,
        max_rows: int = 512,
    ):
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        self.settings, self.cache, self.compute_missing, self.max_rows = settings, cache, compute_missing, max_rows
        self.generate, self.text, self.lemmatizer = generate, text, lemmatizer

    def __call__(
        self, prompts: Prompt | list[Prompt], progress: Optional[Progress] = None
    ) -> tuple[torch.Tensor, DecodeCost]:
        """Confidences of the single prompts of `prompts` (one Prompt, or several: e.g. one per prompt
        prefix), rows in order across them -> ([rows], what computing them cost). The missing ones of
        all the prompts are computed together; each is counted in `progress` ("prompts"; with
        `sampling` also its K "samples", as each finishes), a cached one as skipped."""
        prompts = [prompts] if isinstance(prompts, Prompt) else list(prompts)
        keys = self._keys(prompts)
        missing = [i for i, key in enumerate(keys) if self.cache.get(key) is None and key not in keys[:i]]
        if missing and not self.compute_missing:
            raise MissingConfidence(
                f"{len(missing)} prompt(s) have no cached {self.settings.measure!r} confidence in {self.cache.path}. "
                f"Compute them first with `selfens confidence --config <this config>`, "
                f"or set model.init_args.compute_confidence: true."
            )
        if progress is not None:
            progress.skip(**self._units(len(keys) - len(missing)))
        spent = DecodeCost()
        if missing:
            spent = self._compute(_Rows(prompts, missing), [keys[i] for i in missing], progress)
        return torch.tensor([self.cache.get(k) for k in keys], dtype=torch.float32), spent

    def greedy_answers(self, prompts: Prompt | list[Prompt]) -> list[Optional[str]]:
        """The greedy answer each cached confidence of `prompts` was computed for, rows in order as
        `__call__` gives them (None where the cache does not say)."""
        return [self.cache.answers.get(key) for key in self._keys(prompts)]

    def _keys(self, prompts: Prompt | list[Prompt]) -> list[str]:
        """The cache key of each single prompt of `prompts`, rows in order across them."""
        prompts = [prompts] if isinstance(prompts, Prompt) else prompts
        return [self.cache.key(self.settings, ids) for prompt in prompts for ids in _token_rows(prompt)]

    def _compute(self, rows: _Rows, keys: list[str], progress: Optional[Progress]) -> DecodeCost:
        """Compute and cache the values of `rows` (keys[i]: the i-th of them)."""
        greedy = self.generate(rows.prompts(range(len(keys))))
        spent = greedy.cost
        answers = [self.text(t) for t in greedy.tokens]
        if self.settings.measure == "token_prob":
            for row, key in enumerate(keys):
                self._record(key, mean_token_prob(greedy.token_probs[row]), answers[row], progress)
            return spent
        k = self.settings.num_samples
        for chunk in chunks(len(keys), max(1, self.max_rows // k)):
            counted = _Counted(progress)  # a chunk takes minutes: its samples are counted as they finish
            sampled = self._samples(rows.prompts(chunk), [keys[row] for row in chunk], counted)
            spent.add(sampled.cost)
            counted.end(len(chunk) * k)
            for i, row in enumerate(chunk):  # example i * k + j is copy j of the chunk's prompt i
                texts = [self.text(t) for t in sampled.tokens[i * k : (i + 1) * k]]
                self._record(keys[row], agreement(texts, answers[row], self.lemmatizer), answers[row], progress)
        return spent

    def _units(self, prompts: int) -> dict[str, int]:
        """What `prompts` prompts count in a progress: "prompts", and with `sampling` "samples" (K each)."""
        units = {"prompts": prompts}
        if self.settings.measure == "sampling":
            units["samples"] = prompts * self.settings.num_samples
        return units

    def _record(self, key: str, value: float, answer: str, progress: Optional[Progress]) -> None:
        """Cache one prompt's value (at once: an interrupted run keeps it) and count the prompt done."""
        self.cache.put(key, value, greedy=answer, measure=self.settings.measure)
        if progress is not None:
            progress.advance(prompts=1)

    def _samples(self, prompts: list[Prompt], keys: list[str], counted: Optional[_Counted] = None) -> Decoded:
        """K sampled answers of each row of `prompts` (example i * K + j: copy j of row i, rows in
        order across the prompts), in one decode, `counted` as they finish. Each row draws from its
        own generator, seeded from its cache key, so a value does not depend on batching or on which
        process computed it."""
        s = self.settings
        device = prompts[0].input_ids.device
        generators = [torch.Generator(device=device).manual_seed(int(key[:15], 16) + s.seed) for key in keys]
        choose = per_prompt_sampler(s.temperature, s.top_k, s.top_p, generators, s.num_samples)
        return self.generate(
            prompts,
            choose=counted.choosing(choose) if counted is not None else choose,
            max_new_tokens=s.max_new_tokens,
            copies=s.num_samples,
        )
