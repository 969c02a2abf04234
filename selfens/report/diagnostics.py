"""The report's diagnostics, from what each run recorded (results.json's `diagnostics`): how much the
answers of a `per_prompt` run depend on the phrasing, how well each run's confidence matches how often
it is right, and the reliability diagram. A run written before runs recorded them shows `–`, not 0."""

from __future__ import annotations

from selfens.report.load import Run
from selfens.report.summary import with_interval
from selfens.report.tables import markdown_table

SENSITIVITY = {  # results.json key -> column
    "consistency": "consistency",
    "consistent_facts": "consistent facts",
    "knowledgeable_consistency": "knowl. cons.",
    "unknowledgeable_consistency": "unknowl. cons.",
    "group_accuracy": "group acc.",
    "oracle": "oracle",
    "maxp": "MaxP",
    "avgp": "AvgP",
    "cps": "CPS",
    "spread": "spread",
    "original_gap": "orig. gap",
}
CALIBRATION = {"ece": "ECE", "brier": "Brier", "overconfidence": "over-conf."}
MISSING = "–"


def sensitivity_table(runs: list[Run], labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """A row per `per_prompt` run (the runs that decode every phrasing alone): each metric in %, with
    its 95% interval over facts."""
    header = ["run", "model", "N", *SENSITIVITY.values()]
    cells = [
        [
            labels[run.name],
            run.model,
            str(run.settings.get("N", "")),
            *_cells(recorded(run, "sensitivity"), SENSITIVITY),
        ]
        for run in runs
        if run.method == "per_prompt"
    ]
    return header, cells


def calibration_table(runs: list[Run], labels: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """A row per run: ECE, Brier score and over-confidence (mean confidence − accuracy) in %, each with
    its 95% interval over examples; then what its confidence is, and over how many answers. A weighted
    method has a second row: its per-phrasing weights against whether each phrasing's answer is right."""
    header = ["run", "model", *CALIBRATION.values(), "confidence", "n"]
    cells = []
    for run in runs:
        found = recorded(run, "calibration")
        kind, n = (found.get("confidence", MISSING), str(found.get("n", MISSING))) if found else (MISSING, MISSING)
        cells.append([labels[run.name], run.model, *_cells(found, CALIBRATION), kind, n])
        if weights := recorded(run, "phrasing_calibration"):  # a weighted method's weights, one per phrasing
            label = f"{labels[run.name]} (weights)"
            cells.append([label, run.model, *_cells(weights, CALIBRATION), weights["confidence"], str(weights["n"])])
    return header, cells


def diagnostic_sections(runs: list[Run], labels: dict[str, str]) -> list[tuple[str, str, str]]:
    """The two tables in markdown, as (TensorBoard tag, heading, table), where a run has a row."""
    sections = []
    header, cells = sensitivity_table(runs, labels)
    if cells:
        heading = "Sensitivity to the phrasing (per_prompt runs; %, 95% CI over facts)"
        sections.append(("sensitivity", heading, markdown_table(header, cells)))
    header, cells = calibration_table(runs, labels)
    heading = "Calibration of each run's answers (%, 95% CI over examples)"
    sections.append(("calibration", heading, markdown_table(header, cells)))
    return sections


def latex_diagnostics(runs: list[Run], labels: dict[str, str]) -> list[tuple[list[str], list[list[str]], str]]:
    """report.tex's diagnostics, per model, as (header, cells, caption): the sensitivity of its per_prompt
    runs (a metric a row: a paper's table is narrow), and the calibration of its runs."""
    tables = []
    sensitivity, calibration = sensitivity_table(runs, labels), calibration_table(runs, labels)
    for model in dict.fromkeys(run.model for run in runs):
        mine = [row for row in sensitivity[1] if row[1] == model]
        if mine:
            header = ["metric", *(f"{row[0]} (N = {row[2]})" for row in mine)]
            cells = [[name, *(row[3 + i] for row in mine)] for i, name in enumerate(SENSITIVITY.values())]
            caption = f"{model}: sensitivity to the phrasing (per_prompt runs), in %, with 95% bootstrap intervals over facts."
            tables.append((header, cells, caption))
        header = [h for i, h in enumerate(calibration[0]) if i != 1]  # the model is in the caption
        cells = [[c for i, c in enumerate(row) if i != 1] for row in calibration[1] if row[1] == model]
        caption = (
            f"{model}: calibration, in %, with 95% bootstrap intervals over examples "
            f"(ECE over {_bins(runs)} equal-width bins; over-conf.: mean confidence minus accuracy)."
        )
        tables.append((header, cells, caption))
    return tables


def _bins(runs: list[Run]) -> str:
    return next((str(found["bins"]) for run in runs if (found := recorded(run, "calibration"))), "10")


def recorded(run: Run, part: str) -> dict | None:
    """The run's recorded diagnostics `part` ("sensitivity", "calibration"); None if it has none."""
    return (run.results.get("diagnostics") or {}).get(part)


def _cells(found: dict | None, columns: dict[str, str]) -> list[str]:
    return [_value(found.get(key)) if found else MISSING for key in columns]


def _value(stat: dict | None) -> str:
    """`45.2 [41.0, 49.3]` (%); `–` where undefined (e.g. consistency at N = 1)."""
    if not stat or stat.get("value") is None:
        return MISSING
    return with_interval(stat["value"], stat.get("ci95"))
