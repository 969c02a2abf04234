"""`selfens study`: a tiny grid (two tiny models, three methods) end to end; every number of its
report recomputed from the cells' predictions; each model paired with its own origin; a study killed
mid-cell resumes with each cell and each example once; a finished study decodes nothing again; a
changed cell and every bad grid are refused in one line, with nothing written."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, read_jsonl, scores, selfens, selfens_fails, signal_mid_run

METHODS = [
    {"name": "origin", "class_path": "selfens.methods.Origin"},
    {"name": "avg", "class_path": "selfens.methods.LogitFusion", "init_args": {"fusion": "avg"}},
    {"name": "attention", "class_path": "selfens.methods.AttentionFusion", "N": [2, 3], "models": ["A"]},
]
DATA = {
    "class_path": "selfens.data.ParaRel",
    "init_args": {"num_shots": 2, "limit": 6, "batch_size": 2, "prompt_style": "raw", "fill_style": "completion"},
}


def study_config(folder: Path, paths: list[str], **changes) -> Path:
    """A study of the models at `paths` into `folder`/out, written as `folder`/study.yaml."""
    methods = [{**m, "models": [paths[0]]} if "models" in m else m for m in METHODS]
    spec = {
        "folder": str(folder / "out"),
        "models": paths,
        "N": [3],
        "defaults": {"max_new_tokens": 5},
        "methods": methods,
        "data": DATA,
        **changes,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def two_models(tiny_model_path, tmp_path_factory) -> list[str]:
    from tests.helpers import build_tiny_model

    return [tiny_model_path, str(build_tiny_model(tmp_path_factory.mktemp("second"), seed=1))]


@pytest.fixture(scope="module")
def finished(two_models, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    selfens("study", "--config", study_config(root, two_models))
    return root


def cell_folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "out").rglob("results.json"))


def test_every_cell_is_an_ordinary_run(finished, two_models):
    a, b = (Path(m).name for m in two_models)
    names = [f"{p.parent.name}/{p.name}" for p in cell_folders(finished)]
    assert names == sorted(
        [f"{a}/origin-N3", f"{a}/avg-N3", f"{a}/attention-N2", f"{a}/attention-N3", f"{b}/origin-N3", f"{b}/avg-N3"]
    )
    for folder in cell_folders(finished):
        assert {"config.yaml", "predictions.jsonl", "results.json"} <= {p.name for p in folder.iterdir()}
        assert any(p.name.startswith("events.out.tfevents") for p in folder.iterdir())
        results = json.loads((folder / "results.json").read_text())
        assert results["num_examples"] == 6 and results["identity"]["method"]["N"] == int(folder.name[-1])
        config = yaml.safe_load((folder / "config.yaml").read_text())
        assert config["model"]["init_args"]["max_new_tokens"] == 5  # the study's defaults reach every cell


def test_the_report_comes_back_from_the_predictions(finished, two_models):
    """Each number of report.json from the cells' predictions.jsonl, by the test's own scorer; each
    model's runs against that model's origin."""
    report = json.loads((finished / "out" / "report.json").read_text())
    rows = {f"{p.parent.name}/{p.name}": read_jsonl(p / "predictions.jsonl") for p in cell_folders(finished)}
    own = {run: [scores(r["prediction"], r["answers"]) for r in rs] for run, rs in rows.items()}
    for view in (v for v in report["views"] if v["main"]):
        values = [s["em"] for s in own[view["run"]]]
        assert view["em"] == pytest.approx(math.fsum(values) / len(values), abs=1e-12)
    a, b = (Path(m).name for m in two_models)
    assert {c["run"]: c["baseline"] for c in report["comparisons"]} == {
        f"{a}/avg-N3": f"{a}/origin-N3",
        f"{a}/attention-N2": f"{a}/origin-N3",
        f"{a}/attention-N3": f"{a}/origin-N3",
        f"{b}/avg-N3": f"{b}/origin-N3",
    }
    for c in report["comparisons"]:
        base = {r["id"]: s["em"] for r, s in zip(rows[c["baseline"]], own[c["baseline"]])}
        diffs = [s["em"] - base[r["id"]] for r, s in zip(rows[c["run"]], own[c["run"]])]
        assert c["difference"]["em"]["mean"] == pytest.approx(math.fsum(diffs) / len(diffs), abs=1e-12)
    written = {p.name for p in (finished / "out").iterdir() if p.is_file()}
    assert {"report.md", "report.csv", "report.json", "report.tex", "report_cost.png", "report_n.png"} <= written
    markdown = (finished / "out" / "report.md").read_text()
    assert f"## {a} · ParaRel" in markdown and f"## {b} · ParaRel" in markdown
    tex = (finished / "out" / "report.tex").read_text()
    # per model a summary and a calibration table (no per_prompt cell here: no sensitivity table)
    assert tex.count(r"\begin{tabular}") == 4 and r"\toprule" in tex and r"\bottomrule" in tex
    assert tex.count(": calibration, in") == 2 and ": sensitivity" not in tex


def test_a_finished_study_decodes_nothing_again(finished, two_models, monkeypatch):
    from selfens.methods.base import EnsembleModule

    before = {p: (p / "results.json").read_text() for p in cell_folders(finished)}

    def no_decoding(*args, **kwargs):
        raise AssertionError("a finished cell was decoded again")

    monkeypatch.setattr(EnsembleModule, "_step", no_decoding)
    selfens("study", "--config", finished / "study.yaml")
    assert {p: (p / "results.json").read_text() for p in cell_folders(finished)} == before


def test_a_changed_cell_is_refused_by_name(finished, two_models, capsys):
    changed = study_config(finished, two_models, defaults={"max_new_tokens": 4})
    try:
        message = selfens_fails(capsys, "study", "--config", changed)
    finally:
        study_config(finished, two_models)  # as it was, for the other tests
    a = Path(two_models[0]).name
    assert f"cell {a}/origin-N3: " in message and "max_new_tokens: 5 vs 4" in message
    assert "the study config changed" in message


def test_a_killed_study_resumes_each_cell_and_example_once(two_models, tmp_path):
    """SIGKILL in the middle of the second cell; the re-run keeps what was written and decodes the rest."""
    config = study_config(
        tmp_path, two_models, methods=METHODS[:2], data={**DATA, "init_args": {**DATA["init_args"], "batch_size": 1}}
    )
    command = [sys.executable, "-m", "selfens", "study", "--config", str(config)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = tmp_path / "out" / Path(two_models[0]).name / "avg-N3"
    signal_mid_run(process, second, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the study ended before it could be killed mid-cell"
    kept = len(read_jsonl(second / "predictions.rank0.jsonl"))
    assert not (second / "results.json").exists() and 1 <= kept < 6

    selfens("study", "--config", config)
    folders = cell_folders(tmp_path)
    assert len(folders) == 4  # two models x (origin, avg)
    for folder in folders:
        rows = read_jsonl(folder / "predictions.jsonl")
        assert sorted(r["index"] for r in rows) == list(range(6))  # each example once
        results = json.loads((folder / "results.json").read_text())
        assert results["resumed_examples"] == (kept if folder == second else 0)
        assert results["resumed_from"] == (str(second) if folder == second else None)


@pytest.mark.parametrize(
    "change, said",
    [
        ({"methods": [{"name": "x", "class_path": "selfens.methods.Nope"}]}, "cell {a}/x-N3: model"),
        ({"defaults": {"max_new_tokenz": 5}}, "unknown option 'max_new_tokenz'; did you mean max_new_tokens?"),
        ({"models": ["A", "no_such_model"]}, "Unknown model 'no_such_model'"),
        ({"methods": METHODS[:1] * 2}, "cell {a}/origin-N3 twice"),
        ({"data": {**DATA, "init_args": {"num_paraphrases": 3}}}, "the study sets N per cell"),
        ({"N": [0]}, "N: a list of numbers of paraphrases"),
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"methods": [{**METHODS[2], "models": ["A"]}], "models": ["A", "B"]}, "has no cell"),
    ],
    ids=["class", "option", "model", "duplicate", "num_paraphrases", "N", "key", "idle model"],
)
def test_a_bad_grid_is_one_line_and_writes_nothing(change, said, two_models, tmp_path, capsys):
    named = {"A": two_models[0], "B": two_models[1]}
    if "models" in change:
        change = {**change, "models": [named.get(m, m) for m in change["models"]]}
    config = study_config(tmp_path, two_models, **change)
    if "methods" in change:  # study_config points an entry's own `models` at the first model
        spec = yaml.safe_load(config.read_text())
        spec["methods"] = [
            {**m, "models": [named.get(x, x) for x in m["models"]]} if "models" in m else m for m in change["methods"]
        ]
        config.write_text(yaml.safe_dump(spec, sort_keys=False))
    message = selfens_fails(capsys, "study", "--config", config)
    assert said.format(a=Path(two_models[0]).name) in message, message
    assert not (tmp_path / "out").exists()


def test_a_key_given_twice_is_refused(two_models, tmp_path, capsys):
    config = study_config(tmp_path, two_models)
    config.write_text(config.read_text() + "N: [2]\n")
    assert "key 'N' twice" in selfens_fails(capsys, "study", "--config", config)


def test_a_study_on_two_processes_gives_the_same_cells(finished, two_models, tmp_path):
    """The study's trainer options reach every cell: with DDP on two CPU processes (gloo), each
    cell decodes every example once and answers as the single-process study did."""
    ddp = {"strategy": "ddp", "devices": 2, "accelerator": "cpu"}
    config = study_config(tmp_path, two_models, trainer=ddp)
    command = [sys.executable, "-m", "selfens", "study", "--config", str(config)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    single = {f"{p.parent.name}/{p.name}": p for p in cell_folders(finished)}
    two = {f"{p.parent.name}/{p.name}": p for p in cell_folders(tmp_path)}
    assert two.keys() == single.keys()
    for name, folder in two.items():
        results = json.loads((folder / "results.json").read_text())
        assert results["world_size"] == 2 and results["num_examples"] == 6
        rows, expected = read_jsonl(folder / "predictions.jsonl"), read_jsonl(single[name] / "predictions.jsonl")
        assert [(r["id"], r["prediction"]) for r in rows] == [(r["id"], r["prediction"]) for r in expected], name
    assert proc.stderr.count("study: cell 1 of 6") == 2  # shown once (at the cell's start and end), by one process


def test_the_study_page_comes_from_the_cells(finished, two_models, tmp_path):
    """benchmarks/write_study.py: the report's tables per model, and attention against avg paired on
    the same facts, recomputed here from the predictions."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("write_study", ROOT / "benchmarks" / "write_study.py")
    write_study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(write_study)
    page, words, log = tmp_path / "study.md", tmp_path / "findings.md", tmp_path / "study.log"
    words.write_text("## What it finds\n\nNothing, on three facts.\n")
    log.write_text("selfens study --config tiny.yaml: rc=0 wall_s=12.5\n")
    write_study.write([finished / "out"], page, words, log)
    text = page.read_text()
    assert "## What it finds\n\nNothing, on three facts." in text and "wall_s=12.5" in text
    assert "- target, paired ΔEM intervals against origin no wider than ±3 points: " in text
    assert "- facts that qualify at N = 3 (" in text
    a, b = (Path(m).name for m in two_models)
    assert f"### {a} · ParaRel" in text and f"### {b} · ParaRel" in text
    cells = {p.name: p for p in (finished / "out" / a).iterdir()}
    own = lambda name: {  # noqa: E731
        r["id"]: scores(r["prediction"], r["answers"])["em"] for r in read_jsonl(cells[name] / "predictions.jsonl")
    }
    attention, avg = own("attention-N3"), own("avg-N3")
    diff = 100 * math.fsum(attention[i] - avg[i] for i in avg) / len(avg)
    (claim,) = [line for line in text.splitlines() if line.startswith("- attention") and "(N = 3)" in line]
    assert f"EM {diff:+.1f} points" in claim and f"on {len(avg)} facts" in claim
    assert (tmp_path / "out-report_cost.png").exists()
    # is fusion better calibrated than asking once: avg's Brier score minus origin's, fact by fact
    rows_of = lambda name: {r["id"]: r for r in read_jsonl(cells[name] / "predictions.jsonl")}  # noqa: E731
    mine, base = rows_of("avg-N3"), rows_of("origin-N3")
    brier = lambda r, view: (min(1.0, math.exp(r["answer_logprob"])) - r["scores"][view]["em"]) ** 2  # noqa: E731
    kept = [i for i in mine if mine[i]["answer_tokens"] and base[i]["answer_tokens"]]
    delta = 100 * math.fsum(brier(mine[i], "avg") - brier(base[i], "origin") for i in kept) / len(kept)
    table = text.split(f"### {a} · ParaRel", 1)[1].split("**Calibration against origin**", 1)[1].split("\n\n")[1]
    (line,) = [line for line in table.splitlines() if line.startswith("| avg")]
    assert f"| {len(kept)} | {delta:+.1f} [" in line
    # where fusion helps: avg's ΔEM against origin on each relation's facts, and every run's calibration
    section = text.split(f"### {a} · ParaRel", 1)[1].split("### ", 1)[0]
    assert "**Calibration (%, 95% CI over examples)**" in section
    relations = section.split("**ΔEM against origin by relation**", 1)[1].split("\n\n")[1].splitlines()
    columns = [c.strip() for c in relations[0].strip("|").split("|")]
    origin = own("origin-N3")
    for line in relations[2:]:
        cells = dict(zip(columns, (c.strip() for c in line.strip("|").split("|"))))
        facts = [i for i in avg if i.startswith(cells["relation"] + "/")]
        delta = 100 * math.fsum(avg[i] - origin[i] for i in facts) / len(facts)
        assert cells["n"] == str(len(facts)) and cells["avg-N3 ΔEM"].startswith(f"{delta:+.1f} ["), cells
    # across sizes: a column per model (with its parameter count), avg's ΔEM against origin in each
    sizes = text.split("**Across sizes**", 1)[1].split("\n\n")[1].splitlines()
    columns = [c.strip() for c in sizes[0].strip("|").split("|")]
    count = write_study.short(write_study.parameters(two_models[0]))
    assert sorted(columns[1:]) == sorted(f"{m} ({count})" for m in (a, b)) and count.endswith("k")
    (row,) = [line for line in sizes if line.startswith("| avg-N3 ΔEM |")]
    for column, shown in zip(columns[1:], row.strip("|").split("|")[1:]):
        mine = {p.name: p for p in (finished / "out" / column.split(" ")[0]).iterdir()}
        ems = [
            {r["id"]: r["scores"][view]["em"] for r in read_jsonl(mine[cell] / "predictions.jsonl")}
            for cell, view in (("avg-N3", "avg"), ("origin-N3", "origin"))
        ]
        delta = 100 * math.fsum(ems[0][i] - ems[1][i] for i in ems[1]) / len(ems[1])
        assert shown.strip().startswith(f"{delta:+.1f} ["), row
    assert (tmp_path / "out-sizes.png").stat().st_size > 0


def test_data_overrides_try_a_study_small_in_a_folder_of_its_own(two_models, tmp_path):
    config = study_config(tmp_path, two_models[:1], methods=METHODS[:1])
    selfens("study", "--config", config, "--data.init_args.limit", 2, "--data.init_args.seed=1")
    assert not (tmp_path / "out").exists()  # the whole study's folder is not touched
    (folder,) = sorted(p.parent for p in (tmp_path / "out-limit2-seed1").rglob("results.json"))
    assert len(read_jsonl(folder / "predictions.jsonl")) == 2
    assert yaml.safe_load((folder / "config.yaml").read_text())["data"]["init_args"]["limit"] == 2


@pytest.mark.parametrize(
    "args, said",
    [
        (
            ["--trainer.devices", "2"],
            "unknown argument --trainer.devices: besides --config, a study takes data overrides",
        ),
        (["--data.init_args.limit"], "--data.init_args.limit needs a value"),
        (["--data.init_args.num_paraphrases", "3"], "the study sets N per cell"),
    ],
    ids=["not data", "no value", "num_paraphrases"],
)
def test_other_overrides_are_refused(args, said, two_models, tmp_path, capsys):
    config = study_config(tmp_path, two_models[:1], methods=METHODS[:1])
    with pytest.raises(SystemExit) as ended:
        selfens("study", "--config", config, *args)
    assert ended.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_stops_a_study_at_once_and_says_how_to_go_on(two_models, tmp_path):
    config = study_config(
        tmp_path,
        two_models[:1],
        methods=METHODS[:1],
        data={**DATA, "init_args": {**DATA["init_args"], "batch_size": 1}},
    )
    command = [sys.executable, "-m", "selfens", "study", "--config", str(config)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cell = tmp_path / "out" / Path(two_models[0]).name / "origin-N3"
    signal_mid_run(process, cell, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert err.splitlines()[-2:] == [
        f"selfens: stopped by SIGTERM; what finished is kept in {tmp_path / 'out'}",
        f"selfens: to go on, run: selfens study --config {config}",
    ]
    selfens("study", "--config", config)
    assert sorted(r["index"] for r in read_jsonl(cell / "predictions.jsonl")) == list(range(6))


def test_a_fitted_method_is_fitted_on_the_dev_split_before_its_cell(two_models, tmp_path, monkeypatch, capsys):
    """Its dev run lands beside the study's folder (the report holds test runs only); a second
    fitted rule and a second study reuse the fit."""
    monkeypatch.setenv("SELFENS_CACHE", str(tmp_path / "cache"))
    methods = [
        METHODS[0],
        {"name": "best", "class_path": "selfens.methods.BestPhrasing"},
        {"name": "fitted", "class_path": "selfens.methods.FittedFusion", "init_args": {"rule": "weighted"}},
        METHODS[1],
    ]
    sampled = {**DATA, "init_args": {**DATA["init_args"], "sample": 6}}
    selfens("study", "--config", study_config(tmp_path, two_models[:1], methods=methods[:1], data=sampled))
    data = {**sampled, "init_args": {**sampled["init_args"], "dev_sample": 4}}
    config = study_config(tmp_path, two_models[:1], methods=methods, data=data)
    origin = next(p for p in cell_folders(tmp_path) if p.name == "origin-N3") / "results.json"
    finished = origin.stat().st_mtime_ns
    selfens("study", "--config", config)  # the finished origin cell is kept: a dev split changes no test run
    assert origin.stat().st_mtime_ns == finished
    selfens("study", "--config", config)  # every cell finished, fitted ones too: nothing runs again
    (dev_run,) = (tmp_path / "out-fit").rglob("results.json")
    assert (
        json.loads(dev_run.read_text())["method"] == "per_prompt"
        and "dev_sample" in dev_run.parent.joinpath("config.yaml").read_text()
    )
    (fit,) = (tmp_path / "cache" / "fitted").rglob("*.json")
    assert json.loads(fit.read_text())["facts"]["*"] == 4
    assert {p.name for p in cell_folders(tmp_path)} == {"origin-N3", "best-N3", "fitted-N3", "avg-N3"}
    cells = {p.name: json.loads((p / "results.json").read_text()) for p in cell_folders(tmp_path)}
    assert cells["best-N3"]["identity"]["method"]["fit"] == cells["fitted-N3"]["identity"]["method"]["fit"]
    dev_ids = set(json.loads(fit.read_text())["dev_ids"])
    test_ids = {
        r["id"] for r in read_jsonl(tmp_path / "out" / Path(two_models[0]).name / "origin-N3" / "predictions.jsonl")
    }
    assert len(test_ids) == 6 and not dev_ids & test_ids

    # the study page holds each fitted rule against its unfitted counterpart, and the weights per relation
    import importlib.util

    spec = importlib.util.spec_from_file_location("write_study", ROOT / "benchmarks" / "write_study.py")
    write_study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(write_study)
    write_study.write([tmp_path / "out"], tmp_path / "study.md")
    text = (tmp_path / "study.md").read_text()
    assert "- fitted_weighted against avg: EM " in text and "on 6 facts." in text
    table = text.split("**Fitted per relation**", 1)[1].split("\n\n")[1].splitlines()
    rows = read_jsonl(tmp_path / "out" / Path(two_models[0]).name / "fitted-N3" / "predictions.jsonl")
    for r in rows:
        cells = [c.strip() for c in next(line for line in table if line.startswith(f"| {r['group']} |")).split("|")]
        assert cells[2:5] == [f"{100 * w:.1f}" for w in r["weights"]]

    # a fitted cell whose fit is not where the study looks (another SELFENS_CACHE) is refused, saying so
    monkeypatch.setenv("SELFENS_CACHE", str(tmp_path / "elsewhere"))
    message = selfens_fails(capsys, "study", "--config", config)
    assert f"was run with a fit that is not at {tmp_path / 'elsewhere' / 'fitted'}" in message
    assert "set SELFENS_CACHE (or the method's fitted:) to where it was fitted" in message
