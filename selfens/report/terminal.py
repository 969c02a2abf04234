"""The report on a terminal: each table's key columns first, each run named by its method and the
settings that set it apart from the other runs (`attention (seed)`), and the columns of lower
priority dropped (or the run's name cut) rather than wrapped. `width=None` prints every column."""

from __future__ import annotations

import shutil
from collections import Counter

from selfens.report.load import Run
from selfens.report.summary import SUMMARY_HEADER
from selfens.report.tables import (
    COMPARISON_HEADER,
    SHOWN_COSTS,
    comparison_cells,
    cost_cells,
    format_table,
    score_cells,
    view_cells,
    view_header,
)
from selfens.run.cost import cost_labels

# In priority order: columns that do not fit are dropped from the right.
VIEW_COLUMNS = ["run", "view", "N", "EM [95% CI]", "F1", "lemma", "n", *(cost_labels()[c] for c in SHOWN_COSTS)]
COMPARISON_COLUMNS = ["run", "N", "ΔEM [95% CI]", "p", "wins/losses", "vs", "ΔF1", "Δlemma", "changed", "n"]
SUMMARY_COLUMNS = ["p" if h == "McNemar p" else h for h in SUMMARY_HEADER]  # the headings name the test
# The label's own part, and a column of its own: never folded into a label.
UNFOLDED = ("method", "N")
# What the summary has a table for: in a label where the runs span several, whatever their method.
SPANNED = ("model", "dataset")
# Settings whose values read as a method's name (fusion rules): shown as `key=value`.
KEYED = ("first_fusion",)


def terminal_width() -> int:
    """The terminal's columns; COLUMNS, or else 100, where stdout is not a terminal."""
    return shutil.get_terminal_size((100, 24)).columns


def run_labels(runs: list[Run]) -> dict[str, str]:
    """Run name -> its method, with the settings that tell it apart in brackets: those in which the
    runs of its method differ (e.g. `attention (seed)`, `avg (shots=2)`), and the model and dataset
    where `runs` span several. N has a column of its own. Runs that would still read alike (the same
    label and N) get their names added."""
    settings = {run.name: _settings(run) for run in runs}
    # the methods' own settings first, then the model's and the data's
    ordered = [*(k for run in runs for k in run.method_settings), *(k for run in runs for k in run.settings)]
    keys = [k for k in dict.fromkeys(ordered) if k not in UNFOLDED]
    differ = lambda key, among: len({str(s[key]) for s in among if s.get(key) is not None}) > 1
    parts = {}
    for run in runs:
        own = settings[run.name]
        peers = [settings[r.name] for r in runs if r.method == run.method]
        apart = [k for k in keys if differ(k, settings.values() if k in SPANNED else peers)]
        parts[run.name] = [_shown(k, own[k]) for k in apart if own.get(k) not in (None, run.method)]
    told = {run.name: (run.method, *parts[run.name], run.settings.get("N")) for run in runs}
    alike = Counter(told.values())
    labels = {}
    for run in runs:
        shown = [*parts[run.name], *([run.name] if alike[told[run.name]] > 1 else [])]
        labels[run.name] = f"{run.method} ({', '.join(shown)})" if shown else run.method
    return labels


def group_labels(runs: list[Run], rows: list[dict]) -> dict[str, str]:
    """`run_labels` within each summary table (its model and dataset are in its heading)."""
    group = {r["run"]: (r["model"], r["dataset"]) for r in rows}
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault(group[run.name], []).append(run)
    return {name: label for members in groups.values() for name, label in run_labels(members).items()}


def _settings(run: Run) -> dict:
    """What tells the run apart, the model by its name."""
    return {**run.settings, **run.method_settings, "method": run.method, "model": run.model}


def _shown(key: str, value) -> str:
    return value if isinstance(value, str) and key not in KEYED else f"{key}={value}"


def view_table(rows: list[dict], settings: list[str], labels: dict[str, str], width: int | None) -> str:
    """Every run and view: run, view, N, EM with its interval, F1, lemma; then n and the costs."""
    if width is None:
        header = view_header(settings)
        return format_table(header, view_cells(rows, settings), left=header.index("EM"))
    cells = [[labels[r["run"]], r["view"], str(r["N"]), *score_cells(r), str(r["n"]), *cost_cells(r)] for r in rows]
    return fit_table(VIEW_COLUMNS, cells, left=2, key=6, width=width)


def comparison_table(compared: list[dict], rows: list[dict], labels: dict[str, str], width: int | None) -> str:
    """Each run against its baseline: run, N, ΔEM with its interval, McNemar's p; then wins/losses,
    the baseline (the heading names it) and the rest."""
    if width is None:
        return format_table(COMPARISON_HEADER, comparison_cells(compared), left=3)
    n_of = {r["run"]: str(r["N"]) for r in rows}
    cells = []
    for c, full in zip(compared, comparison_cells(compared)):
        named = dict(zip(COMPARISON_HEADER, full))
        ours = {"run": labels[c["run"]], "vs": labels[c["baseline"]], "N": n_of[c["run"]], "p": named["McNemar p"]}
        cells.append([ours.get(column, named.get(column)) for column in COMPARISON_COLUMNS])
    return fit_table(COMPARISON_COLUMNS, cells, left=1, key=4, width=width)


def summary_table(cells: list[list[str]], width: int | None) -> str:
    """A model's and dataset's summary: method, N, EM, F1, lemma, ΔEM, p; then the cost per fact."""
    if width is None:
        return format_table(SUMMARY_HEADER, cells, left=1)
    return fit_table(SUMMARY_COLUMNS, cells, left=1, key=7, width=width)


def fit_table(header: list[str], cells: list[list[str]], left: int, key: int, width: int) -> str:
    """`format_table` in `width` columns: the first `key` columns always, the others while they fit
    (dropped from the right), and the first column cut (…) where the key columns alone are wider."""
    shown = len(header)
    while shown > key and _table_width(header[:shown], cells) > width:
        shown -= 1
    header, cells = header[:shown], [row[:shown] for row in cells]
    excess = _table_width(header, cells) - width
    if excess > 0:
        first = max(len(header[0]), max((len(row[0]) for row in cells), default=0) - excess, _SHORTEST)
        cells = [[_cut(row[0], first), *row[1:]] for row in cells]
    return format_table(header, cells, left)


_SHORTEST = 8  # a run's name is not cut shorter than this: past it the table wraps


def _table_width(header: list[str], cells: list[list[str]]) -> int:
    return sum(max(len(c) for c in column) for column in zip(header, *cells)) + 2 * (len(header) - 1)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
