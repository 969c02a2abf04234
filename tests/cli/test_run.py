"""`selfens run` (and bare `selfens` on a terminal): the configs it builds from its answers are the
shipped ones with those answers put in, they parse as `selfens test` configs, and a session typed
into a pseudo-terminal writes them, runs them, reports, and prints commands that repeat the runs.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
import yaml

from selfens.cli import run_plan as plan
from selfens.cli.run_plan import CONFIGS, Choices
from tests.helpers import ROOT, run_folder, selfens, selfens_fails

DOWN, ENTER, CLEAR = "\x1b[B", "\r", "\x15"  # arrow down, Enter, Ctrl-U (clears a prefilled answer)


def choices(**given) -> Choices:
    answers = dict(dataset="pararel", methods=("origin",), model="m", num_paraphrases=5, limit=3, name="wiz")
    return Choices(**{**answers, **given})


def config(method: str, **given) -> dict:
    return plan.method_config(choices(methods=given.pop("methods", (method,)), **given), method).config


def shipped(path: str) -> dict:
    return yaml.safe_load((CONFIGS / path).read_text())


# -- the names it offers are the registries' -------------------------------------------------------


def test_names_come_from_the_registries():
    from selfens.attention.packing import LAYOUTS
    from selfens.attention.positions import PositionMode
    from selfens.decoding.fusion import FUSIONS
    from selfens.methods import AttentionFusion
    from selfens.methods.confidence import Measure
    from selfens.prompting.formats import FORMATS

    assert plan.method_names() == ["origin", "per_prompt", *FUSIONS, "attention"]
    assert set(plan.METHODS) == set(plan.method_names())
    assert set(plan.SETTINGS["layout"]) == set(LAYOUTS)
    assert set(plan.SETTINGS["positions"]) == set(get_args(PositionMode))
    assert set(plan.SETTINGS["first_token"]) == set(get_args(get_type_hints(AttentionFusion.__init__)["first_token"]))
    assert set(plan.SETTINGS["first_fusion"]) == set(plan.unweighted_fusions())
    assert set(plan.SETTINGS["confidence"]) == set(get_args(Measure))
    assert set(plan.SETTINGS["format"]) == set(FORMATS)
    assert all((CONFIGS / dataset / "origin.yaml").is_file() for dataset in plan.DATASETS if dataset != plan.OWN_FILE)


# -- the configs it builds -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["origin", "per_prompt", "avg", "weighted_max"])
def test_a_shipped_config_with_the_answers_put_in(method):
    expected = shipped(f"pararel/{method}.yaml")
    expected["model"]["init_args"]["model"] = "m"
    expected["data"]["init_args"]["limit"] = 3
    expected["trainer"]["logger"]["init_args"]["name"] = "wiz"
    assert config(method) == expected


def test_attention_variant_and_settings():
    settings = {"layout": "seed", "positions": "parallel", "first_token": "suffix"}
    built = config("attention", settings={"attention": settings}, num_paraphrases=3)
    expected = shipped("pararel/attention/seed_parallel_suffix.yaml")
    assert built["model"]["init_args"] == {**expected["model"]["init_args"], **settings, "model": "m"}
    assert built["data"]["init_args"] == {**expected["data"]["init_args"], "num_paraphrases": 3, "limit": 3}


def test_every_method_reads_the_prompts_attention_needs():
    """So that the report pairs each method with origin on the same examples."""
    settings = {"attention": {"layout": "shared_prefix", "positions": "sequential", "first_token": "suffix"}}
    for method in ("origin", "avg", "attention"):
        data = config(method, methods=("origin", "avg", "attention"), settings=settings)["data"]["init_args"]
        assert (data["prompt_style"], data["fill_style"], data["cue_in"]) == ("raw", "mask", "suffix"), method
    assert "prompt_style" not in config("origin", methods=("origin", "avg"))["data"]["init_args"]
    chosen = choices(methods=("origin", "attention"), settings=settings)
    template = CONFIGS / "pararel/attention/shared_prefix_sequential_suffix.yaml"
    assert plan.method_config(chosen, "origin").prompt_from == dict.fromkeys(
        ("prompt_style", "fill_style", "cue_in"), template
    )
    assert plan.method_config(chosen, "attention").prompt_from == {}


def test_a_method_the_dataset_ships_no_config_for():
    """WebQuestions has no weighted_max.yaml: ParaRel's method, WebQuestions' data and answer length."""
    built = plan.method_config(choices(dataset="webquestions", methods=("weighted_max",)), "weighted_max")
    own = shipped("webquestions/origin.yaml")
    assert built.sources == [CONFIGS / "pararel/weighted_max.yaml", CONFIGS / "webquestions/origin.yaml"]
    assert built.prompt_from == {}
    built = built.config
    assert built["data"] == {**own["data"], "init_args": {**own["data"]["init_args"], "limit": 3}}
    template = shipped("pararel/weighted_max.yaml")["model"]["init_args"]
    assert built["model"]["init_args"] == {**template, "model": "m", "max_new_tokens": 16}


def test_webquestions_attention_takes_only_the_prompt_settings_it_has():
    settings = {"attention": {"layout": "shared_prefix", "positions": "sequential", "first_token": "suffix"}}
    built = config("attention", dataset="webquestions", settings=settings)
    assert built["data"]["class_path"] == "selfens.data.WebQuestions"
    assert built["data"]["init_args"]["cue_in"] == "suffix"
    assert "fill_style" not in built["data"]["init_args"]  # WebQuestions has none


def test_own_file():
    own = dict(dataset=plan.OWN_FILE, own={"path": "q.jsonl", "format": "completion"}, num_paraphrases=None, limit=None)
    data = config("attention", **own)["data"]
    assert data["class_path"] == plan.JSONL_CLASS
    assert {k: data["init_args"][k] for k in ("path", "format", "limit", "prompt_style")} == {
        "path": "q.jsonl",
        "format": "completion",
        "limit": None,
        "prompt_style": "raw",  # attention's block_ends
    }
    assert "num_paraphrases" not in data["init_args"]  # all of the file's
    assert "fill_style" not in data["init_args"]  # JsonlQuestions has none


def test_built_configs_parse_as_selfens_test_configs(tiny_model_path, monkeypatch, tmp_path):
    from selfens.cli.lightning import build

    monkeypatch.setattr(sys, "argv", ["selfens"])
    attention = {
        "layout": "isolated_fewshot",
        "positions": "parallel",
        "first_token": "block_ends",
        "first_fusion": "max",
    }
    cases = [
        choices(dataset="webquestions", methods=("weighted_avg",)),
        choices(dataset="myriadlama", methods=("attention",), settings={"attention": attention}),
        choices(
            dataset=plan.OWN_FILE, methods=("per_prompt",), own={"path": str(tmp_path / "q.jsonl"), "format": "qa"}
        ),
    ]
    for case in cases:
        built = plan.method_config(case, case.methods[0]).config
        parsed = build(["--config", yaml.safe_dump(built), "--model.init_args.model", tiny_model_path], run=False)
        assert type(parsed.datamodule).__name__ == built["data"]["class_path"].rsplit(".", 1)[-1]
        assert parsed.model.method == case.methods[0]


def test_write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chosen = choices(methods=("origin", "avg"))
    paths = plan.write(chosen)
    assert paths == [Path("lightning_logs/wiz/configs/origin.yaml"), Path("lightning_logs/wiz/configs/avg.yaml")]
    for path, method in zip(paths, chosen.methods):
        assert yaml.safe_load(path.read_text()) == plan.method_config(chosen, method).config
        assert f"# Run it again: selfens test --config {path}\n" in path.read_text()


def test_run_folder_and_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plan.run_folder("pararel", "wiz") == Path("lightning_logs/wiz")
    assert plan.check_name("pararel", "wiz") is None
    assert "only" in plan.check_name("pararel", "a b")
    (tmp_path / "lightning_logs" / "wiz").mkdir(parents=True)
    assert "exists" in plan.check_name("pararel", "wiz")


# -- without a terminal ----------------------------------------------------------------------------


def test_without_a_terminal(capsys, monkeypatch):
    from selfens.cli.main import NOT_A_TERMINAL, main

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    main([])
    out = capsys.readouterr().out
    assert out.startswith("usage: selfens COMMAND") and out.rstrip().endswith(NOT_A_TERMINAL)
    error = selfens_fails(capsys, "run")
    assert "selfens run asks its questions on a terminal" in error and "--config" in error


# -- in a terminal ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_in_a_terminal(tiny_model_path, tmp_path, monkeypatch):
    """Bare `selfens` in a pseudo-terminal: ParaRel, origin + avg (the default), the tiny model as a
    local folder, 2 examples. Then the printed command run again writes the same config."""
    pexpect = pytest.importorskip("pexpect")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # a pty does not answer cursor-position requests
        "NO_COLOR": "1",
        "TERM": "xterm",
    }
    child = pexpect.spawn(
        sys.executable, ["-m", "selfens"], cwd=tmp_path, env=env, encoding="utf-8", dimensions=(50, 200), timeout=600
    )
    child.logfile_read = screen = io.StringIO()
    try:
        answer(child, "Dataset:", ENTER)  # pararel
        answer(child, "Methods:", ENTER)  # origin + avg
        answer(child, "N:", ENTER)  # 5
        answer(child, "Model:", DOWN + ENTER)  # a local folder
        answer(child, "Model folder", tiny_model_path + ENTER)
        if child.expect_exact(["Examples:", pexpect.TIMEOUT], timeout=10) == 1:
            child.send(ENTER)  # the first Enter closed the path completion menu
            child.expect_exact("Examples:")
        child.send(CLEAR + "2" + ENTER)
        answer(child, "Run name:", CLEAR + "wiz" + ENTER)
        answer(child, "Run now?", ENTER)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    output = screen.getvalue()
    assert child.exitstatus == 0, output[-3000:]
    folder = tmp_path / "lightning_logs" / "wiz"
    for method in ("origin", "avg"):
        assert f"selfens test --config lightning_logs/wiz/configs/{method}.yaml" in output
        assert (folder / "configs" / f"{method}.yaml").is_file()
    assert "selfens report lightning_logs/wiz" in output
    origin, avg = run_folder(folder, 0), run_folder(folder, 1)
    assert origin.name == "version_0-origin" and avg.name == "version_1-avg"
    assert (origin / "results.json").is_file() and (avg / "results.json").is_file()
    assert (folder / "report.md").is_file()
    written = yaml.safe_load((folder / "configs" / "origin.yaml").read_text())
    assert written["model"]["init_args"]["model"] == tiny_model_path
    assert written["data"]["init_args"]["limit"] == 2

    monkeypatch.chdir(tmp_path)
    selfens("test", "--config", "lightning_logs/wiz/configs/origin.yaml")  # as printed
    again = run_folder(folder, 2)
    assert again.name == "version_2-origin"
    assert (origin / "config.yaml").read_text() == (again / "config.yaml").read_text()


def answer(child, question: str, keys: str) -> None:
    child.expect_exact(question)
    child.send(keys)


# -- checked as they are answered --------------------------------------------------------------------

UP = "\x1b[A"
QUESTION = {"id": "q", "paraphrases": ["What is the capital of France?", "France's capital?"], "answers": ["Paris"]}


def terminal() -> dict:
    """The environment of a session in a pseudo-terminal (see test_in_a_terminal)."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "PROMPT_TOOLKIT_NO_CPR": "1",
        "NO_COLOR": "1",
        "TERM": "xterm",
    }


def jsonl_file(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "lines, said",
    [
        (
            [json.dumps(QUESTION), '{"id": "r" "paraphrases": ["Q?"]}'],
            "{}:2: malformed JSON (Expecting ',' delimiter, column 12)",
        ),
        (
            [json.dumps(QUESTION), '{"id": "r", "paraphrases": ["Q?"]}'],
            "{}:2: missing field 'answers' (fields present: ['id', 'paraphrases'])",
        ),
        ([json.dumps({**QUESTION, "answers": [""]})], "{}:1: record 'q' needs a non-empty list of non-empty answers"),
        ([], "'{}' has no questions (one JSON object a line)"),
    ],
)
def test_a_questions_file_is_read_when_it_is_named(tmp_path, lines, said):
    """By JsonlQuestions' own reader, as the run would read it: each line's error is the run's."""
    from selfens.cli.run import _is_questions

    path = jsonl_file(tmp_path / "q.jsonl", *lines)
    assert _is_questions(str(path)) == said.format(path)
    assert _is_questions(str(tmp_path / "none.jsonl")) == f"'{tmp_path / 'none.jsonl'}' is not a file"
    assert _is_questions(str(jsonl_file(tmp_path / "good.jsonl", json.dumps(QUESTION)))) is True


def test_a_few_shot_file_needs_only_the_first_phrasing():
    from selfens.cli.run import _is_questions

    assert _is_questions(str(CONFIGS / "jsonl" / "shots.jsonl"), shots=True) is True
    assert _is_questions(str(CONFIGS / "jsonl" / "questions.jsonl")) is True


@pytest.mark.slow
def test_a_bad_file_is_asked_again_and_a_run_without_origin_warned_of(tmp_path):
    """In a pseudo-terminal: a malformed questions file is refused with the run's error and asked for
    again; methods without origin are accepted, with a warning."""
    pexpect = pytest.importorskip("pexpect")
    bad = jsonl_file(tmp_path / "bad.jsonl", json.dumps(QUESTION), '{"id": "r", "paraphrases": ["Q?"]}')
    good = jsonl_file(tmp_path / "good.jsonl", json.dumps(QUESTION))
    child = pexpect.spawn(
        sys.executable, ["-m", "selfens", "run"], cwd=tmp_path, env=terminal(), encoding="utf-8", dimensions=(50, 200)
    )
    child.logfile_read = screen = io.StringIO()
    child.timeout = 120
    try:
        answer(child, "Dataset:", UP + ENTER)  # the last: a JSONL file of your own
        answer(child, "JSONL file", CLEAR + str(bad) + ENTER)
        child.expect_exact(f"{bad}:2: missing field 'answers'")
        child.send(CLEAR + str(good) + ENTER)
        if child.expect_exact(["Prompt format:", pexpect.TIMEOUT], timeout=20) == 1:
            child.send(ENTER)  # the first Enter closed the path completion menu
            child.expect_exact("Prompt format:")
        child.send(ENTER)
        answer(child, "Few-shot file", CLEAR + "none" + ENTER)
        answer(child, "Methods:", " " + ENTER)  # origin off: avg alone
        child.expect_exact("selfens: warning: origin is not among the methods")
        answer(child, "N:", "\x03")  # Ctrl-C
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130, screen.getvalue()[-3000:]
