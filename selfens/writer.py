"""Writes a run's outputs under the logger's folder: predictions.jsonl, results.json, TensorBoard.

Each process appends its rows to `predictions.rank<k>.jsonl` as batches finish (and rewrites its
running cost in `cost.rank<k>.json`), so a crash loses at most the batch in flight; at the end
rank 0 merges them, in dataset order, into predictions.jsonl and results.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from selfens.methods.base import COSTS
from selfens.metrics.views import score_columns
from selfens.resume import finished_rows
from selfens.stats import LEVEL, uncertainty

UNCERTAINTY_SEED = 0  # of the bootstrap resamples: the same intervals on every rerun
PACKAGES = ("selfens", "torch", "lightning", "transformers", "torchmetrics", "spacy", "datasets")


class RunWriter(Callback):
    """Streams predictions per process and writes results.json once the stage ends."""

    started: float | None = None  # set once decoding starts

    def _start(self, trainer: L.Trainer, module, stage: str) -> None:
        self.stage, self.started = stage, time.time()
        self.folder = Path(trainer.log_dir or ".")
        self.rank_file = self.folder / f"predictions.rank{trainer.global_rank}.jsonl"
        self.cost_file = self.folder / f"cost.rank{trainer.global_rank}.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rank_file.write_text("")
        if trainer.is_global_zero and module.resumed_rows:
            self._append(module.resumed_rows, module)

    def _append(self, rows: list[dict], module) -> None:
        with self.rank_file.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        # After the rows: a resumed run carries over the cost of exactly the rows it keeps.
        _write_atomic(self.cost_file, json.dumps(module.run_cost))

    def _finish(self, trainer: L.Trainer, module) -> None:
        cost = module.cost_summary()  # collective: every rank calls it
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return
        rows = finished_rows(self.folder)  # every rank's rows, in dataset order
        _write_atomic(
            self.folder / "predictions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        )
        scored = self.stage in ("test", "val")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{self.stage}/")}
        results = self._results(trainer, module, rows, metrics if scored else None, cost)
        _write_atomic(self.folder / "results.json", json.dumps(results, indent=2) + "\n")
        for path in [*self.folder.glob("predictions.rank*.jsonl"), *self.folder.glob("cost.rank*.json")]:
            path.unlink()
        self._tensorboard(trainer, module, rows, metrics, results["total_cost"])

    def _results(self, trainer, module, rows, metrics, cost) -> dict:
        data = trainer.datamodule
        carried = module.carried_cost
        results = {
            "method": module.method,
            "main_view": module.main_view,
            "settings": run_settings(module, data),
            "stage": self.stage,
            "model": module.model_name,
            "dataset": type(data).__name__,
            "num_examples": len(rows),
            **({"metrics": metrics, "uncertainty": self._uncertainty(module, rows)} if metrics is not None else {}),
            "cost": cost,  # this run's
            "carried_cost": carried,  # spent by the run it resumed
            "total_cost": {name: cost[name] + carried[name] for name in COSTS},
            "warnings": _warnings(rows) + (data.fit_report.warnings() if data.fit_report else []),
            "long_prompts": asdict(data.fit_report) if data.fit_report else None,
            "data_hash": data.data_hash,
            "data_sources": data.sources(),
            "seed": _int_or_none(os.environ.get("PL_GLOBAL_SEED")),
            "world_size": trainer.world_size,
            "wall_time_s": round(time.time() - self.started, 3),
            "resumed_from": module.resumed_from,
            "resumed_examples": len(module.resumed_rows),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": {"model": dict(module.hparams), "data": _data_config(data)},
            "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
        }
        return results

    def _uncertainty(self, module, rows) -> dict:
        """Standard error and 95% bootstrap interval of every metric, from the per-example scores."""
        resamples, seed = module.hparams.bootstrap_resamples, UNCERTAINTY_SEED
        columns = score_columns([r for r in rows if "scores" in r], self.stage, module.main_view)
        return {"resamples": resamples, "seed": seed, "level": LEVEL, "metrics": uncertainty(columns, resamples, seed)}

    def _tensorboard(self, trainer, module, rows, metrics, cost) -> None:
        logger = trainer.logger
        if logger is None:
            return
        # The settings that tell runs apart, as HParams columns; the common metrics and the cost as its values.
        common = {k: v for k, v in metrics.items() if k.count("/") == 1}
        costs = {f"cost/{k}": v for k, v in cost.items()}
        params = {k: v for k, v in run_settings(module, trainer.datamodule).items() if v is not None}
        logger.log_hyperparams(params, {**common, **costs})
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_text") and rows and "prediction" in rows[0]:
            experiment.add_text(f"{self.stage}/samples", sample_table(rows[:20], module.main_view))

    # -- hooks -------------------------------------------------------------------------------------
    def on_test_start(self, trainer, module):
        self._start(trainer, module, "test")

    def on_validation_start(self, trainer, module):
        if not trainer.sanity_checking:
            self._start(trainer, module, "val")

    def on_predict_start(self, trainer, module):
        self._start(trainer, module, module.predict_stage)

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self._append(outputs, module)

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._append(outputs, module)

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self._append(outputs, module)

    def on_test_end(self, trainer, module):
        self._finish(trainer, module)

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self._finish(trainer, module)

    def on_predict_end(self, trainer, module):
        self._finish(trainer, module)

    def on_exception(self, trainer, module, exception):
        # A run that failed before decoding anything leaves no empty version folder behind (it
        # would show in TensorBoard); one that failed later keeps its rows, for --resume.
        if self.started is not None or not trainer.is_global_zero or trainer.logger is None:
            return
        folder = Path(trainer.logger.log_dir)  # not trainer.log_dir: that is a collective call
        if not folder.is_dir():
            return
        if all(p.name in _SET_UP_FILES or p.name.startswith("events.out.tfevents") for p in folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)


_SET_UP_FILES = {"config.yaml", "hparams.yaml"}


def run_settings(module, data) -> dict:
    """What tells a run apart from another: method and its settings, model, data, N, shots, prompt."""
    hparams = module.hparams
    settings = {
        "method": module.method,
        "model": module.model_name,
        "dataset": type(data).__name__,
        "N": data.num_paraphrases,
        "shots": data.num_shots,
        **data.resolved_settings(),
    }
    for key in ("fusion", "confidence", "layout", "positions", "first_token", "first_fusion"):
        settings[key] = hparams.get(key)
    if not getattr(getattr(module, "fusion_rule", None), "needs_weights", False):
        settings["confidence"] = None  # only weighted rules use one
    return settings


def run_label(module) -> str:
    """The method and its key settings, for the run's folder name (and TensorBoard's run list)."""
    hparams = module.hparams
    keys = ("layout", "positions", "first_token") if "layout" in hparams else ()
    return "-".join([module.method, *(str(hparams[k]) for k in keys)])


def sample_table(rows: list[dict], main_view: str) -> str:
    """A markdown table of predictions: the phrasings (each with its own answer where the method has
    one), the method's answer, the gold answers and whether it is right (EM)."""
    lines = ["| id | paraphrases (own answer) | answer | gold | right |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        own = r.get("per_paraphrase") or [None] * len(r["paraphrases"])
        phrasings = "<br>".join(
            f"{k + 1}. {_cell(p)}" + (f" → *{_cell(a)}*" if a is not None else "")
            for k, (p, a) in enumerate(zip(r["paraphrases"], own))
        )
        right = {1.0: "✓", 0.0: "✗"}.get(r.get("scores", {}).get(main_view, {}).get("em"), "")
        gold = " / ".join(map(_cell, r["answers"]))
        lines.append(f"| {r['id']} | {phrasings} | **{_cell(r['prediction'])}** | {gold} | {right} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def announce(folder: Path) -> None:
    """The last words of a run: its warnings, and where it wrote."""
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    for warning in results["warnings"]:
        print(f"selfens: warning: {warning}", file=sys.stderr)
    print(f"selfens: {results['stage']} of {results['num_examples']} examples written to {folder}")


def _data_config(data) -> dict:
    """The data module's settings, with the prompt settings it resolved (None: the model's default)."""
    return {**dict(data.hparams), **data.resolved_settings()}


def _warnings(rows: list[dict]) -> list[str]:
    """What a reader of the numbers must know: e.g. a model that answers nothing to this prompt."""
    empty = sum(1 for r in rows if "prediction" in r and not any(ch.isalnum() for ch in r["prediction"]))
    if rows and empty > len(rows) / 2:
        return [
            f"{empty} of {len(rows)} predictions are empty (no letter or digit): the model answers nothing to these prompts. "
            f"Look at predictions.jsonl; try the other prompt_style (chat/raw), or check stop_strings and max_new_tokens."
        ]
    return []


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _int_or_none(value):
    return int(value) if value is not None else None
