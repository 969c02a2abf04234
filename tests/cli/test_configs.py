"""Every YAML under configs/ parses with the CLI parser and instantiates its classes.

Configs are discovered by globbing, so a newly added method or dataset config is covered without
touching this file. The model is overridden with the tiny test model, so nothing big loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from selfens.data.base import ParaphraseDataModule
from tests.helpers import ROOT

ALL_CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
# configs/paraphrase/ configure `selfens paraphrase` (tests/paraphrase), configs/study/ `selfens
# study` (checked below); the rest evaluate a method.
PARAPHRASE_CONFIGS = [p for p in ALL_CONFIGS if p.parent.name == "paraphrase"]
STUDY_CONFIGS = [p for p in ALL_CONFIGS if p.parent.name == "study"]
CONFIGS = [p for p in ALL_CONFIGS if p not in PARAPHRASE_CONFIGS + STUDY_CONFIGS]


# Overrides for slow settings, applied only where a config sets them.
SMALL = {"num_samples": 4, "sample_max_new_tokens": 4}


def test_configs_found():
    assert CONFIGS, f"no YAML files under {ROOT / 'configs'}"


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_config_instantiates(path, tiny_model_path, monkeypatch):
    from selfens.cli.lightning import build
    from selfens.methods.base import EnsembleModule

    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw, dict) and "model" in raw and "data" in raw, f"{path}: needs model: and data: sections"

    monkeypatch.setattr(sys, "argv", ["selfens"])  # LightningCLI warns when pytest's own argv is there too
    # In subclass mode a nested init_args key overrides the config's value while keeping its class_path.
    parsed = build(args=["--config", str(path), "--model.init_args.model", tiny_model_path], run=False)

    assert isinstance(parsed.model, EnsembleModule)
    assert isinstance(parsed.datamodule, ParaphraseDataModule)
    # The class named in the YAML is what was built, and the override reached it.
    assert type(parsed.model).__name__ == raw["model"]["class_path"].rsplit(".", 1)[-1]
    assert type(parsed.datamodule).__name__ == raw["data"]["class_path"].rsplit(".", 1)[-1]
    assert parsed.model.model_name == tiny_model_path
    assert parsed.model.hparams.model == tiny_model_path
    # Every other init arg of the YAML is kept.
    for key, value in (raw["model"].get("init_args") or {}).items():
        if key != "model":
            assert parsed.model.hparams[key] == value, f"{path}: model.init_args.{key}"
    for key, value in (raw["data"].get("init_args") or {}).items():
        assert parsed.datamodule.hparams[key] == value, f"{path}: data.init_args.{key}"
    # A method that names itself: `method` is the view prefix in metrics and results.json.
    assert parsed.model.method != EnsembleModule.method


def write_paraphrase_file(path: Path, num_paraphrases: int) -> Path:
    """Hand-written paraphrases of the first 3 bundled WebQuestions questions."""
    import json

    from selfens.data import WebQuestions

    rows = [
        {"id": r.id, "original": r.paraphrases[0], "paraphrases": [f"{r.paraphrases[0]} ({k})" for k in range(1, 5)]}
        for r in WebQuestions(limit=3).load_records()[:3]
    ]
    assert num_paraphrases <= 5
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("path", PARAPHRASE_CONFIGS, ids=[p.name for p in PARAPHRASE_CONFIGS])
def test_paraphrase_config_instantiates(path, tiny_model_path, monkeypatch):
    from selfens.cli.lightning import build_job
    from selfens.paraphrase.module import Paraphraser

    raw = yaml.safe_load(path.read_text())
    monkeypatch.setattr(sys, "argv", ["selfens"])
    parsed = build_job(Paraphraser, ["--config", str(path), "--model.model", tiny_model_path])
    for key, value in raw["model"].items():
        if key != "model":
            assert parsed.model.hparams[key] == value, f"{path}: model.{key}"
    for key, value in raw["data"]["init_args"].items():
        assert parsed.datamodule.hparams[key] == value, f"{path}: data.init_args.{key}"


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_config_runs_end_to_end(path, tiny_model_path, tmp_path, monkeypatch):
    """`selfens test --config PATH` on 3 records with the tiny model writes a complete results.json
    whose metrics are named after the method."""
    import json

    from selfens.cli.main import main

    monkeypatch.setattr(sys, "argv", ["selfens"])
    monkeypatch.setenv("SELFENS_CACHE", str(tmp_path / "cache"))  # e.g. the confidence cache: not the user's
    raw = yaml.safe_load(path.read_text())
    init_args = raw["model"].get("init_args") or {}
    # Keep sampling-based settings small (100 samples of 20 tokens per prompt take ~30 s here).
    shrink = [f"--model.init_args.{k}={v}" for k, v in SMALL.items() if k in init_args]
    if "paraphrases" in raw["data"]["init_args"]:  # a paraphrase file that `selfens paraphrase` would write
        file = write_paraphrase_file(tmp_path / "paraphrases.jsonl", raw["data"]["init_args"]["num_paraphrases"])
        shrink += ["--data.init_args.paraphrases", str(file)]
    args = [
        "--config",
        str(path),
        "--model.init_args.model",
        tiny_model_path,
        *shrink,
        "--data.init_args.limit",
        "3",
        "--data.init_args.batch_size",
        "2",
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "logs"),
        "--trainer.enable_progress_bar",
        "false",
    ]
    if raw["model"]["class_path"] in ("selfens.methods.BestPhrasing", "selfens.methods.FittedFusion"):
        main(["fit", *args])  # on the dev split, into <name>-dev/
    main(["test", *args])
    found = [p for p in (tmp_path / "logs").rglob("results.json") if not p.parent.parent.name.endswith("-dev")]
    assert len(found) == 1, found
    results = json.loads(found[0].read_text())
    assert results["num_examples"] == 3
    assert results["metrics"], "no test/ metrics logged"
    assert all(k.startswith("test/") for k in results["metrics"])
    assert results["cost"]["forward_calls"] > 0
    rows = [json.loads(line) for line in (found[0].parent / "predictions.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert all(r["method"] == results["method"] for r in rows)


@pytest.mark.parametrize("path", STUDY_CONFIGS, ids=[p.name for p in STUDY_CONFIGS])
def test_study_configs_parse(path):
    """Every cell of a bundled study parses as `selfens test` would parse it (nothing loads)."""
    from selfens.cli.study import check_cells
    from selfens.study.grid import load_study

    study = load_study(path)
    check_cells(study)
    assert study.cells and len({c.title for c in study.cells}) == len(study.cells)
