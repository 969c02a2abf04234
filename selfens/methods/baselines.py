"""Baselines: the original wording alone (`origin`) and each paraphrase alone (`per_prompt`)."""

from __future__ import annotations

import math

from selfens.data.batch import ParaphraseBatch
from selfens.methods.base import EnsembleModule, Output
from selfens.metrics.views import METRICS, ViewScores, majority, score


class Origin(EnsembleModule):
    """Paraphrase 0 alone, one row per example."""

    method = "origin"

    def rows_per_example(self, num_paraphrases: int) -> int:
        return 1

    def prompt_length(self, segments) -> int:
        return len(segments.prompt(0))

    def decode(self, batch: ParaphraseBatch) -> Output:
        decoded = self.generate_by_prefix(batch, lambda examples: self.single_prompts(batch, [0], examples))
        return Output([self.text(t) for t in decoded.tokens], cost=decoded.cost, logprobs=decoded.logprobs())


class PerPrompt(EnsembleModule):
    """Each of the N paraphrases alone (B*N rows). Its answer is the majority vote; it also
    reports each paraphrase (`p1`..), their mean, and the oracle (any paraphrase correct)."""

    method = "per_prompt"

    extra_scores = ("agreement",)
    main_view = "majority"

    def views(self, num_paraphrases: int) -> list[str]:
        return ["majority"] + [f"p{k + 1}" for k in range(num_paraphrases)] + ["mean", "oracle"]

    def view_scores(self, prediction: str, per_paraphrase: list[str], answers: list[str]) -> ViewScores:
        alone = [score(p, answers, self.lemmatizer) for p in per_paraphrase]
        return {
            "majority": score(prediction, answers, self.lemmatizer),
            **{f"p{k + 1}": s for k, s in enumerate(alone)},
            "mean": {m: math.fsum(s[m] for s in alone) / len(alone) for m in METRICS},
            "oracle": {m: max(s[m] for s in alone) for m in METRICS},
        }

    def decode(self, batch: ParaphraseBatch) -> Output:
        n = batch.num_paraphrases
        # B*N rows, example-major
        decoded = self.generate_by_prefix(batch, lambda examples: self.single_prompts(batch, examples=examples))
        texts = [self.text(t) for t in decoded.tokens]
        per_paraphrase = [texts[b * n : (b + 1) * n] for b in range(len(batch.ids))]
        votes = [majority(answers) for answers in per_paraphrase]
        extra = [{"agreement": share} for _, share in votes]
        logprobs = decoded.logprobs()
        per_logprobs = [logprobs[b * n : (b + 1) * n] for b in range(len(batch.ids))]
        return Output(
            [answer for answer, _ in votes], per_paraphrase, extra, decoded.cost, per_paraphrase_logprobs=per_logprobs
        )
