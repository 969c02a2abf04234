"""`selfens predict|test|validate --config ...` through LightningCLI, plus `selfens report DIR`."""

from __future__ import annotations

import sys

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


class SelfensCLI(LightningCLI):
    """LightningCLI in subclass mode: `model` is an EnsembleModule, `data` a ParaphraseDataModule."""

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
}


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        module, name = COMMANDS[args[0]]
        getattr(__import__(module, fromlist=[name]), name)(args[1:])
        return
    cli(argv)  # None: LightningCLI reads sys.argv itself
