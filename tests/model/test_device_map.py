"""`device_map` (accelerate) for a model bigger than one GPU: on the CPU it must give what the
ordinary load gives, and with DDP it is refused (one process per GPU vs one model over all GPUs)."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import ORIGIN, ROOT, console_script, free_port, logger_name, quiet, read_jsonl, run_folder, selfens


def test_device_map_auto_gives_the_same_answers(tiny_model_path, tmp_path):
    common = ["--model.init_args.model", tiny_model_path, "--data.init_args.limit", 6, *quiet()]
    selfens("test", "--config", ORIGIN, *common, "--trainer.logger.init_args.save_dir", tmp_path / "plain")
    selfens(
        "test",
        "--config",
        ORIGIN,
        *common,
        "--model.init_args.device_map",
        "auto",
        "--trainer.logger.init_args.save_dir",
        tmp_path / "mapped",
    )
    plain = read_jsonl(run_folder(tmp_path / "plain" / logger_name(ORIGIN)) / "predictions.jsonl")
    mapped = read_jsonl(run_folder(tmp_path / "mapped" / logger_name(ORIGIN)) / "predictions.jsonl")
    assert [r["prediction"] for r in mapped] == [r["prediction"] for r in plain]


@pytest.mark.slow
def test_device_map_with_ddp_is_refused(tiny_model_path, tmp_path):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    command = [
        *console_script(),
        "test",
        "--config",
        str(ORIGIN),
        "--model.init_args.model",
        tiny_model_path,
        "--model.init_args.device_map",
        "auto",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path),
    ]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert (
        "model.device_map: auto shards one model over the GPUs of one process; it cannot be combined with DDP"
        in proc.stderr
    )
    assert "Traceback" not in proc.stderr
