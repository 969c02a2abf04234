"""`selfens lm-eval`: lm-eval tasks end to end, the run files `selfens report` pairs, what a
request without phrasings does, a re-run, and the one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import read_jsonl, selfens, selfens_fails

LIMIT = 4
PHRASED = [0, 1, 2]  # documents of selfens_capitals with phrasings; document 3 has none


@pytest.fixture(scope="module")
def phrasings(tmp_path_factory) -> Path:
    from selfens.data.lm_eval_task import load_tasks

    docs = list(load_tasks(["selfens_capitals"])["selfens_capitals"].eval_docs)
    path = tmp_path_factory.mktemp("phrasings") / "capitals.jsonl"
    with path.open("w") as f:
        for doc in PHRASED:
            q = docs[doc]["question"]
            city = q.removeprefix("Which country or region is ").removesuffix(" the capital of?")
            phrased = [f"{city} is the capital of which country or region?", f"Which country has {city} as capital?"]
            f.write(json.dumps({"id": f"selfens_capitals/{doc}", "original": q, "paraphrases": phrased}) + "\n")
    return path


def lm_eval(model: str, output: Path, method: str, phrasings: Path, *extra) -> None:
    selfens(
        "lm-eval", "--tasks", "selfens_capitals,selfens_capitals_mc", "--model", model, "--method", method,
        "--paraphrases", phrasings, "--num-paraphrases", 3, "--limit", LIMIT, "--output", output, *extra,
    )  # fmt: skip


def answers(rows: list[dict]) -> list[dict]:
    """The rows less what lm-eval's request cache does not keep (a request answered from it has its
    answer, not its per-phrasing answers or the answer's log-probability)."""
    kept_apart = ("per_paraphrase", "answer_logprob", "answer_tokens")
    return [{k: v for k, v in r.items() if k not in kept_apart} for r in rows]


def run_of(output: Path, task: str, label: str) -> Path:
    (folder,) = [p for p in sorted((output / task).glob("version_*")) if p.name.endswith(f"-{label}")][-1:]
    return folder


@pytest.fixture(scope="module")
def runs(tiny_model_path, phrasings, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("lm-eval")
    for method in ("origin", "avg", "attention", "per_prompt"):
        lm_eval(tiny_model_path, output, method, phrasings)
    return output


@pytest.mark.slow
def test_runs_write_selfens_and_lm_eval_files(runs):
    for task in ("selfens_capitals", "selfens_capitals_mc"):
        for label in ("origin", "avg"):
            folder = run_of(runs, task, label)
            results = json.loads((folder / "results.json").read_text())
            rows = read_jsonl(folder / "predictions.jsonl")
            assert [r["index"] for r in rows] == list(range(LIMIT))
            assert results["num_examples"] == LIMIT and results["dataset"] == f"lm-eval:{task}"
            # selfens's EM is the mean of the rows' scores; lm-eval's own numbers are kept beside it
            assert results["metrics"]["test/em"] == sum(r["scores"][results["main_view"]]["em"] for r in rows) / LIMIT
            assert results["lm_eval"]["results"]["alias"] == task
    (results_file,) = (runs / "lm_eval").glob("selfens__*__avg/results_*.json")
    assert set(json.loads(results_file.read_text())["results"]) == {"selfens_capitals", "selfens_capitals_mc"}
    assert list(results_file.parent.glob("samples_selfens_capitals_mc_*.jsonl"))


@pytest.mark.slow
def test_a_document_without_phrasings_runs_as_origin_and_is_counted(runs):
    origin = {r["index"]: r for r in read_jsonl(run_of(runs, "selfens_capitals", "origin") / "predictions.jsonl")}
    folder = run_of(runs, "selfens_capitals", "avg")
    results = json.loads((folder / "results.json").read_text())
    rows = {r["index"]: r for r in read_jsonl(folder / "predictions.jsonl")}
    assert results["phrasings"]["documents_without_phrasings"] == 1
    assert "1 of 4 documents had no phrasings (1: no phrasings in the file)" in results["warnings"][0]
    assert rows[3]["phrasings"] == 1 and rows[3]["origin_because"] == "no phrasings in the file"
    assert rows[3]["prediction"] == origin[3]["prediction"]
    assert all(rows[d]["phrasings"] == 3 and "origin_because" not in rows[d] for d in PHRASED)
    # the multiple-choice task has no phrasings in this file: all its documents ran as origin
    mc = json.loads((run_of(runs, "selfens_capitals_mc", "avg") / "results.json").read_text())
    assert mc["phrasings"]["documents_without_phrasings"] == LIMIT


@pytest.mark.slow
def test_per_prompt_keeps_each_phrasings_answers(runs):
    generation = read_jsonl(run_of(runs, "selfens_capitals", "per_prompt") / "predictions.jsonl")
    assert [len(r["per_paraphrase"]) for r in generation] == [3, 3, 3, 1]  # document 3: its context alone
    choices = read_jsonl(run_of(runs, "selfens_capitals_mc", "per_prompt") / "predictions.jsonl")
    for r in choices:  # per choice, each phrasing's [log-likelihood, greedy]; no phrasings here: one each
        assert len(r["per_paraphrase_loglikelihoods"]) == 4 and all(
            len(c) == 1 for c in r["per_paraphrase_loglikelihoods"]
        )
        assert 0 < r["choice_probability"] <= 1


@pytest.mark.slow
def test_report_pairs_each_method_with_origin_of_the_same_task(runs):
    selfens("report", runs / "selfens_capitals")
    report = json.loads((runs / "selfens_capitals" / "report.json").read_text())
    origin = run_of(runs, "selfens_capitals", "origin").name.split("-")[0]
    paired = {c["method"].split("-")[0]: c["baseline"] for c in report["comparisons"]}
    assert paired == {m: f"selfens_capitals/{origin}" for m in ("avg", "attention", "per_prompt")}
    assert all(c["n"] == LIMIT for c in report["comparisons"]) and not report["not_compared"]


@pytest.mark.slow
def test_a_rerun_answers_from_the_request_cache(runs, tiny_model_path, phrasings):
    first = run_of(runs, "selfens_capitals", "avg")
    lm_eval(tiny_model_path, runs, "avg", phrasings)
    again = run_of(runs, "selfens_capitals", "avg")
    assert again != first
    assert answers(read_jsonl(again / "predictions.jsonl")) == answers(read_jsonl(first / "predictions.jsonl"))
    assert json.loads((again / "results.json").read_text())["cost"]["prefill_tokens"] == 0  # nothing decoded again


def test_unknown_task_is_one_line(capsys, tiny_model_path, tmp_path):
    line = selfens_fails(capsys, "lm-eval", "--tasks", "no_such_task", "--model", tiny_model_path, "--output", tmp_path)
    assert "unknown lm-eval task(s) no_such_task" in line


def test_other_tasks_phrasings_are_refused(capsys, tiny_model_path, tmp_path):
    file = tmp_path / "other.jsonl"
    file.write_text(json.dumps({"id": "arc_easy/0", "original": "Why?", "paraphrases": ["How come?"]}) + "\n")
    line = selfens_fails(
        capsys, "lm-eval", "--tasks", "selfens_capitals", "--model", tiny_model_path, "--paraphrases", file,
        "--output", tmp_path,
    )  # fmt: skip
    assert "holds phrasings of task(s) arc_easy, not of selfens_capitals" in line


def test_unwritable_output_is_one_line(capsys, tiny_model_path, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    line = selfens_fails(
        capsys, "lm-eval", "--tasks", "selfens_capitals", "--model", tiny_model_path, "--output", blocked / "out"
    )
    assert "cannot write under" in line and "--output" in line


def test_without_the_extra_the_error_names_the_install(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # as if not installed
    line = selfens_fails(capsys, "lm-eval", "--tasks", "selfens_capitals", "--output", tmp_path)
    assert 'pip install -e ".[lm-eval]"' in line


@pytest.mark.slow
def test_sigterm_stops_the_run_and_the_same_command_goes_on(tiny_model_path, phrasings, tmp_path):
    import signal
    import subprocess
    import time

    from tests.helpers import console_script

    def command(output: Path) -> list[str]:
        return [
            *console_script(), "lm-eval", "--tasks", "selfens_capitals", "--model", tiny_model_path, "--method", "avg",
            "--paraphrases", str(phrasings), "--num-paraphrases", "3", "--limit", "40", "--batch-size", "1",
            "--output", str(output),
        ]  # fmt: skip

    stopped = tmp_path / "stopped"
    process = subprocess.Popen(command(stopped), stderr=subprocess.PIPE, text=True)
    cache = stopped / ".requests"
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if list(cache.glob("*_rank0.db")):  # decoding has started
            time.sleep(0.5)
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.02)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM; what finished is kept in" in err and "_rank0.db" in err
    assert "to go on, run: selfens lm-eval --tasks selfens_capitals" in err
    assert not list(stopped.glob("selfens_capitals/version_*")), "nothing is written for a run cut short"
    subprocess.run(command(stopped), check=True, capture_output=True)
    whole = tmp_path / "whole"
    subprocess.run(command(whole), check=True, capture_output=True)
    rows = lambda output: read_jsonl(run_of(output, "selfens_capitals", "avg") / "predictions.jsonl")  # noqa: E731
    assert answers(rows(stopped)) == answers(rows(whole))


@pytest.mark.parametrize("option", ["--limit", "--batch-size", "--num-paraphrases"])
def test_a_zero_is_one_line(capsys, tmp_path, option):
    line = selfens_fails(capsys, "lm-eval", "--tasks", "selfens_capitals", option, 0, "--output", tmp_path)
    assert f"{option} must be at least 1, got 0" in line


def test_several_processes_are_refused(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as `accelerate launch` or torchrun set it
    line = selfens_fails(capsys, "lm-eval", "--tasks", "selfens_capitals", "--output", tmp_path)
    assert "runs in one process" in line


@pytest.mark.slow
def test_lm_evals_own_command_runs_the_selfens_model(tiny_model_path, phrasings, tmp_path):
    import subprocess

    from selfens.data.lm_eval_task import BUNDLED_TASKS

    done = subprocess.run(
        [
            sys.executable, "-m", "selfens.harness", "run", "--model", "selfens", "--model_args",
            f"model={tiny_model_path},method=avg,num_paraphrases=3,paraphrases={phrasings}", "--tasks", "selfens_capitals",
            "--include_path", str(BUNDLED_TASKS), "--limit", "2", "--device", "cpu", "--output_path", str(tmp_path),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "selfens_capitals" in done.stdout and "exact_match" in done.stdout
    assert list(tmp_path.rglob("results_*.json"))


@pytest.mark.slow
def test_per_prompt_records_every_phrasings_view(tiny_model_path, phrasings, tmp_path):
    from tests.helpers import scores

    selfens(
        "lm-eval", "--tasks", "selfens_capitals", "--model", tiny_model_path, "--method", "per_prompt",
        "--paraphrases", phrasings, "--num-paraphrases", 3, "--limit", len(PHRASED), "--output", tmp_path,
    )  # fmt: skip
    folder = run_of(tmp_path, "selfens_capitals", "per_prompt")
    rows = read_jsonl(folder / "predictions.jsonl")
    metrics = json.loads((folder / "results.json").read_text())["metrics"]
    assert all(len(r["per_paraphrase"]) == 3 for r in rows)
    for k in range(3):  # each phrasing's own answers, scored by the independent scorer
        mine = [scores(r["per_paraphrase"][k], r["answers"]) for r in rows]
        for m in ("em", "f1"):
            assert metrics[f"test/p{k + 1}/{m}"] == pytest.approx(sum(s[m] for s in mine) / len(rows))
    assert metrics["test/agreement"] == pytest.approx(sum(r["agreement"] for r in rows) / len(rows))
