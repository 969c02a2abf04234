"""`selfens report PATH... [--baseline origin] [--out DIR] [--wide]`: finished runs side by side,
with uncertainty, and each run compared with a baseline of the same evaluation.

PATH is a run folder (holding results.json) or a folder searched for them, e.g.
lightning_logs/demo-<time> or a study's folder (runs of `selfens predict`, without scores, are
named and left out; a run whose results.json or predictions.jsonl cannot be read is skipped with a
warning naming the file). Every number comes from the runs' predictions.jsonl (per-example scores):
the 95% intervals are percentile bootstraps over examples (seeded), the paired comparison resamples
the same examples for both runs, and McNemar's exact test counts the examples that only one of the
two gets right (EM). Prints, and writes, one summary table per model and dataset (each run against
that model's baseline, with cost per fact). The printed tables fit the terminal: their key columns,
each run named by its method and the settings that set it apart (`attention (seed)`), and the lines
around them wrapped; --wide prints every column. Writes report.md, report.csv, report.json (every
column), report.tex (booktabs tables for a paper) and PNG plots (score against decode cost per
model; score against N where runs differ in N) into --out (default: the first PATH), and the plots
and tables for TensorBoard into <out>/report/ (`tensorboard --logdir <out>` lists it as the run
"report")."""

from __future__ import annotations

import argparse
from pathlib import Path

from selfens.report.board import write_board
from selfens.report.compare import comparisons, view_rows
from selfens.report.diagnostics import calibration_table, diagnostic_sections, latex_diagnostics, sensitivity_table
from selfens.report.groups import AGREEMENT_HEADING, agreement_of, group_rows, group_section, plot_groups, write_groups
from selfens.report.load import ReportError, load, setting_columns
from selfens.report.plots import plot_reliability, write_plots
from selfens.report.summary import summary_groups
from selfens.report.tables import format_table, report_notes, report_sections, write_files
from selfens.report.terminal import (
    comparison_table,
    fit_table,
    group_labels,
    run_labels,
    summary_table,
    terminal_width,
    view_table,
    wrap,
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
    parser.add_argument("--wide", action="store_true", help="print every column, however wide (the files always have)")
    parser.add_argument(
        "--width", type=int, default=None, help="fit the tables in this many columns (default: the terminal's)"
    )
    args = parser.parse_args(argv)
    runs, predicted = load(args.paths)
    if not runs:
        raise ReportError(_nothing_scored(args.paths, predicted))
    settings = setting_columns(runs)
    rows = view_rows(runs, settings, args.resamples, args.seed)
    compared, skipped = comparisons(runs, args.baseline, args.resamples, args.seed)
    width = None if args.wide else args.width or terminal_width()
    labels = run_labels(runs)
    print(view_table(rows, settings, labels, width))
    for folder, stage in predicted:
        print(wrap(f"not scored ({stage} run): {folder}", width, indent="  "))
    if compared:
        caption = f"paired comparison with {args.baseline} (main views, same examples; wins/losses on EM, McNemar exact test):"
        print(f"\n{wrap(caption, width)}")
        print(comparison_table(compared, rows, labels, width))
    for reason in skipped:
        print(wrap(f"not compared: {reason}", width, indent="  "))
    groups = summary_groups(rows, compared)
    shown = groups if width is None else summary_groups(rows, compared, group_labels(runs, rows))
    for (model, dataset), cells in shown.items():
        print(f"\n{summary_table(model, dataset, args.baseline, cells, width)}")
    print_diagnostics(runs, labels, width)
    out = Path(args.out) if args.out else Path(args.paths[0])
    bootstrap = f"{args.resamples} resamples, seed {args.seed}"
    grouped = group_rows(runs, compared, args.resamples, args.seed)
    by_agreement = group_rows(runs, compared, args.resamples, args.seed, agreement_of(runs))
    diagnostics = diagnostic_sections(runs, labels) + ([group_section(grouped)] if grouped else [])
    diagnostics += [group_section(by_agreement, "agreement", AGREEMENT_HEADING)] if by_agreement else []
    details = {
        "diagnostics": {run.name: run.results.get("diagnostics") for run in runs},
        "groups": grouped,
        "by_agreement": by_agreement,
    }
    latex = latex_diagnostics(runs, labels)
    written = write_files(out, rows, settings, compared, skipped, bootstrap, groups, diagnostics, details, latex)
    written += [write_groups(out / "report_groups.csv", grouped)] if grouped else []
    plots = write_plots(out, rows)
    extra = [
        plot_reliability(out / "report_reliability.png", runs, labels),
        plot_groups(out / "report_groups.png", grouped),
    ]
    plots += [plot for plot in extra if plot is not None]
    sections = report_sections(rows, settings, compared, groups, diagnostics)
    notes = report_notes(skipped, bootstrap)
    board = write_board(out, sections, notes, plots)
    files = ", ".join(map(str, written + plots))
    print(wrap(f'selfens: report written to {files}; TensorBoard: {board} (run "report")', width, indent="  "))


def print_diagnostics(runs: list, labels: dict[str, str], width: int | None) -> None:
    """The sensitivity and calibration tables, their key columns first where the terminal is narrow."""
    header, cells = sensitivity_table(runs, labels)
    if cells:
        print(f"\n{wrap('sensitivity to the phrasing (per_prompt runs; %, 95% CI over facts):', width)}")
        print(fit_table(header, cells, left=2, key=4, width=width) if width else format_table(header, cells, left=2))
    header, cells = calibration_table(runs, labels)
    print(
        f"\n{wrap('calibration (%, 95% CI over examples; confidence: the answer probability, or agreement):', width)}"
    )
    print(fit_table(header, cells, left=2, key=3, width=width) if width else format_table(header, cells, left=2))


def _nothing_scored(paths: list[str], predicted: list[tuple[Path, str]]) -> str:
    """Why there is nothing to report, and what to do."""
    where = ", ".join(paths)
    if not predicted:
        return f"no scored runs (results.json with metrics) under {where}: run `selfens test --config ...` first"
    folder, stage = predicted[0]
    return (
        f"no scored runs under {where}, only {len(predicted)} {stage} run(s) (answers without scores), e.g. {folder}: "
        f"score them with `selfens test --config {folder / 'config.yaml'}`"
    )
