"""The report's pictures, from its view rows: score against cost, and score against N."""

from __future__ import annotations

from pathlib import Path


def write_plots(out: Path, rows: list[dict]) -> list[Path]:
    """The plots of the runs' main views in `out`: against cost, and against N where runs differ in N."""
    main = [r for r in rows if r["main"]]
    written = [plot_cost(out / "report_cost.png", main)]
    if len({r["N"] for r in main}) > 1:
        written.append(plot_n(out / "report_n.png", main))
    return written


def _pyplot():
    """pyplot without a display (imported here: only a report that writes plots needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cost(path: Path, rows: list[dict]) -> Path:
    """EM of each run's main view (with its 95% interval) against its decode cost."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        seconds = r["decode_seconds"] + r["confidence_seconds"]
        err = [[100 * (r["em"] - r["em_low"])], [100 * (r["em_high"] - r["em"])]] if r["em_low"] is not None else None
        ax.errorbar(seconds, 100 * r["em"], yerr=err, fmt="o", capsize=4, label=f"{r['label']} ({r['run']})")
        ax.annotate(r["method"], (seconds, 100 * r["em"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("decode seconds (confidences included)")
    ax.set_ylabel("EM % (95% bootstrap CI)")
    ax.set_title(f"score against cost: {', '.join(sorted({r['dataset'] for r in rows}))}, n = {rows[0]['n']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, path)


def plot_n(path: Path, rows: list[dict]) -> Path:
    """EM against N, one line per method (label)."""
    plt = _pyplot()
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
    return _save(plt, fig, path)


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
