"""A batch's predictions.jsonl rows, from what a method's decode returned."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from selfens.data.batch import ParaphraseBatch
    from selfens.methods.base import Output


def prediction_rows(
    batch: ParaphraseBatch, out: Output, method: str, view_scores: Optional[Callable] = None
) -> list[dict]:
    """One row per example; scored by `view_scores(prediction, per_paraphrase, answers)` if given."""
    rows = []
    for b in range(len(batch.ids)):
        row = {
            "index": int(batch.index[b]),
            "id": batch.ids[b],
            "method": method,
            "prediction": out.predictions[b],
            "answers": batch.answers[b],
            "paraphrases": batch.paraphrases[b],
        }
        if batch.groups and batch.groups[b] is not None:
            row["group"] = batch.groups[b]
        if out.per_paraphrase is not None:
            row["per_paraphrase"] = out.per_paraphrase[b]
        if out.logprobs is not None:
            row["answer_logprob"], row["answer_tokens"] = out.logprobs[b]
        if out.per_paraphrase_logprobs is not None:
            row["per_paraphrase_logprob"] = [lp for lp, _ in out.per_paraphrase_logprobs[b]]
            row["per_paraphrase_tokens"] = [n for _, n in out.per_paraphrase_logprobs[b]]
        if out.extra:
            row.update(out.extra[b])
        if view_scores is not None:
            row["scores"] = view_scores(row["prediction"], row.get("per_paraphrase"), row["answers"])
        rows.append(row)
    return rows
