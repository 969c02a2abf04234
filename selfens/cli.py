"""The `selfens` command: `test|predict|validate --config ...` through LightningCLI, and the
`confidence`, `mask`, `paraphrase` and `report` commands beside it.

Expected failures (bad data, settings or options) print one line and exit with status 2; `--debug`
or SELFENS_DEBUG=1 shows the traceback instead.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import warnings
from argparse import RawDescriptionHelpFormatter
from pathlib import Path
from typing import Optional

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from selfens.data.base import ParaphraseDataModule
from selfens.errors import ConfigError, SelfensError
from selfens.methods.base import EnsembleModule
from selfens.writer import announce, run_label

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "lightning_logs", "name": "selfens", "default_hp_metric": False},
    },
    "enable_checkpointing": False,
}


# command -> (what it does, an example)
COMMAND_HELP = {
    "test": ("evaluate: metrics, predictions.jsonl, results.json", "selfens test --config configs/pararel/origin.yaml"),
    "predict": ("decode only: predictions.jsonl", "selfens predict --config configs/pararel/avg.yaml"),
    "validate": ("like test, logged as val/", "selfens validate --config configs/pararel/origin.yaml"),
    "confidence": (
        "compute and cache a weighted method's confidences",
        "selfens confidence --config configs/pararel/weighted_avg.yaml",
    ),
    "mask": ("draw the attention mask of one example", "selfens mask --config configs/pararel/attention.yaml"),
    "paraphrase": (
        "write a paraphrase file with a model",
        "selfens paraphrase --config configs/paraphrase/webquestions.yaml",
    ),
    "report": ("runs side by side: CIs, paired tests, md/csv/plots", "selfens report lightning_logs/<name>"),
    "ask": ("ask questions in several phrasings at a terminal", 'echo "q? || q2?" | selfens ask --config C'),
}

DESCRIPTION = """selfens: does asking a model in several phrasings, and fusing, give better answers?

  selfens test --config ... --resume lightning_logs/<name>/version_<k>-<method>   finish an interrupted run
"""


def usage() -> str:
    width = max(map(len, COMMAND_HELP))
    lines = [
        "usage: selfens COMMAND [options]      (selfens COMMAND --help: the options of a command)",
        "",
        "Does asking a model in several phrasings, and fusing what it says, give better answers?",
        "",
        "commands:",
        *(f"  {name.ljust(width)}  {what:<52} {example}" for name, (what, example) in COMMAND_HELP.items()),
        "",
        "  --resume lightning_logs/<name>/version_<k>-<method>   (test/predict/validate) finish an interrupted run",
        "  --debug                                      show the traceback of an error (or SELFENS_DEBUG=1)",
    ]
    return "\n".join(lines)


class OptionError(SelfensError):
    """An option or config key that the parser rejects."""


class SelfensParser(LightningArgumentParser):
    """Parse errors as one line with the closest valid option, not pages of usage."""

    def error(self, message: str, ex: Exception | None = None):
        raise OptionError(explain_parse_error(message, self)) from ex


def explain_parse_error(message: str, parser) -> str:
    """The gist of a jsonargparse error, with the closest valid name to a misspelled one."""
    own = [s for a in parser._actions for s in a.option_strings]
    unknown = re.search(r"nrecognized arguments: (\S+)", message)
    if unknown:
        return f"unknown option {unknown.group(1)}" + _closest(unknown.group(1), own)
    not_accepted = re.search(r"(?:Option|Key) ['\"]([^'\"]+)['\"] is not (?:accepted|expected)", message)
    if not_accepted:  # raised inside the parser of one class's init_args, which knows its options
        name = not_accepted.group(1).split(".")[-1]
        return f"unknown option {name!r}" + _closest(name, [o.lstrip("-").split(".")[-1] for o in own])
    invalid = re.search(r"invalid choice: '([^']+)'", message)
    if invalid:
        return (
            f"unknown command {invalid.group(1)!r}"
            + _closest(invalid.group(1), list(COMMAND_HELP))
            + " (selfens --help lists them)"
        )
    key = re.match(r'Parser key "([^"]+)":\s*(.*)', message, re.S)
    if key:  # a bad value; nested parsers wrap an inner one's (already explained) reason in "- ..."
        name, body = key.groups()
        reasons = [r for r in re.findall(r"^\s*- (.*)$", body, re.M) if "NoneType" not in r]
        reason = reasons[0] if reasons else body.strip().splitlines()[0]
        given = re.search(r"Given value: (.*)", body) or re.search(r"Got value: (.*)", body)
        if reason.startswith("Expected a"):
            reason = reason.replace("typing.", "").replace("<class '", "").replace("'>", "")
            reason = re.sub(r"\. Got value: .*", "", reason).replace("Expected a ", "expected ")
            reason += f", got {given.group(1).strip()!r}" if given else ""
        inner = re.match(r"([\w.]+): (.*)", reason, re.S)
        return (
            f"{name}.{inner.group(1)}: {inner.group(2)}" if inner and " " not in inner.group(1) else f"{name}: {reason}"
        )
    return " ".join(line.strip() for line in message.strip().splitlines()[:2])


def _closest(name: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


class SelfensCLI(LightningCLI):
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

        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, TypeError, ValueError) as error:
            raise ConfigError(f"trainer: {error}") from error
        name_version(trainer.logger, run_label(self.model))
        return trainer

    def _prepare(self) -> None:
        """Hand the data module its tokenizer, record the prompt settings it resolved (config.yaml is
        written later, at setup), and resume if asked."""
        self.datamodule.connect(self.model.tokenizer, self.model.model_name, self.model.prompt_limit())
        init_args = self.config[self.subcommand]["data"]["init_args"]
        for name, value in self.datamodule.resolved_settings().items():
            init_args[name] = value
        folder = self.config[self.subcommand].get("resume")
        if folder:
            self.model.resume_from(folder)
            self.datamodule.skip_finished(self.model.resumed_rows, folder)
            self.datamodule.setup(self.subcommand)  # (kept for the run) to count what is left
            if len(self.model.resumed_rows) >= len(self.datamodule.examples):
                raise ConfigError(
                    f"nothing to resume: {folder} has all {len(self.datamodule.examples)} examples already; "
                    f"run without --resume to evaluate them again"
                )

    def _announce(self) -> None:
        folder = Path(self.trainer.log_dir or ".")  # every rank: log_dir is a collective call
        if self.trainer.is_global_zero:
            announce(folder)

    def before_test(self) -> None:
        self._prepare()

    def before_predict(self) -> None:
        self._prepare()

    def before_validate(self) -> None:
        self._prepare()

    # After Lightning's own metrics table, so that the folder is the last line a user sees.
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


def name_version(logger, label: str) -> None:
    """Name a new run folder `version_<k>-<label>` (e.g. version_2-avg), so that TensorBoard's run
    list says which method each run is; k counts on from the folders there."""
    if not isinstance(logger, TensorBoardLogger) or logger._version is not None:
        return  # another logger, or a version set in the config
    numbers = [int(m.group(1)) for p in Path(logger.root_dir).glob("version_*") if (m := _VERSION.match(p.name))]
    logger._version = f"version_{max(numbers, default=-1) + 1}-{label}"


_VERSION = re.compile(r"version_(\d+)")


def cli(args=None, run: bool = True) -> SelfensCLI:
    return SelfensCLI(
        EnsembleModule,
        ParaphraseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        parser_class=SelfensParser,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


COMMANDS = {
    "report": ("selfens.report", "main"),
    "ask": ("selfens.ask", "main"),
    "confidence": ("selfens.confidence_command", "main"),
    "mask": ("selfens.mask_command", "main"),
    "paraphrase": ("selfens.paraphrase.command", "main"),
}


def _quiet_known_warnings() -> None:
    # Lightning's own use of a deprecated torch API: not actionable by users.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # Metric values are logged after torchmetrics has synced them across processes.
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")


def main(argv: list[str] | None = None) -> None:
    _quiet_known_warnings()
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SELFENS_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != "--debug"]
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return
    try:
        if args[0] in COMMANDS:
            module, name = COMMANDS[args[0]]
            getattr(__import__(module, fromlist=[name]), name)(args[1:])
        elif argv is None:
            sys.argv[1:] = args  # LightningCLI reads sys.argv itself
            cli()
        else:
            cli(args)
        _leave_process_group()
    except Exception as error:
        expected = _expected(error)
        if expected is None or debug:
            raise
        print(f"selfens: error: {expected}", file=sys.stderr)
        raise SystemExit(2) from None


def _leave_process_group() -> None:
    """End a finished multi-process run's process group while the interpreter is whole: gloo's worker
    threads, still alive at interpreter exit, can abort a run that has written everything
    ("terminate called without an active exception", exit -6). Only on success: a rank that failed
    may leave others inside a collective, which destroying the group would hang."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _expected(error: BaseException | None) -> SelfensError | None:
    """The SelfensError behind an error, if any (jsonargparse wraps what a class's __init__ raises)."""
    while error is not None and not isinstance(error, SelfensError):
        error = error.__cause__ or error.__context__
    return error
