"""Expected failures, as a user meets them: one `selfens: error:` line naming what, where and what to
do, exit status 2, no traceback, and no run folder left behind by a run that failed before decoding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import ORIGIN, logger_name, quiet, run_folder, selfens, selfens_fails

ROOT = Path(__file__).resolve().parents[1]
ATTENTION = ROOT / "configs" / "pararel" / "attention.yaml"


def own_data(tmp_path: Path, lines: list) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines), encoding="utf-8")
    return path


def jsonl_args(path: Path, model: str, save_dir: Path, *extra) -> list:
    """`selfens test` of origin on a user's own file, with the file's defaults (no num_paraphrases)."""
    config = save_dir / "own.yaml"
    config.write_text(
        "model:\n  class_path: selfens.methods.Origin\n"
        f"data:\n  class_path: selfens.data.JsonlQuestions\n  init_args:\n    path: {path}\n"
        "trainer:\n  logger:\n    class_path: lightning.pytorch.loggers.TensorBoardLogger\n"
        f"    init_args:\n      name: {logger_name(ORIGIN)}\n"
    )
    return command("test", config, model, save_dir, *quiet(), *extra)


def command(name: str, config: Path, model: str, save_dir: Path, *extra) -> list:
    """`selfens NAME --config CONFIG` with the model and run folder overridden."""
    return [
        name,
        "--config",
        config,
        "--model.init_args.model",
        model,
        "--trainer.logger.init_args.save_dir",
        save_dir,
        *extra,
    ]


def assert_nothing_left(save_dir: Path, config: Path = ORIGIN) -> None:
    folder = save_dir / logger_name(config)
    assert not folder.exists() or not any(folder.iterdir()), f"a failed run left {sorted(folder.rglob('*'))}"


QUESTIONS = [
    {
        "id": "a",
        "paraphrases": ["where is tokyo?", "tokyo is in which country?", "in what country is tokyo?"],
        "answers": ["Japan"],
    },
    {
        "id": "b",
        "paraphrases": ["capital of france?", "france's capital?", "which city is france's capital?"],
        "answers": ["Paris"],
    },
]


def test_malformed_data_line(tiny_model_path, tmp_path, capsys):
    path = own_data(tmp_path, [QUESTIONS[0], QUESTIONS[1], '{"id": "c", "paraphrases": ['])
    message = selfens_fails(capsys, *jsonl_args(path, tiny_model_path, tmp_path))
    assert f"{path}:3: malformed JSON" in message
    assert_nothing_left(tmp_path)


def test_missing_data_file(tiny_model_path, tmp_path, capsys):
    message = selfens_fails(capsys, *jsonl_args(tmp_path / "nowhere.jsonl", tiny_model_path, tmp_path))
    assert f"data file not found: {tmp_path / 'nowhere.jsonl'}" in message
    assert_nothing_left(tmp_path)


def test_lines_with_different_paraphrase_counts(tiny_model_path, tmp_path, capsys):
    path = own_data(tmp_path, [QUESTIONS[0], {**QUESTIONS[1], "paraphrases": QUESTIONS[1]["paraphrases"][:2]}])
    message = selfens_fails(capsys, *jsonl_args(path, tiny_model_path, tmp_path))
    assert f"{path}:2: 2 paraphrases, but line 1 has 3" in message and "num_paraphrases" in message


def test_misspelled_option_suggests_the_closest(tiny_model_path, tmp_path, capsys):
    message = selfens_fails(capsys, "test", "--config", ORIGIN, "--model.init_args.max_new_tokenz", 3)
    assert message == "selfens: error: model: unknown option 'max_new_tokenz'; did you mean max_new_tokens?"
    message = selfens_fails(capsys, "test", "--config", ORIGIN, "--trainer.devicez", 2)
    assert message == "selfens: error: unknown option --trainer.devicez; did you mean --trainer.devices?"


def test_misspelled_key_in_a_config_file(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text(ORIGIN.read_text().replace("limit:", "limt:"))
    message = selfens_fails(capsys, "test", "--config", config)
    assert message == "selfens: error: data: unknown option 'limt'; did you mean limit?"


def test_missing_config_file(tmp_path, capsys):
    message = selfens_fails(capsys, "test", "--config", tmp_path / "nowhere.yaml")
    assert message == f"selfens: error: config: File does not exist: '{tmp_path / 'nowhere.yaml'}'"


def test_unknown_command_suggests_the_closest(capsys):
    message = selfens_fails(capsys, "tset", "--config", ORIGIN)
    assert "unknown command 'tset'; did you mean test?" in message


def test_bad_option_value(tiny_model_path, tmp_path, capsys):
    message = selfens_fails(capsys, *command("test", ORIGIN, tiny_model_path, tmp_path, "--data.init_args.limit", 0))
    assert "limit must be at least 1" in message
    message = selfens_fails(capsys, "test", "--config", ORIGIN, "--data.init_args.limit", "abc")
    assert message == "selfens: error: data.limit: expected int, got 'abc'"
    message = selfens_fails(capsys, "test", "--config", ORIGIN, "--trainer.devices", 0)
    assert message.startswith("selfens: error: trainer: ")
    message = selfens_fails(
        capsys, *command("test", ORIGIN, tiny_model_path, tmp_path, "--model.init_args.dtype", "float33")
    )
    assert "Unknown dtype 'float33'" in message
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
    path = own_data(tmp_path, QUESTIONS)
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

    path = own_data(tmp_path, QUESTIONS)
    capsys.readouterr()
    stops = json.dumps([c for c in string.printable if not c.isspace()])
    selfens(*jsonl_args(path, tiny_model_path, tmp_path, "--model.init_args.stop_strings", stops))
    run = run_folder(tmp_path / logger_name(ORIGIN))
    results = json.loads((run / "results.json").read_text())
    assert results["warnings"] and "2 of 2 predictions are empty" in results["warnings"][0]
    assert "selfens: warning: 2 of 2 predictions are empty" in capsys.readouterr().err
