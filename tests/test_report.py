"""`selfens report`: every number it prints comes back from predictions.jsonl by independent code
(means, standard errors, paired wins/losses, McNemar's exact p, changed answers); runs on other
examples are not paired, and say why; the files and plots are written. And TensorBoard, read with
its own reader: the runs share the common tags and one HParams table, with their settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from selfens.report.load import Run, collect
from selfens.run.cost import cost_labels, cost_names
from tests.test_cli import quiet, read_jsonl, selfens
from tests.test_rescoring import LIMIT, data_dir_with_gold, normalize, run, scores, standard_error

ROOT = Path(__file__).resolve().parents[1]
PARAREL = ROOT / "configs" / "pararel"
METHODS = ("origin", "per_prompt", "avg", "attention")


# The prompt of the attention config (and of the embedded model), for every run: the same examples.
SAME_PROMPTS = ("--data.init_args.prompt_style", "raw", "--data.init_args.fill_style", "completion")


# The runs of `compared`, in the order they run (their version numbers).
RUNS = ("origin_b", "origin", "per_prompt", "avg", "attention", "avg_n3", "attention_b", "avg_2shots")


@pytest.fixture(scope="module")
def compared(tiny_model_path, tmp_path_factory):
    """origin, per_prompt, avg and attention on the same 10 facts (gold answers from the model's own
    per-paraphrase answers, so that methods differ); avg with N = 3 (the same evaluation: N is the
    method's); avg with 2 shots (another evaluation); and origin and attention of a second model,
    its origin run first, so that pairing by data alone would cross the two models."""
    from tests.conftest import build_tiny_model

    root = tmp_path_factory.mktemp("compare")
    other_model = str(build_tiny_model(root / "other_model", seed=1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        selfens(
            "predict",
            "--config",
            PARAREL / "per_prompt.yaml",
            "--model.init_args.model",
            tiny_model_path,
            "--data.init_args.limit",
            LIMIT,
            "--trainer.logger.init_args.save_dir",
            root / "first",
            *quiet(),
        )
        (first,) = (root / "first").rglob("predictions.jsonl")
        data = data_dir_with_gold(root, read_jsonl(first))
        common = (*SAME_PROMPTS, "--data.init_args.data_dir", data)

        def test(config: str, model: str, *extra):
            run(PARAREL / f"{config}.yaml", model, root / "logs", "test", *common, *extra, name="cmp")

        test("origin", other_model)
        for method in METHODS:
            test(method, tiny_model_path)
        test("avg", tiny_model_path, "--data.init_args.num_paraphrases", 3)
        test("attention", other_model)
        test("avg", tiny_model_path, "--data.init_args.num_shots", 2)
    runs = sorted((root / "logs" / "cmp").glob("version_*"), key=lambda p: int(p.name.split("-")[0][8:]))
    return {"root": root, "runs": runs, **dict(zip(RUNS, runs, strict=True))}


def short(folder: Path) -> str:
    """How the report names a run: logger name / version_<k>."""
    return f"cmp/{folder.name.split('-', 1)[0]}"


def main_scores(folder: Path) -> tuple[list[dict], list[dict]]:
    """(rows, independent scores of each row's answer) of a run."""
    rows = read_jsonl(folder / "predictions.jsonl")
    return rows, [scores(r["prediction"], r["answers"]) for r in rows]


def test_run_folders_are_named_after_their_method(compared):
    names = [p.name for p in compared["runs"]]
    assert names == [
        "version_0-origin",
        "version_1-origin",
        "version_2-per_prompt",
        "version_3-avg",
        "version_4-attention-shared_prefix-sequential-block_ends",
        "version_5-avg",
        "version_6-attention-shared_prefix-sequential-block_ends",
        "version_7-avg",
    ]


def test_report_numbers_come_back_from_predictions(compared, capsys, tmp_path):
    capsys.readouterr()
    selfens("report", compared["root"] / "logs" / "cmp", "--out", tmp_path)
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())

    # Each run's main view: mean and standard error from the rows, by the test's own scorer.
    for folder in compared["runs"]:
        rows, own = main_scores(folder)
        results = json.loads((folder / "results.json").read_text())
        (view,) = [v for v in report["views"] if v["run"] == short(folder) and v["main"]]
        for m in ("em", "f1", "lemma"):
            values = [s[m] for s in own]
            assert view[m] == pytest.approx(math.fsum(values) / len(values), abs=1e-12)
            assert view[f"{m}_se"] == pytest.approx(standard_error(values), abs=1e-12)
            assert view[f"{m}_low"] <= view[m] <= view[f"{m}_high"]
            # results.json holds the same interval (same seed and resamples, same scores)
            saved = results["uncertainty"]["metrics"][f"test/{m}"]
            assert saved["ci95"] == pytest.approx([view[f"{m}_low"], view[f"{m}_high"]], abs=1e-12)

    # Each run is paired with the origin run of its own evaluation: the first model's four, and the
    # second model's attention with that model's origin (which ran first).
    pairs = {name: "origin" for name in ("per_prompt", "avg", "attention", "avg_n3")} | {"attention_b": "origin_b"}
    by_run = {c["run"]: c for c in report["comparisons"]}
    assert {run: c["baseline"] for run, c in by_run.items()} == {
        short(compared[name]): short(compared[base]) for name, base in pairs.items()
    }
    for name, base in pairs.items():
        folder = compared[name]
        base_rows, base_own = main_scores(compared[base])
        rows, own = main_scores(folder)
        assert [r["id"] for r in rows] == [r["id"] for r in base_rows]
        c = by_run[short(folder)]
        wins = sum(a["em"] == 1 and b["em"] == 0 for a, b in zip(own, base_own))
        losses = sum(a["em"] == 0 and b["em"] == 1 for a, b in zip(own, base_own))
        n, k = wins + losses, min(wins, losses)
        p = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
        assert c["mcnemar_em"] == {"a_right_b_wrong": wins, "a_wrong_b_right": losses, "p": pytest.approx(p)}
        changed = sum(normalize(a["prediction"]) != normalize(b["prediction"]) for a, b in zip(rows, base_rows))
        assert c["changed_answers"] == changed
        for m in ("em", "f1", "lemma"):
            diff = math.fsum(a[m] - b[m] for a, b in zip(own, base_own)) / len(own)
            assert c["difference"][m]["mean"] == pytest.approx(diff, abs=1e-12)
            low, high = c["difference"][m]["ci95"]
            assert low <= diff <= high
        assert f"{wins}/{losses}" in out
    assert any(c["changed_answers"] for c in report["comparisons"]), "the methods should not all agree here"

    # 2 shots is another evaluation: not paired, and the report names what differs from each origin.
    (skipped,) = report["not_compared"]
    origin, origin_b = short(compared["origin"]), short(compared["origin_b"])
    assert skipped.startswith(f"{short(compared['avg_2shots'])}: no origin run of the same evaluation to pair with (")
    assert f"{origin_b} differs in model: " in skipped and f"{origin} differs in examples: " in skipped
    assert "shots: 4 vs 2" in skipped and "model: " not in skipped.split(f"{origin} differs in")[1]
    assert f"not compared: {skipped}" in out

    assert {p.name for p in tmp_path.iterdir()} == {
        "report.md",
        "report.csv",
        "report.json",
        "report.tex",
        "report_cost.png",
        "report_n.png",  # the runs differ in N
    }
    markdown = (tmp_path / "report.md").read_text()
    assert "## Paired comparison" in markdown and "| ΔEM [95% CI] |" in markdown
    header = (tmp_path / "report.csv").read_text().splitlines()[0].split(",")
    # The settings columns: the methods' own settings, in the order the runs first have them.
    settings = ["fusion", "layout", "positions", "first_token", "first_fusion"]
    assert header[:11] == ["run", "model", "dataset", "method", "label", *settings, "N"] and "em_low" in header
    assert set(cost_names()) <= set(header) and "view" in header
    attention = [v for v in report["views"] if v["method"] == "attention"]
    assert [tuple(v[k] for k in settings) for v in attention] == [
        ("", "shared_prefix", "sequential", "block_ends", "avg")  # attention has no `fusion`
    ] * 2  # one run per model
    # Costs: the runs' own totals; the tables show their short labels.
    for folder in compared["runs"]:
        total = json.loads((folder / "results.json").read_text())["total_cost"]
        for view in [v for v in report["views"] if v["run"] == short(folder)]:
            assert {k: view[k] for k in cost_names()} == pytest.approx(total, abs=0)
    labels = cost_labels()
    shown = ["prefill_tokens", "prefill_padded_tokens", "forward_calls", "decode_seconds", "confidence_seconds"]
    assert out.splitlines()[0].endswith("  ".join(labels[k] for k in shown))
    assert "| " + " | ".join(labels[k] for k in shown) + " |" in markdown


def test_an_explicit_baseline_of_another_evaluation_is_refused_with_the_reason(compared, capsys, tmp_path):
    capsys.readouterr()
    selfens("report", compared["root"] / "logs" / "cmp", "--baseline", compared["avg_2shots"], "--out", tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["comparisons"] == []
    assert len(report["not_compared"]) == len(RUNS) - 1
    assert all(" examples: " in s and "shots: 2 vs 4" in s for s in report["not_compared"])
    assert sum("model_fingerprint: " in s for s in report["not_compared"]) == 2  # the second model's runs


def test_runs_of_an_older_selfens_are_not_paired_and_say_why(compared):
    """results.json without an identity cannot be checked to be the same evaluation."""
    from selfens.report.compare import comparisons

    runs = collect([compared["origin"], compared["avg"]])
    del runs[1].results["identity"]
    assert comparisons(runs, "origin", 10, 0) == (
        [],
        [
            f"{short(compared['avg'])}: it records no run identity (results.json of an older selfens): run it again to compare it"
        ],
    )


def test_a_report_without_the_baseline_says_so(compared, capsys, tmp_path):
    capsys.readouterr()
    selfens("report", compared["avg"], "--out", tmp_path)
    assert "not compared: no 'origin' run among these runs: nothing to compare with" in capsys.readouterr().out


def test_runs_without_a_recorded_label_get_it_from_their_settings(compared):
    """results.json files of older versions have no `label` or `method_settings`: both are derived
    from `settings` (the weighted rule's confidence only where it applies); recorded ones win."""
    by_method = {}
    for found in collect([compared["root"] / "logs" / "cmp"]):
        results = {k: v for k, v in found.results.items() if k not in ("label", "method_settings")}
        old = Run(found.folder, results, found.rows)
        by_method[old.method] = (old.label, old.method_settings)
        recorded = Run(found.folder, {**results, "label": "x", "method_settings": {"a": "b"}}, found.rows)
        assert (recorded.label, recorded.method_settings) == ("x", {"a": "b"})
    assert by_method == {
        "origin": ("origin", {}),
        "per_prompt": ("per_prompt", {}),
        "avg": ("avg", {"fusion": "avg"}),
        "attention": (
            "attention shared_prefix/sequential/block_ends",
            {"layout": "shared_prefix", "positions": "sequential", "first_token": "block_ends", "first_fusion": "avg"},
        ),
    }
    weighted = {
        "method": "weighted_avg",
        "settings": {"fusion": "weighted_avg", "confidence": "token_prob", "layout": None},
    }
    assert (Run(Path(), weighted, []).label, Run(Path(), weighted, []).method_settings) == (
        "weighted_avg token_prob",
        {"fusion": "weighted_avg", "confidence": "token_prob"},
    )


def test_tensorboard_shares_tags_and_one_hparams_table(compared):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    for folder in compared["runs"]:
        acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
        acc.Reload()
        results = json.loads((folder / "results.json").read_text())
        scalars = set(acc.Tags()["scalars"])
        assert {"test/em", "test/f1", "test/lemma", "cost/decode_seconds", "cost/prefill_tokens"} <= scalars
        assert acc.Scalars("test/em")[-1].value == pytest.approx(results["metrics"]["test/em"])

        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hparams = {k: v.string_value or v.number_value for k, v in start.session_start_info.hparams.items()}
        assert not [k for k in hparams if k.startswith("_")], hparams
        assert hparams["method"] == results["method"] and hparams["dataset"] == "ParaRel"
        assert hparams["N"] == results["settings"]["N"] and hparams["shots"] == results["settings"]["shots"]
        assert hparams["prompt_style"] and hparams["model"]
        if results["method"] == "attention":
            assert (hparams["layout"], hparams["positions"], hparams["first_token"]) == (
                "shared_prefix",
                "sequential",
                "block_ends",
            )
        if results["method"] == "avg":
            assert hparams["fusion"] == "avg"
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        metric_tags = {m.name.tag for m in experiment.metric_infos}
        assert {"test/em", "test/f1", "test/lemma", "cost/decode_seconds"} <= metric_tags

        (sample,) = acc.Tensors("test/samples/text_summary")
        text = sample.tensor_proto.string_val[0].decode()
        rows = read_jsonl(folder / "predictions.jsonl")
        assert rows[0]["paraphrases"][0] in text and rows[0]["answers"][0] in text
        assert "✓" in text or "✗" in text
        if results["method"] == "per_prompt":
            assert f"→ *{rows[0]['per_paraphrase'][0]}*" in text or "→ **" in text
