"""What a user sees on the terminal, from a real process: no Lightning banner before selfens's own
lines, an error as the only line on stderr, and the metrics printed as the report prints them."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import JSONL_QUESTIONS, ORIGIN, ROOT, console_script, own_data, run_folder

BANNER = ("Seed set to", "[rank: 0] Seed set to", "GPU available: False", "TPU available: False", "HPU available")


def selfens_process(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    return subprocess.run(
        [*console_script(), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_data_error_is_the_only_line(tiny_model_path, tmp_path):
    data = own_data(tmp_path, [JSONL_QUESTIONS[0], '{"id": "c", "paraphrases": ['])
    done = selfens_process(
        "test", "--config", ROOT / "configs" / "jsonl" / "origin.yaml", "--data.init_args.path", data,
        "--data.init_args.shots", "null", "--data.init_args.num_shots", 0,
        "--model.init_args.model", tiny_model_path, "--trainer.logger.init_args.save_dir", tmp_path / "logs",
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"selfens: error: {data}:2: malformed JSON (Expecting value, column 1)"]
    assert done.stdout == ""


@pytest.mark.slow
def test_a_run_prints_no_banner_and_its_metrics_as_the_report_does(tiny_model_path, tmp_path):
    save = tmp_path / "logs"
    done = selfens_process(
        "test", "--config", ORIGIN, "--model.init_args.model", tiny_model_path, "--data.init_args.limit", 3,
        "--trainer.logger.init_args.save_dir", save,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = (done.stderr + done.stdout).splitlines()
    assert not [line for line in lines if line.startswith(BANNER)]
    assert "Test metric" not in done.stdout  # Lightning's table of raw floats
    folder = run_folder(save / "pararel_origin")
    em = json.loads((folder / "results.json").read_text())["metrics"]["test/origin/em"]
    header, rule, row = done.stdout.splitlines()[-4:-1]
    assert header.split()[:5] == ["run", "view", "N", "EM", "[95%"] and set(rule) <= {"-", " "}
    assert row.split()[:4] == ["origin", "origin", "5", f"{100 * em:.1f}"]
    assert done.stdout.splitlines()[-1] == f"selfens: test of 3 examples written to {folder}"
