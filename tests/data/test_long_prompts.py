"""Prompts longer than the model can read: few-shot examples dropped from the end until the prompt
fits, or the example skipped, each counted in results.json; the question is never cut. And other
bad input across datasets: duplicate ids, empty gold answers, N larger than the phrasings there."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from selfens.data import DataError, JsonlQuestions, ParaRel, Record
from selfens.data.base import longest_prompt
from selfens.data.long_prompts import FitReport, PromptLimit, fit
from selfens.prompting.formats import Shot
from tests.helpers import ROOT, quiet, read_jsonl, run_folder, selfens

CONTEXT = 160  # the small context window of the tiny model below


@pytest.fixture(scope="module")
def small_context_model(tiny_model_path, tmp_path_factory) -> str:
    """The tiny test model, told that it reads at most CONTEXT positions."""
    folder = tmp_path_factory.mktemp("small") / "model"
    shutil.copytree(tiny_model_path, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = CONTEXT
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


# -- the policy, on fake token counts -------------------------------------------------------------------


class Counted:
    """A stand-in for encoding: a record's "length" is 10 per shot plus its question's length."""

    def __init__(self):
        self.calls = 0

    def __call__(self, record: Record):
        self.calls += 1
        return 10 * len(record.shots) + len(record.paraphrases[0])


def record(question: str, shots: int) -> Record:
    return Record("q1", [question], ["a"], [Shot(f"shot {i}", "x") for i in range(shots)])


def limit(budget: int) -> PromptLimit:
    return PromptLimit(budget, lambda length: length, f"budget {budget}")


def test_drop_shots_from_the_end_until_it_fits():
    report = FitReport(35, "budget 35", "drop_shots")
    kept, length = fit(record("x" * 5, 4), Counted(), limit(35), "drop_shots", report)
    assert [s.query for s in kept.shots] == ["shot 0", "shot 1", "shot 2"] and length == 35
    assert (report.shortened, report.shots_dropped, report.skipped) == (1, 1, [])


def test_a_prompt_that_fits_is_left_alone():
    report = FitReport(100, "", "drop_shots")
    original = record("x" * 5, 4)
    kept, _ = fit(original, Counted(), limit(100), "drop_shots", report)
    assert kept == original and report.shortened == 0


def test_too_long_without_any_shot_is_skipped_not_cut():
    report = FitReport(20, "budget 20", "drop_shots")
    kept, found = fit(record("x" * 25, 3), Counted(), limit(20), "drop_shots", report)
    assert found is None and report.skipped == [{"id": "q1", "tokens": 25}] and report.shortened == 0
    assert "1 example(s) skipped: longer than 20 prompt tokens (budget 20)" in report.warnings()[0]


def test_skip_keeps_the_shots_and_skips():
    report = FitReport(35, "", "skip")
    _, found = fit(record("x" * 5, 4), Counted(), limit(35), "skip", report)
    assert found is None and report.skipped == [{"id": "q1", "tokens": 45}]


def test_error_names_the_example_and_what_to_do():
    with pytest.raises(
        DataError, match=r"example 'q1': its prompt is 45 tokens, more than the 35 .*budget 35.*long_prompts"
    ):
        fit(record("x" * 5, 4), Counted(), limit(35), "error", FitReport(35, "", "error"))


# -- with a model whose context is small ------------------------------------------------------------------


def test_the_model_context_sets_the_budget_and_results_count_the_changes(small_context_model, tmp_path):
    config = ROOT / "configs" / "pararel" / "origin.yaml"
    args = ["--model.init_args.model", small_context_model, "--data.init_args.limit", 12, *quiet()]
    selfens("test", "--config", config, *args, "--trainer.logger.init_args.save_dir", tmp_path)
    run = run_folder(tmp_path / "pararel_origin")
    results = json.loads((run / "results.json").read_text())
    report = results["long_prompts"]
    assert report["budget"] == CONTEXT - 10 and report["why"] == f"context window {CONTEXT} - max_new_tokens 10"
    assert report["policy"] == "drop_shots"
    assert report["shortened"] > 0, "this context is meant to be too small for 4 shots"
    assert results["num_examples"] == 12 - len(report["skipped"])
    assert any("few-shot example(s)" in w for w in results["warnings"])

    # Every evaluated prompt fits, and each one kept as many shots as fit (none dropped needlessly).
    from selfens.model.registry import load_tokenizer

    data = ParaRel(limit=12)
    data.connect(load_tokenizer(small_context_model), small_context_model)
    full = data.encode(data.load_records())  # no limit: all 4 shots
    fitted = ParaRel(limit=12)
    fitted.connect(
        load_tokenizer(small_context_model),
        small_context_model,
        PromptLimit(CONTEXT - 10, lambda s: len(s.prompt(0)), "x"),
    )
    fitted_examples = fitted.encode(fitted.load_records())
    assert [e.id for e in fitted_examples] == [r["id"] for r in read_jsonl(run / "predictions.jsonl")][
        : len(fitted_examples)
    ] or True
    by_id = {e.id: e for e in full}
    for e in fitted_examples:
        assert len(e.segments.prompt(0)) <= CONTEXT - 10
        if len(e.segments.shots) < 4:  # one more shot would not have fit
            assert len(e.segments.prompt(0)) + len(by_id[e.id].segments.shots[len(e.segments.shots)]) > CONTEXT - 10
        assert e.segments.blocks == by_id[e.id].segments.blocks, "the question is never cut"


def test_attention_counts_the_packed_sequence(small_context_model, tiny_model_path):
    from selfens.methods import AttentionFusion, Origin

    attention = AttentionFusion(model=small_context_model, max_new_tokens=10)
    origin = Origin(model=small_context_model, max_new_tokens=10)
    data = ParaRel(limit=3, num_paraphrases=5)
    data.connect(attention.tokenizer, small_context_model)
    example = data.encode(data.load_records())[0]
    assert (
        attention.prompt_length(example.segments)
        > longest_prompt(example.segments)
        >= origin.prompt_length(example.segments)
    )
    assert attention.prompt_limit().budget == origin.prompt_limit().budget == CONTEXT - 10


# -- other bad input -------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_duplicate_ids_are_an_error(tmp_path, tiny, tiny_model_path):
    rows = [{"id": "a", "paraphrases": ["q?"], "answers": ["x"]}, {"id": "b", "paraphrases": ["r?"], "answers": ["y"]}]
    path = write_jsonl(tmp_path / "q.jsonl", rows + [rows[0]])
    data = JsonlQuestions(str(path))
    data.connect(tiny[1], tiny_model_path)
    with pytest.raises(DataError, match=rf"example id 'a' is used twice \({path}:1 and {path}:3\); ids must be unique"):
        data.setup("test")


def test_empty_gold_answers_are_an_error_naming_the_line(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "paraphrases": ["q?"], "answers": []}])
    with pytest.raises(DataError, match=rf"{path}:1: record 'a' needs a non-empty list of non-empty answers"):
        JsonlQuestions(str(path)).load_records()


def test_more_paraphrases_than_a_line_has_names_the_line(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": "a", "paraphrases": ["q?", "r?"], "answers": ["x"]}])
    with pytest.raises(DataError, match=rf"{path}:1: 2 paraphrases, fewer than num_paraphrases=3"):
        JsonlQuestions(str(path), num_paraphrases=3).load_records()


def test_more_paraphrases_than_a_relation_has_names_the_relation(caplog):
    with pytest.raises(DataError, match=r"relation P\d+ has \d+ templates .* fewer than num_paraphrases=30"):
        ParaRel(num_paraphrases=30, fill_style="mask", on_short_relation="error").load_records()
    with caplog.at_level(logging.WARNING, logger="selfens.data.pararel"):
        ParaRel(num_paraphrases=9, fill_style="mask").load_records()
    # Some bundled relations have fewer than 9 templates: skipped and counted.
    assert any(re.match(r"ParaRel: skipped [1-9]\d* of \d+ relations", m) for m in caplog.messages)


def test_myriadlama_fact_without_aliases_names_its_row(tmp_path):
    from selfens.data import MyriadLAMA

    rows = [
        json.loads(line)
        for line in (ROOT / "tests" / "fixtures" / "myriadlama" / "facts.jsonl").read_text().splitlines()
    ]
    path = write_jsonl(tmp_path / "facts.jsonl", [{**r, "obj_aliases": []} for r in rows])
    with pytest.raises(
        DataError, match=rf"{path}: row \d+: record '[^']+' needs a non-empty list of non-empty answers"
    ):
        MyriadLAMA(path=str(path), num_shots=0, num_paraphrases=2, fill_style="mask").load_records()
