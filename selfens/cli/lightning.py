"""The one place that builds a run from a config: LightningCLI parses it, the data module is
connected to the method's tokenizer, a resumed run is handed to both, and the run writer is
attached. `selfens test|predict|validate` and the other commands (`confidence`, `mask`, `ask`,
`paraphrase`) all start here.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from argparse import RawDescriptionHelpFormatter
from pathlib import Path
from typing import Optional

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from selfens.cli.parse_errors import explain_parse_error
from selfens.data.base import ParaphraseDataModule
from selfens.errors import ConfigError, SelfensError
from selfens.methods.base import EnsembleModule
from selfens.run.resume import Resume, run_options
from selfens.run.writer import RunWriter, announce, new_folders

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "lightning_logs", "name": "selfens", "default_hp_metric": False},
    },
    "enable_checkpointing": False,
}

DESCRIPTION = """selfens: does asking a model in several phrasings, and fusing, give better answers?

  selfens test --config ... --resume lightning_logs/<name>/version_<k>-<method>   finish an interrupted run
"""


class OptionError(SelfensError):
    """An option or config key that the parser rejects."""


class SelfensParser(LightningArgumentParser):
    """Parse errors as one line with the closest valid option, not pages of usage."""

    def error(self, message: str, ex: Exception | None = None):
        raise OptionError(explain_parse_error(message, self)) from ex


class BaseCLI(LightningCLI):
    """What every selfens LightningCLI does (a run's `SelfensCLI`, another job's: `build_job`): it reads
    only the arguments handed in, and its trainer starts without Lightning's adverts, with a warning
    when it asks for more CPU processes than there are cores."""

    def parse_arguments(self, parser, args) -> None:
        quiet_lightning()  # before the seed is set: its line is part of the banner
        # `selfens mask ...` hands in what follows the command name: Lightning's warning that
        # sys.argv holds arguments too does not apply, so it is not given the chance.
        argv = sys.argv
        if args is not None:
            sys.argv = argv[:1]
        try:
            super().parse_arguments(parser, args)
        finally:
            sys.argv = argv

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        warning = cpu_oversubscribed(trainer.accelerator, trainer.num_devices, cpu_cores())
        if warning and rank_zero_only.rank == 0:
            print(f"selfens: warning: {warning}", file=sys.stderr)
        return trainer


class SelfensCLI(BaseCLI):
    """LightningCLI in subclass mode: `model` is an EnsembleModule, `data` a ParaphraseDataModule."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # Evaluation only: the methods have nothing to train.
        skip = {"model", "dataloaders", "datamodule"}
        return {"test": skip, "predict": skip, "validate": skip}

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--resume",
            type=Optional[str],
            default=None,
            help="A run folder (lightning_logs/<name>/version_<k>-<method>) of an interrupted run: its finished "
            "examples are kept (and counted in the metrics), only the rest are decoded.",
        )

    def instantiate_trainer(self, **kwargs):
        # Lightning checks trainer options (devices, strategy, ...) when it builds the Trainer.
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        section = self.config[self.subcommand] if self.subcommand else self.config
        logger = named_logger(config["trainer"].get("logger"), section.trainer.logger, self.model)
        if getattr(logger, "root_dir", None):
            check_writable(Path(logger.root_dir))
        config["trainer"]["logger"] = logger
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, TypeError, ValueError) as error:
            raise ConfigError(f"trainer: {error}") from error

    def _prepare(self) -> None:
        """Connect the data module, record the prompt settings it resolved (config.yaml is written
        later, at setup), resume if asked, and attach the run writer."""
        connect(self.datamodule, self.model)
        init_args = self.config[self.subcommand]["data"]["init_args"]
        for name, value in self.datamodule.resolved_settings().items():
            init_args[name] = value
        section = self.config[self.subcommand]
        resume = resume_from(
            section.get("resume"), self.subcommand, run_options(section.as_dict()), self.model, self.datamodule
        )
        self.trainer.callbacks.append(RunWriter(self.datamodule, resume, new_folders(self.trainer.log_dir)))

    def _announce(self) -> None:
        folder = Path(self.trainer.log_dir or ".")  # every rank: log_dir is a collective call
        if self.trainer.is_global_zero:
            if self.subcommand != "predict" and self.config_init[self.subcommand].get("verbose", True):
                print(metrics_table(folder))
            announce(folder)

    # The metrics are printed as the report prints them (percent, intervals; `--verbose false`: not at
    # all), not as Lightning's table.
    def test(self, **kwargs) -> None:
        self.trainer.test(**{**kwargs, "verbose": False})

    def validate(self, **kwargs) -> None:
        self.trainer.validate(**{**kwargs, "verbose": False})

    def before_test(self) -> None:
        self._prepare()

    def before_predict(self) -> None:
        self._prepare()

    def before_validate(self) -> None:
        self._prepare()

    # The metrics, then the folder: the last line a user sees.
    def after_test(self) -> None:
        self._announce()

    def after_predict(self) -> None:
        self._announce()

    def after_validate(self) -> None:
        self._announce()

    def init_parser(self, **kwargs):
        kwargs.setdefault("description", DESCRIPTION)
        kwargs.setdefault("formatter_class", RawDescriptionHelpFormatter)
        return super().init_parser(**kwargs)


class ParseOnlyCLI(SelfensCLI):
    """Parses a config as `selfens test` would, and builds nothing (`selfens study` checks its cells so)."""

    def instantiate_classes(self) -> None:
        pass

    def after_instantiate_classes(self) -> None:
        pass


def resume_from(folder: Optional[str], stage: str, options: dict, module, data) -> Optional[Resume]:
    """The interrupted run in `folder` (None: none), handed to the method and data modules so that
    only the rest is decoded; the data is set up (kept for the run) and checked against it now, the
    whole identity (the model's too) by the run writer before decoding. `stage` and `options` name
    the command that resumes it in a refusal."""
    if not folder:
        return None
    resume = Resume.load(folder)
    resume.stage, resume.options = stage, options
    module.resume(resume)
    data.resume(resume)
    data.setup(stage)  # to count what is left
    resume.check_data(data)
    if len(resume.rows) >= len(data.examples):  # Lightning would run no hook at all
        raise ConfigError(
            f"nothing to resume: {folder} has all {len(data.examples)} examples already; "
            f"run without --resume to evaluate them again"
        )
    return resume


def named_logger(logger, config, module):
    """A TensorBoard logger whose new run folder is `version_<k>-<label>` (e.g. version_2-avg), so
    that TensorBoard's run list says which method each run is; k counts on from the folders there.
    Another logger, or a version set in the config, is kept as it is."""
    if not isinstance(logger, TensorBoardLogger) or config.init_args.get("version") is not None:
        return logger
    return type(logger)(**{**config.init_args.as_dict(), "version": next_version(logger.root_dir, module.label())})


def next_version(root: str | Path, label: str) -> str:
    """`version_<k>-<label>`, k counting on from the run folders in `root`."""
    numbers = [int(m.group(1)) for p in Path(root).glob("version_*") if (m := _VERSION.match(p.name))]
    return f"version_{max(numbers, default=-1) + 1}-{label}"


_VERSION = re.compile(r"version_(\d+)")


def check_writable(folder: Path) -> None:
    """Refuse a folder that runs cannot be written to (read-only, immutable, full, under a file) before
    anything loads: where it exists, a byte is written in it; where not, in the nearest folder above."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        with tempfile.TemporaryFile(dir=probe) as written:
            written.write(b"0")
            written.flush()
    except OSError as error:
        raise ConfigError(
            f"cannot write runs to {folder}: {error.strerror or error} ({probe}); set "
            f"trainer.logger.init_args.save_dir to a folder you can write to"
        ) from None


def metrics_table(folder: Path) -> str:
    """A finished run's views as `selfens report` prints them: EM with its interval, F1, lemma (%)."""
    from selfens.report.compare import view_rows
    from selfens.report.load import collect
    from selfens.report.terminal import run_labels, terminal_width, view_table

    runs = collect([str(folder)])
    return view_table(view_rows(runs, [], 1000, 0), [], run_labels(runs), terminal_width())


def quiet_lightning() -> None:
    """Keep Lightning's banner (the seed; which accelerators exist, where none is used) and its tips
    for its cloud services out of every run's output, so that a run's first lines are selfens's and
    an error is the only line; its other messages pass."""
    from lightning_utilities.core import rank_zero

    for log in (rank_zero.log, logging.getLogger("lightning.fabric.utilities.seed")):
        if _not_banner not in log.filters:
            log.addFilter(_not_banner)


_BANNER = re.compile(r"(\[rank: \d+\] )?Seed set to |GPU available: False|TPU available: False|HPU available: False")


def _not_banner(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    advert = message.startswith("💡 Tip:") and ("litlogger" in message or "litmodels" in message)
    return not (advert or _BANNER.match(message))


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_oversubscribed(accelerator, devices: int, cores: int) -> Optional[str]:
    """A warning when more CPU processes are asked for than there are cores: they share the cores, so
    the run is slower, not faster. None on other accelerators, or when they fit."""
    from lightning.pytorch.accelerators import CPUAccelerator

    if not isinstance(accelerator, CPUAccelerator) or devices <= cores:
        return None
    return (
        f"trainer.devices {devices} runs {devices} CPU processes, but this machine has {cores} CPU core(s) for them: "
        f"they share the cores and the run is slower, not faster; use devices: {cores} or fewer"
    )


def connect(data: ParaphraseDataModule, module) -> None:
    """Hand the data module what it learns only from the module: the tokenizer, the model (for its
    prompt defaults) and how long a prompt the method can read."""
    data.connect(module.tokenizer, module.model_name, module.prompt_limit())


def build(args: list[str] | None = None, run: bool = True, callbacks: tuple = (), cli_class: type = None) -> SelfensCLI:
    """Parse a method config (and run it, with `run`); `args` None reads sys.argv. `callbacks` join
    the trainer's (e.g. a study's progress); `cli_class`: a SelfensCLI subclass."""
    return (cli_class or SelfensCLI)(
        EnsembleModule,
        ParaphraseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults={**TRAINER_DEFAULTS, "callbacks": list(callbacks)},
        parser_class=SelfensParser,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def build_job(module_class, args: list[str], description: str | None = None, **kwargs) -> LightningCLI:
    """Parse (not run) the config of another kind of job on the same data modules, e.g. `selfens
    paraphrase`'s: `model:` is a `module_class`, `data:` a ParaphraseDataModule."""
    return BaseCLI(
        module_class,
        ParaphraseDataModule,
        subclass_mode_data=True,
        parser_class=SelfensParser,
        parser_kwargs={"description": description} if description else None,
        save_config_callback=None,
        args=args,
        run=False,
        **kwargs,
    )


def run_lightning(args: list[str] | None) -> None:
    """`selfens test|predict|validate ...`; None: from sys.argv (LightningCLI reads it itself)."""
    build(args)
