"""The report on a terminal: each table's key columns first, each run named by its method and the
settings that set it apart from the other runs (`attention (seed)`), and the columns of lower
priority dropped (or the run's name cut) rather than wrapped; captions and notes are wrapped to the
width. `width=None` prints every column, and wraps nothing."""

from __future__ import annotations

import shutil
import textwrap
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


def wrap(text: str, width: int | None, indent: str = "") -> str:
    """A caption or note in `width` columns, its later lines indented by `indent`; a path is not
    broken (one wider than `width` stays whole on a line of its own)."""
    if width is None:
        return text
    return textwrap.fill(text, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


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
    return fit_table(VIEW_COLUMNS, cells, left=2, key=6, width=width, spare=("lemma", "F1"))


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


def summary_table(model: str, dataset: str, baseline: str, cells: list[list[str]], width: int | None) -> str:
    """A model's and dataset's summary under its caption: method, N, EM, F1, lemma, ΔEM, p; then the
    cost per fact, which the caption names where the table has room for it."""
    header = SUMMARY_HEADER
    if width is not None:
        header, cells = _fit(SUMMARY_COLUMNS, cells, key=7, width=width, spare=("lemma", "F1"))
    cost = "; cost per fact" if any(h.endswith("/fact") for h in header) else ""
    caption = f"{model} · {dataset} (main views; Δ against {baseline} of the same evaluation{cost}):"
    return f"{wrap(caption, width)}\n{format_table(header, cells, left=1)}"


def fit_table(
    header: list[str], cells: list[list[str]], left: int, key: int, width: int, spare: tuple[str, ...] = ()
) -> str:
    """`format_table` in `width` columns: the first `key` columns always, the others while they fit
    (dropped from the right); where the key columns alone are wider, the first column cut (…) and,
    where cutting it is not enough, the `spare` ones of them dropped, in their order."""
    return format_table(*_fit(header, cells, key, width, spare), left)


def _fit(
    header: list[str], cells: list[list[str]], key: int, width: int, spare: tuple[str, ...] = ()
) -> tuple[list[str], list[list[str]]]:
    """The header and cells of `fit_table`."""
    kept = list(range(len(header)))
    table = lambda: ([header[i] for i in kept], [[row[i] for i in kept] for row in cells])
    while len(kept) > key and _table_width(*table()) > width:
        kept.pop()
    cuttable = max(0, max((len(row[0]) for row in cells), default=0) - max(len(header[0]), _SHORTEST))
    for column in spare:
        if _table_width(*table()) - cuttable <= width:
            break
        kept.remove(header.index(column))
    header, cells = table()
    excess = _table_width(header, cells) - width
    if excess > 0:
        first = max(len(header[0]), max((len(row[0]) for row in cells), default=0) - excess, _SHORTEST)
        cells = [[_cut(row[0], first), *row[1:]] for row in cells]
    return header, cells


_SHORTEST = 8  # a run's name is not cut shorter than this: past it the spare columns go, then the table wraps


def _table_width(header: list[str], cells: list[list[str]]) -> int:
    return sum(max(len(c) for c in column) for column in zip(header, *cells)) + 2 * (len(header) - 1)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
