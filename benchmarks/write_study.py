"""Writes docs/study.md from finished `selfens study` folders: every table and figure on the page is
computed here from the cells' results.json and predictions.jsonl (through `selfens report`'s own
code), none is copied by hand.

    python benchmarks/write_study.py lightning_logs/study-pararel lightning_logs/study-pararel-n --out docs/study.md

Per study: the command, the machine, the wall time (the cells' own, summed) and the cells that cost
most; one table per model (each method against that model's origin); the two claims of the original
scripts, answered per model with paired intervals (attention fusion's decode time against avg's, and
its EM against avg's on the same facts); why fusion wins or loses, per model: the sensitivity to the
phrasing, every run's calibration, and ΔEM against origin on the facts whose phrasings agree and on
those where they disagree, and per relation; the plots (copied next to the page); and the cells of
the study config that have not run yet.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfens.report.compare import comparisons, view_rows  # noqa: E402
from selfens.report.diagnostics import calibration_table, recorded, sensitivity_table  # noqa: E402
from selfens.report.groups import agreement_of, group_rows  # noqa: E402
from selfens.report.load import collect, setting_columns  # noqa: E402
from selfens.report.summary import SUMMARY_HEADER, summary_groups, with_interval  # noqa: E402
from selfens.report.tables import markdown_table  # noqa: E402
from selfens.report.terminal import run_labels  # noqa: E402
from selfens.run.diagnostics import answer_confidence  # noqa: E402
from selfens.stats import uncertainty  # noqa: E402

RESAMPLES, SEED = 1000, 0  # as `selfens report`'s defaults: the same intervals as report.md
LOGIT = ("avg", "max", "weighted_avg", "weighted_max")  # logit-level fusion, which attention is held against


def study_section(folder: Path, images: Path) -> str:
    runs = collect([str(folder)])
    if not runs:
        return f"## `{folder}`\n\nNo finished cell yet."
    rows = view_rows(runs, setting_columns(runs), RESAMPLES, SEED)
    compared, skipped = comparisons(runs, "origin", RESAMPLES, SEED)
    results = [r.results for r in runs]
    wall = sum(r["wall_time_s"] for r in results)
    costly = sorted(runs, key=lambda r: -r.results["wall_time_s"])[:3]
    costliest = ", ".join(f"{r.name} {r.results['wall_time_s'] / 60:.1f} min" for r in costly)
    versions = results[0]["versions"]
    lines = [
        f"## `{folder}`",
        "",
        f"- command: `selfens study --config {_config_of(folder)}` (or `make study`)",
        f"- cells finished: {len(runs)}; wall time of the cells, summed: {wall / 60:.1f} min (costliest: {costliest})",
        f"- processes: {results[0]['world_size']}; torch {versions['torch']}, transformers {versions['transformers']}, "
        f"python {versions['python']}",
        f"- finished between {min(r['finished'] for r in results)} and {max(r['finished'] for r in results)}",
        *_qualifying(runs),
        "",
    ]
    labels = run_labels(runs)
    by_agreement = group_rows(runs, compared, RESAMPLES, SEED, agreement_of(runs))
    by_relation = group_rows(runs, compared, RESAMPLES, SEED)
    for (model, dataset), cells in summary_groups(rows, compared).items():
        lines += [f"### {model} · {dataset}", "", markdown_table(SUMMARY_HEADER, cells), ""]
        lines += _views(model, rows) + _claims(model, runs, rows) + [""]
        lines += _fitted(model, runs, rows)
        lines += _diagnostics(model, runs, labels) + _calibration_against_origin(model, runs, labels)
        lines += _split(model, by_agreement, "phrasings")
        lines += _split(model, by_relation, "relation")
    lines += _across_sizes(folder, runs, rows, compared, images)
    lines += _interval_target(compared) + [f"- not compared: {s}" for s in skipped]
    for plot in sorted(folder.glob("report_*.png")):
        target = images / f"{folder.name}-{plot.name}"
        shutil.copyfile(plot, target)
        lines += ["", f"![{plot.stem}]({target.name})"]
    return "\n".join(lines)


def _qualifying(runs: list) -> list[str]:
    """How many ParaRel facts the cells' sample was drawn from: those of relations with enough
    templates at the study's largest N (the cells' data settings, from results.json)."""
    config = max((r.results["config"]["data"] for r in runs), key=lambda c: c.get("num_paraphrases", 0))
    if config.get("_class_path") != "selfens.data.ParaRel":
        return []
    from selfens.data import ParaRel

    keys = ("data_dir", "relations", "fill_style", "num_paraphrases", "num_shots", "sample", "sample_seed")
    counts = {k: v for k, v in ParaRel(**{k: config[k] for k in keys}).qualifying().items() if v}
    return [
        f"- facts that qualify at N = {config['num_paraphrases']} ({config['fill_style']}): {sum(counts.values()):,} "
        f"in {len(counts)} relations ({', '.join(f'{r} {n}' for r, n in counts.items())}); sampled: {config['sample']}"
    ]


def _views(model: str, rows: list[dict]) -> list[str]:
    """per_prompt's views (each phrasing alone, and their vote), which tell how good each phrasing is."""
    said = []
    for run in sorted({r["run"] for r in rows if r["model"] == model and r["method"] == "per_prompt"}):
        views = [r for r in rows if r["run"] == run]
        shown = ", ".join(
            f"{v['view']} {100 * v['em']:.1f} [{100 * v['em_low']:.1f}, {100 * v['em_high']:.1f}]" for v in views
        )
        said.append(f"- per_prompt's views (EM [95% CI]; p1 is the original wording): {shown}.")
    return said


def _claims(model: str, runs: list, rows: list[dict]) -> list[str]:
    """Attention-level fusion against each logit-level fusion rule on this model at the same N and
    evaluation: decode seconds per fact, and EM paired on the same facts."""
    main = {r["run"]: r for r in rows if r["main"] and r["model"] == model}
    mine = [r for r in runs if r.name in main]
    said = []
    for attention in sorted((r for r in mine if r.method == "attention"), key=lambda r: (main[r.name]["N"], r.name)):
        for logit in (r for r in mine if r.method in LOGIT):
            same = logit.identity.evaluation == attention.identity.evaluation
            if not same or main[logit.name]["N"] != main[attention.name]["N"]:
                continue
            (c,), _ = comparisons([logit, attention], str(logit.folder), RESAMPLES, SEED)
            run, base = main[attention.name], main[logit.name]
            seconds = lambda r: (r["decode_seconds"] + r["confidence_seconds"]) / r["n"]  # noqa: E731
            diff = c["difference"]["em"]
            low, high = (100 * v for v in diff["ci95"])
            verdict = "better" if low > 0 else "worse" if high < 0 else "not distinguishable (the interval holds 0)"
            said.append(
                f"- {run['label']} against {base['label']} (N = {run['N']}): decode time "
                f"{seconds(run) / seconds(base):.2f}× its per fact; EM {100 * diff['mean']:+.1f} points "
                f"[{low:+.1f}, {high:+.1f}], McNemar p = {c['mcnemar_em']['p']:.3f} on {c['n']} facts: {verdict}."
            )
    return said


FITTED_AGAINST = {  # a fitted rule -> the unfitted methods it is held against (origin: in the table above)
    "best_phrasing": ("per_prompt",),
    "fitted_weighted": ("weighted_avg", "avg"),
    "fitted_filtered": ("avg",),
}


def _fitted(model: str, runs: list, rows: list[dict]) -> list[str]:
    """Each fitted rule against its unfitted counterparts on the same facts (paired), and the weights
    it used per relation (from its rows: a relation's examples share them)."""
    main = {r["run"]: r for r in rows if r["main"] and r["model"] == model}
    mine = {r.method: r for r in runs if r.name in main}
    said = []
    for method, against in FITTED_AGAINST.items():
        if method not in mine:
            continue
        run = mine[method]
        for base in (mine[b] for b in against if b in mine):
            (c,), _ = comparisons([base, run], str(base.folder), RESAMPLES, SEED)
            diff = c["difference"]["em"]
            said.append(
                f"- {method} against {base.method}: EM {with_interval(diff['mean'], diff['ci95'], '+')} points, "
                f"McNemar p = {c['mcnemar_em']['p']:.3f} on {c['n']} facts."
            )
    weighted = mine.get("fitted_weighted")
    if weighted is not None:
        per_relation = {r["group"]: r["weights"] for r in weighted.rows if "weights" in r and r.get("group")}
        best = {r["group"]: r["phrasing"] for r in mine["best_phrasing"].rows} if "best_phrasing" in mine else {}
        n = len(next(iter(per_relation.values()), []))
        header = ["relation", *(f"p{k + 1}" for k in range(n)), "best phrasing"]
        cells = [
            [g, *(f"{100 * w:.1f}" for w in ws), f"p{best[g]}" if g in best else "–"]
            for g, ws in sorted(per_relation.items())
        ]
        said += ["", "**Fitted per relation** (each phrasing's shrunk dev accuracy, %: fitted_weighted's weights)", ""]
        said += [markdown_table(header, cells)]
    return said + ([""] if said else [])


def _diagnostics(model: str, runs: list, labels: dict[str, str]) -> list[str]:
    """The model's sensitivity to the phrasing (its per_prompt runs) and every run's calibration."""
    lines = []
    for (header, cells), title in (
        (sensitivity_table(runs, labels), "Sensitivity to the phrasing (per_prompt; %, 95% CI over facts)"),
        (calibration_table(runs, labels), "Calibration (%, 95% CI over examples)"),
    ):
        mine = [row for row in cells if row[1] == model]
        if mine:
            lines += [f"**{title}**", "", markdown_table(header, mine), ""]
    return lines


def _calibration_against_origin(model: str, runs: list, labels: dict[str, str]) -> list[str]:
    """Is fusion better calibrated than asking once? Each run's Brier score and over-confidence minus
    origin's, paired on the facts both give a confidence for (bootstrap over those facts)."""
    mine = [r for r in runs if r.model == model]
    origin = next((r for r in mine if r.method == "origin"), None)
    if origin is None:
        return []
    base = {row["id"]: (answer_confidence(row), row["scores"][origin.main_view]["em"]) for row in origin.rows}
    cells = []
    for run in (r for r in mine if r is not origin):
        pairs = []
        for row in run.rows:
            c, (c0, y0) = answer_confidence(row), base.get(row["id"], (None, None))
            if c is not None and c0 is not None:
                pairs.append((c, row["scores"][run.main_view]["em"], c0, y0))
        if pairs:
            columns = {
                "brier": [(c - y) ** 2 - (c0 - y0) ** 2 for c, y, c0, y0 in pairs],
                "overconfidence": [(c - y) - (c0 - y0) for c, y, c0, y0 in pairs],
            }
            stats = uncertainty(columns, RESAMPLES, SEED)
            shown = [with_interval(stats[m]["mean"], stats[m]["ci95"], "+") for m in columns]
            cells.append([labels[run.name], str(len(pairs)), *shown])
    if not cells:
        return []
    header = ["run", "facts", "ΔBrier [95% CI]", "Δover-confidence [95% CI]"]
    return ["**Calibration against origin** (points, paired on the same facts)", "", markdown_table(header, cells), ""]


def _split(model: str, grouped: list[dict], what: str) -> list[str]:
    """ΔEM against origin (points, paired 95% CI) per part of the facts (by agreement of the phrasings,
    or by relation) and run, a part a row: where fusion helps and where it hurts."""
    mine = [r for r in grouped if r["model"] == model and "delta_em" in r]
    if not mine:
        return []
    runs = list(dict.fromkeys(r["run"] for r in mine))
    cell = {(r["group"], r["run"]): with_interval(r["delta_em"], r["delta_em_ci95"], "+") for r in mine}
    count = {r["group"]: r["n"] for r in mine}
    base = {r["group"]: r for r in grouped if r["run"] == mine[0]["baseline"]}
    header = [what, "n", "origin EM", *(f"{run.rsplit('/', 1)[-1]} ΔEM" for run in runs)]  # the cell's name
    cells = [
        [group, str(count[group]), with_interval(base[group]["em"], base[group]["em_ci95"]) if group in base else "–"]
        + [cell.get((group, run), "–") for run in runs]
        for group in sorted(count)
    ]
    title = f"**ΔEM against origin by {what}** (points; paired 95% CI over the facts of each row)"
    return [title, "", markdown_table(header, cells), ""]


def parameters(model: str) -> int:
    """A registry model's parameter count, from its config on the meta device (tied weights once)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    from selfens.model.registry import model_config

    with init_empty_weights():
        built = AutoModelForCausalLM.from_config(model_config(model))
    built.tie_weights()  # a tied output layer is the embedding: counted once
    return sum(p.numel() for p in built.parameters())


def short(parameters: int) -> str:
    """135M, 1.78B: a parameter count in a column's width."""
    if parameters >= 1e9:
        return f"{parameters / 1e9:.2f}B"
    return f"{parameters / 1e6:.0f}M" if parameters >= 1e6 else f"{parameters / 1e3:.0f}k"


def _across_sizes(folder: Path, runs: list, rows: list[dict], compared: list[dict], images: Path) -> list[str]:
    """Each method's ΔEM against origin, each model's consistency (per_prompt) and each run's Brier score
    against the model's size, as a table and a plot (`<folder>-sizes.png`): does fusion start to pay
    as models grow? A study of one model has no such section."""
    models = list(dict.fromkeys(r.model for r in runs))
    if len(models) < 2:
        return []
    cell = lambda run: run.name.rsplit("/", 1)[-1]  # noqa: E731  the study's name for a method, e.g. avg-N5
    by_run = {r.name: r for r in runs}
    delta = {(by_run[c["run"]].model, cell(by_run[c["run"]])): c["difference"]["em"] for c in compared}
    metric = {"consistency": ("sensitivity", "consistency"), "brier": ("calibration", "brier")}
    found = {
        (name, r.model, cell(r)): stats[key]
        for r in runs
        for name, (part, key) in metric.items()
        if key in (stats := recorded(r, part) or {})
    }
    source = {r.model: r.results["config"]["model"]["model"] for r in runs}  # registry name or folder
    size = {m: parameters(source[m]) for m in models}
    models.sort(key=size.get)
    header = ["", *(f"{m} ({short(size[m])})" for m in models)]
    pct = lambda v: with_interval(v["value"], v["ci95"])  # noqa: E731
    origin = {r["model"]: r for r in rows if r["main"] and r["method"] == "origin"}  # view_rows: EM and its CI
    em = lambda r: with_interval(r["em"], [r["em_low"], r["em_high"]])  # noqa: E731
    cells = [["origin EM", *(em(origin[m]) if m in origin else "–" for m in models)]]
    order = _config_order(folder)
    methods = sorted({k[1] for k in delta}, key=order)
    for method in methods:
        shown = [delta.get((m, method)) for m in models]
        cells.append([f"{method} ΔEM", *(with_interval(d["mean"], d["ci95"], "+") if d else "–" for d in shown)])
    for method in sorted({k[2] for k in found if k[0] == "consistency"}, key=order):
        cells.append(
            [
                f"consistency ({method})",
                *(pct(found[k]) if (k := ("consistency", m, method)) in found else "–" for m in models),
            ]
        )
    for method in sorted({k[2] for k in found if k[0] == "brier"}, key=order):
        cells.append(
            [f"{method} Brier", *(pct(found[k]) if (k := ("brier", m, method)) in found else "–" for m in models)]
        )
    plot = images / f"{folder.name}-sizes.png"
    _plot_sizes(plot, models, size, methods, delta, found, order)
    title = "**Across sizes** (ΔEM against each model's origin in points, paired 95% CI; consistency and Brier in %)"
    return [title, "", markdown_table(header, cells), "", f"![sizes]({plot.name})", ""]


def _config_order(folder: Path):
    """A sort key of cell names (`avg-N5`) in the order of the study config's methods, where it is found."""
    from selfens.study.grid import load_study

    config = _config_of(folder)
    names = [] if config == "<config>" else list(dict.fromkeys(c.name for c in load_study(ROOT / config).cells))
    return lambda name: (names.index(name) if name in names else len(names), name)


def _plot_sizes(path: Path, models: list[str], size: dict, methods: list[str], delta: dict, found: dict, order) -> None:
    """Three panels against parameters (log scale): ΔEM per method, consistency, Brier per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    x = [size[m] for m in models]
    every = sorted({*methods, *(k[2] for k in found)}, key=order)
    color = {name: f"C{i % 10}" for i, name in enumerate(every)}  # one colour per method in every panel

    def line(ax, values: list, label: str) -> None:
        shown = [(xi, v) for xi, v in zip(x, values) if v is not None]
        if not shown:
            return
        xs, vs = zip(*shown)
        mean = [100 * v.get("mean", v.get("value")) for v in vs]
        low, high = ([abs(m - 100 * v["ci95"][i]) for m, v in zip(mean, vs)] for i in (0, 1))
        ax.errorbar(xs, mean, yerr=[low, high], marker="o", capsize=3, label=label, color=color[label])

    for method in methods:
        line(axes[0], [delta.get((m, method)) for m in models], method)
    axes[0].axhline(0, color="grey", lw=0.8)
    for panel, name in ((axes[1], "consistency"), (axes[2], "brier")):
        for method in sorted({k[2] for k in found if k[0] == name}, key=order):
            line(panel, [found.get((name, m, method)) for m in models], method)
    titles = ("ΔEM against origin (points)", "consistency of the phrasings (%)", "Brier score (%, lower is better)")
    for ax, title in zip(axes, titles):
        ax.set_xscale("log")
        ax.set_xticks(x, [f"{m}\n{short(size[m])}" for m in models], fontsize=7)
        ax.minorticks_off()
        ax.set_title(title)
    shown = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(list(shown.values()), list(shown), loc="lower center", ncol=6, fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _interval_target(compared: list[dict], points: float = 3.0) -> list[str]:
    """The issue's target: every paired ΔEM interval against origin no wider than ±`points`."""
    if not compared:
        return []
    half = {
        c["method"] + f" ({c['run']})": 50 * (c["difference"]["em"]["ci95"][1] - c["difference"]["em"]["ci95"][0])
        for c in compared
    }
    widest = max(half, key=half.get)
    wider = [f"{name} ±{h:.1f}" for name, h in half.items() if h > points]
    verdict = "met by every run" if not wider else f"missed by {len(wider)} of {len(half)}: {', '.join(wider)}"
    return [
        f"- target, paired ΔEM intervals against origin no wider than ±{points:g} points: {verdict} "
        f"(widest: {widest}, ±{half[widest]:.1f})",
        "",
    ]


def _config_of(folder: Path) -> str:
    for config in sorted((ROOT / "configs" / "study").glob("*.yaml")):
        if f"folder: {folder.as_posix()}" in config.read_text() or folder.name == f"study-{config.stem}":
            return str(config.relative_to(ROOT))
    return "<config>"


def write(folders: list[Path], out: Path, findings: Path | None = None, log: Path | None = None) -> None:
    sections = [study_section(f, out.parent) for f in folders]
    header = [
        "# A recorded study",
        "",
        "Written by `python benchmarks/write_study.py "
        + " ".join(str(f) for f in folders)
        + f" --out {out}` from the studies' run folders: every table and figure below is computed from them,",
        "and the words (docs/study_findings.md) quote them.",
        "EM, F1 and lemma are in %, with 95% percentile-bootstrap intervals over facts (1,000 resamples, seed 0);",
        "ΔEM is paired on the same facts against that model's origin, with McNemar's exact p.",
        "",
    ]
    if log is not None and log.exists():  # benchmarks/run_study.sh's record of each whole process
        header += [f"Each `selfens study` process, timed by `benchmarks/run_study.sh` ({log}):", "", "```"]
        header += [*log.read_text(encoding="utf-8").splitlines(), "```", ""]
    if findings is not None and findings.exists():  # the words; every figure in them is in the tables below
        header += [findings.read_text(encoding="utf-8").strip(), ""]
    out.write_text("\n".join(header + sections) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="study folders (each holds <model>/<cell>/ runs)")
    parser.add_argument("--out", type=Path, default=Path("docs/study.md"))
    parser.add_argument("--findings", type=Path, default=Path("docs/study_findings.md"), help="the page's words")
    parser.add_argument("--log", type=Path, default=Path("docs/study.log"), help="benchmarks/run_study.sh's log")
    args = parser.parse_args(argv)
    write(args.folders, args.out, args.findings, args.log)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
