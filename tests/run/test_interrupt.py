"""Ctrl-C (SIGINT) and a scheduler's SIGTERM stop a run where it is, keep what finished, and say the
exact command that resumes it; that command finishes the run with the answers of an uninterrupted one."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ORIGIN, ROOT, console_script, read_jsonl, run_folder, signal_mid_run

LIMIT = 24


def start(tiny_model_path: str, save_dir: Path) -> subprocess.Popen:
    args = [
        "test", "--config", ORIGIN, "--model.init_args.model", tiny_model_path, "--model.init_args.max_new_tokens", 24,
        "--model.init_args.stop_strings", "[]", "--data.init_args.limit", LIMIT, "--data.init_args.batch_size", 2,
        "--trainer.logger.init_args.save_dir", save_dir,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*console_script(), *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stopped_run_says_how_to_resume_and_the_resumed_run_is_whole(signum, tiny_model_path, tmp_path):
    whole = start(tiny_model_path, tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    expected = read_jsonl(run_folder(tmp_path / "whole" / "pararel_origin") / "predictions.jsonl")

    run = start(tiny_model_path, tmp_path / "logs")
    signal_mid_run(run, tmp_path / "logs" / "pararel_origin" / "version_0-origin", signum, rows=2)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signum, err
    folder = run_folder(tmp_path / "logs" / "pararel_origin")
    said, go_on = err.splitlines()[-2:]
    done = len(read_jsonl(folder / "predictions.rank0.jsonl"))
    assert 2 <= done < LIMIT, "the run was stopped before its end"
    assert (
        said == f"selfens: stopped by {signum.name} after {done} of {LIMIT} examples; what finished is kept in {folder}"
    )
    command = shlex.split(go_on.removeprefix("selfens: to go on, run: "))
    assert command == ["selfens", "test", "--config", str(folder / "config.yaml"), "--resume", str(folder)]

    resumed = subprocess.run(
        [*console_script(), *command[1:]], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    new = run_folder(tmp_path / "logs" / "pararel_origin", 1)
    assert f"this run's folder {new} will hold all {LIMIT}" in resumed.stdout
    results = json.loads((new / "results.json").read_text())
    assert results["resumed_from"] == str(folder) and results["resumed_examples"] == done
    rows = read_jsonl(new / "predictions.jsonl")
    strip = lambda rs: [(r["id"], r["prediction"]) for r in rs]  # noqa: E731
    assert strip(rows) == strip(expected)
