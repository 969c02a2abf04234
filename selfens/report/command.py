"""`selfens report PATH... [--baseline origin] [--out DIR]`: finished runs side by side, with
uncertainty, and each run compared with a baseline of the same evaluation.

PATH is a run folder (holding results.json) or a folder searched for them, e.g.
lightning_logs/demo-<time> or a study's folder. Every number comes from the runs'
predictions.jsonl (per-example scores): the 95% intervals are percentile bootstraps over examples
(seeded), the paired comparison resamples the same examples for both runs, and McNemar's exact
test counts the examples that only one of the two gets right (EM). Prints, and writes, one summary
table per model and dataset (each run against that model's baseline, with cost per fact). Writes
report.md, report.csv, report.json, report.tex (booktabs tables for a paper) and PNG plots (score
against decode cost per model; score against N where runs differ in N) into --out (default: the
first PATH)."""

from __future__ import annotations

import argparse
from pathlib import Path

from selfens.report.compare import comparisons, view_rows
from selfens.report.load import ReportError, collect, setting_columns
from selfens.report.plots import write_plots
from selfens.report.summary import SUMMARY_HEADER, summary_groups
from selfens.report.tables import (
    COMPARISON_HEADER,
    comparison_cells,
    format_table,
    view_cells,
    view_header,
    write_files,
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="selfens report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", help="run folders or folders to search for results.json")
    parser.add_argument("--baseline", default="origin", help="a method name or a run folder (default: origin)")
    parser.add_argument("--out", default=None, help="where report.md/csv/png go (default: the first path)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    args = parser.parse_args(argv)
    runs = collect(args.paths)
    if not runs:
        raise ReportError(
            f"no scored runs (results.json with metrics) under {', '.join(args.paths)}: run `selfens test --config ...` first"
        )
    settings = setting_columns(runs)
    rows = view_rows(runs, settings, args.resamples, args.seed)
    compared, skipped = comparisons(runs, args.baseline, args.resamples, args.seed)
    header = view_header(settings)
    print(format_table(header, view_cells(rows, settings), left=header.index("EM")))  # numbers right-aligned
    if compared:
        print(
            f"\npaired comparison with {args.baseline} (main views, same examples; wins/losses on EM, McNemar exact test):"
        )
        print(format_table(COMPARISON_HEADER, comparison_cells(compared), left=3))
    for reason in skipped:
        print(f"not compared: {reason}")
    groups = summary_groups(rows, compared)
    for (model, dataset), cells in groups.items():
        print(f"\n{model} · {dataset} (main views; Δ against {args.baseline} of the same evaluation; cost per fact):")
        print(format_table(SUMMARY_HEADER, cells, left=1))
    out = Path(args.out) if args.out else Path(args.paths[0])
    bootstrap = f"{args.resamples} resamples, seed {args.seed}"
    written = write_files(out, rows, settings, compared, skipped, bootstrap, groups) + write_plots(out, rows)
    print(f"selfens: report written to {', '.join(map(str, written))}")
