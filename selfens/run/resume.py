"""Resuming an interrupted run: the examples it finished are kept, the rest decoded.

A run folder holds every finished example (each process streams its rows as batches finish) and
what it cost, so a `Resume` of it is handed to the method (which scores and counts the kept rows,
and carries their cost) and to the data module (which leaves those examples out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from selfens.errors import ConfigError
from selfens.run.cost import RunCost
from selfens.run.files import rows_by_index


@dataclass
class Resume:
    folder: str
    rows: list[dict]  # the finished examples' predictions.jsonl rows, in index order
    cost: RunCost  # what the interrupted run spent on them

    @classmethod
    def load(cls, folder: str | Path) -> Resume:
        return cls(str(folder), finished_rows(folder), finished_cost(folder))

    def check_method(self, method: str) -> None:
        """The rows must come from the same method."""
        for row in self.rows:
            if row["method"] != method:
                raise ConfigError(
                    f"cannot resume from {self.folder}: it ran method {row['method']!r}, this run is {method!r}"
                )

    def check_ids(self, ids: list[str]) -> None:
        """The rows must come from the same data: their ids at the same positions."""
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


def finished_rows(folder: str | Path) -> list[dict]:
    """The rows of a run folder (merged or per-rank files), one per example index, in index order.
    A line cut short by a crash is dropped: that example is decoded again."""
    folder = Path(folder)
    files = sorted(folder.glob("predictions*.jsonl"))
    if not folder.is_dir() or not files:
        raise ConfigError(
            f"cannot resume from {folder}: no predictions*.jsonl there (expected a run folder such as "
            f"lightning_logs/<name>/version_<k>-<method>)"
        )
    return rows_by_index(files)


def finished_cost(folder: str | Path) -> RunCost:
    """What the run in `folder` spent: its results.json's total if it finished, else the sum of its
    processes' last `cost.rank<k>.json` (rewritten with each finished batch)."""
    folder = Path(folder)
    results = folder / "results.json"
    if results.exists():
        saved = json.loads(results.read_text(encoding="utf-8"))
        return RunCost.from_dict(saved.get("total_cost", saved.get("cost", {})))
    total = RunCost()
    for path in sorted(folder.glob("cost.rank*.json")):
        total = total + RunCost.from_dict(json.loads(path.read_text(encoding="utf-8")))
    return total
