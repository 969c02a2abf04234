"""`selfens paraphrase` end to end on the tiny model: the file, its sidecar, resuming (after a kill,
and to extend a file), refusing other settings, and two processes writing what one writes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from selfens.data import WebQuestions
from selfens.paraphrase.filters import REASONS
from tests.helpers import ROOT, console_script, free_port, selfens, selfens_fails

CONFIG = ROOT / "configs" / "paraphrase" / "webquestions.yaml"
FIELDS = {"index", "id", "original", "paraphrases", "rejected"}


def paraphrase_args(model: str, output: Path, limit: int, *extra, progress: bool = False) -> list[str]:
    """`selfens paraphrase` of the first `limit` questions, 2 a batch; without its progress lines
    unless `progress`."""
    return [
        "paraphrase",
        "--config",
        str(CONFIG),
        "--model.model",
        model,
        "--model.output",
        str(output),
        "--data.init_args.limit",
        str(limit),
        "--data.init_args.batch_size",
        "2",
        *([] if progress else ["--trainer.enable_progress_bar", "false"]),
        *map(str, extra),
    ]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def first_ids(n: int) -> list[str]:
    return [r.id for r in WebQuestions(limit=n).load_records()[:n]]


def test_writes_the_file_and_its_sidecar(tiny_model_path, tmp_path):
    output = tmp_path / "wq.jsonl"
    selfens(*paraphrase_args(tiny_model_path, output, 4))
    rows = read_rows(output)
    assert [r["id"] for r in rows] == first_ids(4) and [r["index"] for r in rows] == [0, 1, 2, 3]
    records = WebQuestions(limit=4).load_records()
    for row, record in zip(rows, records):
        assert set(row) == FIELDS
        assert row["original"] == record.paraphrases[0]
        assert len(row["paraphrases"]) <= 5
        for rejected in row["rejected"]:
            assert rejected["reason"] in REASONS and 1 <= rejected["k"] <= 5 and 0 <= rejected["try"] < 5
    meta = json.loads((tmp_path / "wq.meta.json").read_text())
    assert meta["model"] == tiny_model_path and meta["settings"]["temperature"] == 1.5
    assert meta["settings"]["max_tries"] == 5 and len(meta["settings_hash"]) == 16
    assert meta["data"]["class"] == "WebQuestions" and "limit" not in meta["data"]
    summary = meta["summary"]
    kept = sum(len(r["paraphrases"]) for r in rows)
    rejected = sum(len(r["rejected"]) for r in rows)
    assert summary["questions"] == 4 and summary["paraphrases_kept"] == kept and summary["paraphrases_asked"] == 20
    assert sum(summary["rejected"].values()) == rejected and summary["samples_drawn"] == kept + rejected
    assert set(summary["diversity"]) == {
        "overlap_with_original",
        "overlap_between_paraphrases",
        "distinct_1",
        "distinct_2",
    }
    assert not (tmp_path / "wq.jsonl.parts").exists()


def test_a_rerun_keeps_what_is_written_and_adds_the_rest(tiny_model_path, tmp_path):
    output = tmp_path / "wq.jsonl"
    selfens(*paraphrase_args(tiny_model_path, output, 2))
    rows = read_rows(output)
    rows[0]["paraphrases"] = ["a paraphrase no model wrote?"]  # kept only if not sampled again
    output.write_text("".join(json.dumps(r) + "\n" for r in rows))
    selfens(*paraphrase_args(tiny_model_path, output, 4))
    extended = read_rows(output)
    assert [r["id"] for r in extended] == first_ids(4)
    assert extended[:2] == rows
    selfens(*paraphrase_args(tiny_model_path, output, 1))  # a smaller limit: nothing to do, nothing lost
    assert read_rows(output) == extended


def test_other_settings_are_refused(tiny_model_path, tmp_path, capsys):
    output = tmp_path / "wq.jsonl"
    selfens(*paraphrase_args(tiny_model_path, output, 2))
    before = output.read_text()
    error = selfens_fails(capsys, *paraphrase_args(tiny_model_path, output, 2, "--model.temperature", "0.7"))
    assert f"{output} was started with other settings (settings.temperature: 1.5 -> 0.7" in error
    assert "choose another model.init_args.output" in error
    assert output.read_text() == before
    # Data options that leave the questions as they are do not matter (nothing is redone)...
    selfens(*paraphrase_args(tiny_model_path, output, 2, "--data.init_args.num_shots", "2"))
    assert output.read_text() == before
    # ...other questions do: each row is checked to be the same question.
    error = selfens_fails(capsys, *paraphrase_args(tiny_model_path, output, 2, "--data.init_args.split", "trainmodel"))
    assert "its example 0 is 'wqs000000', which is not example 0 of this run's data" in error


def _env() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "TOKENIZERS_PARALLELISM": "false"})
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(var, None)
    return env


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([*console_script(), *args], cwd=ROOT, env=_env(), capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_a_killed_run_resumes_with_each_question_once(tiny_model_path, tmp_path):
    limit, output = 24, tmp_path / "wq.jsonl"
    args = paraphrase_args(tiny_model_path, output, limit)
    part = tmp_path / "wq.jsonl.parts" / "rank0.jsonl"
    proc = subprocess.Popen([*console_script(), *args], cwd=ROOT, env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if part.exists() and len(part.read_text().splitlines()) >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_rows(part)
    assert 4 <= len(before) < limit and not output.exists()

    _run(args, timeout=300)
    rows = read_rows(output)
    assert [r["id"] for r in rows] == first_ids(limit)  # each question once, in order
    by_index = {r["index"]: r for r in rows}
    assert all(by_index[r["index"]] == r for r in before)  # what was written before the kill is kept
    assert not part.parent.exists()
    meta = json.loads((tmp_path / "wq.meta.json").read_text())
    assert meta["summary"]["questions"] == limit


@pytest.mark.slow
def test_two_processes_write_what_one_writes(tiny_model_path, tmp_path):
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    _run(paraphrase_args(tiny_model_path, one, 7), timeout=300)
    _run([*paraphrase_args(tiny_model_path, two, 7), *ddp], timeout=300)
    assert read_rows(two) == read_rows(one)
    assert sorted(p.name for p in tmp_path.glob("two.jsonl.parts/*")) == []


def test_python_m_selfens_paraphrase_help(capsys):
    with pytest.raises(SystemExit) as exit:
        selfens("paraphrase", "--help")
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert "--model.max_tries" in out and "--model.output" in out and "paraphrase file" in out


def test_a_written_file_feeds_a_webquestions_run(tiny_model_path, tmp_path):
    """paraphrase -> test: the run reads the file (no filters: the random model's outputs all count)
    and its results.json names it, with the file's hash and the model that wrote it."""
    output = tmp_path / "wq.jsonl"
    selfens(*paraphrase_args(tiny_model_path, output, 3, "--model.checks", "[]", "--model.prompt_style", "chat"))
    rows = read_rows(output)
    assert all(len(r["paraphrases"]) == 5 and r["rejected"] == [] for r in rows)
    selfens(
        "test",
        "--config",
        ROOT / "configs" / "webquestions" / "avg.yaml",
        "--model.init_args.model",
        tiny_model_path,
        "--data.init_args.paraphrases",
        output,
        "--data.init_args.limit",
        3,
        "--trainer.logger.init_args.save_dir",
        tmp_path / "logs",
        "--trainer.enable_progress_bar",
        "false",
    )
    (results,) = (tmp_path / "logs").rglob("results.json")
    saved = json.loads(results.read_text())
    source = saved["data_sources"]["paraphrases"]
    assert source["path"] == str(output) and source["model"] == tiny_model_path
    assert source["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    predictions = [json.loads(line) for line in (results.parent / "predictions.jsonl").read_text().splitlines()]
    assert [p["paraphrases"] for p in predictions] == [[r["original"], *r["paraphrases"][:4]] for r in rows]


def progress_counts(err: str, label: str) -> list[tuple[dict[str, int], str]]:
    """The progress lines `<label>: <unit> d of D, ..., elapsed, ~<left> left` on stderr: their counts
    (unit -> (done, total)) and estimates."""
    found = []
    for line in err.splitlines():
        if line.startswith(f"{label}: "):
            counts = {unit: (int(d), int(t)) for unit, d, t in re.findall(r"(\w+) (\d+) of (\d+)", line)}
            found.append((counts, re.search(r"~(\S+) left$", line).group(1)))
    return found


def test_progress_counts_questions_and_paraphrases_within_one_batch(tiny_model_path, tmp_path, capsys, monkeypatch):
    """One batch of 2 questions, 5 slots each, every output kept: a line after each slot's decode (not
    one bar of 1 batch), the estimate from the first paraphrase done, the last line at the totals."""
    monkeypatch.setattr("selfens.run.progress.EVERY", 0.0)  # a line at every count (stderr is not a terminal)
    args = paraphrase_args(tiny_model_path, tmp_path / "wq.jsonl", 2, "--model.checks", "[]", progress=True)
    capsys.readouterr()
    selfens(*args)
    said = capsys.readouterr()
    lines = progress_counts(said.err, "paraphrase")
    # A question is done once its 5th slot is: both at the last decode.
    assert [c for c, _ in lines] == [
        {"questions": (0, 2), "paraphrases": (2, 10)},
        {"questions": (0, 2), "paraphrases": (4, 10)},
        {"questions": (0, 2), "paraphrases": (6, 10)},
        {"questions": (0, 2), "paraphrases": (8, 10)},
        {"questions": (2, 2), "paraphrases": (10, 10)},
        {"questions": (2, 2), "paraphrases": (10, 10)},  # the closing line
    ]
    assert all(re.fullmatch(r"\d+m\d\ds", left) for _, left in lines)
    assert "Predicting" not in said.err + said.out  # Lightning's bar of batches is off

    # Resumed with the file complete, a larger limit: the 2 questions done count, not in the pace.
    capsys.readouterr()
    args = paraphrase_args(tiny_model_path, tmp_path / "wq.jsonl", 3, "--model.checks", "[]", progress=True)
    selfens(*args)
    lines = progress_counts(capsys.readouterr().err, "paraphrase")
    assert lines[0][0] == {"questions": (2, 3), "paraphrases": (11, 15)} and lines[-1][0]["questions"] == (3, 3)


def test_no_progress_lines_with_the_progress_bar_off(tiny_model_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("selfens.run.progress.EVERY", 0.0)
    capsys.readouterr()
    selfens(*paraphrase_args(tiny_model_path, tmp_path / "wq.jsonl", 1))
    assert progress_counts(capsys.readouterr().err, "paraphrase") == []
