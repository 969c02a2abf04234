"""An interrupted run resumes: finished examples are kept and counted, only the rest are decoded."""

import json
from pathlib import Path

from tests.test_cli import logger_name, quiet, read_jsonl, run_folder, selfens, selfens_fails

PER_PROMPT = Path("configs/pararel/per_prompt.yaml")


def _args(tiny_model_path, root, *extra) -> list:
    return [
        "test",
        "--config",
        PER_PROMPT,
        "--model.init_args.model",
        tiny_model_path,
        "--data.init_args.limit",
        6,
        "--data.init_args.batch_size",
        2,
        "--trainer.logger.init_args.save_dir",
        root,
        *quiet(),
        *extra,
    ]


def _run(tiny_model_path, root, *extra):
    selfens(*_args(tiny_model_path, root, *extra))


def test_resumed_run_equals_uninterrupted_run(tiny_model_path, tmp_path):
    _run(tiny_model_path, tmp_path)
    full = run_folder(tmp_path / logger_name(PER_PROMPT))
    rows = read_jsonl(full / "predictions.jsonl")

    # Simulate a crash after two batches: rank file with 4 finished rows and a torn last line.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    text = "".join(json.dumps(r) + "\n" for r in rows[:4]) + '{"index": 4, "id": "P1'
    (crashed / "predictions.rank0.jsonl").write_text(text)

    _run(tiny_model_path, tmp_path, "--resume", crashed)
    resumed = run_folder(tmp_path / logger_name(PER_PROMPT), 1)
    results = json.loads((resumed / "results.json").read_text())
    assert results["resumed_examples"] == 4 and results["resumed_from"] == str(crashed)
    assert results["num_examples"] == 6
    assert results["metrics"] == json.loads((full / "results.json").read_text())["metrics"]
    new_rows = read_jsonl(resumed / "predictions.jsonl")
    assert [r["id"] for r in new_rows] == [r["id"] for r in rows]
    assert [r["per_paraphrase"] for r in new_rows] == [r["per_paraphrase"] for r in rows]
    # Only the 2 unfinished examples were decoded: 2 examples x 5 paraphrases of prompts.
    assert (
        results["cost"]["prefill_tokens"]
        < json.loads((full / "results.json").read_text())["cost"]["prefill_tokens"] / 2
    )


def test_resume_from_another_method_is_refused(tiny_model_path, tmp_path, capsys):
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / "predictions.rank0.jsonl").write_text(json.dumps({"index": 0, "id": "x", "method": "avg"}) + "\n")
    message = selfens_fails(capsys, *_args(tiny_model_path, tmp_path, "--resume", crashed))
    assert "ran method 'avg'" in message
    assert not (tmp_path / logger_name(PER_PROMPT)).exists() or not any((tmp_path / logger_name(PER_PROMPT)).iterdir())


def test_resume_from_a_folder_without_predictions(tiny_model_path, tmp_path, capsys):
    message = selfens_fails(capsys, *_args(tiny_model_path, tmp_path, "--resume", tmp_path / "nothing"))
    assert "no predictions" in message


def test_rows_with_unicode_line_separators_are_kept(tmp_path):
    """A model may write U+2028 or U+0085 into an answer; JSON keeps them raw, and str.splitlines()
    would cut such a row in two (and drop it): rows are split at newlines only."""
    from selfens.run.resume import finished_rows

    rows = [{"index": 0, "id": "a", "prediction": "x\u2028y\x85z"}, {"index": 1, "id": "b", "prediction": "w"}]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (tmp_path / "predictions.rank0.jsonl").write_text(text + '{"index": 2, "id": "c", "predic', encoding="utf-8")
    assert finished_rows(tmp_path) == rows  # the line cut short by a crash is dropped, nothing else


def test_resuming_a_finished_run_says_there_is_nothing_to_do(tiny_model_path, tmp_path, capsys):
    args = ["--model.init_args.model", tiny_model_path, "--data.init_args.limit", 3, *quiet()]
    selfens("test", "--config", PER_PROMPT, *args, "--trainer.logger.init_args.save_dir", tmp_path)
    done = run_folder(tmp_path / logger_name(PER_PROMPT))
    error = selfens_fails(
        capsys, "test", "--config", PER_PROMPT, *args, "--trainer.logger.init_args.save_dir", tmp_path, "--resume", done
    )
    assert f"nothing to resume: {done} has all 3 examples already; run without --resume" in error
