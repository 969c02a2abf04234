"""A finished run as the report reads it: its results.json and its scored predictions.jsonl."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator, Optional

from selfens.errors import SelfensError
from selfens.metrics.functional import METRICS  # not views: that imports torchmetrics
from selfens.run.cost import RunCost
from selfens.run.identity import RunIdentity


class ReportError(SelfensError):
    """Runs that cannot be reported or compared as asked."""


@dataclass
class Run:
    folder: Path
    results: dict
    rows: list[dict]  # predictions.jsonl, scored

    @property
    def name(self) -> str:
        """`<logger name>/version_<k>` (the method and its settings have columns of their own), or
        `<model>/<cell>` for a study's cell."""
        own = self.folder.name.split("-", 1)[0] if self.folder.name.startswith("version_") else self.folder.name
        return f"{self.folder.parent.name}/{own}"

    @property
    def model(self) -> str:
        """The model's name (the last part of its path, for a local model)."""
        return Path(self.results["model"]).name

    @property
    def method(self) -> str:
        return self.results["method"]

    @property
    def main_view(self) -> str:
        # Runs written before results.json named it: the method's own view, or per_prompt's first (majority).
        views = self.views()
        return self.results.get("main_view") or (self.method if self.method in views else views[0])

    @property
    def label(self) -> str:
        """The method and its key settings, as the run recorded them."""
        return _label_and_settings(self.results)[0]

    @property
    def method_settings(self) -> dict:
        """The settings of the run's method that apply to it, e.g. `{"fusion": "avg"}`."""
        return _label_and_settings(self.results)[1]

    @property
    def settings(self) -> dict:
        """Everything that tells the run apart (model, data, N, shots, prompt, method settings)."""
        return self.results.get("settings", {})

    @property
    def identity(self) -> Optional[RunIdentity]:
        """What the run evaluated and how (None for results.json written before runs recorded it)."""
        saved = self.results.get("identity")
        return RunIdentity.from_dict(saved) if saved else None

    @property
    def cost(self) -> RunCost:
        """What the run spent, the run it resumed included."""
        return RunCost.from_dict(self.results.get("total_cost", self.results.get("cost", {})))

    def views(self) -> list[str]:
        return list(self.rows[0]["scores"]) if self.rows else []

    def scores(self, view: str, ids: list[str] | None = None) -> dict[str, list[float]]:
        """Per metric: the per-example scores of a view, in row order or in the order of `ids`."""
        rows = self.rows if ids is None else [self.by_id[i] for i in ids]
        return {m: [r["scores"][view][m] for r in rows] for m in METRICS}

    @cached_property
    def by_id(self) -> dict[str, dict]:
        """Rows by example id (built once: comparisons look every example up)."""
        return {r["id"]: r for r in self.rows}


def _label_and_settings(results: dict) -> tuple[str, dict]:
    """The run's label and method settings; results.json files written before it recorded them get
    both derived from its settings, as reports of those runs always showed them."""
    if "label" in results and "method_settings" in results:
        return results["label"], results["method_settings"]
    settings, method = results.get("settings", {}), results["method"]
    keys = ("fusion", "confidence", "layout", "positions", "first_token", "first_fusion")
    chosen = {k: settings[k] for k in keys if settings.get(k) is not None}
    extra = [str(v) for k, v in chosen.items() if k != "first_fusion" and v != method]
    return " ".join([method, "/".join(extra)]).strip(), chosen


def setting_columns(runs: list[Run]) -> list[str]:
    """The method settings of any of the runs, in the order first seen: the report's settings columns."""
    return list(dict.fromkeys(k for run in runs for k in run.method_settings))


def collect(paths: list[str]) -> list[Run]:
    """The scored runs under `paths`."""
    return load(paths)[0]


def load(paths: list[str]) -> tuple[list[Run], list[tuple[Path, str]]]:
    """The scored runs under `paths`, and (folder, stage) of each run without scores (`selfens
    predict`'s). A run whose files cannot be read (e.g. cut short) is skipped with a warning that
    names the file: one broken run does not stop the report of the others."""
    runs, predicted = [], []
    for f in _files(paths):
        try:
            results = _results(f)
            if "metrics" not in results:
                predicted.append((f.parent, results.get("stage", "predict")))
            else:
                runs.append(Run(f.parent, results, _rows(f.parent / "predictions.jsonl")))
        except ReportError as error:
            print(f"selfens: warning: skipped {error}", file=sys.stderr)
    return runs, predicted


def _files(paths: list[str]) -> Iterator[Path]:
    """The results.json of each run under `paths`: a run folder, or a folder searched for them."""
    for p in map(Path, paths):
        yield from [p / "results.json"] if (p / "results.json").exists() else sorted(p.rglob("results.json"))


# What the report reads from a scored run's results.json (the rest it does without).
NEEDED = ("model", "method", "dataset")


def _results(path: Path) -> dict:
    """results.json, which for a scored run must name what the report reads."""
    try:
        results = json.loads(_text(path))
    except json.JSONDecodeError as error:
        raise _malformed(path, error.lineno, error) from None
    if not isinstance(results, dict):
        raise ReportError(f"{path}: not a JSON object, so not the results.json of a selfens run")
    missing = [k for k in NEEDED if k not in results] if "metrics" in results else []
    if missing:
        raise ReportError(f"{path}: no {', '.join(map(repr, missing))} in it, which a scored run's results.json names")
    return results


def _rows(path: Path) -> list[dict]:
    """predictions.jsonl: one row per line."""
    rows = []
    for number, line in enumerate(_text(path).split("\n"), start=1):
        try:
            if line:
                rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise _malformed(path, number, error) from None
    return rows


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: {error.strerror if isinstance(error, OSError) else error}") from None


def _malformed(path: Path, line: int, error: json.JSONDecodeError) -> ReportError:
    return ReportError(f"{path}:{line}: malformed JSON ({error.msg}, column {error.colno})")
