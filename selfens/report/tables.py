"""The report as text: plain-text and markdown tables of the views and comparisons, and the
report.md, report.csv and report.json files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from selfens.metrics.functional import METRICS  # not views: that imports torchmetrics
from selfens.report.summary import SUMMARY_HEADER, write_latex
from selfens.run.cost import cost_labels

# The costs a table shows (csv and json rows hold every cost).
SHOWN_COSTS = ("prefill_tokens", "prefill_padded_tokens", "forward_calls", "decode_seconds", "confidence_seconds")
SCORE_HEADER = ["EM", "95% CI", "F1", "lemma", "n"]
COMPARISON_HEADER = ["run", "method", "vs", "ΔEM [95% CI]", "ΔF1", "Δlemma", "wins/losses", "McNemar p", "changed", "n"]


def view_header(settings: list[str]) -> list[str]:
    labels = cost_labels()
    return [
        "run",
        "model",
        "dataset",
        "method",
        *settings,
        "N",
        "view",
        *SCORE_HEADER,
        *(labels[c] for c in SHOWN_COSTS),
    ]


def view_cells(rows: list[dict], settings: list[str]) -> list[list[str]]:
    return [
        [
            r["run"],
            r["model"],
            r["dataset"],
            r["method"],
            *("-" if r[k] in (None, "") else str(r[k]) for k in settings),
            str(r["N"]),
            r["view"],
            _pct(r["em"]),
            _ci(r, "em"),
            _pct(r["f1"]),
            _pct(r["lemma"]),
            str(r["n"]),
            *cost_cells(r),
        ]
        for r in rows
    ]


def cost_cells(row: dict) -> list[str]:
    """The SHOWN_COSTS of a view row."""
    return [f"{row[c]:.1f}" if c.endswith("_seconds") else f"{row[c]:.0f}" for c in SHOWN_COSTS]


def score_cells(row: dict) -> list[str]:
    """EM with its interval in one cell (`34.0 [25.0, 43.0]`), F1 and lemma of a view row."""
    return [f"{_pct(row['em'])} {_ci(row, 'em')}".strip(), _pct(row["f1"]), _pct(row["lemma"])]


def comparison_cells(compared: list[dict]) -> list[list[str]]:
    cells = []
    for c in compared:
        diff, test = c["difference"], c["mcnemar_em"]
        cells.append(
            [
                c["run"],
                c["method"],
                c["baseline"],
                *(f"{100 * diff[m]['mean']:+.1f} {_interval(diff[m]['ci95'])}" for m in METRICS),
                f"{test['a_right_b_wrong']}/{test['a_wrong_b_right']}",
                f"{test['p']:.3f}",
                str(c["changed_answers"]),
                str(c["n"]),
            ]
        )
    return cells


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _ci(row: dict, m: str) -> str:
    return "" if row[f"{m}_low"] is None else f"[{_pct(row[f'{m}_low'])}, {_pct(row[f'{m}_high'])}]"


def _interval(ci) -> str:
    return "" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def format_table(header: list[str], cells: list[list[str]], left: int) -> str:
    """A plain-text table; the first `left` columns are left-aligned, the rest right-aligned (no
    spaces at line ends, where the last cell is empty)."""
    widths = [max(len(c) for c in col) for col in zip(header, *cells)]
    line = lambda row: "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join(line(row).rstrip() for row in [header, ["-" * w for w in widths], *cells])


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    escape = lambda c: c.replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(escape, row)) + " |" for row in cells])


def report_sections(
    rows: list[dict],
    settings: list[str],
    compared: list[dict],
    groups: dict[tuple[str, str], list[list[str]]],
    diagnostics: list[tuple[str, str, str]] = (),
) -> list[tuple[str, str, str]]:
    """The report's tables in markdown, as (TensorBoard tag, heading, table): the summary per model
    and dataset, every run and view, the paired comparison where there is one, and `diagnostics`
    (sensitivity, calibration: `selfens.report.diagnostics`)."""
    sections = [
        (f"summary/{model}/{dataset}", f"{model} · {dataset}", markdown_table(SUMMARY_HEADER, cells))
        for (model, dataset), cells in groups.items()
    ]
    sections.append(("views", "Every run and view", markdown_table(view_header(settings), view_cells(rows, settings))))
    if compared:
        table = markdown_table(COMPARISON_HEADER, comparison_cells(compared))
        sections.append(("comparisons", "Paired comparison (main views, same examples)", table))
    return sections + list(diagnostics)


def report_notes(skipped: list[str], bootstrap: str) -> list[str]:
    """The lines under the tables: the runs not compared, and how the intervals were drawn."""
    return [
        *(f"- not compared: {s}" for s in skipped),
        "",
        f"95% intervals: percentile bootstrap over examples ({bootstrap}); wins/losses: examples only this run / only the baseline gets right (EM).",
    ]


def write_files(
    out: Path,
    rows: list[dict],
    settings: list[str],
    compared: list[dict],
    skipped: list[str],
    bootstrap: str,
    groups: dict[tuple[str, str], list[list[str]]],
    diagnostics: list[tuple[str, str, str]] = (),
    details: dict | None = None,
    latex: list[tuple] = (),
) -> list[Path]:
    """report.md, report.csv, report.json and report.tex in `out`; `bootstrap` says how the
    intervals were drawn; `groups`: the summary tables per model and dataset; `details` join
    report.json (e.g. each run's diagnostics, the rows per group); `latex`: more tables for
    report.tex, each (header, cells, caption)."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.md", out / "report.csv", out / "report.json"]
    md = ["# selfens report", ""]
    for _, heading, table in report_sections(rows, settings, compared, groups, diagnostics):
        md += [f"## {heading}", "", table, ""]
    md += report_notes(skipped, bootstrap)
    written[0].write_text("\n".join(md) + "\n", encoding="utf-8")
    summary = {
        "views": rows,
        "comparisons": compared,
        "not_compared": skipped,
        "bootstrap": bootstrap,
        **(details or {}),
    }
    written[2].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    with written[1].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [*written, write_latex(out, groups, latex)]
