"""`selfens fit --config CONFIG`: fit a method on the development split of its data.

CONFIG is a fitted method's config (selfens.methods.BestPhrasing or FittedFusion, e.g.
configs/pararel/fitted_weighted.yaml) on data with a development split (ParaRel: dev_sample;
your JSONL: dev_path). The dev split is decoded with per_prompt (every phrasing alone), as an
ordinary run in the config's logger folder, and each phrasing's dev accuracy, overall and per
group, is written to the fitted-weights file the method reads (`model.init_args.fitted`, or by
default a file under $SELFENS_CACHE/fitted/ named by the model, decoding, dev split and N). One fit
serves every fitted rule. A fit that exists is kept (delete the file to fit again); an interrupted
fit resumes with the command it prints. The test facts are never read: only their ids, to refuse a
dev split that overlaps them.
"""

from __future__ import annotations

import inspect
import shlex
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip() + "\n\nAll options of `selfens test` apply (e.g. --data.init_args.limit N).")
        return
    from selfens.cli.lightning import build, connect, resume_from
    from selfens.methods import EnsembleModule, PerPrompt
    from selfens.methods.fitted import REMEDY, fit_path
    from selfens.methods.fitting import check, load, overlap, save
    from selfens.run.interrupt import Interrupted
    from selfens.run.resume import run_options
    from selfens.run.writer import RunWriter, announce, new_folders

    argv, folder_resumed = _without_resume(argv)
    run = build(argv, run=False)
    model, data = run.model, run.datamodule
    hp = model.hparams
    lm = model.language_model
    lm.load(hp.dtype, hp.attn_implementation, hp.device_map, run.trainer.strategy.root_device, run.trainer.num_devices)
    shared = {name: hp[name] for name in inspect.signature(EnsembleModule.__init__).parameters if name in hp}
    job = PerPrompt(**{**shared, "model": lm})  # the same model and decoding: the evaluation the fit is for
    connect(data, job)
    data.setup("test")
    path = fit_path(job, data, hp.get("fitted"))
    if path.exists() and folder_resumed is None:
        check(load(path, REMEDY), path, job.evaluation_identity(), data.num_paraphrases, _ids(data), REMEDY)
        print(f"selfens: already fitted: {path} (delete it to fit again)")
        return
    dev = data.dev_split()
    connect(dev, job)
    dev.setup("test")
    overlap(_ids(dev), _ids(data), type(data).__name__)
    _dev_logger(run.trainer, job)
    resume = resume_from(folder_resumed, "fit", run_options(run.config.as_dict()), job, dev)
    run.trainer.callbacks.append(RunWriter(dev, resume, new_folders(run.trainer.log_dir)))
    try:
        run.trainer.test(job, datamodule=dev, verbose=False)
    except Interrupted as stop:  # go on with `fit`, not with a `test` of the dev run
        if stop.folder is not None:
            stop.resume = shlex.join(["selfens", "fit", *argv, "--resume", str(stop.folder)])
        raise
    folder = Path(run.trainer.log_dir or ".")
    if run.trainer.is_global_zero:
        announce(folder)
        fit = _fit(job, dev, folder)
        check(fit, path, job.evaluation_identity(), data.num_paraphrases, _ids(data), REMEDY)
        save(fit, path, {"dev_run": str(folder)})
        print(_summary(fit, path), file=sys.stdout)


def _without_resume(argv: list[str]) -> tuple[list[str], str | None]:
    """argv without `--resume FOLDER` (the dev run's, not an option of the method's config), and FOLDER."""
    rest, folder, args = [], None, iter(argv)
    for arg in args:
        if arg == "--resume":
            folder = next(args, None)
        elif arg.startswith("--resume="):
            folder = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, folder


def _dev_logger(trainer, job) -> None:
    """The dev run's folder: `<name>-dev/version_<k>-per_prompt` beside the method's runs, not one of them."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from selfens.cli.lightning import next_version

    logger = trainer.logger
    if isinstance(logger, TensorBoardLogger):
        name = f"{logger.name}-dev"
        version = next_version(Path(logger.save_dir) / name, job.label())
        trainer.logger = TensorBoardLogger(logger.save_dir, name=name, version=version, default_hp_metric=False)


def _ids(data) -> list[str]:
    return [e.id for e in data.examples]


def _fit(job, dev, folder: Path):
    """The fit, from the finished dev run in `folder`."""
    from selfens.methods.fitting import Fit, count
    from selfens.run.resume import finished_rows

    rows = finished_rows(folder)
    facts, correct = count(rows, dev.num_paraphrases)
    identity = {"dataset": type(dev).__name__, "settings": dev.settings(), "examples": dev.examples_hash}
    return Fit(job.evaluation_identity(), dev.num_paraphrases, identity, [r["id"] for r in rows], facts, correct)


def _summary(fit, path: Path) -> str:
    """Where the fit is, on how many facts, and each phrasing's dev accuracy overall."""
    from selfens.methods.fitting import ALL

    n = fit.facts[ALL]
    shares = ", ".join(f"p{k + 1} {100 * c / n:.1f}%" for k, c in enumerate(fit.correct[ALL]))
    groups = len(fit.facts) - 1
    return f"selfens: fitted on {n} dev facts ({groups} groups): EM per phrasing {shares}; written to {path}"
