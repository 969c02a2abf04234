"""`selfens study --config configs/study/<name>.yaml`: a grid of models x methods x N over one data
section, run as ordinary `selfens test` runs, then one report.

1. Every cell is parsed by `selfens test`'s own parser before any model loads: a bad class or
   option, an unknown model or a cell named twice is one line (exit 2), and nothing is written.
2. Each model is loaded once and shared by all of its cells; each cell runs through Lightning
   with the study's trainer options (DDP and many GPUs as with `selfens test`) and writes an
   ordinary run folder, `<folder>/<model>/<method>-N<n>`.
3. A cell already finished with the same identity (`selfens.run.identity`) is skipped; one that
   was interrupted is resumed in its folder; one whose folder holds another run (the config
   changed) is refused by name, before that model's first cell runs.
4. At the end, `selfens report <folder>`: per model and dataset, each method against that
   model's origin, with intervals, McNemar's test and cost per fact (report.md/csv/json/tex, plots).
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from selfens.cli.report import main as report
from selfens.errors import ConfigError, SelfensError
from selfens.run.identity import RunIdentity, load_identity
from selfens.run.interrupt import Interrupted
from selfens.run.resume import finished_rows
from selfens.study.grid import Cell, Study, load_study

# Lightning and the models are imported where they are used: `selfens study --help`,
# and a study file with a mistake, are answered in a moment, without them.
if TYPE_CHECKING:
    from selfens.cli.lightning import SelfensCLI
    from selfens.model.language_model import LanguageModel
    from selfens.study.progress import StudyProgress


@dataclass
class Planned:
    """A cell with its method and data modules built (data set up) and what its folder holds."""

    cell: Cell
    cli: SelfensCLI
    folder: Path

    @property
    def facts(self) -> int:
        return len(self.cli.datamodule.examples)

    def state(self) -> str:
        """finished, interrupted (rows to keep) or new; a folder of another run is refused."""
        saved = load_identity(self.folder)
        has_rows = self.folder.is_dir() and bool(finished_rows_or_none(self.folder))
        if saved is None:
            if (self.folder / "results.json").exists() or has_rows:
                raise ConfigError(
                    f"cell {self.cell.title}: {self.folder} holds a run that records no identity (an older selfens): "
                    f"move it away, or use another study folder"
                )
            return "new"
        from selfens.methods.fitted import UsesFit

        if isinstance(self.cli.model, UsesFit):  # its identity names its fit: read it, where there is one
            self.cli.model.load_fit(self.cli.datamodule, needed=False)
        differ = saved.differences(RunIdentity.of(self.cli.model, self.cli.datamodule))
        if isinstance(self.cli.model, UsesFit) and self.cli.model.fit is None and differ:
            from selfens.methods.fitted import fit_path

            path = fit_path(self.cli.model, self.cli.datamodule, self.cli.model.hparams.fitted)
            raise ConfigError(
                f"cell {self.cell.title}: {self.folder} was run with a fit that is not at {path} (another "
                f"SELFENS_CACHE, or removed): set SELFENS_CACHE (or the method's fitted:) to where it was fitted, "
                f"or move that run away to fit and run it again"
            )
        if differ:
            raise ConfigError(
                f"cell {self.cell.title}: {self.folder} holds another run ({'; '.join(differ)}: its value first); "
                f"the study config changed: use another study folder, or move that run away"
            )
        if (self.folder / "results.json").exists():
            return "finished"
        return "interrupted" if has_rows else "new"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="selfens study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="a study config, e.g. configs/study/pararel.yaml")
    args, rest = parser.parse_known_args(argv)
    study = load_study(args.config, data_overrides(rest, parser))
    from lightning.pytorch.utilities import rank_zero_only

    from selfens.model.language_model import LanguageModel
    from selfens.study.progress import StudyProgress

    with _quiet():
        check_cells(study)
        models = {name: LanguageModel(name) for name in study.models}  # tokenizers now, weights per model
        plans = {name: plan(study, models[name]) for name in study.models}
        done = sum(_done(p) for ps in plans.values() for p in ps)
        progress = StudyProgress(len(study.cells), sum(p.facts for ps in plans.values() for p in ps), done)
        try:
            run_cells(plans, models, progress)
        except Interrupted as stop:  # a cell's folder and --resume are the study's to handle: run it again
            stop.folder, stop.done, stop.total = str(study.folder), None, None
            stop.resume = shlex.join(["selfens", "study", *argv])
            raise
    if rank_zero_only.rank == 0:  # under DDP every process runs the study; one writes its report
        report([str(study.folder)])


def run_cells(plans: dict[str, list[Planned]], models: dict, progress) -> None:
    k = 0
    for name, planned in plans.items():
        load(models[name], planned)
        states = [p.state() for p in planned]  # every cell of this model checked before one runs
        for p, state in zip(planned, states):
            k += 1
            if state == "finished":
                continue
            progress.start_cell(k, p.cell)
            run_cell(p, models[name], state == "interrupted", progress)
            progress.end_cell()


def _done(p: Planned) -> int:
    """The facts a cell has finished: all of a finished cell, the kept rows of an interrupted one."""
    return p.facts if (p.folder / "results.json").exists() else len(finished_rows_or_none(p.folder))


OVERRIDE = re.compile(r"--data\.init_args\.(\w+)(?:=(.*))?$")


def data_overrides(rest: list[str], parser: argparse.ArgumentParser) -> dict:
    """`--data.init_args.KEY VALUE` (or KEY=VALUE) pairs, values read as YAML (`5`, `null`), as `selfens
    test` takes them: every cell's data gets them, e.g. a small try of a shipped study."""
    overrides, k = {}, 0
    while k < len(rest):
        match = OVERRIDE.match(rest[k])
        if match is None:
            parser.error(
                f"unknown argument {rest[k]}: besides --config, a study takes data overrides (--data.init_args.KEY VALUE)"
            )
        key, value = match.group(1), match.group(2)
        if value is None:
            if k + 1 == len(rest):
                parser.error(f"{rest[k]} needs a value")
            value, k = rest[k + 1], k + 1
        overrides[key] = yaml.safe_load(value)
        k += 1
    return overrides


def check_cells(study: Study) -> None:
    """Parse every cell with `selfens test`'s parser (nothing is built or loaded)."""
    from selfens.cli.lightning import ParseOnlyCLI
    from selfens.model.registry import model_spec

    for model in study.models:
        try:
            model_spec(model)
        except SelfensError as error:
            raise ConfigError(f"{study.path}: {error}") from error
    for cell in study.cells:
        try:
            _build(["--config", yaml.safe_dump(cell.config)], run=False, cli_class=ParseOnlyCLI)
        except SelfensError as error:
            raise ConfigError(f"{study.path}: cell {cell.title}: {error}") from error


def plan(study: Study, lm: LanguageModel) -> list[Planned]:
    """Build each cell of `lm`'s model (sharing its tokenizer, and later its weights) and set up its
    data: what the study counts, and what a finished cell's identity is checked against."""
    from selfens.cli.lightning import connect
    from selfens.model.language_model import shared

    planned = []
    with shared(lm):
        for cell in (c for c in study.cells if c.model == lm.name):
            cli = _build(["--config", yaml.safe_dump(cell.config)], run=False)
            connect(cli.datamodule, cli.model)
            cli.datamodule.setup("test")
            planned.append(Planned(cell, cli, study.folder / cell.model_key / cell.name))
    return planned


def load(lm: LanguageModel, planned: list[Planned]) -> None:
    """Load the model's weights once, as its cells ask (they must agree on dtype and sharding)."""
    asked = {(p.cli.model.hparams.dtype, p.cli.model.hparams.device_map) for p in planned}
    if len(asked) > 1:
        raise ConfigError(
            f"the cells of {lm.name} ask for different dtype/device_map {sorted(asked, key=str)}: they share one "
            f"loaded model; set dtype (and device_map) in the study's defaults"
        )
    (dtype, device_map), first = asked.pop(), planned[0].cli
    trainer = first.trainer
    lm.load(
        dtype, first.model.hparams.attn_implementation, device_map, trainer.strategy.root_device, trainer.num_devices
    )


def run_cell(planned: Planned, lm: LanguageModel, resume: bool, progress: StudyProgress) -> None:
    """`selfens test` of one cell, in its own folder (resumed there if interrupted), on the shared model."""
    from selfens.methods.fitted import UsesFit
    from selfens.model.language_model import shared

    args = ["test", "--config", yaml.safe_dump(planned.cell.config), "--verbose", "false"]
    if resume:
        args += ["--resume", str(planned.folder)]
    with shared(lm):
        if isinstance(planned.cli.model, UsesFit):  # fitted first (a fit that exists is kept)
            fit_cell(planned)
        _build(args, callbacks=(progress,))


def fit_cell(planned: Planned) -> None:
    """`selfens fit` of a fitted method's cell: its dev run beside the study's folder (`<folder>-fit/`),
    not in it, so that the study's report holds only test runs."""
    from selfens.cli.fit import main as fit

    folder = planned.folder.parent.parent
    config = yaml.safe_dump(planned.cell.config)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        fit(["--config", config, "--trainer.logger.init_args.save_dir", f"{folder}-fit", *_FIT_QUIET])


_FIT_QUIET = ["--trainer.enable_progress_bar", "false"]


def finished_rows_or_none(folder: Path) -> list[dict]:
    try:
        return finished_rows(folder)
    except ConfigError:  # no predictions file there
        return []


def _build(args: list[str], **kwargs) -> SelfensCLI:
    """`build`, without LightningCLI's warning that sys.argv holds arguments too: it does (`selfens
    study ...`), and stays so (DDP's launcher starts the other processes with it: each runs the study)."""
    from selfens.cli.lightning import build

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return build(args, **kwargs)


@contextmanager
def _quiet():
    """Lightning's per-run notices (devices, seed, tips), once per cell, would bury the progress line;
    and selfens' own notes about the data, the same for many cells, are said once."""
    # Their modules first: Lightning sets its loggers' levels as it loads, and ours must exist to be filtered.
    import lightning.pytorch  # noqa: F401

    import selfens.data  # noqa: F401

    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    ours = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.startswith("selfens.")]
    once = _Once()
    for logger in ours:
        logger.addFilter(once)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        for logger in ours:
            logger.removeFilter(once)


class _Once(logging.Filter):
    """Lets each message through once."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True
