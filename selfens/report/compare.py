"""The statistics of a report: each view's scores with their uncertainty, and each run paired with
a baseline on the same examples."""

from __future__ import annotations

from pathlib import Path

from selfens.metrics import normalize_answer
from selfens.report.load import ReportError, Run
from selfens.stats import paired_comparison, uncertainty


def view_rows(runs: list[Run], settings: list[str], resamples: int, seed: int) -> list[dict]:
    """One row per (run, view): the `settings` columns, each metric's mean, standard error and 95%
    interval, and every cost of the run."""
    table = []
    for run in runs:
        for view in run.views():
            row = {
                "run": run.name,
                "model": Path(run.results["model"]).name,
                "dataset": run.results["dataset"],
                "method": run.method,
                "label": run.label,
                **{k: run.method_settings.get(k, "") for k in settings},
                "N": run.settings.get("N", ""),
                "view": view,
                "main": view == run.main_view,
                "n": len(run.rows),
            }
            for m, s in uncertainty(run.scores(view), resamples, seed).items():
                low, high = s["ci95"] or (None, None)
                row.update({m: s["mean"], f"{m}_se": s["se"], f"{m}_low": low, f"{m}_high": high})
            table.append({**row, **run.cost.to_dict()})
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
