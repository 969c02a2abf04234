"""Results per group: ParaRel's relations, or the `group` of your own JSONL's lines. Each run's main
view per group (EM with its interval) and, where the run is paired with a baseline, its ΔEM against
that baseline on the group's examples (paired), so a reader sees where fusion helps and where it hurts."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from selfens.metrics.functional import normalize_answer
from selfens.report.load import Run
from selfens.report.summary import with_interval
from selfens.report.tables import markdown_table
from selfens.stats import paired_comparison, uncertainty

AGREE, DISAGREE = "phrasings agree", "phrasings disagree"
AGREEMENT_HEADING = (
    "Where fusion helps: facts whose phrasings agree or disagree (in the per_prompt run of the same model and N; "
    "ΔEM paired against the baseline)"
)
HEADER = ["group", "run", "method", "N", "n", "EM [95% CI]", "ΔEM [95% CI]", "vs"]


def group_of(row: dict, dataset: str) -> str | None:
    """The row's group; for ParaRel runs written before rows named it, the relation its id starts with."""
    if "group" in row:
        return row["group"]
    if dataset == "ParaRel" and "/" in row["id"]:
        return row["id"].split("/", 1)[0]
    return None


def agreement_of(runs: list[Run]) -> Callable[[Run, dict], str | None]:
    """The group of a run's fact by whether its phrasings agree: whether the `per_prompt` run of the same
    model, dataset and N gave one answer (after EM's normalization) for every phrasing of it. None
    for a fact no such run decoded. A fact whose phrasings disagree is where fusion can change the answer."""
    said: dict[tuple, dict[str, str]] = {}
    for run in runs:
        if run.method == "per_prompt":
            said[_key(run)] = {
                row["id"]: AGREE if len({normalize_answer(a) for a in row["per_paraphrase"]}) == 1 else DISAGREE
                for row in run.rows
                if "per_paraphrase" in row
            }
    return lambda run, row: said.get(_key(run), {}).get(row["id"])


def _key(run: Run) -> tuple:
    """The facts a run answered: its model, dataset, N and the examples' hash (where it recorded one)."""
    examples = ((run.results.get("identity") or {}).get("evaluation") or {}).get("examples")
    return run.model, run.results["dataset"], run.settings.get("N"), examples


def group_rows(
    runs: list[Run], compared: list[dict], resamples: int, seed: int, group: Callable[[Run, dict], str | None] = None
) -> list[dict]:
    """A row per (run, group) of every run whose rows have groups, groups in name order. `group(run,
    row)`: a row's group (default: the group the dataset names, e.g. ParaRel's relation)."""
    group = group or (lambda run, row: group_of(row, run.results["dataset"]))
    by_name, baseline_of = {run.name: run for run in runs}, {c["run"]: c["baseline"] for c in compared}
    table = []
    for run in runs:
        ids: dict[str, list[str]] = {}
        for row in run.rows:
            group_name = group(run, row)
            if group_name is not None:
                ids.setdefault(group_name, []).append(row["id"])
        base = by_name.get(baseline_of.get(run.name))
        for group_name, members in sorted(ids.items()):
            scores = run.scores(run.main_view, members)
            em = uncertainty({"em": scores["em"]}, resamples, seed)["em"]
            row = {"group": group_name, "run": run.name, "model": run.model, "method": run.label}
            row.update({"N": run.settings.get("N", ""), "n": len(members), "em": em["mean"], "em_ci95": em["ci95"]})
            if base is not None:
                paired = paired_comparison(scores, base.scores(base.main_view, members), 0, resamples, seed)
                diff = paired["difference"]["em"]
                row.update({"baseline": base.name, "delta_em": diff["mean"], "delta_em_ci95": diff["ci95"]})
            table.append(row)
    return table


def group_section(
    rows: list[dict],
    tag: str = "groups",
    heading: str = "Per group (main views; ΔEM against the baseline on the group's examples, paired)",
) -> tuple[str, str, str]:
    """The per-group table in markdown, as (TensorBoard tag, heading, table)."""
    cells = [
        [
            r["group"], r["run"], r["method"], str(r["N"]), str(r["n"]), with_interval(r["em"], r["em_ci95"]),
            with_interval(r["delta_em"], r["delta_em_ci95"], "+") if "delta_em" in r else "–", r.get("baseline", "–"),
        ]
        for r in rows
    ]  # fmt: skip
    return tag, heading, markdown_table(HEADER, cells)


def write_groups(path: Path, rows: list[dict]) -> Path:
    """Every row, as CSV (report_groups.csv)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def plot_groups(path: Path, rows: list[dict]) -> Path | None:
    """ΔEM in points, coloured (red: worse than the baseline, blue: better), groups × runs per model;
    None where no run is paired with a baseline."""
    rows = [r for r in rows if "delta_em" in r]
    if not rows:
        return None
    from selfens.report.plots import pyplot, save_figure

    plt = pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    groups = sorted({r["group"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(3 + 1.6 * len(models) * 3, 1 + 0.35 * len(groups)), squeeze=False)
    for ax, model in zip(axes[0], models):
        runs = list(dict.fromkeys(r["run"] for r in rows if r["model"] == model))
        cell = {(r["group"], r["run"]): 100 * r["delta_em"] for r in rows if r["model"] == model}
        grid = [[cell.get((g, run), float("nan")) for run in runs] for g in groups]
        limit = max((abs(v) for v in cell.values()), default=1) or 1
        image = ax.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        labels = [next(r["method"] for r in rows if r["run"] == run) for run in runs]
        ax.set_xticks(range(len(runs)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(groups)), groups, fontsize=7)
        ax.set_title(f"{model}: ΔEM (points) against the baseline")
        fig.colorbar(image, ax=ax)
    return save_figure(plt, fig, path)
