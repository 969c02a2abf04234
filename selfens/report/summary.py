"""The report's summary: one table per model and dataset, each run's main view against that model's
baseline, with cost per fact; as text, markdown and a LaTeX (booktabs) table a paper can include."""

from __future__ import annotations

from pathlib import Path

SUMMARY_HEADER = [
    "method",
    "N",
    "EM [95% CI]",
    "F1",
    "lemma",
    "ΔEM [95% CI]",
    "McNemar p",
    "prefill tok/fact",
    "forwards/fact",
    "decode s/fact",
    "n",
]
LATEX_HEADER = [
    "Method",
    "$N$",
    "EM",
    "F1",
    "Lemma",
    r"$\Delta$EM",
    "$p$",
    "Prefill/fact",
    "Fwd/fact",
    "s/fact",
    "$n$",
]


def summary_groups(
    rows: list[dict], compared: list[dict], labels: dict[str, str] | None = None
) -> dict[tuple[str, str], list[list[str]]]:
    """(model, dataset) -> the cells of its table: one row per run (its main view), the baseline
    first; each run named by `labels` (run -> label), or by its own label."""
    by_run = {c["run"]: c for c in compared}
    baselines = {c["baseline"] for c in compared}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        if r["main"]:
            groups.setdefault((r["model"], r["dataset"]), []).append(r)
    return {
        key: [
            _cells(r, by_run.get(r["run"]), r["run"] in baselines, (labels or {}).get(r["run"], r["label"]))
            for r in sorted(runs, key=lambda r: (r["run"] not in baselines, r["label"], _n(r["N"])))
        ]
        for key, runs in groups.items()
    }


def _cells(r: dict, comparison: dict | None, baseline: bool, label: str) -> list[str]:
    n = r["n"]
    seconds = r["decode_seconds"] + r["confidence_seconds"]
    if comparison is not None:
        diff = comparison["difference"]["em"]
        delta, p = with_interval(diff["mean"], diff["ci95"], "+"), f"{comparison['mcnemar_em']['p']:.3f}"
    else:
        delta, p = ("baseline" if baseline else "not compared"), ""
    em = with_interval(r["em"], [r["em_low"], r["em_high"]] if r["em_low"] is not None else None)
    return [
        label,
        str(r["N"]),
        em.strip(),
        _pct(r["f1"]),
        _pct(r["lemma"]),
        delta,
        p,
        f"{r['prefill_tokens'] / n:.1f}",
        f"{r['forward_calls'] / n:.2f}",
        f"{seconds / n:.3f}",
        str(n),
    ]


def latex_tables(groups: dict[tuple[str, str], list[list[str]]], extra: list[tuple] = ()) -> str:
    """report.tex: one booktabs table per model and dataset (needs \\usepackage{booktabs}), then the
    `extra` tables, each (header, cells, caption) as plain text."""
    parts = ["% Written by `selfens report`; needs \\usepackage{booktabs}."]
    for (model, dataset), cells in groups.items():
        caption = (
            rf"{_latex(model)} on {_latex(dataset)}: EM, F1 and lemma match in \%, with 95\% bootstrap "
            r"intervals; $\Delta$EM against the baseline on the same facts (paired bootstrap) and McNemar's exact "
            r"$p$; cost per fact."
        )
        parts += latex_table(LATEX_HEADER, cells, caption)
    for header, cells, caption in extra:
        parts += latex_table([_latex(h) for h in header], cells, _latex(caption))
    return "\n".join(parts)


def latex_table(header: list[str], cells: list[list[str]], caption: str) -> list[str]:
    """One booktabs table's lines: `header` and `caption` in LaTeX already, the cells text (escaped here)."""
    return [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
        *(" & ".join(_latex(c) for c in row) + r" \\" for row in cells),
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{caption}}}",
        r"\end{table}",
        "",
    ]


def write_latex(out: Path, groups: dict[tuple[str, str], list[list[str]]], extra: list[tuple] = ()) -> Path:
    path = out / "report.tex"
    path.write_text(latex_tables(groups, extra) + "\n", encoding="utf-8")
    return path


def _latex(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, escaped)
    return text.replace("Δ", r"$\Delta$")


def with_interval(value, ci, sign: str = "") -> str:
    """`45.2 [41.0, 49.3]` in %, as the report's tables show a value and its 95% interval ("+" signs
    the numbers: a difference); the value alone where there is no interval."""
    return f"{_pct(value, sign)} {_interval(ci, sign)}".rstrip()


def _pct(value, sign: str = "") -> str:
    return "" if value is None else f"{100 * value:{sign}.1f}"


def _interval(ci, sign: str = "") -> str:
    return "" if ci is None else f"[{100 * ci[0]:{sign}.1f}, {100 * ci[1]:{sign}.1f}]"


def _n(value) -> int:
    return value if isinstance(value, int) else 0
