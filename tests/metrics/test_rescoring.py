"""The end product: every metric in results.json equals an independent rescoring of predictions.jsonl.

For every method config in configs/pararel/, on the tiny model through the CLI. A random model
scores 0 on real gold answers, where EM, F1 and lemma match cannot disagree, so the gold answers
are rewritten from each run's own answers: some exact, some with an article in front (EM and F1 1,
lemma 0), some with an extra word (a part of F1 only), some unrelated (0). Only evaluated facts change, never
the few-shot facts, so the prompts, and hence the answers, stay the same. The first batch scores 0
everywhere, so its EM, F1 and lemma states are equal: the case in which torchmetrics' compute
groups once merged F1 and lemma into EM.

The scorer below is written from the SQuAD v1.1 script and spaCy directly, sharing no code with
selfens.metrics.
"""

from __future__ import annotations

import collections
import json
import math
from pathlib import Path

import pytest

from tests.helpers import ROOT, RUN_BATCH, data_dir_with_gold, normalize, read_jsonl, run_config, scores, standard_error

CONFIGS = sorted((ROOT / "configs" / "pararel").rglob("*.yaml"))


# -- an independent scorer ----------------------------------------------------------------------------


def rescore_columns(rows: list[dict], method: str) -> dict[str, list[float]]:
    """Per metric name of results.json: the per-example scores, recomputed from predictions.jsonl alone."""
    per_view: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        per_view[""].append(scores(r["prediction"], r["answers"]))  # the method's answer: test/em, ...
        if method != "per_prompt":
            per_view[method].append(scores(r["prediction"], r["answers"]))
            continue
        alone = [scores(p, r["answers"]) for p in r["per_paraphrase"]]
        per_view["majority"].append(scores(r["prediction"], r["answers"]))
        for k, s in enumerate(alone):
            per_view[f"p{k + 1}"].append(s)
        per_view["mean"].append({m: sum(s[m] for s in alone) / len(alone) for m in alone[0]})
        per_view["oracle"].append({m: max(s[m] for s in alone) for m in alone[0]})
        votes = [normalize(p) for p in r["per_paraphrase"]]
        per_view["agreement"].append({"": votes.count(normalize(r["prediction"])) / len(votes)})
    columns = {}
    for view, values in per_view.items():
        for m in values[0]:
            key = "/".join(part for part in ("test", view, m) if part)
            columns[key] = [v[m] for v in values]
    return columns


def rescore(rows: list[dict], method: str) -> dict[str, float]:
    """results.json's metrics, recomputed from predictions.jsonl alone."""
    return {key: math.fsum(v) / len(v) for key, v in rescore_columns(rows, method).items()}


def test_independent_scorer_on_known_cases():
    assert scores("The Eiffel Tower!", ["eiffel tower"]) == {"em": 1.0, "f1": 1.0, "lemma": 1.0}
    assert scores("Paris", ["the Paris"]) == {"em": 1.0, "f1": 1.0, "lemma": 0.0}
    assert scores("Paris France", ["Paris"]) == {"em": 0.0, "f1": pytest.approx(2 / 3), "lemma": 1.0}
    assert scores("cities", ["city"])["lemma"] == 1.0


# -- runs whose gold answers make EM, F1 and lemma differ -----------------------------------------------------


def confidence_dir(config: Path, folder: Path) -> list:
    return ["--model.init_args.confidence_dir", folder / "confidence"] if "weighted" in config.name else []


def fitted(config: Path, model: str, folder: Path) -> list:
    """A fitted method's fit (`selfens fit`, on the dev split), in `folder`; nothing for the others."""
    if "fitted" not in config.name and "best_phrasing" not in config.name:
        return []
    args = ["--model.init_args.fitted", folder / "fit.json"]
    run_config(config, model, folder / "fit", "fit", *args)
    return args


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: str(c.relative_to(ROOT / "configs" / "pararel")))
def test_results_equal_a_rescoring_of_predictions(config, tiny_model_path, tmp_path):
    extra = confidence_dir(config, tmp_path) + fitted(config, tiny_model_path, tmp_path)
    first = read_jsonl(run_config(config, tiny_model_path, tmp_path / "first", "predict", *extra) / "predictions.jsonl")
    data = data_dir_with_gold(tmp_path, first)
    folder = run_config(config, tiny_model_path, tmp_path / "test", "test", "--data.init_args.data_dir", data, *extra)

    rows = read_jsonl(folder / "predictions.jsonl")
    results = json.loads((folder / "results.json").read_text())
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in first], "new gold answers changed the prompts"
    expected = rescore(rows, results["method"])
    assert results["metrics"].keys() == expected.keys()
    assert results["metrics"] == pytest.approx(expected, abs=1e-12)
    # Every metric's standard error and interval, from the same per-example scores.
    columns = rescore_columns(rows, results["method"])
    for key, stats in results["uncertainty"]["metrics"].items():
        assert stats["mean"] == pytest.approx(expected[key], abs=1e-12), key
        assert stats["se"] == pytest.approx(standard_error(columns[key]), abs=1e-12), key
        low, high = stats["ci95"]
        assert min(columns[key]) <= low <= stats["mean"] <= high <= max(columns[key]), key
    # The data must make the metrics disagree, or this test could not catch one copying another.
    main = "majority" if results["method"] == "per_prompt" else results["method"]
    values = {m: results["metrics"][f"test/{main}/{m}"] for m in ("em", "f1", "lemma")}
    assert len(set(values.values())) == 3, f"EM, F1 and lemma should all differ here: {values}"


def test_resumed_run_equals_a_rescoring(tiny_model_path, tmp_path):
    config = ROOT / "configs" / "pararel" / "per_prompt.yaml"
    first = read_jsonl(run_config(config, tiny_model_path, tmp_path / "first", "predict") / "predictions.jsonl")
    data = data_dir_with_gold(tmp_path, first)
    full = run_config(config, tiny_model_path, tmp_path / "full", "test", "--data.init_args.data_dir", data)
    rows = read_jsonl(full / "predictions.jsonl")

    crashed = tmp_path / "crashed"  # a run killed after two batches
    crashed.mkdir()
    kept = [{k: v for k, v in r.items() if k != "scores"} for r in rows[: 2 * RUN_BATCH]]
    (crashed / "predictions.rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    # What the run wrote when it started: resuming checks it is this same run.
    identity = json.loads((full / "results.json").read_text())["identity"]
    (crashed / "identity.json").write_text(json.dumps(identity))
    resumed = run_config(
        config, tiny_model_path, tmp_path / "resumed", "test", "--data.init_args.data_dir", data, "--resume", crashed
    )

    results = json.loads((resumed / "results.json").read_text())
    assert results["resumed_examples"] == 2 * RUN_BATCH
    resumed_rows = read_jsonl(resumed / "predictions.jsonl")
    assert results["metrics"] == pytest.approx(rescore(resumed_rows, "per_prompt"), abs=1e-12)
    assert results["metrics"] == json.loads((full / "results.json").read_text())["metrics"]
    assert [r["scores"] for r in resumed_rows] == [r["scores"] for r in rows], "resumed rows are scored as new ones"


# -- the batch-order case, as a unit ----------------------------------------------------------------------


def test_scores_do_not_depend_on_the_order_of_batches():
    """Two batches, one where EM, F1 and lemma agree and one where they do not: either order must
    give the exact means of the per-example scores (compute groups once gave 0.5/0.5 in one order)."""
    from selfens.metrics import load_lemmatizer
    from selfens.metrics.views import Scores, score

    lemmatizer = load_lemmatizer()
    agree = {"id": "a", "scores": {"origin": score("Paris", ["Paris"], lemmatizer)}}  # 1 / 1 / 1
    differ = {"id": "b", "scores": {"origin": score("Paris France", ["Paris"], lemmatizer)}}  # 0 / 2/3 / 1
    expected = {"test/origin/em": 0.5, "test/origin/f1": (1 + 2 / 3) / 2, "test/origin/lemma": 1.0}
    for order in ([agree], [differ]), ([differ], [agree]):
        metrics = Scores(["origin"])
        for batch in order:
            metrics.update(batch)
        assert {k: float(v) for k, v in metrics.compute("test").items()} == pytest.approx(expected, abs=1e-15)
