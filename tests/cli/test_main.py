"""End to end through the CLI on the tiny random Llama: `selfens test|predict --config ...` writes a
run folder (config.yaml, predictions.jsonl, results.json, TensorBoard events) and `selfens report`
reads it back.

Runs are in-process (`selfens.cli.main.main([...])`): a fresh interpreter spends most of its time
importing Lightning, so only the checks that need one (exit status, `python -m`) start a process,
and those are marked slow.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import (
    ORIGIN,
    OWN_QUESTIONS,
    PER_PROMPT,
    ROOT,
    logger_name,
    own_answers_data,
    quiet,
    read_jsonl,
    run_folder,
    selfens,
    selfens_fails,
)

LIMIT = 6
VIEWS = ["majority", "mean", "oracle"] + [f"p{k}" for k in range(1, 6)]
METRICS = ("em", "f1", "lemma")


@pytest.fixture(scope="module")
def runs(tiny_model_path, tmp_path_factory):
    """origin and per_prompt tested, and origin predicted, on the first LIMIT ParaRel records."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        common = ["--model.init_args.model", tiny_model_path, "--data.init_args.limit", LIMIT, *quiet()]
        selfens("test", "--config", ORIGIN, *common, "--trainer.logger.init_args.save_dir", root / "test")
        selfens("test", "--config", PER_PROMPT, *common, "--trainer.logger.init_args.save_dir", root / "test")
        selfens("predict", "--config", ORIGIN, *common, "--trainer.logger.init_args.save_dir", root / "predict")
    return {
        "root": root,
        "origin": run_folder(root / "test" / logger_name(ORIGIN)),
        "per_prompt": run_folder(root / "test" / logger_name(PER_PROMPT)),
        "predict": run_folder(root / "predict" / logger_name(ORIGIN)),
    }


# -- the run folder -------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["origin", "per_prompt", "predict"])
def test_run_folder_files(runs, run):
    folder = runs[run]
    assert folder.is_dir(), (
        f"no run folder {folder}; found {sorted(p.relative_to(runs['root']) for p in runs['root'].rglob('*'))}"
    )
    assert (folder / "config.yaml").is_file()
    assert (folder / "predictions.jsonl").is_file()
    assert not list(folder.glob("predictions.rank*.jsonl")), "per-rank files should be merged and removed"
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["data"]["init_args"]["limit"] == LIMIT


def test_origin_predictions(runs):
    rows = read_jsonl(runs["origin"] / "predictions.jsonl")
    assert len(rows) == LIMIT
    assert [r["index"] for r in rows] == list(range(LIMIT))
    assert len({r["id"] for r in rows}) == LIMIT
    for r in rows:
        assert {"id", "prediction", "answers", "paraphrases", "scores"} <= set(r)
        assert r["method"] == "origin"
        assert isinstance(r["prediction"], str)
        assert r["answers"] and all(isinstance(a, str) for a in r["answers"])
        assert len(r["paraphrases"]) == 5
        assert set(r["scores"]) == {"origin"} and set(r["scores"]["origin"]) == set(METRICS)
        assert all(0.0 <= v <= 1.0 for v in r["scores"]["origin"].values())


def test_origin_results(runs):
    results = json.loads((runs["origin"] / "results.json").read_text())
    assert results["method"] == "origin" and results["stage"] == "test"
    assert results["num_examples"] == LIMIT
    assert set(results["metrics"]) == {f"test/origin/{m}" for m in METRICS} | {f"test/{m}" for m in METRICS}
    for m in METRICS:  # the common tags repeat the method's own view
        assert results["metrics"][f"test/{m}"] == results["metrics"][f"test/origin/{m}"]
    rows = read_jsonl(runs["origin"] / "predictions.jsonl")
    for m in METRICS:  # the logged metric is the mean of the per-example scores
        assert results["metrics"][f"test/origin/{m}"] == pytest.approx(
            sum(r["scores"]["origin"][m] for r in rows) / LIMIT, abs=1e-6
        )
    assert results["cost"]["prefill_tokens"] > 0
    assert results["cost"]["forward_calls"] > 0
    assert isinstance(results["data_hash"], str) and len(results["data_hash"]) == 64
    assert results["seed"] == 0
    assert results["versions"]["torch"] and results["versions"]["lightning"] and results["versions"]["python"]
    assert results["world_size"] == 1


def test_tensorboard_events(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list(runs["origin"].glob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event file in {runs['origin']}"
    acc = EventAccumulator(str(runs["origin"]), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {f"test/origin/{m}" for m in METRICS} <= set(tags["scalars"])
    assert "cost/prefill_tokens" in tags["scalars"]
    assert any(t.startswith("test/samples") for t in tags["tensors"])


def test_predict_has_no_scores(runs):
    rows = read_jsonl(runs["predict"] / "predictions.jsonl")
    assert len(rows) == LIMIT
    assert [r["index"] for r in rows] == list(range(LIMIT))
    assert all("scores" not in r for r in rows)
    # Same decode path as test: the same answers.
    tested = read_jsonl(runs["origin"] / "predictions.jsonl")
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in tested]
    results = json.loads((runs["predict"] / "results.json").read_text())
    assert results["stage"] == "predict"
    assert "metrics" not in results, "predict scores nothing"


def test_per_prompt_results(runs):
    results = json.loads((runs["per_prompt"] / "results.json").read_text())
    metrics = results["metrics"]
    assert results["method"] == "per_prompt"
    assert results["num_examples"] == LIMIT
    common = {f"test/{m}" for m in METRICS}
    assert set(metrics) == {f"test/{v}/{m}" for v in VIEWS for m in METRICS} | {"test/agreement"} | common
    assert results["main_view"] == "majority"
    assert all(metrics[f"test/{m}"] == metrics[f"test/majority/{m}"] for m in METRICS)
    assert 0.2 - 1e-6 <= metrics["test/agreement"] <= 1.0 + 1e-6
    check_oracle_bounds(metrics)
    rows = read_jsonl(runs["per_prompt"] / "predictions.jsonl")
    assert len(rows) == LIMIT
    for r in rows:
        assert len(r["per_paraphrase"]) == 5
        assert all(isinstance(p, str) for p in r["per_paraphrase"])
        assert "scores" in r and "agreement" in r


def check_oracle_bounds(metrics: dict) -> None:
    for m in METRICS:
        oracle = metrics[f"test/oracle/{m}"]
        assert oracle >= metrics[f"test/mean/{m}"] - 1e-6, m
        assert oracle >= metrics[f"test/majority/{m}"] - 1e-6, m
        for k in range(1, 6):
            assert oracle >= metrics[f"test/p{k}/{m}"] - 1e-6, (m, k)


def test_per_prompt_p1_equals_origin(runs):
    """Paraphrase 0 decoded alone inside per_prompt's B*N batch == origin's answer (B rows)."""
    origin = read_jsonl(runs["origin"] / "predictions.jsonl")
    per_prompt = read_jsonl(runs["per_prompt"] / "predictions.jsonl")
    assert [r["id"] for r in origin] == [r["id"] for r in per_prompt]
    assert [r["paraphrases"] for r in origin] == [r["paraphrases"] for r in per_prompt]
    assert [r["per_paraphrase"][0] for r in per_prompt] == [r["prediction"] for r in origin]
    o = json.loads((runs["origin"] / "results.json").read_text())
    p = json.loads((runs["per_prompt"] / "results.json").read_text())
    for m in METRICS:
        assert p["metrics"][f"test/p1/{m}"] == pytest.approx(o["metrics"][f"test/origin/{m}"], abs=1e-6)
    assert o["data_hash"] == p["data_hash"]


# -- per_prompt views with non-zero scores ---------------------------------------------------------


@pytest.fixture(scope="module")
def own_answers(tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("own_answers")
    data, args = own_answers_data(tiny_model_path, folder)
    selfens("test", *args, "--trainer.logger.init_args.save_dir", folder / "test")
    run = run_folder(folder / "test" / logger_name(PER_PROMPT))
    return {"folder": folder, "args": args, "run": run}


def test_per_prompt_views_nontrivial(own_answers):
    """Gold answers are chosen among the model's own per-paraphrase answers, so every view scores
    something: oracle must be 1, and each view must equal what predictions.jsonl implies."""
    from selfens.metrics import load_lemmatizer, normalize_answer
    from selfens.metrics.views import score

    rows = read_jsonl(own_answers["run"] / "predictions.jsonl")
    metrics = json.loads((own_answers["run"] / "results.json").read_text())["metrics"]
    first = read_jsonl(run_folder(own_answers["folder"] / "first" / logger_name(PER_PROMPT)) / "predictions.jsonl")
    assert [r["per_paraphrase"] for r in rows] == [r["per_paraphrase"] for r in first], "decoding is not deterministic"

    lemmatizer = load_lemmatizer("blank_en")
    per = [[score(p, r["answers"], lemmatizer) for p in r["per_paraphrase"]] for r in rows]
    n = len(rows)
    expected = {}
    for m in METRICS:
        for k in range(5):
            expected[f"test/p{k + 1}/{m}"] = sum(s[k][m] for s in per) / n
        expected[f"test/mean/{m}"] = sum(sum(x[m] for x in s) / 5 for s in per) / n
        expected[f"test/oracle/{m}"] = sum(max(x[m] for x in s) for s in per) / n
        expected[f"test/majority/{m}"] = sum(r["scores"]["majority"][m] for r in rows) / n
        expected[f"test/{m}"] = expected[f"test/majority/{m}"]  # the method's answer: the majority vote
    expected["test/agreement"] = sum(r["agreement"] for r in rows) / n
    assert metrics == pytest.approx(expected, abs=1e-6)

    assert metrics["test/oracle/em"] == pytest.approx(1.0)
    assert metrics["test/mean/em"] < 1.0, "the paraphrases should not all agree, or oracle == mean trivially"
    assert metrics["test/oracle/em"] > metrics["test/mean/em"]
    check_oracle_bounds(metrics)
    # The majority view is the majority vote of per_paraphrase, with its share as agreement.
    for r in rows:
        keys = [normalize_answer(p) for p in r["per_paraphrase"]]
        assert r["agreement"] == pytest.approx(keys.count(normalize_answer(r["prediction"])) / 5)
        assert r["agreement"] == pytest.approx(max(keys.count(k) for k in keys) / 5)


def test_metrics_do_not_depend_on_batch_size(own_answers):
    """The same answers batched differently must give the same metrics, bit for bit (results.json
    is compared across runs and world sizes). The answers are invariant (checked first); the
    mean/oracle/agreement metrics are float32 MeanMetric sums, whose rounding depends on grouping."""
    base_rows = read_jsonl(own_answers["run"] / "predictions.jsonl")
    base = json.loads((own_answers["run"] / "results.json").read_text())["metrics"]
    for batch_size in (1, len(OWN_QUESTIONS)):
        save_dir = own_answers["folder"] / f"batch{batch_size}"
        selfens(
            "test",
            *own_answers["args"],
            "--data.init_args.batch_size",
            batch_size,
            "--trainer.logger.init_args.save_dir",
            save_dir,
        )
        run = run_folder(save_dir / logger_name(PER_PROMPT))
        rows = read_jsonl(run / "predictions.jsonl")
        assert [r["per_paraphrase"] for r in rows] == [r["per_paraphrase"] for r in base_rows], batch_size
        metrics = json.loads((run / "results.json").read_text())["metrics"]
        differing = {k: (base[k], metrics[k]) for k in base if base[k] != metrics[k]}
        assert not differing, f"batch_size 2 vs {batch_size}: {differing}"


# -- report ----------------------------------------------------------------------------------------


def test_report(runs, capsys, tmp_path):
    capsys.readouterr()
    selfens("report", runs["root"] / "test", "--out", tmp_path, "--wide")  # every column, as the files
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()
    # origin and per_prompt have no method settings: no settings columns
    assert table[0].split()[:8] == ["run", "model", "dataset", "method", "N", "view", "EM", "95%"]
    # one row per (run, view): origin has 1 view, per_prompt 8
    assert len(table) == 2 + 1 + len(VIEWS)
    for view in VIEWS:
        assert any(line.split()[5] == view for line in table[2:])
    assert f"{runs['origin'].parent.name}/version_0 " in out
    assert "paired comparison with origin" in out  # origin and per_prompt ran on the same examples
    assert {p.name for p in tmp_path.iterdir()} == {
        "report.md",
        "report.csv",
        "report.json",
        "report.tex",
        "report_cost.png",
        "report_reliability.png",
        "report_groups.csv",  # ParaRel: per relation
        "report_groups.png",
        "report",  # for TensorBoard
    }


def test_report_without_runs(tmp_path, capsys):
    assert "no scored runs" in selfens_fails(capsys, "report", tmp_path)


def test_python_m_selfens_help(capsys, monkeypatch):
    """`python -m selfens --help`, in-process through runpy: every command is listed as a command."""
    from selfens.cli.commands import COMMANDS

    monkeypatch.setattr(sys, "argv", ["selfens", "--help"])
    runpy.run_module("selfens", run_name="__main__", alter_sys=True)
    out = capsys.readouterr().out
    lines = out.split("commands:\n")[1].split("\n\n")[0].splitlines()
    listed = [line.split()[0] for line in lines]
    assert listed == [
        "run",
        "test",
        "predict",
        "validate",
        "confidence",
        "fit",
        "mask",
        "paraphrase",
        "lm-eval",
        "report",
        "study",
        "ask",
    ]
    assert listed == list(COMMANDS)


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_python_m_selfens_help_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "selfens", "--help"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "predict" in proc.stdout and "test" in proc.stdout


@pytest.mark.slow
def test_unknown_model_exit_status(tmp_path):
    from selfens.model.registry import MODELS

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "selfens",
            "test",
            "--config",
            str(ORIGIN),
            "--model.init_args.model",
            "no_such_model",
            "--trainer.logger.init_args.save_dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Unknown model 'no_such_model'" in proc.stderr
    assert all(name in proc.stderr for name in MODELS)


def test_attention_logs_its_mask_image(tiny_model_path, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = Path("configs/pararel/attention.yaml")
    selfens(
        "test",
        "--config",
        config,
        "--model.init_args.model",
        tiny_model_path,
        "--data.init_args.limit",
        3,
        "--trainer.logger.init_args.save_dir",
        tmp_path,
        *quiet(),
    )
    run = run_folder(tmp_path / logger_name(config))
    acc = EventAccumulator(str(run), size_guidance={"images": 0})
    acc.Reload()
    assert "attention_mask" in acc.Tags()["images"]
    results = json.loads((run / "results.json").read_text())
    assert results["method"] == "attention" and results["num_examples"] == 3
