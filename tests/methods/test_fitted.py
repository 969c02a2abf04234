"""Methods fitted on a development split: `selfens fit` counts each phrasing's dev accuracy from its
per_prompt run; best phrasing and fitted fusion read the fit. Equivalences (equal weights fuse as
avg; one phrasing's weight alone answers as that phrasing asked alone), the rules worked out by
hand, no leak from the test answers, and one-line refusals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from selfens.methods.fitting import ALL, Fit, count, weights
from tests.helpers import OWN_QUESTIONS, command, em, quiet, read_jsonl, selfens, selfens_fails


def questions(which: range, prefix: str) -> list[dict]:
    """Questions in five phrasings that the random tiny model answers differently, in two groups:
    question i is OWN_QUESTIONS[i % 7], its phrasings turned by i // 7."""
    lines = []
    for i in which:
        turn, phrasings = i // len(OWN_QUESTIONS), OWN_QUESTIONS[i % len(OWN_QUESTIONS)]
        lines.append(
            {
                "id": f"{prefix}{i}",
                "paraphrases": phrasings[turn:] + phrasings[:turn],
                "answers": [f"gold{i}"],
                "group": "even" if i % 2 == 0 else "odd",
            }
        )
    return lines


def write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def config(folder: Path, model: dict, test: Path, dev: Path) -> Path:
    paths = {"path": str(test), "dev_path": str(dev)}  # raw completions: the tiny model's answers differ
    data = {
        "class_path": "selfens.data.JsonlQuestions",
        "init_args": {**paths, "format": "completion", "prompt_style": "raw"},
    }
    logger = {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": str(folder / "logs"), "name": model["class_path"].rsplit(".", 1)[1]},
    }
    path = folder / f"{model['class_path'].rsplit('.', 1)[1]}-{len(list(folder.glob('*.yaml')))}.yaml"
    path.write_text(json.dumps({"model": model, "data": data, "trainer": {"logger": logger}}))
    return path


def fitted(rule: str | None, fit: Path, **settings) -> dict:
    if rule is None:
        return {"class_path": "selfens.methods.BestPhrasing", "init_args": {"fitted": str(fit), **settings}}
    return {"class_path": "selfens.methods.FittedFusion", "init_args": {"rule": rule, "fitted": str(fit), **settings}}


def test_run(cfg: Path, model: str, folder: Path, *extra) -> list[dict]:
    selfens(*command("test", cfg, model, folder / "logs", *quiet(), *extra))
    name = json.loads(cfg.read_text())["trainer"]["logger"]["init_args"]["name"]
    found = max((folder / "logs" / name).glob("version_*"), key=lambda p: int(p.name.split("_")[1].split("-")[0]))
    return read_jsonl(found / "predictions.jsonl")


test_run.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def setup(tiny_model_path, tmp_path_factory):
    """Test and dev files; dev answers set to what the tiny model says in some phrasings (so each
    phrasing is right on some dev facts), then fitted."""
    folder = tmp_path_factory.mktemp("fitted")
    test = write(folder / "test.jsonl", questions(range(6), "t"))
    dev = write(folder / "dev.jsonl", questions(range(6, 14), "d"))
    per_prompt = config(folder, {"class_path": "selfens.methods.PerPrompt"}, dev, dev)
    said = test_run(per_prompt, tiny_model_path, folder)
    lines = questions(range(6, 14), "d")
    for i, (line, row) in enumerate(zip(lines, said)):
        line["answers"] = [row["per_paraphrase"][[0, 1, 1, 2, 1, 0, 1, 3][i]] or "x"]  # p2 is right most often
    write(dev, lines)
    fit = folder / "fit.json"
    weighted = config(folder, fitted("weighted", fit), test, dev)
    selfens(*command("fit", weighted, tiny_model_path, folder / "logs", *quiet()))
    return {"folder": folder, "test": test, "dev": dev, "fit": fit, "weighted": weighted}


def test_the_fit_counts_each_phrasings_dev_accuracy_from_its_dev_run(setup):
    saved = json.loads(setup["fit"].read_text())
    (dev_run,) = sorted((setup["folder"] / "logs" / "FittedFusion-dev").glob("version_*-per_prompt"))
    assert saved["dev_run"] == str(dev_run)
    rows = read_jsonl(dev_run / "predictions.jsonl")
    gold = {line["id"]: line["answers"] for line in read_jsonl(setup["dev"])}
    right = {r["id"]: [max(em(a, g) for g in gold[r["id"]]) for a in r["per_paraphrase"]] for r in rows}
    expected = {ALL: [sum(col) for col in zip(*right.values())]}
    for group in ("even", "odd"):
        expected[group] = [sum(col) for col in zip(*(right[r["id"]] for r in rows if r["group"] == group))]
    assert saved["correct"] == expected and saved["facts"] == {ALL: 8, "even": 4, "odd": 4}
    assert sorted(saved["dev_ids"]) == sorted(gold) and saved["N"] == 5
    assert expected[ALL][1] == max(expected[ALL]) > 0, "p2 must lead on dev for the tests below to test"


def test_results_record_the_fit_and_the_weights_used(setup, tiny_model_path):
    folder = setup["folder"]
    rows = test_run(setup["weighted"], tiny_model_path, folder)
    (results,) = [
        json.loads(p.read_text())
        for p in (folder / "logs" / "FittedFusion").glob("version_*/results.json")
        if read_jsonl(p.parent / "predictions.jsonl") == rows
    ][:1]
    fitted = results["fitted"]
    assert fitted["file"] == str(setup["fit"]) and fitted["dev_facts"] == 8
    assert all(fitted["weights"][r["group"]] == pytest.approx(r["weights"], abs=1e-4) for r in rows)
    assert results["identity"]["method"]["dev"] == fitted["dev"]


def test_rules_worked_out_by_hand():
    fit = Fit({}, 3, {}, [], {ALL: 20, "small": 1, "big": 10}, {ALL: [8, 4, 6], "small": [0, 1, 0], "big": [2, 9, 9]})
    # overall, shrunk by 10 toward the mean accuracy 18/60 = 0.3: (8 + 3) / 30, (4 + 3) / 30, (6 + 3) / 30
    assert fit.accuracy(None, 10) == pytest.approx([11 / 30, 7 / 30, 9 / 30])
    # "small" (1 fact) is pulled to the overall: p1 still best, though only p2 got its fact right
    small = fit.accuracy("small", 10)
    assert small == pytest.approx([(0 + 10 * 11 / 30) / 11, (1 + 10 * 7 / 30) / 11, (0 + 10 * 9 / 30) / 11])
    assert weights(small, "best", 0) == [1, 0, 0]
    assert weights(fit.accuracy("small", 0), "best", 0) == [0, 1, 0]  # unshrunk, its one fact decides
    big = fit.accuracy("big", 0)
    assert weights(big, "best", 0) == [0, 1, 0]  # a tie goes to the lower index
    assert weights(big, "filtered", 0.05) == [0, 1, 1]
    assert weights(big, "weighted", 0) == pytest.approx([0.2, 0.9, 0.9])
    assert fit.accuracy("unseen", 10) == fit.accuracy(None, 10)
    facts, correct = count([{"scores": {f"p{k}": {"em": float(k == 2)} for k in (1, 2)}, "group": "g"}] * 3, 2)
    assert facts == {ALL: 3, "g": 3} and correct == {ALL: [0, 3], "g": [0, 3]}


def with_counts(setup, name: str, correct: list[float]) -> Path:
    """A copy of the fit whose every group has these counts."""
    saved = json.loads(setup["fit"].read_text())
    saved["correct"] = {group: list(correct) for group in saved["correct"]}
    path = setup["folder"] / name
    path.write_text(json.dumps(saved))
    return path


def test_equal_weights_fuse_as_avg(setup, tiny_model_path):
    folder, test, dev = setup["folder"], setup["test"], setup["dev"]
    equal = with_counts(setup, "equal.json", [2, 2, 2, 2, 2])
    avg = test_run(config(folder, {"class_path": "selfens.methods.LogitFusion"}, test, dev), tiny_model_path, folder)
    rows = test_run(config(folder, fitted("weighted", equal), test, dev), tiny_model_path, folder)
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in avg]
    assert [r["answer_tokens"] for r in rows] == [r["answer_tokens"] for r in avg]  # token for token
    assert all(len(set(r["weights"])) == 1 for r in rows)


def test_one_phrasings_weight_alone_answers_as_it_asked_alone(setup, tiny_model_path):
    folder, test, dev = setup["folder"], setup["test"], setup["dev"]
    second = with_counts(setup, "second.json", [0, 6, 0, 0, 0])
    alone = test_run(config(folder, {"class_path": "selfens.methods.PerPrompt"}, test, dev), tiny_model_path, folder)
    p2 = [r["per_paraphrase"][1] for r in alone]
    for model in (
        fitted("weighted", second, shrinkage=0),
        fitted("filtered", second, margin=0),
        fitted(None, second),
    ):
        rows = test_run(config(folder, model, test, dev), tiny_model_path, folder)
        assert [r["prediction"] for r in rows] == p2, model
    assert [r["phrasing"] for r in rows] == [2] * len(rows)  # best phrasing says which it asked
    assert rows[0]["scores"]["best_phrasing"] is not None


def test_the_test_answers_change_no_weight_and_no_answer(setup, tiny_model_path):
    folder = setup["folder"]
    before = test_run(setup["weighted"], tiny_model_path, folder)
    lines = read_jsonl(setup["test"])
    answers = [line["answers"] for line in lines]
    random.Random(0).shuffle(answers)
    permuted = write(folder / "permuted.jsonl", [{**line, "answers": a} for line, a in zip(lines, answers)])
    after = test_run(config(folder, fitted("weighted", setup["fit"]), permuted, setup["dev"]), tiny_model_path, folder)
    assert [(r["prediction"], r["weights"]) for r in after] == [(r["prediction"], r["weights"]) for r in before]
    assert [r["answers"] for r in after] != [r["answers"] for r in before]


def test_the_dev_answers_change_the_weights(setup, tiny_model_path):
    folder = setup["folder"]
    lines = read_jsonl(setup["dev"])
    moved = [line["answers"] for line in lines[1:] + lines[:1]]  # each fact gets another's answer
    dev = write(folder / "dev_moved.jsonl", [{**line, "answers": a} for line, a in zip(lines, moved)])
    refit = folder / "refit.json"
    selfens(
        *command("fit", config(folder, fitted("weighted", refit), setup["test"], dev), tiny_model_path, folder / "logs")
    )
    assert json.loads(refit.read_text())["correct"] != json.loads(setup["fit"].read_text())["correct"]


def test_a_fit_that_exists_is_kept(setup, tiny_model_path, capsys):
    capsys.readouterr()
    selfens(*command("fit", setup["weighted"], tiny_model_path, setup["folder"] / "logs"))
    assert f"already fitted: {setup['fit']}" in capsys.readouterr().out


def test_refusals(setup, tiny_model_path, capsys):
    folder, test, dev = setup["folder"], setup["test"], setup["dev"]
    overlapping = write(folder / "overlap.jsonl", read_jsonl(dev) + read_jsonl(test)[:1])
    line = selfens_fails(
        capsys,
        *command(
            "fit",
            config(folder, fitted("weighted", folder / "x.json"), test, overlapping),
            tiny_model_path,
            folder / "logs",
        ),
    )
    assert "1 of the test facts are in the development split (e.g. t0)" in line
    saved = json.loads(setup["fit"].read_text())
    other = folder / "other_model.json"
    other.write_text(json.dumps({**saved, "evaluation": {**saved["evaluation"], "model": "another"}}))
    line = selfens_fails(
        capsys, *command("test", config(folder, fitted("weighted", other), test, dev), tiny_model_path, folder / "logs")
    )
    assert "was fitted with another model or decoding (model:" in line
    line = selfens_fails(
        capsys,
        *command("test", setup["weighted"], tiny_model_path, folder / "logs", "--data.init_args.num_paraphrases", 2),
    )
    assert "was fitted at N = 5, this run has N = 2" in line
    line = selfens_fails(
        capsys,
        *command(
            "test",
            config(folder, fitted("weighted", folder / "none.json"), test, dev),
            tiny_model_path,
            folder / "logs",
        ),
    )
    assert "no fitted weights at" in line and "selfens fit --config" in line


def test_data_without_a_dev_split_say_what_to_set(setup):
    from selfens.data import JsonlQuestions, WebQuestions
    from selfens.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^JsonlQuestions: a development split needs dev_path: FILE"):
        JsonlQuestions(path=str(setup["test"])).dev_split()
    with pytest.raises(ConfigError, match=r"^JsonlQuestions: split: dev needs dev_path: FILE"):
        JsonlQuestions(path=str(setup["test"]), split="dev")
    with pytest.raises(ConfigError, match=r"^WebQuestions has no development split here"):
        WebQuestions(num_paraphrases=1).dev_split()
    dev = JsonlQuestions(path=str(setup["test"]), dev_path=str(setup["dev"])).dev_split()
    assert dev.path == setup["dev"] and dev.split == "dev"


@pytest.mark.slow
def test_a_stopped_fit_says_how_to_resume_and_the_resumed_fit_counts_every_dev_fact(tiny_model_path, tmp_path):
    import os
    import shlex
    import signal
    import subprocess

    from tests.helpers import ROOT, console_script, signal_mid_run

    config = ROOT / "configs" / "pararel" / "fitted_weighted.yaml"
    args = [
        "fit", "--config", config, "--model.init_args.model", tiny_model_path, "--model.init_args.max_new_tokens", 24,
        "--model.init_args.stop_strings", "[]", "--data.init_args.limit", 24, "--data.init_args.batch_size", 2,
        "--trainer.logger.init_args.save_dir", tmp_path / "logs", "--model.init_args.fitted", tmp_path / "fit.json",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SELFENS_CACHE": str(tmp_path / "cache")}
    run = subprocess.Popen(
        [*console_script(), *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    dev = tmp_path / "logs" / "pararel_fitted_weighted-dev" / "version_0-per_prompt"
    signal_mid_run(run, dev, signal.SIGINT, rows=2)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGINT, err
    assert not (tmp_path / "fit.json").exists()
    command = shlex.split(err.splitlines()[-1].removeprefix("selfens: to go on, run: "))
    assert command[:2] == ["selfens", "fit"] and command[-2:] == ["--resume", str(dev)]
    resumed = subprocess.run([*console_script(), *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    fit = json.loads((tmp_path / "fit.json").read_text())
    whole = tmp_path / "logs" / "pararel_fitted_weighted-dev" / "version_1-per_prompt"
    assert fit["facts"]["*"] == 24 == len(read_jsonl(whole / "predictions.jsonl")) and fit["dev_run"] == str(whole)
