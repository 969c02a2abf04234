"""A run's diagnostics come back from its predictions.jsonl by independent code: a per_prompt run's
sensitivity to the phrasing, and every run's calibration (answer probability, or agreement);
`selfens report` shows them, and a run that did not record them as missing, not as zero."""

from __future__ import annotations

import itertools
import json
import math
import shutil

import pytest

from tests.helpers import ROOT, normalize, read_jsonl, run_config, selfens

PARAREL = ROOT / "configs" / "pararel"


@pytest.fixture(scope="module")
def runs(tiny_model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("diagnostics")
    found = {
        method: run_config(PARAREL / f"{method}.yaml", tiny_model_path, root / "logs", "test", name=method)
        for method in ("per_prompt", "origin", "avg")
    }
    weighted = ("--model.init_args.confidence", "token_prob", "--model.init_args.confidence_dir", root / "confidence")
    found["weighted_avg"] = run_config(
        PARAREL / "weighted_avg.yaml", tiny_model_path, root / "logs", "test", *weighted, name="weighted_avg"
    )
    return found


def recorded(folder) -> tuple[dict, list[dict]]:
    return json.loads((folder / "results.json").read_text())["diagnostics"], read_jsonl(folder / "predictions.jsonl")


def test_sensitivity_comes_back_from_the_answers(runs):
    found, rows = recorded(runs["per_prompt"])
    answers = [[normalize(a) for a in r["per_paraphrase"]] for r in rows]
    right = [[r["scores"][f"p{k + 1}"]["em"] for k in range(len(a))] for r, a in zip(rows, answers)]
    pairs = [[x == y for x, y in itertools.combinations(a, 2)] for a in answers]
    accuracy = [sum(col) / len(col) for col in zip(*right)]
    expected = {
        "consistency": sum(sum(p) / len(p) for p in pairs) / len(pairs),
        "consistent_facts": sum(len(set(a)) == 1 for a in answers) / len(answers),
        "group_accuracy": sum(all(r) for r in right) / len(right),
        "oracle": sum(any(r) for r in right) / len(right),
        "maxp": max(accuracy),
        "avgp": sum(accuracy) / len(accuracy),
        "spread": max(accuracy) - min(accuracy),
        "original_gap": accuracy[0] - sum(accuracy[1:]) / len(accuracy[1:]),
    }
    expected["cps"] = (1 - (expected["maxp"] - expected["avgp"])) * expected["maxp"]
    for name, value in expected.items():
        assert found["sensitivity"][name]["value"] == pytest.approx(value, abs=1e-12), name
    assert 0 < expected["consistency"] < 1, "the tiny model's phrasings must disagree for this test to test"


@pytest.mark.parametrize("method", ["origin", "avg", "per_prompt"])
def test_calibration_comes_back_from_the_confidences(method, runs):
    found, rows = recorded(runs[method])
    main = "majority" if method == "per_prompt" else method
    conf = [r["agreement"] if method == "per_prompt" else math.exp(r["answer_logprob"]) for r in rows]
    right = [r["scores"][main]["em"] for r in rows]
    bins = found["calibration"]["bins"]
    ece = 0.0
    for b in range(bins):
        inside = [(c, y) for c, y in zip(conf, right) if (b / bins <= c < (b + 1) / bins) or (b == bins - 1 and c == 1)]
        if inside:
            ece += (
                len(inside)
                / len(rows)
                * abs(sum(y for _, y in inside) / len(inside) - sum(c for c, _ in inside) / len(inside))
            )
    calibration = found["calibration"]
    assert calibration["ece"]["value"] == pytest.approx(ece, abs=1e-12)
    assert calibration["brier"]["value"] == pytest.approx(sum((c - y) ** 2 for c, y in zip(conf, right)) / len(rows))
    assert calibration["overconfidence"]["value"] == pytest.approx((sum(conf) - sum(right)) / len(rows))
    assert calibration["n"] == len(rows) and calibration["confidence"] == (
        "agreement" if method == "per_prompt" else "answer probability"
    )


def test_a_weighted_methods_weights_are_calibrated_against_each_phrasings_own_answer(runs):
    found, rows = recorded(runs["weighted_avg"])
    _, alone = recorded(runs["per_prompt"])
    # token_prob weighs each phrasing's greedy answer: the answer that phrasing gives asked alone
    assert [r["weight_answers"] for r in rows] == [r["per_paraphrase"] for r in alone]
    conf = [w for r in rows for w in r["weights"]]
    right = [r["scores"][f"p{k + 1}"]["em"] for r in alone for k in range(len(r["per_paraphrase"]))]
    weights = found["phrasing_calibration"]
    assert weights["n"] == len(conf) == 5 * len(rows) and weights["confidence"] == "per-phrasing token_prob"
    assert weights["brier"]["value"] == pytest.approx(sum((c - y) ** 2 for c, y in zip(conf, right)) / len(conf))
    assert weights["overconfidence"]["value"] == pytest.approx((sum(conf) - sum(right)) / len(conf))
    assert "phrasing_calibration" not in recorded(runs["avg"])[0]  # no weights, no such row


def test_phrasing_calibration_scores_each_phrasings_answer_and_skips_one_the_cache_does_not_name():
    from selfens.run.diagnostics import diagnostics

    rows = [  # (weight, right): (0.9, 1), (0.2, 0), (0.6, 1), (0.4, 0); "?" has no recorded answer
        {"answers": ["Paris"], "weights": [0.9, 0.2, 0.7], "weight_answers": ["paris.", "Rome", None]},
        {"answers": ["Oslo"], "weights": [0.6, 0.4], "weight_answers": ["The Oslo", "Bergen"]},
    ]
    for r in rows:
        r["scores"] = {"avg": {"em": 0.0}}
    found = diagnostics(rows, "avg", resamples=0, seed=0, weighed_by="sampling")["phrasing_calibration"]
    assert found["n"] == 4 and found["confidence"] == "per-phrasing sampling"
    assert found["brier"]["value"] == pytest.approx((0.1**2 + 0.2**2 + 0.4**2 + 0.4**2) / 4)
    assert found["overconfidence"]["value"] == pytest.approx((0.9 + 0.2 + 0.6 + 0.4 - 2) / 4)
    # bins of 0.1: 0.9 alone (|1 - 0.9|), 0.2 alone (0.2), 0.6 alone (0.4), 0.4 alone (0.4)
    assert found["ece"]["value"] == pytest.approx((0.1 + 0.2 + 0.4 + 0.4) / 4)


def test_the_report_shows_them_and_a_run_without_them_as_missing(runs, tmp_path, capsys):
    old = tmp_path / "logs" / "old" / "version_9-origin"
    shutil.copytree(runs["origin"], old)
    results = json.loads((old / "results.json").read_text())
    del results["diagnostics"]  # as a run of an older selfens wrote it
    (old / "results.json").write_text(json.dumps(results))
    for method, folder in runs.items():
        shutil.copytree(folder, tmp_path / "logs" / method / folder.name)
    capsys.readouterr()
    selfens("report", tmp_path / "logs", "--wide")
    out = capsys.readouterr().out
    assert "sensitivity to the phrasing" in out and "calibration (" in out
    calibration = out.split("calibration (", 1)[1].splitlines()
    line = next(line for line in calibration if "old/version_9" in line)
    assert any("weighted_avg (weights)" in line and "per-phrasing token_prob" in line for line in calibration)
    assert line.split()[-5:] == ["–"] * 5  # ECE, Brier, over-confidence, confidence, n: missing, not 0
    report = json.loads((tmp_path / "logs" / "report.json").read_text())
    recorded_here = {name: found for name, found in report["diagnostics"].items() if found is not None}
    assert recorded_here == {f"{m}/{f.name.split('-')[0]}": recorded(f)[0] for m, f in runs.items()}
    assert report["diagnostics"]["old/version_9"] is None  # missing, not zero
    assert {(g["run"], g["group"]) for g in report["groups"]} == {
        (f"{m}/{f.name.split('-')[0]}", r["id"].split("/")[0]) for m, f in runs.items() for r in recorded(f)[1]
    } | {("old/version_9", r["id"].split("/")[0]) for r in recorded(runs["origin"])[1]}
    markdown = (tmp_path / "logs" / "report.md").read_text()
    assert "## Sensitivity to the phrasing" in markdown and "## Calibration of each run's answers" in markdown
    assert (tmp_path / "logs" / "report_reliability.png").stat().st_size > 0
    tex = (tmp_path / "logs" / "report.tex").read_text()
    sensitivity = recorded(runs["per_prompt"])[0]["sensitivity"]["consistency"]
    consistency = f"consistency & {100 * sensitivity['value']:.1f} [{100 * sensitivity['ci95'][0]:.1f}, "
    assert consistency in tex and r"tiny\_llama0: sensitivity to the phrasing" in tex
    assert r"tiny\_llama0: calibration, in \%" in tex and r"weighted\_avg (weights)" in tex


def test_an_answer_of_no_tokens_or_no_record_has_no_confidence():
    from selfens.run.diagnostics import answer_confidence

    assert answer_confidence({"answer_logprob": 0.0, "answer_tokens": 0}) is None  # the end came first
    assert answer_confidence({"prediction": "x"}) is None  # a row of an older selfens
    assert answer_confidence({"answer_logprob": math.log(0.25), "answer_tokens": 2}) == pytest.approx(0.25)
    assert answer_confidence({"agreement": 0.6}) == 0.6
    assert answer_confidence({"answer_logprob": 1e-9, "answer_tokens": 1}) == 1.0  # float32 rounding, capped


def test_pararel_rows_name_their_relation(runs):
    rows = read_jsonl(runs["origin"] / "predictions.jsonl")
    assert [r["group"] for r in rows] == [r["id"].split("/")[0] for r in rows]
