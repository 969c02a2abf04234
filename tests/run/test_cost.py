"""What a run costs is recorded whole: confidence work beside the decode, and a resumed run's
carried-over cost beside its own. Also `selfens confidence` end to end."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import ROOT, logger_name, quiet, read_jsonl, run_folder, selfens

WEIGHTED = ROOT / "configs" / "pararel" / "weighted_avg.yaml"
PER_PROMPT = ROOT / "configs" / "pararel" / "per_prompt.yaml"


def weighted(command: str, model: str, tmp_path: Path, save_dir: str, *extra) -> Path:
    selfens(
        command,
        "--config",
        WEIGHTED,
        "--model.init_args.model",
        model,
        "--data.init_args.limit",
        4,
        "--data.init_args.batch_size",
        2,
        "--model.init_args.num_samples",
        4,
        "--model.init_args.confidence_dir",
        tmp_path / "confidence",
        "--trainer.logger.init_args.save_dir",
        tmp_path / save_dir,
        *quiet(),
        *extra,
    )
    return run_folder(tmp_path / save_dir / logger_name(WEIGHTED))


def test_confidence_command_then_a_test_that_only_reads_the_cache(tiny_model_path, tmp_path, capsys):
    capsys.readouterr()
    run = weighted("confidence", tiny_model_path, tmp_path, "confidence_run")
    out = capsys.readouterr().out
    assert f"written to {run}" in out and "cached in" in out
    rows = read_jsonl(run / "predictions.jsonl")
    assert len(rows) == 4 and all(len(r["confidences"]) == 5 for r in rows)
    spent = json.loads((run / "results.json").read_text())["cost"]
    assert spent["confidence_prefill_tokens"] > 0 and spent["confidence_seconds"] > 0
    assert spent["prefill_tokens"] == 0, "the confidence command decodes no fused answer"

    tested = weighted("test", tiny_model_path, tmp_path, "test_run", "--model.init_args.compute_confidence", "false")
    results = json.loads((tested / "results.json").read_text())
    assert results["num_examples"] == 4
    assert results["cost"]["confidence_prefill_tokens"] == 0, "every confidence came from the cache"
    assert [r["weights"] for r in read_jsonl(tested / "predictions.jsonl")] == [
        [round(c, 4) for c in r["confidences"]] for r in rows
    ]


def test_weighted_run_counts_its_confidence_work(tiny_model_path, tmp_path):
    run = weighted("test", tiny_model_path, tmp_path, "run")
    cost = json.loads((run / "results.json").read_text())["cost"]
    # 4 examples x 5 prompts: one greedy answer each, then K = 4 samples each.
    assert cost["confidence_forward_calls"] > 0 and cost["confidence_seconds"] > 0
    assert cost["confidence_prefill_tokens"] > cost["prefill_tokens"], "K samples read each prompt more than once"
    assert cost["decode_seconds"] > 0


def test_resumed_run_records_both_costs(tiny_model_path, tmp_path):
    common = [
        "--model.init_args.model",
        tiny_model_path,
        "--data.init_args.limit",
        6,
        "--data.init_args.batch_size",
        2,
        *quiet(),
    ]
    selfens("test", "--config", PER_PROMPT, *common, "--trainer.logger.init_args.save_dir", tmp_path / "full")
    full = run_folder(tmp_path / "full" / logger_name(PER_PROMPT))
    whole = json.loads((full / "results.json").read_text())["cost"]
    rows = read_jsonl(full / "predictions.jsonl")

    # A run killed after its first batch: its rank file and the cost it had written with that batch.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    (crashed / "predictions.rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    first_batch = {name: (value / 3 if name.endswith("tokens") else 1.0) for name, value in whole.items()}
    (crashed / "cost.rank0.json").write_text(json.dumps(first_batch))
    identity = json.loads((full / "results.json").read_text())["identity"]  # written when it started
    (crashed / "identity.json").write_text(json.dumps(identity))

    selfens(
        "test",
        "--config",
        PER_PROMPT,
        *common,
        "--resume",
        crashed,
        "--trainer.logger.init_args.save_dir",
        tmp_path / "resumed",
    )
    results = json.loads((run_folder(tmp_path / "resumed" / logger_name(PER_PROMPT)) / "results.json").read_text())
    assert results["carried_cost"] == first_batch
    assert 0 < results["cost"]["prefill_tokens"] < whole["prefill_tokens"]
    assert results["total_cost"] == {k: results["cost"][k] + first_batch[k] for k in first_batch}
    assert not list((tmp_path / "resumed").rglob("cost.rank*.json")), "a finished run keeps no per-rank cost files"
