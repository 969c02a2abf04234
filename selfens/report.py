"""`selfens report PATH... [--baseline origin] [--out DIR]`: finished runs side by side, with
uncertainty, and each run compared with a baseline on the same examples.

PATH is a run folder (holding results.json) or a folder searched for them, e.g.
lightning_logs/demo-<time>. Every number comes from the runs' predictions.jsonl (per-example
scores): the 95% intervals are percentile bootstraps over examples (seeded), the paired
comparison resamples the same examples for both runs, and McNemar's exact test counts the
examples that only one of the two gets right (EM). Writes report.md, report.csv, report.json and PNG plots
(score against decode cost; score against N where runs differ in N) into --out (default: the
first PATH).
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from selfens.errors import SelfensError
from selfens.metrics import normalize_answer
from selfens.metrics.views import METRICS
from selfens.stats import paired_comparison, uncertainty

SETTING_KEYS = ("fusion", "confidence", "layout", "positions", "first_token")
COSTS = (("prefill tok", "prefill_tokens"), ("padded", "prefill_padded_tokens"), ("forwards", "forward_calls"))


@dataclass
class Run:
    folder: Path
    results: dict
    rows: list[dict]  # predictions.jsonl, scored

    @property
    def name(self) -> str:
        """`<logger name>/version_<k>`: the method and its settings have columns of their own."""
        return f"{self.folder.parent.name}/{self.folder.name.split('-', 1)[0]}"

    @property
    def main_view(self) -> str:
        # Runs written before results.json named it: the method's own view, or per_prompt's first (majority).
        views = self.views()
        return self.results.get("main_view") or (self.method if self.method in views else views[0])

    @property
    def settings(self) -> dict:
        return self.results.get("settings", {})

    @property
    def label(self) -> str:
        """The method and the settings that set it apart, e.g. `attention shared_prefix/sequential/block_ends`."""
        extra = [str(self.settings[k]) for k in SETTING_KEYS if self.settings.get(k) not in (None, self.method)]
        return " ".join([self.method, "/".join(extra)]).strip()

    @property
    def method(self) -> str:
        return self.results["method"]

    def cost(self, name: str) -> float:
        return self.results.get("total_cost", self.results.get("cost", {})).get(name, 0.0)

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


class ReportError(SelfensError):
    """Runs that cannot be reported or compared as asked."""


def collect(paths: list[str]) -> list[Run]:
    """The scored runs under `paths` (runs of `predict` have no scores and are left out)."""
    runs = []
    for p in map(Path, paths):
        files = [p / "results.json"] if (p / "results.json").exists() else sorted(p.rglob("results.json"))
        for f in files:
            results = json.loads(f.read_text(encoding="utf-8"))
            if "metrics" not in results:
                continue
            rows = [
                json.loads(line) for line in (f.parent / "predictions.jsonl").read_text("utf-8").split("\n") if line
            ]
            runs.append(Run(f.parent, results, rows))
    return runs


def view_rows(runs: list[Run], resamples: int, seed: int) -> list[dict]:
    """One row per (run, view): settings, each metric's mean, standard error and 95% interval, cost."""
    table = []
    for run in runs:
        for view in run.views():
            stats = uncertainty(run.scores(view), resamples, seed)
            row = {
                "run": run.name,
                "model": Path(run.results["model"]).name,
                "dataset": run.results["dataset"],
                "method": run.method,
                "label": run.label,
                "fusion": run.settings.get("fusion") or run.settings.get("first_fusion") or "",
                "confidence": run.settings.get("confidence") or "",
                "layout": run.settings.get("layout") or "",
                "positions": run.settings.get("positions") or "",
                "first_token": run.settings.get("first_token") or "",
                "N": run.settings.get("N", ""),
                "view": view,
                "main": view == run.main_view,
                "n": len(run.rows),
            }
            for m, s in stats.items():
                low, high = s["ci95"] or (None, None)
                row.update({m: s["mean"], f"{m}_se": s["se"], f"{m}_low": low, f"{m}_high": high})
            row.update({name: run.cost(key) for name, key in COSTS})
            row["decode s"] = run.cost("decode_seconds")
            row["conf s"] = run.cost("confidence_seconds")
            table.append(row)
    return table


def comparisons(runs: list[Run], baseline: str, resamples: int, seed: int) -> tuple[list[dict], list[str]]:
    """Each run's main view against the baseline run's on the same examples; and why runs were not compared.

    `baseline` is a method name (the run of that method on the same data) or a run folder."""
    folder = Path(baseline)
    if not (folder / "results.json").exists() and not any(r.method == baseline for r in runs):
        return [], []  # nothing to compare with
    if (folder / "results.json").exists():
        chosen = [r for r in runs if r.folder.resolve() == folder.resolve()]
        if not chosen:
            raise ReportError(f"baseline {baseline} is not among the runs reported: add it to the paths")
        base_of = lambda run: chosen[0]
    else:
        base_of = lambda run: next(
            (b for b in runs if b.method == baseline and b.results.get("data_hash") == run.results.get("data_hash")),
            None,
        )
    compared, skipped = [], []
    for run in runs:
        base = base_of(run)
        if base is run:
            continue
        if base is None:
            skipped.append(f"{run.name}: no {baseline!r} run on the same examples (same data hash)")
            continue
        reason = _unpaired(base, run)
        if reason:
            skipped.append(f"{run.name}: {reason}")
            continue
        ids = [r["id"] for r in base.rows]
        changed = sum(
            normalize_answer(run.by_id[i]["prediction"]) != normalize_answer(base.by_id[i]["prediction"]) for i in ids
        )
        result = paired_comparison(
            run.scores(run.main_view, ids), base.scores(base.main_view, ids), changed, resamples, seed
        )
        compared.append({"run": run.name, "method": run.label, "baseline": base.name, **result})
    return compared, skipped


def _unpaired(a: Run, b: Run) -> str | None:
    """Why two runs cannot be paired example by example, or None."""
    if a.results.get("data_hash") != b.results.get("data_hash"):
        return (
            f"different examples than {a.name} (data hash {str(a.results.get('data_hash'))[:8]} vs "
            f"{str(b.results.get('data_hash'))[:8]}: other data, limit, N, shots or seed)"
        )
    if set(a.by_id) != set(b.by_id):
        return f"not the same example ids as {a.name}"
    return None


# -- output --------------------------------------------------------------------------------------------


def _pct(value) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _ci(row: dict, m: str) -> str:
    return "" if row[f"{m}_low"] is None else f"[{_pct(row[f'{m}_low'])}, {_pct(row[f'{m}_high'])}]"


SETTINGS = ["fusion", "confidence", "layout", "positions", "first_token"]
HEADER = ["run", "model", "dataset", "method", *SETTINGS, "N", "view", "EM", "95% CI", "F1", "lemma", "n"]
COST_HEADER = [name for name, _ in COSTS] + ["decode s", "conf s"]


def table_cells(rows: list[dict]) -> list[list[str]]:
    return [
        [
            r["run"],
            r["model"],
            r["dataset"],
            r["method"],
            *(r[k] or "-" for k in SETTINGS),
            str(r["N"]),
            r["view"],
            _pct(r["em"]),
            _ci(r, "em"),
            _pct(r["f1"]),
            _pct(r["lemma"]),
            str(r["n"]),
            *(f"{r[name]:.0f}" for name, _ in COSTS),
            f"{r['decode s']:.1f}",
            f"{r['conf s']:.1f}",
        ]
        for r in rows
    ]


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


COMPARISON_HEADER = ["run", "method", "vs", "ΔEM [95% CI]", "ΔF1", "Δlemma", "wins/losses", "McNemar p", "changed", "n"]


def _interval(ci) -> str:
    return "" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def format_table(header: list[str], cells: list[list[str]], left: int) -> str:
    """A plain-text table; the first `left` columns are left-aligned, the rest right-aligned."""
    widths = [max(len(c) for c in col) for col in zip(header, *cells)]
    line = lambda row: "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in cells])


def markdown_table(header: list[str], cells: list[list[str]]) -> str:
    escape = lambda c: c.replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(escape, row)) + " |" for row in cells])


def write_files(out: Path, rows: list[dict], compared: list[dict], skipped: list[str], runs: list[Run], seed) -> list:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.md", out / "report.csv", out / "report.json"]
    md = ["# selfens report", "", markdown_table(HEADER + COST_HEADER, table_cells(rows)), ""]
    if compared:
        md += ["## Paired comparison (main views, same examples)", ""]
        md += [markdown_table(COMPARISON_HEADER, comparison_cells(compared)), ""]
    md += [f"- not compared: {s}" for s in skipped]
    md += [
        "",
        f"95% intervals: percentile bootstrap over examples ({seed}); wins/losses: examples only this run / only the baseline gets right (EM).",
    ]
    written[0].write_text("\n".join(md) + "\n", encoding="utf-8")
    summary = {"views": rows, "comparisons": compared, "not_compared": skipped, "bootstrap": seed}
    written[2].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    with written[1].open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written.append(plot_cost(out / "report_cost.png", [r for r in rows if r["main"]]))
    if len({r["N"] for r in rows if r["main"]}) > 1:
        written.append(plot_n(out / "report_n.png", [r for r in rows if r["main"]]))
    return written


def plot_cost(path: Path, rows: list[dict]) -> Path:
    """EM of each run's main view (with its 95% interval) against its decode cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        seconds = r["decode s"] + r["conf s"]
        err = [[100 * (r["em"] - r["em_low"])], [100 * (r["em_high"] - r["em"])]] if r["em_low"] is not None else None
        ax.errorbar(seconds, 100 * r["em"], yerr=err, fmt="o", capsize=4, label=f"{r['label']} ({r['run']})")
        ax.annotate(r["method"], (seconds, 100 * r["em"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("decode seconds (confidences included)")
    ax.set_ylabel("EM % (95% bootstrap CI)")
    ax.set_title(f"score against cost: {', '.join(sorted({r['dataset'] for r in rows}))}, n = {rows[0]['n']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_n(path: Path, rows: list[dict]) -> Path:
    """EM against N, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in sorted({r["label"] for r in rows}):
        points = sorted(((r["N"], r["run"]), r) for r in rows if r["label"] == method)
        xs = [n for (n, _), _ in points]
        ys = [100 * r["em"] for _, r in points]
        low = [100 * (r["em"] - (r["em_low"] if r["em_low"] is not None else r["em"])) for _, r in points]
        high = [100 * ((r["em_high"] if r["em_high"] is not None else r["em"]) - r["em"]) for _, r in points]
        ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=4, label=method)
    ax.set_xlabel("N (phrasings)")
    ax.set_ylabel("EM % (95% bootstrap CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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
    rows = view_rows(runs, args.resamples, args.seed)
    compared, skipped = comparisons(runs, args.baseline, args.resamples, args.seed)
    print(format_table(HEADER + COST_HEADER, table_cells(rows), left=len(HEADER) - 5))
    if compared:
        print(
            f"\npaired comparison with {args.baseline} (main views, same examples; wins/losses on EM, McNemar exact test):"
        )
        print(format_table(COMPARISON_HEADER, comparison_cells(compared), left=3))
    for reason in skipped:
        print(f"not compared: {reason}")
    out = Path(args.out) if args.out else Path(args.paths[0])
    written = write_files(out, rows, compared, skipped, runs, f"{args.resamples} resamples, seed {args.seed}")
    print(f"selfens: report written to {', '.join(map(str, written))}")
