"""`selfens report`: every number it prints comes back from predictions.jsonl by independent code
(means, standard errors, paired wins/losses, McNemar's exact p, changed answers); runs on other
examples are not paired, and say why; the files and plots are written. On a terminal its tables
fit the width, each run named by what sets it apart; --wide prints the files' tables. Runs of
`selfens predict` are named, not scored. And TensorBoard, read with its own reader: the runs share
the common tags and one HParams table, with their settings; the report is a run of its own, with
its plots and tables."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from selfens.report.load import Run, collect
from selfens.run.cost import cost_labels, cost_names
from tests.helpers import (
    ROOT,
    RUN_LIMIT,
    data_dir_with_gold,
    normalize,
    quiet,
    read_jsonl,
    run_config,
    scores,
    selfens,
    selfens_fails,
    standard_error,
)

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
    from tests.helpers import build_tiny_model

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
            RUN_LIMIT,
            "--trainer.logger.init_args.save_dir",
            root / "first",
            *quiet(),
        )
        (first,) = (root / "first").rglob("predictions.jsonl")
        data = data_dir_with_gold(root, read_jsonl(first))
        common = (*SAME_PROMPTS, "--data.init_args.data_dir", data)

        def test(config: str, model: str, *extra):
            run_config(PARAREL / f"{config}.yaml", model, root / "logs", "test", *common, *extra, name="cmp")

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
    selfens("report", compared["root"] / "logs" / "cmp", "--out", tmp_path, "--wide")
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
        "report_reliability.png",
        "report_groups.csv",  # ParaRel: per relation
        "report_groups.png",
        "report",  # for TensorBoard
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


def printed_tables(out: str) -> list[list[str]]:
    """The tables `selfens report` printed, each as its lines: header, rule, rows."""
    lines, tables = out.splitlines(), []
    for i, line in enumerate(lines):
        if i and line.strip() and set(line) <= {"-", " "}:
            rows = itertools.takewhile(lambda r: r and not r.startswith(("not ", "selfens:")), lines[i + 1 :])
            tables.append([lines[i - 1], line, *rows])
    return tables


def markdown_rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the table under `## heading` in report.md, its header first."""
    lines = markdown.split(f"## {heading}\n\n", 1)[1].splitlines()
    table = itertools.takewhile(lambda line: line.startswith("|"), lines)
    return [line[2:-2].split(" | ") for line in table if not line.startswith("|---")]


def test_wide_prints_the_tables_of_report_md(compared, capsys, tmp_path):
    """--wide: every column, as report.md has them (the whole run table and the comparison)."""
    capsys.readouterr()
    selfens("report", compared["root"] / "logs" / "cmp", "--out", tmp_path, "--wide")
    views, comparison, *summaries, sensitivity, calibration = printed_tables(capsys.readouterr().out)
    markdown = (tmp_path / "report.md").read_text()
    split = lambda table: [re.split(r"\s{2,}", line.strip()) for i, line in enumerate(table) if i != 1]
    assert split(views) == markdown_rows(markdown, "Every run and view")
    assert split(comparison) == markdown_rows(markdown, "Paired comparison (main views, same examples)")
    sensitivity_heading = "Sensitivity to the phrasing (per_prompt runs; %, 95% CI over facts)"
    assert split(sensitivity) == markdown_rows(markdown, sensitivity_heading)
    assert split(calibration) == markdown_rows(markdown, "Calibration of each run's answers (%, 95% CI over examples)")
    assert len(summaries) == 2 and len(views) == 2 + len(json.loads((tmp_path / "report.json").read_text())["views"])


def expected_labels(compared) -> dict[str, str]:
    """How the fitted tables name the runs of `compared`: by model (they span two), and the avg
    runs by their shots."""
    tiny = Path(json.loads((compared["origin"] / "results.json").read_text())["model"]).name
    names = {
        "origin_b": "origin (other_model)",
        "origin": f"origin ({tiny})",
        "per_prompt": f"per_prompt ({tiny})",
        "avg": f"avg ({tiny}, shots=4)",  # N 5
        "attention": f"attention ({tiny})",
        "avg_n3": f"avg ({tiny}, shots=4)",  # N 3
        "attention_b": "attention (other_model)",
        "avg_2shots": f"avg ({tiny}, shots=2)",
    }
    return {short(compared[name]): label for name, label in names.items()}


@pytest.mark.parametrize(("width", "columns", "options"), [(100, "100", ()), (80, "200", ("--width", 80))])
def test_the_printed_tables_fit_the_terminal(compared, capsys, tmp_path, monkeypatch, width, columns, options):
    """Not a terminal (pytest captures stdout): COLUMNS, or --width. Each table within the width,
    with each run's label, view, N and EM with its interval; the settings and costs of --wide left out."""
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", columns)
    selfens("report", compared["root"] / "logs" / "cmp", "--out", tmp_path, *options)
    tables = printed_tables(capsys.readouterr().out)
    assert len(tables) == 6  # runs and views, the comparison, one summary per model, sensitivity, calibration
    for table in tables:
        assert max(len(line) for line in table) <= width, "\n".join(table)
    views, comparison, *summaries, _, _ = tables
    assert views[0].split()[:6] == ["run", "view", "N", "EM", "[95%", "CI]"] and "layout" not in views[0]
    report = json.loads((tmp_path / "report.json").read_text())
    labels = expected_labels(compared)
    for view in report["views"]:
        em = f"{100 * view['em']:.1f} [{100 * view['em_low']:.1f}, {100 * view['em_high']:.1f}]"
        cells = [labels[view["run"]], view["view"], str(view["N"]), em]
        row = re.compile(" {2,}".join(map(re.escape, cells)) + "  ")
        assert sum(bool(row.match(line)) for line in views[2:]) == 1, row.pattern
    assert comparison[0].split()[:6] == ["run", "N", "ΔEM", "[95%", "CI]", "p"]
    n_of = {v["run"]: v["N"] for v in report["views"]}
    for c in report["comparisons"]:
        diff = c["difference"]["em"]
        delta = f"{100 * diff['mean']:+.1f} [{100 * diff['ci95'][0]:+.1f}, {100 * diff['ci95'][1]:+.1f}]"
        row = re.compile(" {2,}".join(map(re.escape, [labels[c["run"]], str(n_of[c["run"]]), delta])) + "  ")
        assert sum(bool(row.match(line)) for line in comparison[2:]) == 1, row.pattern
    # Within a model's table its model is in its heading, not in the labels.
    named = sorted(line.split("  ")[0] for summary in summaries for line in summary[2:])
    tiny = ["origin", "per_prompt", "attention", "avg (shots=4)", "avg (shots=4)", "avg (shots=2)"]
    assert named == sorted([*tiny, "origin", "attention"])


@pytest.mark.parametrize("width", [60, 80, 100])
def test_every_printed_line_fits_the_width(compared, capsys, tmp_path, monkeypatch, width):
    """Captions, notes and the files written are wrapped too (a path wider than the width stays
    whole, alone on its line); no line ends in spaces; a summary's caption names the cost per fact
    only where its table has a cost column (at 100, not at 60 or 80)."""
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "200" if width == 80 else str(width))
    selfens("report", compared["root"] / "logs" / "cmp", "--out", tmp_path, *(["--width", 80] if width == 80 else []))
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if len(line) > width and " " in line.strip()] == []
    assert [line for line in out.splitlines() if line != line.rstrip()] == []
    summaries = [block.splitlines() for block in out.split("\n\n") if " · ParaRel (" in block]
    assert len(summaries) == 2
    for lines in summaries:
        header = next(i for i, line in enumerate(lines) if line.startswith("method "))
        caption = " ".join(lines[:header])
        assert caption.endswith("of the same evaluation; cost per fact):" if width == 100 else "evaluation):")
        assert ("/fact" in lines[header]) == (width == 100), lines[header]


def broken(damage: str, folder: Path) -> Path:
    """Damage a copied run as `damage` says; returns the damaged file."""
    path = folder / ("predictions.jsonl" if damage.startswith("predictions") else "results.json")
    text = path.read_text(encoding="utf-8")
    if damage == "predictions gone":
        path.unlink()
    elif damage == "predictions cut short":  # its last line
        path.write_text(text[:-30], encoding="utf-8")
    elif damage == "results cut short":
        path.write_text(text[: len(text) // 2], encoding="utf-8")
    else:  # results without dataset
        path.write_text(json.dumps({k: v for k, v in json.loads(text).items() if k != "dataset"}), encoding="utf-8")
    return path


# How the warning goes on after the damaged file's path.
SAID = {
    "results cut short": r":\d+: malformed JSON \(.+, column \d+\)",
    "results without dataset": r": no 'dataset' in it, which a scored run's results\.json names",
    "predictions cut short": r":10: malformed JSON \(.+, column \d+\)",  # RUN_LIMIT rows
    "predictions gone": r": No such file or directory",
}


@pytest.mark.parametrize("damage", SAID)
def test_a_run_that_cannot_be_read_is_skipped_with_a_warning(compared, capsys, tmp_path, damage):
    """One line on stderr names the file (and the line and column of malformed JSON); the other runs
    are reported. Alone, the run leaves nothing to report: the one-line error says so."""
    runs = tmp_path / "runs"
    for name in ("origin", "avg"):
        shutil.copytree(compared[name], runs / "cmp" / compared[name].name)
    path = broken(damage, runs / "cmp" / compared["avg"].name)
    capsys.readouterr()
    selfens("report", runs, "--out", tmp_path / "out", "--resamples", 10)
    printed = capsys.readouterr()
    assert re.fullmatch(f"selfens: warning: skipped {re.escape(str(path))}{SAID[damage]}\n", printed.err), printed.err
    views = json.loads((tmp_path / "out" / "report.json").read_text())["views"]
    assert {v["run"] for v in views} == {short(compared["origin"])}

    error = selfens_fails(capsys, "report", path.parent, "--out", tmp_path / "alone")
    assert error.startswith("selfens: error: no scored runs (results.json with metrics) under ")


def test_runs_of_predict_are_named_and_left_out(compared, capsys, tmp_path):
    """`compared` predicted first (its gold answers come from that run): alone it is refused with
    what to do; beside the scored runs it is named, and they are reported."""
    (predicted,) = [p.parent for p in (compared["root"] / "first").rglob("results.json")]
    error = selfens_fails(capsys, "report", compared["root"] / "first", "--out", tmp_path)
    assert "no scored runs" in error and "only 1 predict run(s)" in error
    assert f"selfens test --config {predicted / 'config.yaml'}" in error
    assert not tmp_path.exists() or not list(tmp_path.iterdir())

    selfens("report", compared["root"], "--out", tmp_path, "--wide")  # --wide: the line is not wrapped
    out = capsys.readouterr().out
    assert f"not scored (predict run): {predicted}\n" in out
    reported = {v["run"] for v in json.loads((tmp_path / "report.json").read_text())["views"]}
    assert reported == {short(folder) for folder in compared["runs"]}


def test_the_report_is_a_tensorboard_run_of_its_own(compared, capsys, tmp_path):
    """<out>/report/: the plots as images, the tables of report.md as markdown text; written again,
    it replaces its event file."""
    import matplotlib.image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for _ in range(2):
        selfens("report", compared["root"] / "logs" / "cmp", "--out", tmp_path)
    assert len(list((tmp_path / "report").glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(tmp_path / "report"), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    assert set(acc.Tags()["images"]) == {
        "plots/report_cost",
        "plots/report_n",
        "plots/report_reliability",
        "plots/report_groups",
    }
    for png in ("report_cost", "report_n", "report_reliability"):
        (image,) = acc.Images(f"plots/{png}")
        height, width, _ = matplotlib.image.imread(tmp_path / f"{png}.png").shape
        assert (image.height, image.width) == (height, width)
    models = sorted({Path(json.loads((f / "results.json").read_text())["model"]).name for f in compared["runs"]})
    tags = {f"summary/{m}/ParaRel" for m in models} | {
        "views",
        "comparisons",
        "sensitivity",
        "calibration",
        "groups",
        "agreement",  # the compared runs include per_prompt: facts split by whether its phrasings agree
        "notes",
    }
    assert set(acc.Tags()["tensors"]) == {f"{tag}/text_summary" for tag in tags}
    text = lambda tag: acc.Tensors(f"{tag}/text_summary")[0].tensor_proto.string_val[0].decode()
    markdown = (tmp_path / "report.md").read_text()
    for tag, heading in [
        ("views", "Every run and view"),
        ("comparisons", "Paired comparison (main views, same examples)"),
    ]:
        table = markdown.split(f"## {heading}\n\n", 1)[1].split("\n\n", 1)[0]
        assert text(tag) == f"**{heading}**\n\n{table}"
    for m in models:
        assert f"## {m} · ParaRel\n\n" + text(f"summary/{m}/ParaRel").split("\n\n", 1)[1] in markdown
    assert "- not compared: " in text("notes") and "95% intervals" in text("notes")
