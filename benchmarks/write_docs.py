"""Renders the tables of docs/benchmarks.md from the recorded JSONs, between the page's markers.

    python benchmarks/write_docs.py            # rewrite the generated block of docs/benchmarks.md
    python benchmarks/write_docs.py --check    # exit 1 if the block is not what the JSONs give

Only the block between BEGIN and END is written; the words outside it are written by hand and
quote figures from its tables. Each section (SECTIONS) renders one JSON in the layout its script
writes: the run's facts (command, date, machine, load, trees) and its tables, no sentences.
Needs only the standard library.
"""

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- generated: begin -->", "<!-- generated: end -->"
NOTE = "<!-- written by benchmarks/write_docs.py from the JSONs named below: do not edit by hand -->"
DASH = "–"
SEEDS = ("avg, seed loop (as written)", "avg, seed loop (same stop & batch)")
SIDES = ("baseline", "new")


# -- figures and tables ----------------------------------------------------------------------------
def show(key: str, value) -> str:
    """A figure as the page shows it, by what its key holds."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return ("on" if value else "off") if key == "reuse_prefix" else ("yes" if value else "no")
    if key.endswith("bytes"):
        return f"{value / 2**20:.1f}"
    if key.endswith(("em", "argmax_equal")):  # a share, in percent: whole numbers as such
        p = 100 * value
        return f"{p:.0f}" if abs(p - round(p)) < 1e-9 else f"{p:.1f}"
    if key.endswith(("ratio", "vs_origin", "vs_baseline", "vs_a", "facts_per_s")):
        return f"{value:,.2f}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def columns(spec: str) -> list[tuple[str, str]]:
    """ "title=key, ..." (a title alone is its key; "a.b" is row["a"]["b"]) as (title, key) pairs."""
    pairs = [part.rpartition("=") for part in spec.split(", ")]
    return [(title or key, key) for title, _, key in pairs]


def table(spec: str, rows: list[dict]) -> str:
    """A markdown table of `rows`; a missing figure is a dash."""

    def cell(row: dict, key: str) -> str:
        for part in key.split("."):
            row = row.get(part) if isinstance(row, dict) else None
        return show(key, row)

    pairs = columns(spec)
    lines = ["| " + " | ".join(t for t, _ in pairs) + " |", "|" + "---|" * len(pairs)]
    return "\n".join(lines + ["| " + " | ".join(cell(r, k) for _, k in pairs) + " |" for r in rows])


def tree(t: dict) -> str:
    """A code tree: its path, commit (+changes: its files differed from it) and package."""
    commit = lambda c: c[:12] + "+changes" * c.endswith("+changes")
    said = f"`{t['path']}`" + (f" at {commit(t['commit'])}" if "commit" in t else "")
    said += f" ({commit(t['commit_at_end'])} at the end)" if t.get("commit_at_end") else ""
    return said + (f", package `{t['package']}`" if t.get("package") else "")


def facts(m: dict, path: str) -> str:
    """A run's facts as a list: what ran, when, where, on what load."""
    load, data, wall = m.get("load_average"), m.get("data") or {}, m.get("total_wall_s")
    machine = [
        m.get("cpu_count") and f"{m['cpu_count']} CPU cores",
        m.get("threads") and f"torch threads {m['threads']}",
    ]
    model = [m.get("model") and f"`{m['model']}`", m.get("device"), m.get("weights_dtype")]
    said = [
        ("command", m.get("command") and f"`{m['command']}`"),
        *[(f"command ({side})", f"`{c}`") for side, c in m.get("commands", {}).items()],
        ("date", m.get("date")),
        ("commit", m.get("commit")),
        ("wall time, min", wall and f"{wall / 60:.1f}"),
        ("model", " ".join(filter(None, model))),
        ("machine", ", ".join(filter(None, [*machine, m.get("gpu"), m.get("platform")]))),
        ("1-minute load average, start → end", load and f"{load[0]} → {load[1]}"),
        ("software", ", ".join(f"{k} {m[k]}" for k in ("torch", "transformers", "python", "lm_eval") if m.get(k))),
        *[(f"facts at N = {n}", qualified(d, m)) for n, d in data.items()],
        *[(side, tree(m[side])) for side in SIDES if isinstance(m.get(side), dict)],
        ("raw output", f"`{path}`"),
    ]
    return "\n".join(f"- {label}: {value}" for label, value in said if value)


def qualified(d: dict, m: dict) -> str:
    """How many facts ran, of how many relations, drawn from how many."""
    said = f"{d['facts']:,} of {d['relations_used']} relations"
    if d.get("facts_qualifying") is not None:
        drawn = f"sampled (seed {m['sample_seed']})" if m.get("facts") else "the first"
        said += f", {drawn} of {d['facts_qualifying']:,} qualifying in {d['relations_qualifying']} of {d['relations_bundled']} relations"
    return said


# -- the sections ----------------------------------------------------------------------------------
METHOD_COLUMNS = (
    "N=n, method, reuse=reuse_prefix, facts=examples, wall s=wall_s, × origin=wall_vs_origin, prefill=prefill_tokens, "
    "padded=prefill_padded_tokens, floor=floor_tokens, forwards=forward_calls, row-steps=row_steps, peak KV MB=peak_kv_bytes, EM %=em"
)
SEED_COLUMNS = "row, wall s=wall_s, prefill=prefill_tokens, forwards=forward_calls, row-steps=row_steps, EM %=em, gain over the row above=gain_ratio, gain over the first row=total_ratio"
SCALE_COLUMNS = (
    "N=n, method, facts=examples, batch=batch_size, decode rows=decode_rows, wall s=wall_s, facts/s=facts_per_s, "
    "× origin=wall_vs_origin, prefill=prefill_tokens, padded=prefill_padded_tokens, forwards=forward_calls, row-steps=row_steps, "
    "rows/step=rows_per_step, peak KV MB=peak_kv_bytes, EM %=em, baseline wall s=baseline_wall_s, new / baseline=vs_baseline, same answers=same_answers"
)
DEMO_COLUMNS = (
    "method, facts=examples, baseline batch=baseline.batch_size, new batch=new.batch_size, baseline decode s=baseline.decode_s, "
    "new decode s=new.decode_s, new / baseline=ratio, baseline EM %=baseline.em, new EM %=new.em, same predictions=identical"
)
LM_EVAL_COLUMNS = "run, first, load before=load_1min_before, selfens s=selfens_s, lm-eval s=lm_eval_s, selfens / lm-eval=ratio, identical answers=identical"
CONFIDENCE_COLUMNS = (
    "run, first, baseline s=baseline.wall_s, new s=new.wall_s, new / baseline=wall_ratio, baseline confidence s=baseline.confidence_s, "
    "new confidence s=new.confidence_s, new / baseline (confidence)=confidence_ratio, baseline forwards=baseline.forward_calls, "
    "new forwards=new.forward_calls, same values=identical"
)
LEVER_COLUMNS = "variant, rows, ms/step=ms_per_step, × a=vs_a, fastest × a=min_vs_a, compile s=compile_s, argmax as a's %=argmax_equal"


def methods(data: dict) -> str:
    """bench_methods.py at several N, reuse on and off: every row; each method's wall time without
    reuse over with it; the seed loops step by step to `avg` with reuse."""
    rows = data["rows"]
    get = lambda n, m, reuse: next(r for r in rows if (r["n"], r["method"], r["reuse_prefix"]) == (n, m, reuse))
    ns = sorted({r["n"] for r in rows})
    reuse = [
        {"method": m, **{f"{n} ratio": get(n, m, False)["wall_s"] / get(n, m, True)["wall_s"] for n in ns}}
        for m in dict.fromkeys(r["method"] for r in rows if r["method"] not in SEEDS)
    ]
    parts = [table(METHOD_COLUMNS, rows), "### Prefix reuse: wall time without it / with it"]
    parts.append(table(", ".join(["method", *[f"N = {n}={n} ratio" for n in ns]]), reuse))
    seeds = [r for r in rows if r["method"] in SEEDS]
    if seeds:
        n = seeds[0]["n"]
        steps = [*seeds, get(n, "avg", False), get(n, "avg", True)]
        shown = [
            {**row, "row": f"{row['method']}, reuse {show('reuse_prefix', row['reuse_prefix'])}"}
            | {
                "gain_ratio": above and above["wall_s"] / row["wall_s"],
                "total_ratio": steps[0]["wall_s"] / row["wall_s"],
            }
            for above, row in zip([None, *steps], steps)
        ]
        parts += [f"### The seed's `avg` loop at N = {n}, step by step to `avg`", table(SEED_COLUMNS, shown)]
    return "\n\n".join(parts)


def scale(data: dict) -> str:
    """bench_methods.py --facts K --baseline TREE: every row against the baseline's, and their sum."""
    rows = data["rows"]
    new, base = sum(r["wall_s"] for r in rows), sum(r["baseline_wall_s"] for r in rows)
    total = {"method": "all", "wall_s": new, "baseline_wall_s": base, "vs_baseline": new / base}
    return table(SCALE_COLUMNS, [*rows, total | {"same_answers": all(r["same_answers"] for r in rows)}])


def demo(data: dict) -> str:
    """bench_demo.py: each method's decode seconds on both sides, and their sum."""
    t, rows = data["total"], data["rows"]
    total = {"method": "all", **{side: {"decode_s": t[f"{side}_decode_s"]} for side in SIDES}, "ratio": t["ratio"]}
    return table(DEMO_COLUMNS, [*rows, total | {"identical": all(r["identical"] for r in rows)}])


def lm_eval(data: dict) -> str:
    """vs_lm_eval.py: each paired run's whole-process seconds, and their medians."""
    runs = [{**r, "first": r["order"][0], "identical": f"{r['identical']} of {r['facts']}"} for r in data["runs"]]
    median = {"run": "median", **{k: data[f"median_{k}"] for k in ("selfens_s", "lm_eval_s", "ratio")}}
    return table(LM_EVAL_COLUMNS, [*runs, median])


def lm_eval_meta(d: dict) -> dict:
    machine, versions = d["machine"], d["versions"]["lm_eval_env"]
    said = {"commands": d["commands"], "date": d["date"], "commit": d["git"]["commit"], "model": d["model_folder"]}
    return said | {
        "cpu_count": machine["cpus"],
        "platform": machine["platform"],
        "weights_dtype": d["dtype"],
        **versions,
    }


def confidence(data: dict) -> str:
    """bench_confidence.py: each paired run's seconds, whole and confidence_seconds, and their medians."""
    m = data["median"]
    median = {"run": "median", "wall_ratio": m["wall_ratio"], "confidence_ratio": m["confidence_ratio"]}
    median |= {side: {f"{k}_s": m[f"{side}_{k}_s"] for k in ("wall", "confidence")} for side in SIDES}
    return table(CONFIDENCE_COLUMNS, [*({**r, "first": r["order"][0]} for r in data["rows"]), median])


def levers(data: dict) -> str:
    """The one-off bench_levers.py (removed): one decode step's variants against `a`, by rows."""
    return table(LEVER_COLUMNS, data["results"])


def levers_meta(d: dict) -> dict:
    busy = d["meta"]["busy"]
    return d["meta"] | {"load_average": [busy["start"]["load_1min"], busy["end"]["load_1min"]]}


META = lambda d: d["meta"]
SECTIONS = [  # path, heading, the run's facts, its tables
    ("benchmarks/results_cpu.json", "Every method, reuse on and off", META, methods),
    ("benchmarks/results_scale_cpu.json", "At scale, against a baseline", META, scale),
    ("benchmarks/results_demo_cpu.json", "The demo against a baseline", META, demo),
    ("benchmarks/results_demo_auto_cpu.json", "The demo, `batch_size: auto` (new) against 8", META, demo),
    ("benchmarks/vs_lm_eval.json", "`origin` against lm-evaluation-harness", lm_eval_meta, lm_eval),
    ("benchmarks/results_confidence_cpu.json", "`selfens confidence` against a baseline", META, confidence),
    ("benchmarks/results_levers_cpu.json", "Decode-step levers", levers_meta, levers),
    ("benchmarks/results_levers_modes_cpu.json", "Decode-step levers: compile modes, bf16", levers_meta, levers),
]


def render() -> str:
    """The generated block: every section from its recorded JSON."""
    parts = [BEGIN, NOTE]
    for path, heading, meta, tables in SECTIONS:
        data = json.loads((ROOT / path).read_text())
        parts += [f"## {heading}", facts(meta(data), path), tables(data)]
    return "\n\n".join(parts + [END])


def block(text: str) -> str:
    """The generated block of a page, markers included."""
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--page", type=Path, default=PAGE, help="the page (default docs/benchmarks.md)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the page's block is not up to date")
    args = parser.parse_args(argv)
    text, rendered = args.page.read_text(), render()
    if args.check and block(text) != rendered:
        raise SystemExit(f"{args.page}: its generated block is out of date (python benchmarks/write_docs.py)")
    if not args.check:
        args.page.write_text(text.replace(block(text), rendered))
    print(f"{args.page}: {'up to date' if args.check else 'written'}")


if __name__ == "__main__":
    main()
