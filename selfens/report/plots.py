"""The report's pictures: score against cost and against N (from its view rows), and the reliability
diagram (from the runs' recorded calibration)."""

from __future__ import annotations

from pathlib import Path

from selfens.report.diagnostics import recorded
from selfens.report.load import Run


def write_plots(out: Path, rows: list[dict]) -> list[Path]:
    """The plots of the runs' main views in `out`: against cost, and against N where runs differ in N."""
    main = [r for r in rows if r["main"]]
    written = [plot_cost(out / "report_cost.png", main)]
    if len({r["N"] for r in main}) > 1:
        written.append(plot_n(out / "report_n.png", main))
    return written


def pyplot():
    """pyplot without a display (imported here: only a report that writes plots needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(plt, rows: list[dict]):
    """One panel per model (side by side), each with that model's rows."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 4.8), squeeze=False)
    return fig, [(ax, model, [r for r in rows if r["model"] == model]) for ax, model in zip(axes[0], models)]


def _em_error(r: dict) -> list[list[float]]:
    low = r["em_low"] if r["em_low"] is not None else r["em"]
    high = r["em_high"] if r["em_high"] is not None else r["em"]
    return [[100 * (r["em"] - low)], [100 * (high - r["em"])]]


def plot_cost(path: Path, rows: list[dict]) -> Path:
    """EM of each run's main view (with its 95% interval) against its decode seconds per fact, one
    panel per model."""
    plt = pyplot()
    fig, panels = _panels(plt, rows)
    for ax, model, runs in panels:
        for r in runs:
            seconds = (r["decode_seconds"] + r["confidence_seconds"]) / r["n"]
            ax.errorbar(seconds, 100 * r["em"], yerr=_em_error(r), fmt="o", capsize=4, label=f"{r['label']} N={r['N']}")
            ax.annotate(r["method"], (seconds, 100 * r["em"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        datasets = ", ".join(sorted({r["dataset"] for r in runs}))
        ax.set_title(f"{model}: {datasets}, n = {', '.join(sorted({str(r['n']) for r in runs}))}")
        ax.set_xlabel("decode seconds per fact (confidences included)")
        ax.set_ylabel("EM % (95% bootstrap CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.12))  # below: the lines stay visible
    return save_figure(plt, fig, path)


def plot_n(path: Path, rows: list[dict]) -> Path:
    """EM against N, one line per method (label), one panel per model."""
    plt = pyplot()
    fig, panels = _panels(plt, rows)
    for ax, model, runs in panels:
        for label in sorted({r["label"] for r in runs}):
            points = sorted((r for r in runs if r["label"] == label), key=lambda r: (r["N"], r["run"]))
            ys = [100 * r["em"] for r in points]
            err = [sum(e, []) for e in zip(*(_em_error(r) for r in points))]
            ax.errorbar([r["N"] for r in points], ys, yerr=err, marker="o", capsize=4, label=label)
        ax.set_title(model)
        ax.set_xticks(sorted({r["N"] for r in runs}))
        ax.set_xlabel("N (phrasings)")
        ax.set_ylabel("EM % (95% bootstrap CI)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(plt, fig, path)


def plot_reliability(path: Path, runs: list[Run], labels: dict[str, str]) -> Path | None:
    """Accuracy against confidence in equal-width bins, one line per run (and a dashed one per weighted
    run, of its phrasings' weights), one panel per model; None where no run recorded its calibration."""
    calibrated = [(run, found, "") for run in runs if (found := recorded(run, "calibration"))]
    # a weighted method's per-phrasing weights, dashed beside its answers
    calibrated += [(run, found, "--") for run in runs if (found := recorded(run, "phrasing_calibration"))]
    if not calibrated:
        return None
    plt = pyplot()
    models = list(dict.fromkeys(run.model for run, _, _ in calibrated))
    rows = max(sum(1 for r, _, _ in calibrated if r.model == m) for m in models)  # legend lines, below
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 5 + 0.18 * rows), squeeze=False)
    for ax, model in zip(axes[0], models):
        ax.plot([0, 100], [0, 100], color="grey", linestyle=":", label="calibrated")
        for run, found, dashed in ((r, f, d) for r, f, d in calibrated if r.model == model):
            bins = [b for b in found["reliability"] if b["count"]]
            what = f"{run.label}, weights" if dashed else run.label
            ax.plot(
                [100 * b["confidence"] for b in bins],
                [100 * b["accuracy"] for b in bins],
                marker="o",
                linestyle=dashed or "-",
                label=f"{labels[run.name]} ({what}, ECE {100 * found['ece']['value']:.1f})",
            )
        ax.set_title(f"{model}: reliability ({calibrated[0][1].get('bins', '?')} equal-width bins)")
        ax.set_xlabel("confidence % (per_prompt: agreement; dashed: a phrasing's weight)")
        ax.set_ylabel("EM % of the answers in the bin")
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.12))  # below: the lines stay visible
    return save_figure(plt, fig, path)


def save_figure(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
