"""An lm-eval task's samples as a selfens run: predictions.jsonl rows scored under selfens's
metrics, and a results.json that `selfens report` reads and pairs with `origin`.

A document's prediction is the answer lm-eval scored: a generation after the task's filters, or the
choice with the highest log-likelihood (lm-eval's `acc`). Its gold answers are the task's target
(for multiple choice, the gold choice's text). Each row also keeps lm-eval's own per-sample metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Optional

from selfens.harness.phrasings import PhrasingFile, phrased_parts
from selfens.metrics.views import common_name, majority, score, score_columns
from selfens.run.cost import RunCost
from selfens.run.diagnostics import diagnostics
from selfens.stats import uncertainty

RESAMPLES, SEED = 1000, 0


def sample_row(sample: dict, task: str, method: str, view: str, lemmatizer, lm) -> dict:
    """One predictions.jsonl row of an lm-eval sample: what it was asked in how many phrasings (from
    the file, as the backend read it; so also for a request answered from lm-eval's cache)."""
    doc = sample["doc_id"]
    arguments = _arguments(sample.get("arguments", []))
    kind = "generate_until" if isinstance(_first(sample["filtered_resps"]), str) else "loglikelihood"
    if kind == "generate_until":
        prediction = _first(sample["filtered_resps"])
        target = sample["target"]
        answers = [str(t) for t in target] if isinstance(target, list) else [str(target)]
    else:  # one (log-likelihood, greedy) per choice
        scores = [float(r[0]) for r in sample["filtered_resps"]]
        choices = [a[1].strip() for a in arguments]
        chosen = max(range(len(scores)), key=scores.__getitem__)
        prediction = choices[chosen]
        gold = sample["target"]
        answers = [choices[g] for g in gold] if isinstance(gold, list) else [choices[int(gold)]]
    context = arguments[0][0] if arguments else ""
    found = lm.phrasing_file.get(task, doc) if lm.phrasing_file is not None else None
    parts = phrased_parts(context, found, lm.num_paraphrases)
    row = {
        "index": doc,
        "id": str(doc),
        "method": method,
        "prediction": prediction,
        "answers": answers,
        "phrasings": len(parts[1]) if parts is not None else 1,
        "scores": {view: score(prediction, answers, lemmatizer)},
        "context_hash": _hash(arguments)[:16],  # what the model was asked (the run identity's `requests`)
        "lm_eval": {m: sample[m] for m in sample.get("metrics", []) if m in sample},
    }
    if parts is None and lm.num_paraphrases > 1:
        row["origin_because"] = (
            "no phrasings in the file" if found is None else "the phrased span is not in the task's context"
        )
    if parts is not None:
        row["paraphrases"] = parts[1]
    each = _of_document(lm.per_phrasing, task, doc)
    if each and kind == "generate_until":  # per_prompt: each phrasing's own answer
        row["per_paraphrase"] = each[0]
    elif each:  # per_prompt on multiple choice: per choice, each phrasing's [log-likelihood, greedy]
        row["per_paraphrase_loglikelihoods"] = each
    answer = _of_document(lm.answer_logprobs, task, doc)
    if kind == "generate_until" and answer:  # (none for a request answered from lm-eval's cache)
        row["answer_logprob"], row["answer_tokens"] = answer[0]
    if kind == "loglikelihood":  # how sure: the chosen choice's share of the choices' probability
        top = max(scores)
        row["choice_probability"] = 1.0 / math.fsum(math.exp(s - top) for s in scores)
    return row


def _of_document(found: dict, task: str, doc: int) -> list:
    """What the backend kept of a document's requests, in request order (a choice's index)."""
    return [v for _, v in sorted(found.get((task, doc), {}).items())]


def per_prompt_views(rows: list[dict], module, n: int) -> None:
    """per_prompt on a generation task: score each phrasing's own answer too (views p1..pN, mean,
    oracle) and the vote's agreement, as for the built-in datasets, when every document read all N
    phrasings (a run has one set of views)."""
    if not rows or not all(isinstance(r.get("per_paraphrase"), list) and len(r["per_paraphrase"]) == n for r in rows):
        return
    for r in rows:
        r["scores"] = module.view_scores(r["prediction"], r["per_paraphrase"], r["answers"])
        r["agreement"] = majority(r["per_paraphrase"])[1]


def _arguments(arguments) -> list[list]:
    """Each request's arguments, as lists: lm-eval logs them as {"gen_args_k": {"arg_0": .., "arg_1": ..}}."""
    if isinstance(arguments, dict):
        return [[a[f"arg_{j}"] for j in range(len(a))] for a in arguments.values()]
    return [list(a) for a in arguments]


def _first(responses):
    return responses[0] if isinstance(responses, list) and responses else responses


def results_record(
    *,
    task: str,
    rows: list[dict],
    lm_eval_results: dict,
    task_config: dict,
    module,
    label: str,
    view: str,
    num_paraphrases: int,
    phrasings: Optional[PhrasingFile],
    cost: RunCost,
    limit,
    wall_time_s: float,
    versions: dict,
) -> dict:
    """results.json of one task's run: what `selfens report` reads (method, views' metrics, identity,
    cost), lm-eval's own aggregated results, and how many documents ran without phrasings."""
    method = module.method
    if method == "origin":  # it reads the original wording alone, whatever the file holds
        num_paraphrases, phrasings = 1, None
    # Every view's scores (per_prompt: each phrasing's too) and the extras, as a run's metrics are.
    columns = score_columns(rows, "test", view)
    extras = {common_name("test", x): [r[x] for r in rows] for x in module.extra_scores if all(x in r for r in rows)}
    metrics = {k: math.fsum(v) / len(v) for k, v in {**columns, **extras}.items()}
    without = [r for r in rows if r["phrasings"] == 1 and num_paraphrases > 1]
    settings = module.method_settings()
    evaluation = {
        **module.evaluation_identity(),
        "dataset": f"lm-eval:{task}",
        "task_version": (task_config.get("metadata") or {}).get("version"),
        "num_fewshot": task_config.get("num_fewshot"),
        # The documents and exactly what the model was asked: two runs pair only on the same.
        "requests": _hash([[r["index"], r.get("context_hash")] for r in rows]),
    }
    evaluation.pop("max_new_tokens", None)  # the task's generation settings are in `requests`
    evaluation.pop("stop_strings", None)
    identity = {
        "evaluation": json.loads(json.dumps(evaluation)),
        "method": {
            "method": method,
            **settings,
            "N": num_paraphrases,
            "paraphrases": phrasings.sha256 if phrasings is not None else None,
        },
    }
    return {
        "method": method,
        "label": label,
        "main_view": view,
        "method_settings": settings,
        "settings": {"method": method, "model": module.model_name, "dataset": f"lm-eval:{task}", "N": num_paraphrases},
        "stage": "test",
        "identity": identity,
        "model": module.model_name,
        "dataset": f"lm-eval:{task}",
        "num_examples": len(rows),
        "metrics": metrics,
        "uncertainty": {"resamples": RESAMPLES, "seed": SEED, "metrics": uncertainty(columns, RESAMPLES, SEED)},
        "diagnostics": diagnostics(rows, view, RESAMPLES, SEED),
        "lm_eval": {"results": lm_eval_results, "limit": limit},
        "phrasings": {
            "file": str(phrasings.path) if phrasings is not None else None,
            "sha256": phrasings.sha256 if phrasings is not None else None,
            "documents_without_phrasings": len(without),
        },
        "cost": cost.to_dict(),
        "total_cost": cost.to_dict(),
        "warnings": (
            [
                f"{len(without)} of {len(rows)} documents had no phrasings ({_reasons(without)}): they ran "
                f"with the task's context alone, as origin"
            ]
            if without
            else []
        ),
        "wall_time_s": round(wall_time_s, 3),
        "versions": versions,
    }


def _reasons(rows: list[dict]) -> str:
    reasons: dict[str, int] = {}
    for r in rows:
        key = r.get("origin_because", "no phrasings in the file")
        reasons[key] = reasons.get(key, 0) + 1
    return ", ".join(f"{n}: {why}" for why, n in reasons.items())


def _hash(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
