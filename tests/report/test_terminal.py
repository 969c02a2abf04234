"""The report on a terminal, without a model: a table fitted to a width keeps its key columns and
drops the others from the right, or cuts the run's name, and never grows wider than asked; a run's
label names its method and the settings in which the runs of that method differ (the model and
dataset where the runs span several), and tells alike runs apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfens.report.load import Run
from selfens.report.tables import format_table
from selfens.report.terminal import fit_table, run_labels

HEADER = ["run", "N", "EM [95% CI]", "F1", "prefill tok", "decode s"]
CELLS = [
    ["attention (shared_prefix)", "5", "32.0 [24.0, 41.0]", "33.2", "4327", "21.4"],
    ["avg", "10", "100.0 [100.0, 100.0]", "100.0", "12", "1.0"],
]


def widest(table: str) -> int:
    return max(len(line) for line in table.splitlines())


def test_a_table_that_fits_is_printed_whole():
    whole = format_table(HEADER, CELLS, left=1)
    assert fit_table(HEADER, CELLS, left=1, key=3, width=widest(whole)) == whole


@pytest.mark.parametrize("width", [80, 70, 60, 55])
def test_columns_of_lower_priority_are_dropped_from_the_right(width):
    table = fit_table(HEADER, CELLS, left=1, key=3, width=width)
    header = table.splitlines()[0].split("  ")
    kept = [h.strip() for h in header if h.strip()]
    assert widest(table) <= width
    assert kept == HEADER[: len(kept)] and len(kept) >= 3  # a prefix, the key columns at least
    assert len(kept) < len(HEADER) or widest(format_table(HEADER, CELLS, left=1)) <= width
    for cells in CELLS:
        assert cells[0] in table and cells[2] in table  # nothing cut yet


def test_the_run_name_is_cut_when_the_key_columns_alone_are_too_wide():
    table = fit_table(HEADER, CELLS, left=1, key=3, width=40)
    lines = table.splitlines()
    assert widest(table) == 40
    assert lines[2].startswith("attention (sh…") and "32.0 [24.0, 41.0]" in lines[2]
    assert lines[3].startswith("avg ") and lines[0].split()[:4] == ["run", "N", "EM", "[95%"]


def test_a_name_is_cut_no_shorter_than_eight_characters():
    table = fit_table(HEADER, CELLS, left=1, key=3, width=10)
    assert table.splitlines()[2].startswith("attenti… ")


def test_spare_key_columns_go_where_cutting_the_name_is_not_enough():
    """F1 is a key column here, but spare: at 45 columns cutting the name makes room, at 40 (cut to
    eight characters, it would need 41) F1 goes, and the name is cut only as far as then needed."""
    kept = fit_table(HEADER, CELLS, left=1, key=4, width=45, spare=("F1",))
    assert kept.splitlines()[0].split()[-1] == "F1" and widest(kept) == 45
    assert kept.splitlines()[2].startswith("attention (… ")
    dropped = fit_table(HEADER, CELLS, left=1, key=4, width=40, spare=("F1",))
    assert "F1" not in dropped.splitlines()[0] and widest(dropped) == 40
    assert dropped.splitlines()[2].startswith("attention (sh… ")


def run(folder: str, method: str, model: str = "org/tiny", **settings) -> Run:
    """A run as results.json records it (its method settings among its settings)."""
    own = {k: v for k, v in settings.items() if k in ("fusion", "layout", "positions", "first_fusion")}
    results = {
        "method": method,
        "label": method,
        "model": model,
        "method_settings": own,
        "settings": {"method": method, "model": model, "dataset": "ParaRel", "N": 5, "shots": 4, **settings},
    }
    return Run(Path("logs") / folder, results, [])


def test_labels_name_the_settings_in_which_the_runs_differ():
    runs = [
        run("version_0", "origin"),
        run("version_1", "attention", layout="seed", positions="sequential", first_fusion="avg"),
        run("version_2", "attention", layout="shared_prefix", positions="sequential", first_fusion="max"),
        run("version_3", "avg", fusion="avg"),
        run("version_4", "max", fusion="max", N=3),  # N has a column of its own
        run("version_5", "avg", model="other/big", fusion="avg", shots=2),
    ]
    assert run_labels(runs) == {
        "logs/version_0": "origin (tiny)",  # the runs span two models
        "logs/version_1": "attention (seed, first_fusion=avg, tiny)",  # positions: the same
        "logs/version_2": "attention (shared_prefix, first_fusion=max, tiny)",
        "logs/version_3": "avg (tiny, shots=4)",  # fusion: the method's name
        "logs/version_4": "max (tiny)",
        "logs/version_5": "avg (big, shots=2)",
    }


def test_runs_that_still_read_alike_are_named():
    runs = [run("version_0", "origin"), run("version_1", "avg", fusion="avg"), run("version_2", "avg", fusion="avg")]
    assert run_labels(runs) == {
        "logs/version_0": "origin",
        "logs/version_1": "avg (logs/version_1)",
        "logs/version_2": "avg (logs/version_2)",
    }
    assert run_labels([run("version_0", "avg"), run("version_1", "avg", N=3)]) == {
        "logs/version_0": "avg",  # told apart by N
        "logs/version_1": "avg",
    }
