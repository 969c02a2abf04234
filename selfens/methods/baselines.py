"""Baselines: the original wording alone (`origin`) and each paraphrase alone (`per_prompt`)."""

from __future__ import annotations

from selfens.data.batch import ParaphraseBatch
from selfens.decode import Prompt
from selfens.methods.base import EnsembleModule, Output
from selfens.methods.scoring import Scores, majority, score


class Origin(EnsembleModule):
    """Paraphrase 0 alone, one row per example."""

    method = "origin"

    def decode(self, batch: ParaphraseBatch) -> Output:
        ids, valid = batch.rows([0])  # [B, L]
        decoded = self.generate(Prompt.left_padded(ids, valid))
        return Output([self.text(t) for t in decoded.tokens], cost=decoded.cost)


class PerPrompt(EnsembleModule):
    """Each of the N paraphrases alone (B*N rows). Its answer is the majority vote; it also
    reports each paraphrase (`p1`..), their mean, and the oracle (any paraphrase correct)."""

    method = "per_prompt"

    def build_scores(self, num_paraphrases: int) -> Scores:
        views = ["majority"] + [f"p{k + 1}" for k in range(num_paraphrases)]
        return Scores(views, ["mean", "oracle"], extra=["agreement"], lemmatizer=self.hparams.lemmatizer)

    def decode(self, batch: ParaphraseBatch) -> Output:
        n = batch.num_paraphrases
        ids, valid = batch.rows()  # [B*N, L], example-major
        decoded = self.generate(Prompt.left_padded(ids, valid))
        texts = [self.text(t) for t in decoded.tokens]
        per_paraphrase = [texts[b * n:(b + 1) * n] for b in range(len(batch.ids))]
        votes = [majority(answers) for answers in per_paraphrase]
        extra = [{"agreement": share} for _, share in votes]
        return Output([answer for answer, _ in votes], per_paraphrase, extra, decoded.cost)

    def update_scores(self, batch: ParaphraseBatch, out: Output) -> None:
        n = len(out.per_paraphrase[0])
        self.scores.update_answers("majority", out.predictions, batch.answers)
        per_example = [
            [score(p, gold, self.lemmatizer) for p in answers]
            for answers, gold in zip(out.per_paraphrase, batch.answers)
        ]
        self.scores.update_values("mean", [{m: sum(s[m] for s in ss) / n for m in ss[0]} for ss in per_example])
        self.scores.update_values("oracle", [{m: max(s[m] for s in ss) for m in ss[0]} for ss in per_example])
        self.scores.update_extra("agreement", [e["agreement"] for e in out.extra])
        for k in range(n):
            self.scores.update_answers(f"p{k + 1}", [answers[k] for answers in out.per_paraphrase], batch.answers)
