"""Results per group (ParaRel's relations; your own JSONL's `group`): each run's EM per group and its
ΔEM against its baseline on the group's examples come back from the rows by independent arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfens.data import JsonlQuestions
from selfens.data.records import DataError
from selfens.report.groups import AGREE, DISAGREE, agreement_of, group_of, group_rows, group_section
from selfens.report.load import Run


def run(name: str, method: str, em: dict[str, float], dataset: str = "ParaRel") -> Run:
    """A finished run whose main view's EM per example id is `em`."""
    rows = [{"id": i, "prediction": "x", "scores": {method: {"em": v, "f1": v, "lemma": v}}} for i, v in em.items()]
    results = {"method": method, "main_view": method, "model": "m", "dataset": dataset, "settings": {"N": 5}}
    return Run(Path(f"logs/{name}"), results, rows)


def test_a_rows_group_is_its_own_or_its_pararel_relation():
    assert group_of({"id": "a", "group": "geo"}, "JSONL") == "geo"
    assert group_of({"id": "P19/uuid"}, "ParaRel") == "P19"  # a run written before rows named it
    assert group_of({"id": "P19/uuid"}, "WebQuestions") is None
    assert group_of({"id": "q1"}, "ParaRel") is None


def test_em_and_paired_delta_per_group():
    origin = run("origin", "origin", {"P1/a": 1, "P1/b": 0, "P1/c": 0, "P2/a": 1, "P2/b": 1})
    avg = run("avg", "avg", {"P1/a": 1, "P1/b": 1, "P1/c": 1, "P2/a": 0, "P2/b": 1})
    compared = [{"run": avg.name, "baseline": origin.name}]
    rows = {(r["run"], r["group"]): r for r in group_rows([origin, avg], compared, resamples=200, seed=0)}
    assert set(rows) == {(origin.name, "P1"), (origin.name, "P2"), (avg.name, "P1"), (avg.name, "P2")}
    assert rows[(origin.name, "P1")]["em"] == pytest.approx(1 / 3) and "delta_em" not in rows[(origin.name, "P1")]
    p1, p2 = rows[(avg.name, "P1")], rows[(avg.name, "P2")]
    assert (p1["n"], p1["em"], p1["delta_em"]) == (3, 1.0, pytest.approx(2 / 3))  # helps on P1
    assert (p2["n"], p2["em"], p2["delta_em"]) == (2, 0.5, pytest.approx(-0.5))  # hurts on P2
    low, high = p1["delta_em_ci95"]
    assert low <= p1["delta_em"] <= high and p1["baseline"] == origin.name
    _, heading, table = group_section(list(rows.values()))
    assert "| P2 | logs/avg | avg | 5 | 2 | 50.0 [" in table and "-50.0 [" in table


def test_facts_split_by_whether_the_per_prompt_runs_phrasings_agree():
    origin = run("origin", "origin", {"a": 1, "b": 0, "c": 0, "d": 1})
    avg = run("avg", "avg", {"a": 1, "b": 1, "c": 1, "d": 0})
    alone = run("per_prompt", "per_prompt", {"a": 1, "b": 0, "c": 0, "d": 1, "e": 1})
    said = {"a": ["Paris", "paris."], "b": ["Rome", "Oslo"], "c": ["", "x"], "d": ["The Nile", "nile"], "e": ["y", "z"]}
    for row in alone.rows:
        row["per_paraphrase"] = said[row["id"]]
    other_model = run("avg_other", "avg", {"a": 1})
    other_model.results["model"] = "other"  # no per_prompt run of its model: no groups
    group = agreement_of([origin, avg, alone, other_model])
    assert {i: group(avg, {"id": i}) for i in "abcd"} == {"a": AGREE, "b": DISAGREE, "c": DISAGREE, "d": AGREE}
    assert group(other_model, {"id": "a"}) is None
    compared = [{"run": avg.name, "baseline": origin.name}]
    rows = {(r["run"], r["group"]): r for r in group_rows([origin, avg, other_model], compared, 200, 0, group)}
    agree, disagree = rows[(avg.name, AGREE)], rows[(avg.name, DISAGREE)]
    assert (agree["n"], agree["em"], agree["delta_em"]) == (2, 0.5, pytest.approx(-0.5))  # hurts where they agree
    assert (disagree["n"], disagree["em"], disagree["delta_em"]) == (2, 1.0, pytest.approx(1.0))  # helps elsewhere
    assert not any(run_name == other_model.name for run_name, _ in rows)


def test_own_jsonl_lines_may_name_their_group(tmp_path, tiny_model_path):
    from selfens.model.registry import load_tokenizer

    lines = [
        {"id": "a", "paraphrases": ["q one?", "one q?"], "answers": ["x"], "group": "geo"},
        {"id": "b", "paraphrases": ["q two?", "two q?"], "answers": ["y"]},
    ]
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    dm = JsonlQuestions(path=str(path), prompt_style="raw")
    dm.connect(load_tokenizer(tiny_model_path), tiny_model_path)
    dm.setup("test")
    assert [e.group for e in dm.examples] == ["geo", None]

    path.write_text(json.dumps({**lines[0], "group": 3}) + "\n")
    bad = JsonlQuestions(path=str(path), prompt_style="raw")
    bad.connect(load_tokenizer(tiny_model_path), tiny_model_path)
    with pytest.raises(DataError, match=rf"{path}:1: group must be a string"):
        bad.setup("test")
