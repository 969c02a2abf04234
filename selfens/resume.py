"""Resuming an interrupted run: the examples it finished are kept, the rest decoded.

A run streams each process's rows to `predictions.rank<k>.jsonl` as batches finish (and its
running cost to `cost.rank<k>.json`) and merges them into `predictions.jsonl` (and results.json)
at the end, so an interrupted run folder holds every finished example and what it cost.
"""

from __future__ import annotations

import json
from pathlib import Path

from selfens.errors import ConfigError


def finished_rows(folder: str | Path) -> list[dict]:
    """The rows of a run folder (merged or per-rank files), one per example index, in index order.

    A line cut short by a crash is dropped: that example is decoded again.
    """
    folder = Path(folder)
    files = sorted(folder.glob("predictions*.jsonl"))
    if not folder.is_dir() or not files:
        raise ConfigError(
            f"cannot resume from {folder}: no predictions*.jsonl there (expected a run folder such as "
            f"lightning_logs/<name>/version_<k>-<method>)"
        )
    return rows_by_index(files)


def rows_by_index(files: list[Path]) -> list[dict]:
    """The rows of JSONL files (later files win), one per `index`, in index order. A line cut short by
    a crash is dropped: that example is done again. Split at "\n" only: str.splitlines() would also cut
    at U+2028 or U+0085, which JSON leaves raw and a model may write."""
    rows: dict[int, dict] = {}
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").split("\n"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row["index"]] = row
    return [rows[i] for i in sorted(rows)]


def check_method(rows: list[dict], method: str, folder) -> None:
    """The rows must come from the same method."""
    for row in rows:
        if row["method"] != method:
            raise ConfigError(f"cannot resume from {folder}: it ran method {row['method']!r}, this run is {method!r}")


def check_ids(rows: list[dict], ids: list[str], folder) -> None:
    """The rows must come from the same data: their ids at the same positions."""
    for row in rows:
        if row["index"] >= len(ids) or ids[row["index"]] != row["id"]:
            raise ConfigError(
                f"cannot resume from {folder}: its example {row['index']} is {row['id']!r}, which is not "
                f"example {row['index']} of this run's data (different data, limit or seed?)"
            )


def finished_cost(folder: str | Path, names: tuple[str, ...]) -> dict[str, float]:
    """What the run in `folder` spent: its results.json's total if it finished, else the sum of its
    processes' last `cost.rank<k>.json` (written with each finished batch)."""
    folder = Path(folder)
    results = folder / "results.json"
    if results.exists():
        saved = json.loads(results.read_text(encoding="utf-8"))
        parts = [saved.get("total_cost", saved.get("cost", {}))]
    else:
        parts = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("cost.rank*.json"))]
    return {name: float(sum(part.get(name, 0.0) for part in parts)) for name in names}
