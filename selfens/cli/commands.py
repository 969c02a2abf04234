"""The table of `selfens` commands: name -> entry point, what it does, an example. The CLI, its
`--help` and the tests read it; entry points are imported only when their command runs."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Command:
    entry: str  # "module:function", called with the command's arguments
    help: str
    example: str


# Lightning's own subcommands: the entry point gets the subcommand name first.
LIGHTNING = "selfens.cli.lightning:run_lightning"

COMMANDS: dict[str, Command] = {
    "run": Command(
        "selfens.cli.run:main",
        "choose data, methods and model step by step; run",
        "selfens run   (or just selfens, on a terminal)",
    ),
    "test": Command(
        LIGHTNING,
        "evaluate: metrics, predictions.jsonl, results.json",
        "selfens test --config configs/pararel/origin.yaml",
    ),
    "predict": Command(
        LIGHTNING, "decode only: predictions.jsonl", "selfens predict --config configs/pararel/avg.yaml"
    ),
    "validate": Command(
        LIGHTNING, "like test, logged as val/", "selfens validate --config configs/pararel/origin.yaml"
    ),
    "confidence": Command(
        "selfens.cli.confidence:main",
        "compute and cache a weighted method's confidences",
        "selfens confidence --config configs/pararel/weighted_avg.yaml",
    ),
    "fit": Command(
        "selfens.cli.fit:main",
        "fit best phrasing and weights on a dev split",
        "selfens fit --config configs/pararel/fitted_weighted.yaml",
    ),
    "mask": Command(
        "selfens.cli.mask:main",
        "draw the attention mask of one example",
        "selfens mask --config configs/pararel/attention.yaml",
    ),
    "paraphrase": Command(
        "selfens.cli.paraphrase:main",
        "write a paraphrase file with a model",
        "selfens paraphrase --config configs/paraphrase/webquestions.yaml",
    ),
    "lm-eval": Command(
        "selfens.cli.lm_eval:main",
        "lm-evaluation-harness tasks, fused over phrasings",
        "selfens lm-eval --tasks selfens_capitals --method avg --paraphrases F",
    ),
    "report": Command(
        "selfens.cli.report:main",
        "runs side by side: CIs, paired tests, md/csv/plots",
        "selfens report lightning_logs/<name>",
    ),
    "study": Command(
        "selfens.cli.study:main",
        "a grid of models x methods x N, then one report",
        "selfens study --config configs/study/pararel.yaml",
    ),
    "ask": Command(
        "selfens.cli.ask:main",
        "ask questions in several phrasings at a terminal",
        'echo "q? || q2?" | selfens ask --config C',
    ),
}


def entry_point(name: str) -> Callable[[list[str]], None]:
    """The function that runs command `name` (its module imported now)."""
    module, function = COMMANDS[name].entry.split(":")
    return getattr(importlib.import_module(module), function)
