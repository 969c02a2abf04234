"""`selfens paraphrase --config CONFIG`: write a paraphrase file for a dataset's questions.

A Lightning predict job (on several GPUs each question once), its progress counted in questions and
paraphrases, with an estimate of the time left, on stderr (`--trainer.enable_progress_bar false`:
none; a batch takes up to num_paraphrases x max_tries decodes, so Lightning's bar of batches would
sit still for minutes). Each process appends
its finished questions to `<output>.parts/rank<k>.jsonl`; at the end they are merged, in dataset
order, into the output file and `<name>.meta.json` beside it. A re-run with the same settings
resumes: questions already in the output or the parts are not paraphrased again (so a larger
`limit` extends a file); other settings are refused rather than mixed into one file.
"""

from __future__ import annotations

import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from selfens.cli.lightning import build_job, connect
from selfens.data.paraphrase_files import meta_path, settings_hash
from selfens.errors import ConfigError
from selfens.paraphrase.module import Paraphraser
from selfens.paraphrase.summary import summary
from selfens.run.cost import RunCost
from selfens.run.files import append_rows, end_cut_line, rows_by_index, write_atomic, write_rows
from selfens.run.interrupt import Interrupted
from selfens.run.progress import Progress, instead_of_bar
from selfens.run.resume import Resume

# Data settings left out of the record in the sidecar: they only bound or pace the run.
_RUN_ONLY = ("limit", "batch_size", "num_workers")


class ParaphraseWriter(Callback):
    """Streams each process's rows to the parts folder; merges them into the output at the end."""

    def __init__(self, output: Path, header: dict):
        self.output, self.header = output, header
        self.parts = parts_folder(output)
        self.meta: dict | None = None  # once finished

    def on_predict_start(self, trainer, module):
        self.parts.mkdir(parents=True, exist_ok=True)
        self.rank_file = self.parts / f"rank{trainer.global_rank}.jsonl"
        end_cut_line(self.rank_file)
        if trainer.is_global_zero:
            (self.parts / "settings.json").write_text(json.dumps(self.header, indent=2) + "\n")

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        append_rows(self.rank_file, outputs)

    def on_exception(self, trainer, module, exception):
        if isinstance(exception, Interrupted) and trainer.is_global_zero and self.parts.is_dir():
            exception.folder, exception.done = str(self.parts), len(finished_rows(self.output))
            exception.total = len(trainer.datamodule.examples)  # re-running the command adds the rest

    def on_predict_end(self, trainer, module):
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self.finish(module)

    def finish(self, module) -> None:
        """Merge every row into the output, write the sidecar, remove the parts (one process)."""
        rows = finished_rows(self.output)
        write_rows(self.output, rows)
        self.meta = {
            **self.header,
            "file": self.output.name,
            "summary": summary(rows, module.hparams.num_paraphrases),
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_atomic(meta_path(self.output), json.dumps(self.meta, indent=2) + "\n")
        shutil.rmtree(self.parts, ignore_errors=True)


def parts_folder(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def finished_rows(output: Path) -> list[dict]:
    """The rows of the output file and of its parts folder, one per question index, in index order."""
    return rows_by_index([output, *sorted(parts_folder(output).glob("rank*.jsonl"))])


def check_same_settings(output: Path, header: dict) -> None:
    """An existing output (or an interrupted run's parts) must come from the same settings."""
    for path in (meta_path(output), parts_folder(output) / "settings.json"):
        if not path.exists():
            continue
        before = json.loads(path.read_text(encoding="utf-8"))
        if before.get("settings_hash") != header["settings_hash"]:
            changed = _changed(before, header)
            raise ConfigError(
                f"{output} was started with other settings ({changed}; see {path}): choose another "
                f"model.init_args.output, or delete {output}, {meta_path(output).name} and {parts_folder(output).name}"
            )


def _changed(before: dict, now: dict) -> str:
    flat = lambda h: {"model": h.get("model"), **{f"settings.{k}": v for k, v in h.get("settings", {}).items()}}
    old, new = flat(before), flat(now)
    diffs = [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)
    ]
    return ", ".join(diffs[:3]) or "different settings"


def question_progress(trainer, data, done: int, count: int) -> Progress | None:
    """A line counting questions and paraphrases (`count` a question; `done` questions finished
    before), paced by paraphrases: a question finishes only once each of its slots is sampled, late
    in its batch."""
    data.setup("predict")
    questions = len(data.examples)
    return instead_of_bar(
        trainer,
        "paraphrase",
        {"questions": questions, "paraphrases": questions * count},
        done={"questions": done, "paraphrases": done * count},
        pace="paraphrases",
    )


def main(argv: list[str]) -> None:
    run = build_job(
        Paraphraser,
        argv,
        description=__doc__,
        trainer_defaults={"logger": False, "enable_checkpointing": False},
        seed_everything_default=0,
    )
    job, data = run.model, run.datamodule
    connect(data, job)
    output = Path(job.hparams.output)
    header = {
        "model": job.model_name,
        "settings": job.settings(),
        "data": {"class": type(data).__name__, **{k: v for k, v in data.hparams.items() if k not in _RUN_ONLY}},
    }
    # What the paraphrases depend on: the model and the generation settings. The data's options are
    # recorded, not hashed: which question each row is, is checked row by row (index and id).
    header["settings_hash"] = settings_hash({"model": header["model"], "settings": header["settings"]})
    check_same_settings(output, header)
    # Questions the file has beyond this run's `limit` stay in it, untouched.
    done = [r for r in finished_rows(output) if data.limit is None or r["index"] < data.limit]
    if done:
        resume = Resume(str(output), done, RunCost())
        data.setup("predict")
        resume.check_ids([e.id for e in data.examples])
        data.resume(resume)
    output.parent.mkdir(parents=True, exist_ok=True)
    writer = ParaphraseWriter(output, header)
    run.trainer.callbacks.append(writer)
    job.progress = question_progress(run.trainer, data, len(done), job.hparams.num_paraphrases)
    run.trainer.predict(job, datamodule=data, return_predictions=False)
    if job.progress is not None:
        job.progress.close()
    if run.trainer.is_global_zero:
        if writer.meta is None:  # nothing was left to paraphrase: Lightning ran no predict hooks
            writer.finish(job)
        s = writer.meta["summary"]
        rejected = ", ".join(f"{n} {reason}" for reason, n in s["rejected"].items() if n) or "none"
        print(
            f"selfens: {s['paraphrases_kept']} of {s['paraphrases_asked']} paraphrases kept for {s['questions']} "
            f"questions ({s['questions_complete']} complete; rejected: {rejected}); resumed with {len(done)} done",
            file=sys.stderr,
        )
        print(f"selfens: paraphrases written to {output} (settings and figures: {meta_path(output)})")
