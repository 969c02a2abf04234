"""Each command imports what it needs when it needs it: `selfens --help`, `selfens report --help`,
`selfens study --help` and `selfens confidence --help` start without torch, Lightning, spaCy, datasets or matplotlib;
`selfens ask --help` without Lightning or a model; and `selfens report` reads runs without
Lightning, torchmetrics or transformers.

Each check runs the command in a fresh interpreter (so all are marked slow) and reads
`sys.modules` after it: what a command imported, not how long it took."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ORIGIN, ROOT, run_config

pytestmark = pytest.mark.slow


# The command, then the modules it imported, one JSON list on the last line of stdout.
PROBE = """
import json, sys
from selfens.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""

HEAVY = ("lightning", "torchmetrics", "transformers", "spacy", "datasets", "matplotlib", "tensorboard")
OTHER_COMMANDS = (
    "selfens.cli.lightning",
    "selfens.cli.report",
    "selfens.cli.study",
    "selfens.cli.run",
    "selfens.cli.paraphrase",
    "selfens.report",
    "selfens.study",
    "selfens.paraphrase",
)


def imported(*args) -> set[str]:
    """The modules loaded by `selfens ARGS` in a fresh interpreter (stdin empty, not a terminal)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, args)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def loaded(modules: set[str], names) -> list[str]:
    """Those of `names` (packages: any of their submodules too) that `modules` holds."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_top_level_help_imports_no_command():
    assert loaded(imported("--help"), ("torch", "questionary", *HEAVY, *OTHER_COMMANDS)) == []


@pytest.mark.parametrize("command", ["report", "study"])
def test_help_of_a_command_without_lightning_options_imports_nothing_heavy(command):
    modules = imported(command, "--help")
    assert f"selfens.cli.{command}" in modules  # the probe saw the command run
    assert loaded(modules, ("torch", *HEAVY)) == []


def test_confidence_help_imports_nothing_heavy():
    modules = imported("confidence", "--help")
    assert "selfens.cli.confidence" in modules
    assert loaded(modules, ("torch", *HEAVY, "selfens.cli.lightning", "selfens.methods")) == []


def test_ask_help_does_not_load_torch_lightning_or_a_model():
    modules = imported("ask", "--help")
    assert "selfens.cli.ask" in modules
    assert loaded(modules, ("torch", *HEAVY, "selfens.cli.lightning", "selfens.methods")) == []


def test_report_reads_runs_without_lightning(tiny_model_path, tmp_path):
    folder = run_config(ORIGIN, tiny_model_path, tmp_path / "logs", "test")
    modules = imported("report", folder, "--out", tmp_path / "report", "--resamples", 20)
    assert (tmp_path / "report" / "report.md").exists()
    # What a report needs is loaded (the bootstrap, the plots, TensorBoard's writer) ...
    assert loaded(modules, ("torch", "matplotlib", "tensorboard")) == ["torch", "matplotlib", "tensorboard"]
    # ... and what only a run needs is not.
    assert loaded(modules, ("lightning", "torchmetrics", "transformers", "spacy", "datasets")) == []
