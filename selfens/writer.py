"""Writes a run's outputs under the logger's folder: predictions.jsonl, results.json, TensorBoard.

Each process appends its rows to `predictions.rank<k>.jsonl` as batches finish, so a crash loses
at most the batch in flight; at the end rank 0 merges them, in dataset order, into predictions.jsonl.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from selfens.resume import finished_rows

PACKAGES = ("selfens", "torch", "lightning", "transformers", "torchmetrics", "spacy", "datasets")


class RunWriter(Callback):
    """Streams predictions per process and writes results.json once the stage ends."""

    def _start(self, trainer: L.Trainer, module, stage: str) -> None:
        self.stage, self.started = stage, time.time()
        self.folder = Path(trainer.log_dir or ".")
        self.rank_file = self.folder / f"predictions.rank{trainer.global_rank}.jsonl"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.rank_file.write_text("")
        if trainer.is_global_zero and module.resumed_rows:
            self._append(module.resumed_rows)

    def _append(self, rows: list[dict]) -> None:
        with self.rank_file.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    def _finish(self, trainer: L.Trainer, module) -> None:
        cost = module.cost_summary()  # collective: every rank calls it
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return
        rows = finished_rows(self.folder)  # every rank's rows, in dataset order
        _write_atomic(self.folder / "predictions.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        for path in self.folder.glob("predictions.rank*.jsonl"):
            path.unlink()
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{self.stage}/")}
        results = self._results(trainer, module, rows, metrics, cost)
        _write_atomic(self.folder / "results.json", json.dumps(results, indent=2) + "\n")
        self._tensorboard(trainer, module, rows, metrics, cost)

    def _results(self, trainer, module, rows, metrics, cost) -> dict:
        data = trainer.datamodule
        return {
            "method": module.method,
            "stage": self.stage,
            "model": module.model_name,
            "dataset": type(data).__name__,
            "num_examples": len(rows),
            "metrics": metrics,
            "cost": cost,
            "data_hash": getattr(data, "data_hash", None),
            "seed": _int_or_none(os.environ.get("PL_GLOBAL_SEED")),
            "world_size": trainer.world_size,
            "wall_time_s": round(time.time() - self.started, 3),
            "resumed_from": module.resumed_from,
            "resumed_examples": len(module.resumed_rows),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": {"model": dict(module.hparams), "data": dict(data.hparams)},
            "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
        }

    def _tensorboard(self, trainer, module, rows, metrics, cost) -> None:
        logger = trainer.logger
        if logger is None:
            return
        params = {"method": module.method, **dict(module.hparams), **{f"data.{k}": v for k, v in trainer.datamodule.hparams.items()}}
        logger.log_hyperparams(params, {**metrics, **{f"cost/{k}": v for k, v in cost.items()}})
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_text"):
            lines = ["| id | prediction | answers |", "| --- | --- | --- |"]
            lines += [f"| {r['id']} | {r['prediction']} | {' / '.join(r['answers'])} |" for r in rows[:20]]
            experiment.add_text(f"{self.stage}/samples", "\n".join(lines))

    # -- hooks -------------------------------------------------------------------------------------
    def on_test_start(self, trainer, module):
        self._start(trainer, module, "test")

    def on_validation_start(self, trainer, module):
        if not trainer.sanity_checking:
            self._start(trainer, module, "val")

    def on_predict_start(self, trainer, module):
        self._start(trainer, module, "confidence" if getattr(module, "confidence_only", False) else "predict")

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self._append(outputs)

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._append(outputs)

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self._append(outputs)

    def on_test_end(self, trainer, module):
        self._finish(trainer, module)

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self._finish(trainer, module)

    def on_predict_end(self, trainer, module):
        self._finish(trainer, module)


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
