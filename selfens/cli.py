"""`selfens predict|test|validate --config ...` through LightningCLI, plus `selfens report DIR`."""

from __future__ import annotations

import sys
import warnings
from argparse import RawDescriptionHelpFormatter
from typing import Optional

from lightning.pytorch.cli import LightningCLI

from selfens.data.base import ParaphraseDataModule
from selfens.methods.base import EnsembleModule

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "lightning_logs", "name": "selfens", "default_hp_metric": False},
    },
    "enable_checkpointing": False,
}


DESCRIPTION = """selfens: does asking a model in several phrasings, and fusing, give better answers?

  selfens test --config configs/pararel/origin.yaml     evaluate (metrics, predictions, results.json)
  selfens predict --config ...                          decode only (predictions.jsonl)
  selfens validate --config ...                         like test, logged as val/
  selfens confidence --config configs/pararel/weighted_avg.yaml   cache a weighted method's confidences
  selfens mask --config configs/pararel/attention.yaml  draw the attention mask of an example
  selfens report lightning_logs/<name>                  one table over finished runs
  selfens test --config ... --resume lightning_logs/<name>/version_<k>   finish an interrupted run
"""


class SelfensCLI(LightningCLI):
    """LightningCLI in subclass mode: `model` is an EnsembleModule, `data` a ParaphraseDataModule."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        # Evaluation only: the methods have nothing to train.
        skip = {"model", "dataloaders", "datamodule"}
        return {"test": skip, "predict": skip, "validate": skip}

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--resume", type=Optional[str], default=None,
            help="A run folder (lightning_logs/<name>/version_<k>) of an interrupted run: its finished "
            "examples are kept (and counted in the metrics), only the rest are decoded.",
        )

    def _resume(self) -> None:
        folder = self.config[self.subcommand].get("resume")
        if folder:
            self.model.resume_from(folder)

    def before_test(self) -> None:
        self._resume()

    def before_predict(self) -> None:
        self._resume()

    def before_validate(self) -> None:
        self._resume()

    def init_parser(self, **kwargs):
        kwargs.setdefault("description", DESCRIPTION)
        kwargs.setdefault("formatter_class", RawDescriptionHelpFormatter)
        return super().init_parser(**kwargs)

def cli(args=None, run: bool = True) -> SelfensCLI:
    return SelfensCLI(
        EnsembleModule,
        ParaphraseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


COMMANDS = {
    "report": ("selfens.report", "main"),
    "confidence": ("selfens.confidence_command", "main"),
    "mask": ("selfens.mask_command", "main"),
}


def _quiet_known_warnings() -> None:
    # Lightning's own use of a deprecated torch API: not actionable by users.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # Metric values are logged after torchmetrics has synced them across processes.
    warnings.filterwarnings("ignore", message=r".*sync_dist=True.*")


def main(argv: list[str] | None = None) -> None:
    _quiet_known_warnings()
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        module, name = COMMANDS[args[0]]
        getattr(__import__(module, fromlist=[name]), name)(args[1:])
        return
    cli(argv)  # None: LightningCLI reads sys.argv itself
