"""Expected failures, as a user meets them: one `selfens: error:` line naming what, where and what to
do, exit status 2, no traceback, and no run folder left behind by a run that failed before decoding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import (
    JSONL_QUESTIONS,
    ORIGIN,
    ROOT,
    command,
    jsonl_args,
    logger_name,
    own_data,
    quiet,
    run_folder,
    selfens,
    selfens_fails,
)

ATTENTION = ROOT / "configs" / "pararel" / "attention.yaml"


def assert_nothing_left(save_dir: Path, config: Path = ORIGIN) -> None:
    folder = save_dir / logger_name(config)
    assert not folder.exists() or not any(folder.iterdir()), f"a failed run left {sorted(folder.rglob('*'))}"


# Own data that cannot be read: (lines of the file, None: no file) -> what the one-line error says
# (parts joined by '; ').
DATA_ERRORS = {
    "malformed line": (
        [JSONL_QUESTIONS[0], JSONL_QUESTIONS[1], '{"id": "c", "paraphrases": ['],
        "{path}:3: malformed JSON",
    ),
    "missing file": (None, "data file not found: {path}"),
    "different paraphrase counts": (
        [JSONL_QUESTIONS[0], {**JSONL_QUESTIONS[1], "paraphrases": JSONL_QUESTIONS[1]["paraphrases"][:2]}],
        "{path}:2: 2 paraphrases, but line 1 has 3; num_paraphrases",
    ),
}


@pytest.mark.parametrize("case", DATA_ERRORS)
def test_own_data_errors_name_the_file_and_line(case, tiny_model_path, tmp_path, capsys):
    lines, expected = DATA_ERRORS[case]
    path = own_data(tmp_path, lines) if lines is not None else tmp_path / "nowhere.jsonl"
    message = selfens_fails(capsys, *jsonl_args(path, tiny_model_path, tmp_path))
    for part in expected.format(path=path).split("; "):
        assert part in message, message
    assert_nothing_left(tmp_path)


# Options the parser refuses before anything loads: (arguments after `selfens`) -> the whole message.
OPTION_ERRORS = {
    "misspelled model option": (
        ["test", "--config", ORIGIN, "--model.init_args.max_new_tokenz", 3],
        "selfens: error: model: unknown option 'max_new_tokenz'; did you mean max_new_tokens?",
    ),
    "misspelled trainer option": (
        ["test", "--config", ORIGIN, "--trainer.devicez", 2],
        "selfens: error: unknown option --trainer.devicez; did you mean --trainer.devices?",
    ),
    "value of the wrong type": (
        ["test", "--config", ORIGIN, "--data.init_args.limit", "abc"],
        "selfens: error: data.limit: expected int, got 'abc'",
    ),
    "missing config file": (
        ["test", "--config", "{tmp}/nowhere.yaml"],
        "selfens: error: config: File does not exist: '{tmp}/nowhere.yaml'",
    ),
    "misspelled key in a config file": (
        ["test", "--config", "{tmp}/typo.yaml"],
        "selfens: error: data: unknown option 'limt'; did you mean limit?",
    ),
    "unknown command": (["tset", "--config", ORIGIN], "selfens: error: unknown command 'tset'; did you mean test?"),
}


@pytest.mark.parametrize("case", OPTION_ERRORS)
def test_option_errors_say_what_and_suggest(case, tmp_path, capsys):
    args, expected = OPTION_ERRORS[case]
    (tmp_path / "typo.yaml").write_text(ORIGIN.read_text().replace("limit:", "limt:"))
    message = selfens_fails(capsys, *(str(a).format(tmp=tmp_path) for a in args))
    assert message.startswith(expected.format(tmp=tmp_path)), message


# Values refused once the run is built, before the model loads: (options) -> a part of the message.
VALUE_ERRORS = {
    "limit 0": (["--data.init_args.limit", 0], "limit must be at least 1"),
    "devices 0": (["--trainer.devices", 0], "selfens: error: trainer: "),
    "unknown dtype": (["--model.init_args.dtype", "float33"], "Unknown dtype 'float33'"),
}


@pytest.mark.parametrize("case", VALUE_ERRORS)
def test_bad_option_values_are_refused_and_leave_nothing(case, tiny_model_path, tmp_path, capsys):
    extra, expected = VALUE_ERRORS[case]
    message = selfens_fails(capsys, *command("test", ORIGIN, tiny_model_path, tmp_path, *extra))
    assert expected in message
    assert_nothing_left(tmp_path)


def test_hub_model_without_network_fails_at_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    message = selfens_fails(capsys, *command("test", ORIGIN, "llama3.2_1b_it", tmp_path))
    assert "'llama3.2_1b_it' (meta-llama/Llama-3.2-1B-Instruct) is not in the local Hugging Face cache" in message
    assert "pass model: DIR" in message
    assert_nothing_left(tmp_path)


def test_attention_with_an_unsuitable_prompt_fails_at_start_up(tiny_model_path, tmp_path, capsys):
    """A chat prompt has a suffix (the assistant header), which first_token: block_ends cannot use."""
    message = selfens_fails(
        capsys, *command("test", ATTENTION, tiny_model_path, tmp_path, "--data.init_args.prompt_style", "chat")
    )
    assert "first_token: block_ends needs an empty suffix" in message
    assert_nothing_left(tmp_path, ATTENTION)


def test_confidence_of_an_unweighted_method(tiny_model_path, tmp_path, capsys):
    message = selfens_fails(capsys, *command("confidence", ORIGIN, tiny_model_path, tmp_path))
    assert "selfens confidence needs a weighted method" in message and "Origin (origin)" in message


def test_debug_shows_the_traceback(tiny_model_path, tmp_path):
    from selfens.data.records import DataError

    with pytest.raises(DataError, match="data file not found"):
        selfens("--debug", *jsonl_args(tmp_path / "nowhere.jsonl", tiny_model_path, tmp_path))


@pytest.mark.slow
def test_a_failing_command_prints_one_line(tmp_path):
    """In a real process: exit status 2, one line on stderr besides Lightning's INFO lines, no traceback."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "selfens", "test", "--config", str(ORIGIN), "--data.init_args.limt", "3"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["selfens: error: data: unknown option 'limt'; did you mean limit?"]


# -- what a finished run says -------------------------------------------------------------------------------


def test_own_data_uses_every_paraphrase_and_records_prompt_settings(tiny_model_path, tmp_path, capsys):
    path = own_data(tmp_path, JSONL_QUESTIONS)
    capsys.readouterr()
    selfens(*jsonl_args(path, tiny_model_path, tmp_path))
    run = run_folder(tmp_path / logger_name(ORIGIN))
    assert f"written to {run}" in capsys.readouterr().out, "a run ends by printing its folder"
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [len(r["paraphrases"]) for r in rows] == [3, 3], "num_paraphrases defaults to what the file holds"
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["data"]["prompt_style"] == "chat"  # the tiny model has a chat template
    assert results["config"]["data"]["num_paraphrases"] == 3
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["init_args"]["prompt_style"] == "chat"


def test_pararel_records_the_fill_style_used(tiny_model_path, tmp_path):
    selfens(*command("test", ORIGIN, tiny_model_path, tmp_path, "--data.init_args.limit", 2, *quiet()))
    run = run_folder(tmp_path / logger_name(ORIGIN))
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]["init_args"]
    results = json.loads((run / "results.json").read_text())["config"]["data"]
    # The origin config leaves both to the model: a local folder with a chat template gets chat + mask.
    assert (saved["prompt_style"], saved["fill_style"]) == ("chat", "mask")
    assert (results["prompt_style"], results["fill_style"]) == ("chat", "mask")


def test_mostly_empty_predictions_warn(tiny_model_path, tmp_path, capsys):
    """Every visible character a stop string: every answer is cut to nothing, and the run says so."""
    import string

    path = own_data(tmp_path, JSONL_QUESTIONS)
    capsys.readouterr()
    stops = json.dumps([c for c in string.printable if not c.isspace()])
    selfens(*jsonl_args(path, tiny_model_path, tmp_path, "--model.init_args.stop_strings", stops))
    run = run_folder(tmp_path / logger_name(ORIGIN))
    results = json.loads((run / "results.json").read_text())
    assert results["warnings"] and "2 of 2 predictions are empty" in results["warnings"][0]
    assert "selfens: warning: 2 of 2 predictions are empty" in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["pararel", "myriadlama", "webquestions", "jsonl"])
def test_num_paraphrases_zero_is_refused_alike_by_every_dataset(dataset, capsys):
    """No dataset reads 0 as 1 (own JSONL did): the same one-line refusal, before anything loads."""
    config = ROOT / "configs" / dataset / "origin.yaml"
    message = selfens_fails(capsys, "test", "--config", config, "--data.init_args.num_paraphrases", 0)
    assert message.endswith("num_paraphrases must be at least 1, got 0"), message
