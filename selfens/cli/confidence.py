"""`selfens confidence --config CONFIG`: compute and cache the confidences a weighted method needs.

Runs the config's data through the model without decoding the fused answers, filling the cache
(resumable: what is cached is skipped), so that later `selfens test` runs of weighted methods
sample nothing. Progress is counted in prompts (an example's N phrasings are N prompts) and, with
`confidence: sampling`, in sampled answers (K a prompt, counted as each finishes), with an estimate
of the time left, on stderr (`--trainer.enable_progress_bar false`: none).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from selfens.run.progress import Progress


def main(argv: list[str]) -> None:
    if any(a in ("-h", "--help") for a in argv):
        print(
            __doc__.strip()
            + "\n\nAll options of `selfens test` apply (config overrides such as --data.init_args.limit N)."
        )
        return
    # Imported here, so that --help answers at once (Lightning alone takes seconds to import).
    from selfens.cli.lightning import build, connect
    from selfens.errors import ConfigError
    from selfens.methods.confidence_pass import ConfidencePass
    from selfens.methods.logit import LogitFusion
    from selfens.run.writer import RunWriter, announce, new_folders

    run = build(argv, run=False)
    model, data = run.model, run.datamodule
    if not isinstance(model, LogitFusion) or not model.uses_confidence:
        raise ConfigError(
            f"selfens confidence needs a weighted method (LogitFusion with fusion weighted_avg or "
            f"weighted_max); this config has {type(model).__name__} ({model.method})."
        )
    settings = {k: v for k, v in model.hparams.items() if not k.startswith("_")}
    job = ConfidencePass(**{**settings, "model": model.language_model})
    connect(data, job)
    job.progress = prompt_progress(run.trainer, data, job.hparams)
    run.trainer.callbacks.append(RunWriter(data, None, new_folders(run.trainer.log_dir)))
    run.trainer.predict(job, datamodule=data, return_predictions=False)
    if job.progress is not None:
        job.progress.close()
    folder = Path(run.trainer.log_dir or ".")
    if run.trainer.is_global_zero:
        announce(folder)
        print(f"confidences ({job.hparams.confidence}) cached in {job.confidence.cache.path}")


def prompt_progress(trainer, data, hparams) -> Optional[Progress]:
    """A line counting the prompts and, when each is sampled K times, the samples, paced by them: a
    batch of B examples is B x N prompts, whose samples decode together in chunks (minutes) and
    finish a few at each step."""
    from selfens.run.progress import instead_of_bar

    data.setup("predict")
    prompts = len(data.examples) * data.num_paraphrases
    if hparams.confidence != "sampling":
        return instead_of_bar(trainer, "confidence", {"prompts": prompts})
    totals = {"prompts": prompts, "samples": prompts * hparams.num_samples}
    return instead_of_bar(trainer, "confidence", totals, pace="samples")
