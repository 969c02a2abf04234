"""The statistics of a report: each view's scores with their uncertainty, and each run paired with
a baseline of the same evaluation."""

from __future__ import annotations

from pathlib import Path

from selfens.metrics import normalize_answer
from selfens.report.load import ReportError, Run
from selfens.run.identity import differences
from selfens.stats import paired_comparison, uncertainty


def view_rows(runs: list[Run], settings: list[str], resamples: int, seed: int) -> list[dict]:
    """One row per (run, view): the `settings` columns, each metric's mean, standard error and 95%
    interval, and every cost of the run."""
    table = []
    for run in runs:
        for view in run.views():
            row = {
                "run": run.name,
                "model": run.model,
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
    """Each run's main view against a baseline run of the same evaluation (same model, examples,
    prompts and decoding: `selfens.run.identity`); and, for each run not compared, why.

    `baseline` is a method name (each run is paired with that method's run of its own evaluation)
    or a run folder."""
    folder = Path(baseline)
    if (folder / "results.json").exists():
        bases = [r for r in runs if r.folder.resolve() == folder.resolve()]
        if not bases:
            raise ReportError(f"baseline {baseline} is not among the runs reported: add it to the paths")
    else:
        bases = [r for r in runs if r.method == baseline]
        if not bases:
            return [], [
                f"no {baseline!r} run among these runs: nothing to compare with (run the {baseline} config on the "
                f"same data and model, or name another method or a run folder with --baseline)"
            ]
    compared, skipped = [], []
    for run in runs:
        if run in bases:
            continue
        base, reason = _baseline_of(run, bases)
        if base is None:
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


def _baseline_of(run: Run, bases: list[Run]) -> tuple[Run | None, str]:
    """The first of `bases` of the same evaluation as `run`, or None and why none is."""
    if run.identity is None:
        return None, "it records no run identity (results.json of an older selfens): run it again to compare it"
    same = [b for b in bases if b.identity is not None and b.identity.evaluation == run.identity.evaluation]
    if same:
        if set(same[0].by_id) != set(run.by_id):  # the identity says they are; the rows must agree
            return None, f"not the same example ids as {same[0].name}, although the same evaluation"
        return same[0], ""
    why = [
        f"{b.name} records no run identity"
        if b.identity is None
        else f"{b.name} differs in {'; '.join(differences(b.identity.evaluation, run.identity.evaluation))}"
        for b in bases
    ]
    return None, f"no {bases[0].method} run of the same evaluation to pair with ({', and '.join(why)}: its value first)"
