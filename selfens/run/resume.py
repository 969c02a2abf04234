"""Resuming an interrupted run: the examples it finished are kept, the rest decoded.

A run folder holds every finished example (each process streams its rows as batches finish) and
what it cost, so a `Resume` of it is handed to the method (which scores and counts the kept rows,
and carries their cost) and to the data module (which leaves those examples out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from selfens.errors import ConfigError
from selfens.run.cost import RunCost
from selfens.run.files import rows_by_index
from selfens.run.identity import RunIdentity, _as_saved, differences, load_identity


@dataclass
class Resume:
    folder: str
    rows: list[dict]  # the finished examples' predictions.jsonl rows, in index order
    cost: RunCost  # what the interrupted run spent on them
    skipped: list[str] = field(default_factory=list)  # `file:line` of lines that could not be read
    # This run's options (`data.limit` -> 20) and command, to say which differ from the folder's config.yaml.
    options: dict = field(default_factory=dict)
    stage: str = "test"

    @classmethod
    def load(cls, folder: str | Path) -> Resume:
        skipped: list[str] = []
        rows = finished_rows(folder, skipped)
        return cls(str(folder), rows, finished_cost(folder), skipped)

    def warnings(self) -> list[str]:
        """What the resumed run left out: its unreadable lines (their examples are decoded again)."""
        if not self.skipped:
            return []
        return [
            f"resuming from {self.folder}: {len(self.skipped)} unreadable line(s) skipped ({', '.join(self.skipped)}; "
            f"cut short by a crash, or malformed); their examples were decoded again"
        ]

    def check_identity(self, identity: RunIdentity) -> None:
        """The folder must hold a run of the same evaluation and method: its rows are merged into
        this run's metrics. Each differing field is named, with both values."""
        self._refuse(self._saved().differences(identity))

    def check_data(self, data) -> None:
        """The data module's share of the identity (examples, prompting, N, paraphrases), checked as
        soon as the data is set up: a run on other data, or with another num_paraphrases, is refused
        before the run starts (`check_identity` checks the whole once the model is loaded)."""
        saved = self._saved()
        ours = RunIdentity.from_dict(
            _as_saved({"evaluation": data.evaluation_identity(), "method": data.method_identity()})
        )
        theirs = RunIdentity(
            {k: saved.evaluation.get(k) for k in ours.evaluation}, {k: saved.method.get(k) for k in ours.method}
        )
        self._refuse(theirs.differences(ours))

    def _saved(self) -> RunIdentity:
        try:
            saved = load_identity(Path(self.folder))
        except json.JSONDecodeError as error:
            raise ConfigError(
                f"cannot resume from {self.folder}: its results.json or identity.json is not valid JSON ({error}); "
                f"start a new run"
            ) from None
        if saved is None:
            raise ConfigError(
                f"cannot resume from {self.folder}: it records no run identity (identity.json or results.json "
                f"'identity'; written by an older selfens), so it cannot be checked to be this same run: start a new run"
            )
        return saved

    def _refuse(self, differ: list[str]) -> None:
        if differ:
            options = differences(saved_options(Path(self.folder)), self.options) if self.options else []
            said = f"; the options that differ: {'; '.join(options)}" if options else ""
            config = Path(self.folder) / "config.yaml"
            again = (
                f"selfens {self.stage} --config {config} --resume {self.folder}" if config.exists() else "its config"
            )
            raise ConfigError(
                f"cannot resume from {self.folder}: it is another run ({'; '.join(differ)}: its value first){said}. "
                f"Resume with the settings it ran with ({again}), or start a new run"
            )

    def check_ids(self, ids: list[str]) -> None:
        """The rows must come from the same data: their ids at the same positions (for files that
        record no identity, e.g. `selfens paraphrase`'s output)."""
        for row in self.rows:
            if row["index"] >= len(ids) or ids[row["index"]] != row["id"]:
                raise ConfigError(
                    f"cannot resume from {self.folder}: its example {row['index']} is {row['id']!r}, which is not "
                    f"example {row['index']} of this run's data (different data, limit or seed?)"
                )

    @property
    def done(self) -> set[int]:
        """The indices of the finished examples."""
        return {row["index"] for row in self.rows}


def finished_rows(folder: str | Path, skipped: Optional[list[str]] = None) -> list[dict]:
    """The rows of a run folder (merged or per-rank files), one per example index, in index order.
    A line cut short by a crash is dropped (and added to `skipped`): that example is decoded again."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            f"cannot resume from {folder}: no such folder (a run folder is lightning_logs/<name>/version_<k>-<method>)"
        )
    files = sorted(folder.glob("predictions*.jsonl"))
    if not files:
        raise ConfigError(
            f"cannot resume from {folder}: no predictions*.jsonl there (expected a run folder such as "
            f"lightning_logs/<name>/version_<k>-<method>)"
        )
    return rows_by_index(files, skipped)


def saved_options(folder: Path) -> dict:
    """The model's and data's options a run folder's config.yaml records (`data.limit` -> 40); {} without one."""
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        return run_options(config)
    except (OSError, yaml.YAMLError, AttributeError, TypeError):
        return {}


def run_options(config: dict) -> dict:
    """`data.limit` -> 40, ... from a run's config (its model and data init_args)."""
    return {
        f"{part}.{key}": value
        for part in ("model", "data")
        for key, value in ((config.get(part) or {}).get("init_args") or {}).items()
    }


def finished_cost(folder: str | Path) -> RunCost:
    """What the run in `folder` spent: its results.json's total if it finished, else the sum of its
    processes' last `cost.rank<k>.json` (rewritten with each finished batch)."""
    folder = Path(folder)
    results = folder / "results.json"
    if results.exists():
        saved = _read_json(results)
        return RunCost.from_dict(saved.get("total_cost", saved.get("cost", {})))
    total = RunCost()
    for path in sorted(folder.glob("cost.rank*.json")):
        total = total + RunCost.from_dict(_read_json(path))
    return total


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"cannot resume from {path.parent}: {path.name} is not valid JSON ({error}); start a new run"
        ) from None
