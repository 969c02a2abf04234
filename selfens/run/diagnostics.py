"""Why a method wins or loses, from a finished run's rows: how much its answers depend on the
phrasing (`per_prompt` runs, which decode every phrasing alone) and how well its confidence in an
answer matches how often such answers are right. Definitions and sources: docs/metrics.md."""

from __future__ import annotations

import math

from selfens.metrics.calibration import calibration
from selfens.metrics.functional import exact_match, normalize_answer
from selfens.metrics.sensitivity import sensitivity


def diagnostics(rows: list[dict], main_view: str, resamples: int, seed: int, weighed_by: str | None = None) -> dict:
    """{"sensitivity": ..., "calibration": ..., "phrasing_calibration": ...} of the scored rows; a part
    the rows cannot give is left out. `phrasing_calibration`: of a weighted method's per-phrasing
    confidences (`weighed_by`: their measure), each against whether its phrasing's own answer is right."""
    scored = [r for r in rows if "scores" in r]
    found = {}
    if scored and all(f"p{len(r.get('per_paraphrase', []))}" in r["scores"] for r in scored):  # each phrasing scored
        answers = [[normalize_answer(a) for a in r["per_paraphrase"]] for r in scored]
        correct = [[r["scores"][f"p{k + 1}"]["em"] for k in range(len(r["per_paraphrase"]))] for r in scored]
        found["sensitivity"] = sensitivity(answers, correct, resamples, seed)
    confident = [(answer_confidence(r), r["scores"][main_view]["em"]) for r in scored]
    confident = [(c, em) for c, em in confident if c is not None]
    if confident:
        found["calibration"] = {
            "confidence": "agreement" if "agreement" in scored[0] else "answer probability",
            **calibration([c for c, _ in confident], [em for _, em in confident], resamples=resamples, seed=seed),
        }
    weighed = [
        (weight, exact_match(answer, r["answers"]))
        for r in scored
        for weight, answer in zip(r.get("weights", []), r.get("weight_answers", []))
        if answer is not None
    ]
    if weighed:
        found["phrasing_calibration"] = {
            "confidence": f"per-phrasing {weighed_by or 'weight'}",
            **calibration([min(1.0, w) for w, _ in weighed], [em for _, em in weighed], resamples=resamples, seed=seed),
        }
    return found


def answer_confidence(row: dict) -> float | None:
    """How sure the method was of its answer: the answer's probability under the distribution that
    chose it, or for a vote the share of phrasings that gave it; None for a row that records neither
    (e.g. kept from a run of an older selfens), or for an answer of no tokens (the end came first: the
    probability of that end is not recorded, and 1 would be wrong)."""
    if "choice_probability" in row:  # multiple choice: the chosen choice's share of the choices' probability
        return row["choice_probability"]
    if "answer_logprob" in row:
        if not row.get("answer_tokens"):
            return None
        return min(1.0, math.exp(row["answer_logprob"]))  # a float32 probability may pass 1 by a hair
    return row.get("agreement")
