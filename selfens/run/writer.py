"""Writes a run's outputs under the logger's folder: predictions.jsonl, results.json, TensorBoard.

Each process appends its rows to `predictions.rank<k>.jsonl` as batches finish (and rewrites its
running cost in `cost.rank<k>.json`), so a crash loses at most the batch in flight; at the end
rank 0 merges them, in dataset order, into predictions.jsonl and results.json.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import sys
import time
from contextlib import suppress
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional, Sequence

import lightning as L
from lightning.pytorch.callbacks import Callback

from selfens.metrics.views import score_columns
from selfens.run.cost import RunCost
from selfens.run.diagnostics import diagnostics
from selfens.run.files import append_rows, write_atomic, write_rows
from selfens.run.identity import IDENTITY_FILE, RunIdentity
from selfens.run.interrupt import Interrupted
from selfens.run.resume import Resume, finished_rows
from selfens.run.tensorboard import log_run, summary_writer
from selfens.stats import LEVEL, uncertainty

UNCERTAINTY_SEED = 0  # of the bootstrap resamples: the same intervals on every rerun
PACKAGES = ("selfens", "torch", "lightning", "transformers", "torchmetrics", "spacy", "datasets")


class RunWriter(Callback):
    """Streams predictions per process and writes results.json once the stage ends.

    Handed the data module (what was evaluated), the run it resumes, if any, and the folders the run
    will create (`new_folders` of the logger's folder, taken before it starts), which a run that fails
    before decoding removes again; the method module says what it is (`record()`), what it spent
    (`run_cost`, `cost_summary()`) and its rows (each step's outputs)."""

    def __init__(self, data, resume: Optional[Resume] = None, created: Sequence[Path] = ()):
        self.data, self.resume, self.created = data, resume, list(created)
        self.started: float | None = None  # set once decoding starts

    def _start(self, trainer: L.Trainer, module, stage: str) -> None:
        # Before anything is written: a refused resume leaves no run folder behind (on_exception).
        self.identity = RunIdentity.of(module, self.data)
        if self.resume is not None:
            self.resume.check_identity(self.identity)
            module.score_resumed(stage)
        self.stage, self.started = stage, time.time()
        self.folder = Path(trainer.log_dir or ".")
        if self.resume is not None and trainer.is_global_zero:
            done, total = len(self.resume.rows), len(self.data.examples)
            print(
                f"selfens: resuming {self.resume.folder}: {done} of {total} examples done; this run's folder "
                f"{self.folder} will hold all {total} (the folder resumed from stays as it is)",
                flush=True,
            )
        self.rank_file = self.folder / f"predictions.rank{trainer.global_rank}.jsonl"
        self.cost_file = self.folder / f"cost.rank{trainer.global_rank}.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        if trainer.is_global_zero:  # so that an interrupted run can be resumed, and checked
            self.identity.write(self.folder)
        # Rank 0 carries the resumed rows and their cost, so that this run can be resumed in turn.
        carries = trainer.is_global_zero and self.resume is not None
        self.carried = self.resume.cost if carries else RunCost()
        if trainer.is_global_zero:  # a run resumed in its own folder: parts of more processes than now
            for k in range(trainer.world_size, _ranks_in(self.folder)):
                (self.folder / f"predictions.rank{k}.jsonl").unlink(missing_ok=True)
                (self.folder / f"cost.rank{k}.json").unlink(missing_ok=True)
        self.rank_file.write_text("")
        self._append(self.resume.rows if carries else [], RunCost())

    def _append(self, rows: list[dict], cost: RunCost) -> None:
        append_rows(self.rank_file, rows)
        # After the rows: the cost of exactly the rows kept (those carried over included).
        write_atomic(self.cost_file, json.dumps((cost + self.carried).to_dict()))

    def _finish(self, trainer: L.Trainer, module) -> None:
        cost = module.cost_summary()  # collective: every rank calls it
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return
        rows = finished_rows(self.folder)  # every rank's rows, in dataset order
        write_rows(self.folder / "predictions.jsonl", rows)
        scored = self.stage in ("test", "val")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(f"{self.stage}/")}
        results = self._results(trainer, module, rows, metrics if scored else None, cost)
        write_atomic(self.folder / "results.json", json.dumps(results, indent=2) + "\n")
        parts = [*self.folder.glob("predictions.rank*.jsonl"), *self.folder.glob("cost.rank*.json")]
        for path in [*parts, self.folder / IDENTITY_FILE]:  # results.json holds the identity now
            path.unlink()
        self._tensorboard(trainer, module, rows, metrics, results)

    def _results(self, trainer, module, rows, metrics, cost: RunCost) -> dict:
        record, data, resume = module.record(), self.data.record(), self.resume
        carried = resume.cost if resume is not None else RunCost()
        return {
            "method": record["method"],
            "label": record["label"],
            "main_view": record["main_view"],
            "method_settings": record["method_settings"],
            **({"fitted": record["fitted"]} if "fitted" in record else {}),  # a fitted method's fit and weights
            "settings": {
                "method": record["method"],
                "model": record["model"],
                **self.data.settings(),
                **record["method_settings"],
            },
            "stage": self.stage,
            "identity": self.identity.to_dict(),
            "model": record["model"],
            "dataset": data["dataset"],
            "num_examples": len(rows),
            **({"metrics": metrics, **self._statistics(module, rows)} if metrics is not None else {}),
            "cost": cost.to_dict(),  # this run's
            "carried_cost": carried.to_dict(),  # spent by the run it resumed
            "total_cost": (cost + carried).to_dict(),
            "warnings": [
                *_warnings(rows),
                *module.warnings(rows),
                *self.data.warnings(),
                *(resume.warnings() if resume is not None else []),
            ],
            "long_prompts": data["long_prompts"],
            "data_hash": data["data_hash"],
            "data_sources": data["sources"],
            "seed": _int_or_none(os.environ.get("PL_GLOBAL_SEED")),
            "world_size": trainer.world_size,
            "batch_size": self.data.batch_size,  # examples per batch, as resolved (batch_size: auto)
            "decode_rows": module.decode_rows,  # the most rows decoded at once (None: no limit)
            "wall_time_s": round(time.time() - self.started, 3),
            "resumed_from": resume.folder if resume is not None else None,
            "resumed_examples": len(resume.rows) if resume is not None else 0,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": {"model": dict(module.hparams), "data": data["config"]},
            "versions": {"python": platform.python_version(), **{p: _version(p) for p in PACKAGES}},
        }

    def _statistics(self, module, rows) -> dict:
        """Standard error and 95% bootstrap interval of every metric, from the per-example scores; and
        the diagnostics (prompt sensitivity, calibration) with theirs."""
        resamples, seed = module.hparams.bootstrap_resamples, UNCERTAINTY_SEED
        columns = score_columns([r for r in rows if "scores" in r], self.stage, module.main_view)
        return {
            "uncertainty": {
                "resamples": resamples,
                "seed": seed,
                "level": LEVEL,
                "metrics": uncertainty(columns, resamples, seed),
            },
            "diagnostics": diagnostics(rows, module.main_view, resamples, seed, module.hparams.get("confidence")),
        }

    def _tensorboard(self, trainer, module, rows, metrics, results) -> None:
        writer = summary_writer(trainer.logger)
        if writer is None:
            return
        log_run(writer, results, self.folder)
        if rows and "prediction" in rows[0]:
            writer.add_text(f"{self.stage}/samples", sample_table(rows[:20], module.main_view))

    # -- hooks -------------------------------------------------------------------------------------
    def on_test_start(self, trainer, module):
        self._start(trainer, module, "test")

    def on_validation_start(self, trainer, module):
        if not trainer.sanity_checking:
            self._start(trainer, module, "val")

    def on_predict_start(self, trainer, module):
        self._start(trainer, module, module.predict_stage)

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self._append(outputs, module.run_cost)

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self._append(outputs, module.run_cost)

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self._append(outputs, module.run_cost)

    def on_test_end(self, trainer, module):
        self._finish(trainer, module)

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            self._finish(trainer, module)

    def on_predict_end(self, trainer, module):
        self._finish(trainer, module)

    def on_exception(self, trainer, module, exception):
        if isinstance(exception, Interrupted) and self.started is not None and trainer.is_global_zero:
            self._say_how_to_resume(exception)
        # A run that failed before decoding anything leaves no empty version folder behind (it
        # would show in TensorBoard); one that failed later keeps its rows, for --resume.
        if self.started is not None or not trainer.is_global_zero or trainer.logger is None:
            return
        folder = Path(trainer.logger.log_dir)  # not trainer.log_dir: that is a collective call
        if not folder.is_dir():
            return
        if all(p.name in _SET_UP_FILES or p.name.startswith("events.out.tfevents") for p in folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
        for created in self.created:  # deepest first: e.g. lightning_logs/<name>, then lightning_logs
            with suppress(OSError):  # rmdir removes only an empty folder: one another run writes to stays
                created.rmdir()

    def _say_how_to_resume(self, stop: Interrupted) -> None:
        """What the interrupted run kept (every process's rows on disk), and the command that resumes it:
        the config this run saved, and its folder."""
        stop.folder, stop.total = str(self.folder), len(self.data.examples)
        stop.done = len(finished_rows(self.folder))
        config = self.folder / "config.yaml"
        stop.resume = shlex.join(["selfens", self.stage, "--config", str(config), "--resume", str(self.folder)])


_SET_UP_FILES = {"config.yaml", "hparams.yaml", IDENTITY_FILE}


def new_folders(folder: Path | None) -> list[Path]:
    """`folder` (a logger's log_dir; None: no logger) and those of its parents that do not exist
    yet, deepest first: what a run writing to `folder` creates."""
    absent = []
    if folder is None:
        return absent
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        absent.append(folder)
        folder = folder.parent
    return absent


def _ranks_in(folder: Path) -> int:
    """One more than the highest process number of the parts in `folder` (0 if none)."""
    found = [int(m.group(1)) for p in folder.glob("*.rank*.*") if (m := re.search(r"\.rank(\d+)\.", p.name))]
    return max(found, default=-1) + 1


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


def _warnings(rows: list[dict]) -> list[str]:
    """What a reader of the numbers must know: e.g. a model that answers nothing to this prompt."""
    empty = sum(1 for r in rows if "prediction" in r and not any(ch.isalnum() for ch in r["prediction"]))
    if rows and empty > len(rows) / 2:
        return [
            f"{empty} of {len(rows)} predictions are empty (no letter or digit): the model answers nothing to these prompts. "
            f"Look at predictions.jsonl; try the other prompt_style (chat/raw), or check stop_strings and max_new_tokens."
        ]
    return []


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _int_or_none(value):
    return int(value) if value is not None else None
