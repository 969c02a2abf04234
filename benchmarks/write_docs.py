"""Writes the benchmarks page from the benchmarks' JSONs: the tables and every figure in the prose
are computed here from them, none is copied by hand.

    python benchmarks/write_docs.py benchmarks/results_cpu.json docs/benchmarks.md
    python benchmarks/write_docs.py benchmarks/results_cpu.json docs/benchmarks.md \
        --scale benchmarks/results_scale_cpu.json --demo benchmarks/results_demo_cpu.json

The main JSON is a `bench_methods.py` run (every N, reuse on and off, the seed loops); `--scale` a
`bench_methods.py --facts K` run (its section "At scale", with the baseline's figures if it had
`--baseline`); `--demo` a `bench_demo.py` run (its section "The demo against a baseline"). Without
`--scale`/`--demo`/`--vs-lm-eval`/`--confidence`, the recorded ones (SCALE_JSON, DEMO_JSON, VS_LM_EVAL_JSON) are
used where they exist (CONFIDENCE_JSON too); `none` leaves a section out. `--vs-lm-eval` is a
`vs_lm_eval.py` run (its section "Against lm-evaluation-harness"), `--confidence` a
`bench_confidence.py` run (its section "`selfens confidence` against a baseline"). `bench_methods.py --docs PAGE` calls it at the end of a run. A JSON from
before both seed rows were measured (no `meta.schema`) renders too: what it lacks is said to be
"not measured in this run" or "not recorded in this run". Needs only the standard library.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
MAIN_JSON = "benchmarks/results_cpu.json"  # the recorded runs, relative to the repository
SCALE_JSON = "benchmarks/results_scale_cpu.json"
DEMO_JSON = "benchmarks/results_demo_cpu.json"
VS_LM_EVAL_JSON = "benchmarks/vs_lm_eval.json"
CONFIDENCE_JSON = "benchmarks/results_confidence_cpu.json"
AS_WRITTEN = "avg, seed loop (as written)"
SAME_STOP = "avg, seed loop (same stop & batch)"
SEED_ROWS = (AS_WRITTEN, SAME_STOP)
LEGACY_NAMES = {"avg, seed loop": AS_WRITTEN}  # the as-written row's name before schema 2
LOGIT = ("avg", "max", "weighted_avg")
N_ROW = ("per_prompt", "avg", "max", "weighted_avg")  # methods that decode N rows per fact
DEMO = ("origin", "per_prompt", "avg", "attention")
NOT_MEASURED = "not measured in this run"
NOT_RECORDED = "not recorded in this run"
DASH = "–"

# The table: (JSON key, title, format). The test reads the table back with the same titles.
COLUMNS = [
    ("n", "N"),
    ("method", "method"),
    ("reuse_prefix", "reuse"),
    ("examples", "facts"),
    ("wall_s", "wall s"),
    ("wall_vs_origin", "× origin"),
    ("facts_per_s", "facts/s"),
    ("prefill_tokens", "prefill"),
    ("prefill_padded_tokens", "padded"),
    ("floor_tokens", "floor"),
    ("forward_calls", "forwards"),
    ("row_steps", "row-steps"),
    ("rows_per_step", "rows/step"),
    ("peak_kv_bytes", "peak KV MB"),
    ("em", "EM %"),
]
DERIVED = ("facts_per_s", "rows_per_step")  # computed from the row where a JSON (schema < 3) lacks them


# -- figures ---------------------------------------------------------------------------------------
def count(value: int) -> str:
    return f"{value:,}"


def seconds(value: float) -> str:
    return f"{value:,.1f}" if value >= 1 else f"{value:.2f}"


def ratio(value: float) -> str:
    return f"{value:,.2f}"


def times(a: float, b: float) -> str:
    """a / b as a factor."""
    return f"{ratio(a / b)}×"


def megabytes(value: int) -> str:
    return f"{value / 2**20:.1f}"


def percent(value: float) -> str:
    """A share (0..1) in percent: whole numbers as such, else one decimal."""
    p = 100 * value
    return f"{p:.0f}" if abs(p - round(p)) < 1e-9 else f"{p:.1f}"


def share(value: float) -> str:
    return f"{percent(value)}%"


def derived(row: dict, key: str):
    """facts/s and row-steps per decode forward, from the row's own figures (None if it lacks them)."""
    if key == "facts_per_s":
        return row["examples"] / row["wall_s"]
    steps = row.get("decode_steps")
    return row["row_steps"] / steps if steps else None


def cell(row: dict, key: str) -> str:
    value = row[key] if key in row or key not in DERIVED else derived(row, key)
    if value is None:
        return DASH
    if key == "reuse_prefix":
        return "on" if value else "off"
    if key in ("wall_s", "baseline_wall_s"):
        return seconds(value)
    if key in ("wall_vs_origin", "facts_per_s", "vs_baseline"):
        return ratio(value)
    if key == "rows_per_step":
        return f"{value:,.1f}"
    if key == "same_answers":
        return "yes" if value else f"no ({count(row['answers_differ'])} facts)"
    if key.endswith("bytes"):
        return megabytes(value)
    if key == "em":
        return percent(value)
    if isinstance(value, int):
        return count(value)
    return str(value)


def listing(items: list[tuple[str, str]], each: str = " each") -> str:
    """ "a 1, b and c 2 each": every name with its own figure; names that share a figure exactly are
    grouped, and the figure is said to be each one's."""
    groups: dict[str, list[str]] = {}
    for name, figure in items:
        groups.setdefault(figure, []).append(name)
    parts = [f"{words(names)} {figure}{each if len(names) > 1 else ''}" for figure, names in groups.items()]
    return "; ".join(parts) if any(len(g) > 1 for g in groups.values()) else ", ".join(parts)


def words(names: list[str]) -> str:
    names = [f"`{n}`" if not n.startswith(("N =", "`")) else n for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def n_list(ns: list[int]) -> str:
    return "N = " + ", ".join(map(str, ns))


# -- the run ---------------------------------------------------------------------------------------
class Run:
    def __init__(self, data: dict):
        self.meta: dict = data.get("meta", {})
        self.rows: list[dict] = [{**r, "method": LEGACY_NAMES.get(r["method"], r["method"])} for r in data["rows"]]
        self.ns = sorted({r["n"] for r in self.rows})
        self.methods = [m for m in dict.fromkeys(r["method"] for r in self.rows) if m not in SEED_ROWS]
        seed = [r["n"] for r in self.rows if r["method"] in SEED_ROWS]
        self.seed_n: Optional[int] = seed[0] if seed else self.meta.get("seed_n")
        if self.seed_n is not None and self.seed_n in self.ns:
            self.focus = self.seed_n  # the N the prose looks at closely
        else:
            self.focus = 5 if 5 in self.ns else self.ns[len(self.ns) // 2]
        self.top = self.ns[-1]

    def get(self, n: int, method: str, reuse: bool = True) -> Optional[dict]:
        return next((r for r in self.rows if (r["n"], r["method"], r["reuse_prefix"]) == (n, method, reuse)), None)

    def has(self, *methods: str) -> bool:
        return all(m in self.methods for m in methods)

    def meta_value(self, key: str) -> str:
        value = self.meta.get(key)
        return NOT_RECORDED if value is None else str(value)


# -- the page --------------------------------------------------------------------------------------
Recorded = tuple[dict, str]  # a JSON's data and the path it is shown under


def render(
    data: dict,
    json_path: str = MAIN_JSON,
    scale: Optional[Recorded] = None,
    demo: Optional[Recorded] = None,
    vs_lm_eval: Optional[Recorded] = None,
    confidence: Optional[Recorded] = None,
) -> str:
    """The page: the main run's sections, then the run at scale, the demo comparison, the
    comparison with lm-evaluation-harness and the confidence comparison where given."""
    run = Run(data)
    sections = [
        header(run, json_path, scale, demo, vs_lm_eval, confidence),
        recorded(run, json_path),
        "## The table\n\n" + columns_text(run) + "\n\n" + table(run) + footnotes(run),
        "## What it shows\n\n" + "\n".join(f"- {b}" for b in shows(run) if b),
        "## Prefix reuse, method by method\n\n" + reuse_table(run),
        "## Against the seed's loop\n\n" + seed_section(run),
        device_note(run),
        scale_section(*scale) if scale else "",
        demo_section(*demo) if demo else "",
        lm_eval_section(*vs_lm_eval) if vs_lm_eval else "",
        confidence_section(*confidence) if confidence else "",
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def header(
    run: Run,
    json_path: str,
    scale: Optional[Recorded],
    demo: Optional[Recorded],
    vs_lm_eval: Optional[Recorded] = None,
    confidence: Optional[Recorded] = None,
) -> str:
    sources = ", ".join([json_path] + [path for _, path in filter(None, (scale, demo, vs_lm_eval, confidence))])
    more = []
    if scale:
        more.append(
            "At scale (`--facts`), the same bench runs many facts of every relation at one N; with "
            "`--baseline TREE` it runs again with another tree's package (PYTHONPATH), method by method in "
            "the same sitting, and compares wall times and answers."
        )
    if demo:
        more.append(
            "`benchmarks/bench_demo.py` times `make demo` (its four configs) with this tree and a baseline "
            "tree, interleaved, and checks that their predictions are the same."
        )
    if vs_lm_eval:
        more.append(
            "`benchmarks/vs_lm_eval.py` times `origin`'s whole process against lm-evaluation-harness's on the "
            "same prompts and checks that their answers are the same."
        )
    if confidence:
        more.append(
            "`benchmarks/bench_confidence.py` times `selfens confidence` with this tree and a baseline tree and "
            "checks that both cache the same values."
        )
    extra = ("\n\n" + " ".join(more)) if more else ""
    return f"""# Benchmarks

<!-- Written by benchmarks/write_docs.py from {sources}: edit the script, not this page. -->

`benchmarks/bench_methods.py` runs every method on the same facts in one process, with the model
loaded once, for several numbers N of paraphrases, with prefix reuse on and off. At one N it also
runs the original scripts' own `avg` loop, which keeps no KV cache (the N full sequences are run
again at every step), twice:

- **{AS_WRITTEN}**: one fact per forward, a fixed number of steps, no early stop (the answer is
  cut at the first stop string afterwards), logits at every position.
- **{SAME_STOP}**: the same loop with `avg`'s stop rule (stop strings, EOS, its `max_new_tokens`;
  a finished fact leaves the batch), `avg`'s batches (the data module's, their N single prompts
  left-padded) and the last position's logits only. It differs from `avg` with
  reuse off only in running the sequences again instead of keeping a KV cache, so the two give the
  same answers up to floating-point ties.

It prints a table and writes JSON; `--docs` then writes this page from the JSON, and
`python benchmarks/write_docs.py {json_path} docs/benchmarks.md` rewrites it from a saved JSON.
Every figure below is computed from the JSONs. `--quick` runs the benchmark on the tiny random
model (CI).{extra}"""


def recorded(run: Run, json_path: str) -> str:
    m = run.meta
    examples = sorted({r["examples"] for r in run.rows})
    facts = " or ".join(count(e) for e in examples)
    dtype = m.get("weights_dtype") or f"dtype `{m.get('dtype', NOT_RECORDED)}` (bf16 on CUDA, fp32 on the CPU)"
    cores = f"{m['cpu_count']} CPU cores" if m.get("cpu_count") else f"CPU cores {NOT_RECORDED}"
    total = m.get("total_wall_s")
    seed_wall = sum(r["wall_s"] for r in run.rows if r["method"] in SEED_ROWS)
    if total is not None:
        wall = f"{seconds(total / 60)} min, model loading included; the seed loops {seconds(seed_wall / 60)} min of it"
    else:
        rows_wall = sum(r["wall_s"] for r in run.rows)
        wall = (
            f"the rows' wall times sum to {seconds(rows_wall / 60)} min, the seed loops {seconds(seed_wall / 60)} "
            f"min of it (the whole run's time, loading included, is {NOT_RECORDED})"
        )
    shots = m.get("num_shots")
    prompts = "ParaRel facts, raw completion prompts" + (f", {shots} shots" if shots is not None else "")
    stop = m.get("stop_strings")
    answers = (
        f"at most {m['max_new_tokens']} tokens, ending at EOS or a stop string ({', '.join(map(repr, stop))})"
        if m.get("max_new_tokens") is not None and stop is not None
        else NOT_RECORDED
    )
    command = f"`{m['command']}`" if m.get("command") else NOT_RECORDED
    lines = [
        f"- command: {command}; to record a run and this page: "
        f"`python benchmarks/bench_methods.py --out {json_path} --docs docs/benchmarks.md`",
        f"- date: {run.meta_value('date')}",
        f"- model: `{run.meta_value('model')}`, {m.get('device', NOT_RECORDED)}, weights {dtype}",
        f"- machine: {cores}, {run.meta_value('threads')} torch threads"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; platform {run.meta_value('platform')}"
        + (
            f"; 1-minute load average {m['load_average'][0]} at the start, {m['load_average'][1]} at the end"
            if m.get("load_average")
            else ""
        ),
        f"- software: torch {run.meta_value('torch')}, transformers {run.meta_value('transformers')}, "
        f"python {run.meta_value('python')}",
        f"- facts: {facts} bundled {prompts}, for {n_list(run.ns)}; batches of at most "
        f"{run.meta_value('batch_size')} facts",
        f"- answers: {answers}",
        f"- wall time: {wall}",
        f"- the raw output: `{json_path}`",
    ]
    return "## The recorded run\n\n" + "\n".join(lines)


def columns_text(run: Run) -> str:
    weighted = (
        " The weighted rule uses the cheap `token_prob` confidence (sampling K answers per prompt is a cost "
        "of its own, recorded apart as `confidence_*` in a run's results.json)."
        if run.has("weighted_avg")
        else ""
    )
    peaks = [r["peak_memory_bytes"] for r in run.rows if "peak_memory_bytes" in r]
    memory = (
        f" Peak process memory is in the JSON ({megabytes(min(peaks))} to {megabytes(max(peaks))} MB over the run; "
        "on the CPU it is the process's high-water mark so far, not a per-row figure)."
        if peaks
        else ""
    )
    steps = any("decode_steps" in r for r in run.rows)
    return (
        "Columns: wall time and its ratio to `origin` (reuse on) on the same facts; facts per second; "
        "prefill tokens actually run, real and with padding (for the seed loops: every token of every "
        "forward, as they keep no cache); the floor (each distinct prompt prefix once, plus every paraphrase "
        "block once); forward calls; decoded row-steps (rows run in every forward but a batch's first, summed)"
        + ("; row-steps per decode forward (the rows in flight at a step)" if steps else "")
        + "; the largest KV cache held; EM in percent."
        + weighted
        + memory
    )


def table(run: Run) -> str:
    # rows/step where the run recorded decode steps (schema 3 on)
    columns = [(k, t) for k, t in COLUMNS if k != "rows_per_step" or any("decode_steps" in r for r in run.rows)]
    lines = [markdown_row(title for _, title in columns), "|" + "---|" * len(columns)]
    for row in run.rows:
        lines.append(markdown_row(cell(row, key) for key, _ in columns))
        same_stop_missing = run.get(row["n"], SAME_STOP, False) is None
        if row["method"] == AS_WRITTEN and same_stop_missing:
            missing = [str(row["n"]), SAME_STOP, "off", DASH, NOT_MEASURED] + [DASH] * (len(columns) - 5)
            lines.append(markdown_row(missing))
    return "\n".join(lines)


def markdown_row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def footnotes(run: Run) -> str:
    if run.meta.get("schema", 1) >= 2 or run.get(run.focus, AS_WRITTEN, False) is None:
        return ""
    return (
        f"\n\nIn this run the `{AS_WRITTEN}` row's padded tokens are its real tokens (its padding was not "
        "counted) and its row-steps count every forward's rows, the first included; the script now counts "
        "both as for the other rows."
    )


def shows(run: Run) -> list[str]:
    return [facts_note(run), floor_note(run), padding_note(run), demo_note(run), attention_note(run), quality_note(run)]


def facts_note(run: Run) -> str:
    if not run.has("origin"):
        return ""
    floors = {n: run.get(n, "origin")["floor_tokens"] for n in run.ns}
    if len(set(floors.values())) == 1:
        return ""
    by_floor: dict[int, list[int]] = {}
    for n, f in floors.items():
        by_floor.setdefault(f, []).append(n)
    said = "; ".join(f"{count(f)} tokens at {n_list(ns)}" for f, ns in by_floor.items())
    prefixes = {n: run.get(n, "origin").get("prefixes") for n in run.ns}
    counted = ""
    if all(p is not None for p in prefixes.values()):
        counted = (
            " (prompt prefixes, one per relation: " + ", ".join(f"{p} at N = {n}" for n, p in prefixes.items()) + ")"
        )
    return (
        f"**The facts differ between N**: `origin`'s floor is {said}. Only relations with at least N usable "
        f"templates take part at N{counted}, so compare rows within one N."
    )


def floor_note(run: Run) -> str:
    on = [r for r in run.rows if r["reuse_prefix"] and r["method"] not in SEED_ROWS]
    over: dict[str, list[int]] = {}
    for r in on:
        if r["prefill_tokens"] != r["floor_tokens"]:
            over.setdefault(r["method"], []).append(r["n"])
    if not over:
        head = "With reuse, every row reads exactly its floor."
    else:
        named = "; ".join(f"`{m}` at {n_list(ns)}" for m, ns in over.items())
        head = f"With reuse, every row reads exactly its floor except these: {named}."
    title = "Prefill is at the floor." if set(over) <= {"weighted_avg"} else "Prefill against the floor."
    n = run.focus
    with_reuse = [(m, count(run.get(n, m)["prefill_tokens"])) for m in run.methods if run.get(n, m)]
    without = [(m, count(run.get(n, m, False)["prefill_tokens"])) for m in run.methods if run.get(n, m, False)]
    text = f"**{title}** {head} At N = {n}, tokens read with reuse: {listing(with_reuse)}; without: {listing(without)}."
    if "weighted_avg" in over:
        text += (
            " In this run `weighted_avg` read its prompts' rests a second time: its confidences decoded every "
            "prompt greedily before the fused decode, which ran the same prompts again (the prefix from the cache). "
            "Code since `selfens.decode.PrefillMemo` hands the fused decode those prefills instead."
        )
    return text


def padding_note(run: Run) -> str:
    n = run.focus
    items = [
        (
            m,
            f"{share(r['prefill_padded_tokens'] / r['prefill_tokens'] - 1)} ({count(r['prefill_padded_tokens'])} for "
            f"{count(r['prefill_tokens'])})",
        )
        for m in run.methods
        if (r := run.get(n, m))
    ]
    return (
        f"**Padding** (computed, counted as cost), tokens run over real tokens read, with reuse at N = {n}: "
        f"{listing(items)}. The N paraphrases of a fact decode in lockstep in one batch and their templates "
        'differ in length ("[X] was born in" vs "[X] is originally from the city of"), so the shorter rows are '
        "padded to the longest; grouping by length acts on facts, not on the paraphrases of one fact."
    )


def demo_note(run: Run) -> str:
    n = run.focus
    if not all(run.get(n, m) and run.get(n, m, False) for m in DEMO):
        return ""
    on = sum(run.get(n, m)["wall_s"] for m in DEMO)
    off = sum(run.get(n, m, False)["wall_s"] for m in DEMO)
    return (
        f"**The demo's four methods** ({words(list(DEMO))} at N = {n}): {seconds(on)} s of decoding with reuse "
        f"against {seconds(off)} s without, {times(off, on)}."
    )


def attention_note(run: Run) -> str:
    if not run.has("attention", "avg"):
        return ""
    parts = []
    for n in dict.fromkeys([run.focus, run.top]):
        a, g = run.get(n, "attention"), run.get(n, "avg")
        parts.append(
            f"at N = {n} `attention` takes {seconds(a['wall_s'])} s against {seconds(g['wall_s'])} s for `avg` "
            f"({times(a['wall_s'], g['wall_s'])} of its time), with {count(a['row_steps'])} row-steps against "
            f"{count(g['row_steps'])} ({times(a['row_steps'], g['row_steps'])}) and a {megabytes(a['peak_kv_bytes'])} "
            f"MB KV cache against {megabytes(g['peak_kv_bytes'])} MB ({times(a['peak_kv_bytes'], g['peak_kv_bytes'])})"
        )
    text = "**Attention vs logit fusion**, with reuse, both at the floor: " + "; ".join(parts) + "."
    low = next((n for n in run.ns if n >= 2), None)
    if low is not None and low != run.top:
        a, b = run.get(low, "attention"), run.get(run.top, "attention")
        text += (
            f" From N = {low} to N = {run.top}, `attention`'s time grows {times(b['wall_s'], a['wall_s'])} "
            f"({seconds(a['wall_s'])} s to {seconds(b['wall_s'])} s) and its floor "
            f"{times(b['floor_tokens'], a['floor_tokens'])} ({count(a['floor_tokens'])} to "
            f"{count(b['floor_tokens'])} tokens: every block is read once)."
        )
    return text


def quality_note(run: Run) -> str:
    if not run.has("attention"):
        return ""
    n = run.top
    others = [(m, share(run.get(n, m)["em"])) for m in run.methods if m != "attention"]
    a_on, a_off = run.get(n, "attention"), run.get(n, "attention", False)
    alike = (
        " (the same with and without reuse, so not the reuse)"
        if a_off and a_off["em"] == a_on["em"]
        else f" ({share(a_off['em'])} without reuse)"
        if a_off
        else ""
    )
    lower = [m for m in run.ns if m != n]
    history = ", ".join(f"{share(run.get(k, 'attention')['em'])} at N = {k}" for k in lower)
    return (
        f"**Quality, not cost**: at N = {n}, `attention` scores {share(a_on['em'])} EM with reuse{alike}. "
        f"The other methods there, with reuse: {listing(others)}."
        + (f" `attention` at the other N: {history}." if history else "")
    )


def reuse_table(run: Run) -> str:
    head = "| method | " + " | ".join(f"N = {n}" for n in run.ns) + " |"
    lines = [head, "|" + "---|" * (len(run.ns) + 1)]
    for m in run.methods:
        cells = []
        for n in run.ns:
            on, off = run.get(n, m), run.get(n, m, False)
            cells.append(
                f"{seconds(off['wall_s'])} / {seconds(on['wall_s'])} = {times(off['wall_s'], on['wall_s'])}"
                if on and off
                else DASH
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    top = [
        (m, times(run.get(run.top, m, False)["wall_s"], run.get(run.top, m)["wall_s"]))
        for m in run.methods
        if run.get(run.top, m) and run.get(run.top, m, False)
    ]
    logit = [(m, f) for m, f in top if m in LOGIT]
    rest = [(m, f) for m, f in top if m not in LOGIT]
    said = f"At N = {run.top}, without reuse over with: the logit methods {listing(logit)}"
    said += f"; {listing(rest)}." if rest else "."
    return (
        "Wall time without reuse / with reuse, in seconds, = the gain from reading each prefix once.\n\n"
        + "\n".join(lines)
        + "\n\n"
        + said
        + " "
        + agreement_note(run)
    )


def agreement_note(run: Run) -> str:
    off = [r for r in run.rows if not r["reuse_prefix"] and r["method"] not in SEED_ROWS]
    if all("agreement_with_reuse" in r for r in off):
        differ = [
            (f"`{r['method']}` at N = {r['n']}", share(r["agreement_with_reuse"]))
            for r in off
            if r["agreement_with_reuse"] != 1
        ]
        if not differ:
            return "Every method gives the same answer with and without reuse on every fact."
        return (
            "The answers with and without reuse agree on every fact except: "
            + listing(differ, each="")
            + " of the facts."
        )
    same_em = all(r["em"] == run.get(r["n"], r["method"])["em"] for r in off if run.get(r["n"], r["method"]))
    recorded = f"whether the answers themselves agree is {NOT_RECORDED} (the tests compare them token for token)"
    return ("EM is the same with and without reuse for every method at every N; " if same_em else "") + recorded + "."


def seed_section(run: Run) -> str:
    n = run.seed_n
    if n is None or run.get(n, AS_WRITTEN, False) is None and run.get(n, SAME_STOP, False) is None:
        return f"The seed's loop was {NOT_MEASURED}."
    written, same = run.get(n, AS_WRITTEN, False), run.get(n, SAME_STOP, False)
    off, on = run.get(n, "avg", False), run.get(n, "avg")

    def step(what: str, a: Optional[dict], b: Optional[dict], a_name: str, b_name: str) -> str:
        if a is None or b is None:
            return f"| {what} | {a_name} → {b_name} | {NOT_MEASURED} | {DASH} | {DASH} |"
        return (
            f"| {what} | {a_name} → {b_name} | {seconds(a['wall_s'])} → {seconds(b['wall_s'])} | "
            f"{count(a['prefill_tokens'])} → {count(b['prefill_tokens'])} | {times(a['wall_s'], b['wall_s'])} |"
        )

    rows = [
        "| what changes | rows | wall s | tokens run | gain |",
        "|---|---|---|---|---|",
        step(
            "`avg`'s stop rule and batches, last-position logits",
            written,
            same,
            f"`{AS_WRITTEN}`",
            f"`{SAME_STOP}`",
        ),
        step("the KV cache", same, off, f"`{SAME_STOP}`", "`avg`, reuse off"),
        step("prefix reuse", off, on, "`avg`, reuse off", "`avg`, reuse on"),
        step("all of them", written, on, f"`{AS_WRITTEN}`", "`avg`, reuse on"),
    ]
    text = f"At N = {n}, on the same facts; each line's gain is the first row's wall time over the second's.\n\n"
    text += "\n".join(rows) + "\n\n"
    notes = []
    if written is not None:
        steps = written["forward_calls"] / written["examples"]
        steps_said = f"{steps:.0f}" if steps == int(steps) else ratio(steps)
        notes.append(
            f"`{AS_WRITTEN}` runs {count(written['forward_calls'])} forwards ({steps_said} a fact, one fact each)"
            + (f" against `avg`'s {count(off['forward_calls'])}" if off else "")
            + f"; its EM is {share(written['em'])}"
            + (f" against `avg`'s {share(off['em'])} (reuse off)" if off else "")
            + (
                f", and its answers are `avg`'s on {share(written['agreement'])} of the facts (it decodes with no stop, "
                "cutting the answer at the first stop string afterwards)"
                if "agreement" in written
                else f"; whether its answers are `avg`'s is {NOT_RECORDED}"
            )
            + "."
        )
    if same is None:
        notes.append(
            f"`{SAME_STOP}` was {NOT_MEASURED}, so the first two gains are one here: the "
            + (f"{times(written['wall_s'], on['wall_s'])} " if written and on else "")
            + "from the seed loop as written to `avg` with reuse mixes the stop rule, batching, the KV cache and "
            "prefix reuse."
        )
    elif off is not None:
        same_costs = same["forward_calls"] == off["forward_calls"] and same["row_steps"] == off["row_steps"]
        notes.append(
            f"`{SAME_STOP}` gives `avg`'s answers (reuse off) on {share(same['agreement'])} of the facts "
            f"(EM {share(same['em'])} against {share(off['em'])}), in "
            + (
                f"the same {count(same['forward_calls'])} forwards and {count(same['row_steps'])} row-steps"
                if same_costs
                else f"{count(same['forward_calls'])} forwards and {count(same['row_steps'])} row-steps against "
                f"{count(off['forward_calls'])} and {count(off['row_steps'])}"
            )
            + (
                "."
                if same["agreement"] == 1
                else "; without a cache the same sums run in another order, so a near-tie between two tokens can "
                "go the other way."
            )
        )
    return text + " ".join(notes)


def device_note(run: Run) -> str:
    if run.meta.get("device", "cpu") != "cpu":
        return ""
    return (
        "This run is on the CPU; `python benchmarks/bench_methods.py --device cuda` runs the benchmark in bf16 "
        "with the compiled flex backend for attention fusion."
    )


# -- at scale --------------------------------------------------------------------------------------
SCALE_COLUMNS = [
    ("n", "N"),
    ("method", "method"),
    ("reuse_prefix", "reuse"),
    ("examples", "facts"),
    ("batch_size", "batch"),
    ("decode_rows", "decode rows"),
    ("wall_s", "wall s"),
    ("facts_per_s", "facts/s"),
    ("wall_vs_origin", "× origin"),
    ("prefill_tokens", "prefill"),
    ("prefill_padded_tokens", "padded"),
    ("forward_calls", "forwards"),
    ("row_steps", "row-steps"),
    ("rows_per_step", "rows/step"),
    ("peak_kv_bytes", "peak KV MB"),
    ("em", "EM %"),
]
BASELINE_COLUMNS = [
    ("baseline_wall_s", "baseline wall s"),
    ("vs_baseline", "new / baseline"),
    ("same_answers", "same answers"),
]


def scale_section(data: dict, json_path: str) -> str:
    """A `bench_methods.py --facts` run: what ran, its table, and against the baseline if it had one."""
    meta, rows = data["meta"], data["rows"]
    baseline = meta.get("baseline")
    columns = [(k, t) for k, t in SCALE_COLUMNS if any(k in r for r in rows) or k in DERIVED]
    columns += BASELINE_COLUMNS if baseline else []
    lines = [markdown_row(t for _, t in columns), "|" + "---|" * len(columns)]
    lines += [markdown_row(cell(r, k) for k, _ in columns) for r in rows]
    head = "## At scale\n\n" + "\n".join(f"- {line}" for line in scale_recorded(meta, rows, json_path))
    notes = (
        "Columns as in the table above; batch: facts per batch (the data module's); decode rows: the most "
        f"rows decoded at once ({DASH}: no limit, each batch whole)"
        + (
            "; against the baseline: its wall time, this tree's over it, and whether every fact's answers "
            "(the prediction and each paraphrase's answer) are the same"
            if baseline
            else ""
        )
        + "."
    )
    text = head + "\n\n" + notes + "\n\n" + "\n".join(lines)
    return text + ("\n\n" + baseline_note(meta, rows) if baseline else "")


def scale_recorded(meta: dict, rows: list[dict], json_path: str) -> list[str]:
    """The run at scale, line by line: command, date, model, machine, facts, time, trees."""
    lines = [
        f"command: `{meta.get('command', NOT_RECORDED)}`",
        f"date: {meta.get('date', NOT_RECORDED)}",
        f"model: `{meta.get('model', NOT_RECORDED)}`, {meta.get('device', NOT_RECORDED)}, weights "
        f"{meta.get('weights_dtype') or NOT_RECORDED}",
        f"machine: {meta.get('cpu_count', NOT_RECORDED)} CPU cores, {meta.get('threads', NOT_RECORDED)} torch threads"
        + (f", GPU {meta['gpu']}" if meta.get("gpu") else "")
        + (
            f"; 1-minute load average {meta['load_average'][0]} at the start, {meta['load_average'][1]} at the end"
            if meta.get("load_average")
            else ""
        ),
    ]
    for n, facts in (meta.get("data") or {}).items():
        lines.append(f"facts at N = {n}: " + facts_said(facts, meta))
    total = meta.get("total_wall_s")
    if total is not None:
        lines.append(f"wall time: {seconds(total / 60)} min, model loading and data setup included")
    baseline, new = meta.get("baseline"), meta.get("new")
    if baseline and new:
        lines.append(
            f"baseline: {tree_said(baseline)}, against this tree {tree_said(new)}: one process per method and "
            f"side, the baseline's first, in the same sitting (the baseline's took "
            f"{seconds(baseline['total_wall_s'] / 60)} min, this tree's {seconds(new['total_wall_s'] / 60)} min)"
        )
    if meta.get("complete") is False:
        done = list(dict.fromkeys(r["method"] for r in rows))
        lines.append(f"stopped early: {words(done)} of {words(meta['methods'])} were measured")
    lines.append(f"the raw output: `{json_path}`")
    return lines


def facts_said(facts: dict, meta: dict) -> str:
    """How many facts it got, of how many asked, sampled from which relations."""
    asked = facts.get("asked")
    said = f"{count(facts['facts'])}" + (f" of {count(asked)} asked" if asked and asked != facts["facts"] else "")
    said += f", of {facts['relations_used']} relations"
    if facts.get("facts_qualifying") is not None:
        sampled = f"sampled evenly (sample_seed {meta['sample_seed']}) from" if meta.get("facts") else "the first of"
        said += (
            f", {sampled} the {count(facts['facts_qualifying'])} facts of the {facts['relations_qualifying']} of "
            f"{facts['relations_bundled']} bundled relations with enough usable completion templates"
        )
    return said + f"; {meta.get('num_shots', NOT_RECORDED)} shots, prefix reuse {meta.get('reuse', NOT_RECORDED)}"


def tree_said(tree: dict) -> str:
    """A code tree: its path, its commit (+changes: its files differ from it) and its package where recorded."""
    said = f"`{tree['path']}`"
    short = lambda commit: f"{commit[:12]}{'+changes' if commit.endswith('+changes') else ''}"
    if tree.get("commit"):
        said += f" at {short(tree['commit'])}"
    if tree.get("commit_at_end"):
        said += f" ({short(tree['commit_at_end'])} at the end: it changed during the run)"
    return said + (f" (package `{tree['package']}`)" if tree.get("package") else "")


def baseline_note(meta: dict, rows: list[dict]) -> str:
    """All rows' time against the baseline's, and whether the answers are the same."""
    compared = [r for r in rows if "baseline_wall_s" in r]
    if not compared:
        return f"The baseline's rows were {NOT_RECORDED}."
    new, base = sum(r["wall_s"] for r in compared), sum(r["baseline_wall_s"] for r in compared)
    text = (
        f"**Against the baseline**: the {len(compared)} rows take {seconds(new)} s against the baseline's "
        f"{seconds(base)} s ({times(new, base)})."
    )
    differences = meta.get("differences") or []
    if not differences:
        return text + " Every row gives the baseline's answers on every fact, and so its EM."
    return text + " Differences from the baseline (the first ones): " + "; ".join(differences[:5]) + "."


# -- the demo ----------------------------------------------------------------------------------------
def demo_section(data: dict, json_path: str) -> str:
    """A `bench_demo.py` run: its table, and whether the predictions are the same."""
    meta, rows = data["meta"], data["rows"]
    lines = [
        "| method | facts | baseline decode s | new decode s | new / baseline | baseline EM % | new EM % | same predictions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base, new = r["baseline"], r["new"]
        same = "yes" if r["identical"] else f"no ({count(r['differing'])} facts)"
        lines.append(
            markdown_row(
                [r["method"], count(r["examples"]), seconds(base["decode_s"]), seconds(new["decode_s"])]
                + [ratio(r["ratio"]), percent(base["em"]), percent(new["em"]), same]
            )
        )
    base, new = sum(r["baseline"]["decode_s"] for r in rows), sum(r["new"]["decode_s"] for r in rows)
    all_same = "yes" if all(r["identical"] for r in rows) else "no"
    lines.append(markdown_row(["total", DASH, seconds(base), seconds(new), ratio(new / base), DASH, DASH, all_same]))
    recorded_lines = [
        f"command: `{meta.get('command', NOT_RECORDED)}`",
        f"date: {meta.get('date', NOT_RECORDED)}",
        f"baseline: {tree_said(meta['baseline'])}; this tree: {tree_said(meta['new'])}",
        f"machine: {meta.get('cpu_count', NOT_RECORDED)} CPU cores, platform {meta.get('platform', NOT_RECORDED)}"
        + (
            f"; 1-minute load average {meta['load_average'][0]} at the start, {meta['load_average'][1]} at the end"
            if meta.get("load_average")
            else ""
        ),
        f"wall time: {seconds(meta['total_wall_s'] / 60)} min for all {2 * len(rows)} runs, loading included",
        f"the raw output: `{json_path}`",
    ]
    intro = (
        f"`benchmarks/bench_demo.py` runs `make demo`'s configs ({', '.join(f'`{c}`' for c in meta['configs'])}, "
        "each tree its own) with the baseline tree's package and with this tree's, per method the baseline's "
        "run first. The times are the decode seconds each run's results.json records (`decode_seconds` + "
        "`confidence_seconds`: decoding, prefill included; not loading the model or the data)."
    )
    fields = " and ".join(f"`{f}`" for f in meta.get("compared", ["prediction", "per_paraphrase"]))
    if all(r["identical"] for r in rows):
        verdict = f"Every fact's {fields} in predictions.jsonl are the same on both sides, for every method."
    else:
        first = [f"`{r['method']}` {d}" for r in rows for d in r["differences"]][:5]
        verdict = f"{fields} differ from the baseline's; the first differences: " + "; ".join(first) + "."
    return (
        "## The demo against a baseline\n\n"
        + intro
        + "\n\n"
        + "\n".join(f"- {line}" for line in recorded_lines)
        + "\n\n"
        + "\n".join(lines)
        + "\n\n"
        + verdict
    )


# -- against lm-evaluation-harness -------------------------------------------------------------------
def lm_eval_section(data: dict, json_path: str) -> str:
    """A `vs_lm_eval.py` run: whole-process seconds of each side per run, their ratio, the answers."""
    runs = data["runs"]
    lines = [
        "| run | first | load before | selfens s | lm-eval s | selfens / lm-eval | identical answers |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            markdown_row(
                [
                    str(r["run"]),
                    r["order"][0],
                    str(r["load_1min_before"]),
                    seconds(r["selfens_s"]),
                    seconds(r["lm_eval_s"]),
                ]
                + [ratio(r["ratio"]), f"{r['identical']} of {r['facts']}"]
            )
        )
    versions = data.get("versions", {}).get("lm_eval_env", {})
    said = [
        f"command: `python benchmarks/vs_lm_eval.py` ({len(runs)} paired runs); date: {data.get('date', NOT_RECORDED)}; "
        f"commit {data.get('git', {}).get('commit', NOT_RECORDED)}",
        f"both sides: `{data['config']}`'s {data['facts']} facts, the same prompt token ids, model folder "
        f"`{data['model_folder']}` in {data['dtype']}, greedy, at most {data['max_new_tokens']} new tokens; "
        f"selfens in its config's batches, lm-eval in batches of {data['batch_size']}; lm-eval {versions.get('lm_eval', NOT_RECORDED)} (HF backend, `generate_until`), "
        f"torch {versions.get('torch', NOT_RECORDED)}, transformers {versions.get('transformers', NOT_RECORDED)}",
        f"machine: {data.get('machine', {}).get('cpus', NOT_RECORDED)} CPU cores",
        f"the raw output: `{json_path}`",
    ]
    same = "identical on every fact in every run" if data["all_identical"] else "NOT identical (see the JSON)"
    return (
        "## Against lm-evaluation-harness\n\n"
        "`origin`'s whole `selfens test` process (imports, model and data loading, decoding, writing) against "
        "lm-evaluation-harness's whole `lm_eval` process on the same prompts, each started fresh, in alternating "
        "order.\n\n"
        + "\n".join(f"- {line}" for line in said)
        + "\n\n"
        + "\n".join(lines)
        + f"\n\nMedian: selfens {seconds(data['median_selfens_s'])} s, lm-eval {seconds(data['median_lm_eval_s'])} s, "
        f"ratio {ratio(data['median_ratio'])}. The answers are {same}."
    )


# -- selfens confidence -------------------------------------------------------------------------------
def confidence_section(data: dict, json_path: str) -> str:
    """A `bench_confidence.py` run: both sides' seconds per paired run, their ratios, the values."""
    meta, rows, median = data["meta"], data["rows"], data["median"]
    lines = [
        "| run | first | baseline s | new s | new / baseline | baseline confidence s | new confidence s "
        "| new / baseline (confidence) | forward calls (baseline, new) | same values |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base, new = r["baseline"], r["new"]
        same = "yes" if r["identical"] else f"no ({count(r['differing'])} prompts)"
        lines.append(
            markdown_row(
                [str(r["run"]), r["order"][0], seconds(base["wall_s"]), seconds(new["wall_s"]), ratio(r["wall_ratio"])]
                + [seconds(base["confidence_s"]), seconds(new["confidence_s"]), ratio(r["confidence_ratio"])]
                + [f"{count(int(base['forward_calls']))}, {count(int(new['forward_calls']))}", same]
            )
        )
    prompts = rows[0]["new"]["prompts"]
    said = [
        f"command: `{meta.get('command', NOT_RECORDED)}`; date: {meta.get('date', NOT_RECORDED)}",
        f"baseline: {tree_said(meta['baseline'])}; this tree: {tree_said(meta['new'])}",
        f"`{meta['config']}` (each tree its own), {count(meta['facts'])} facts: {count(prompts)} prompts, "
        "each with a fresh confidence folder, so every value is computed on both sides",
        f"machine: {meta.get('cpu_count', NOT_RECORDED)} CPU cores"
        + (
            f"; 1-minute load average {meta['load_average'][0]} at the start, {meta['load_average'][1]} at the end"
            if meta.get("load_average")
            else ""
        ),
        f"the raw output: `{json_path}`",
    ]
    same = (
        "the same on both sides for every prompt in every run"
        if all(r["identical"] for r in rows)
        else "NOT the same on both sides (see the JSON)"
    )
    return (
        "## `selfens confidence` against a baseline\n\n"
        "The whole `selfens confidence` process (imports, model and data loading, sampling, writing), and the "
        "`confidence_seconds` its results.json records (the greedy and the sampled decodes, prefill included), "
        "with the baseline tree's package and with this tree's, in alternating order.\n\n"
        + "\n".join(f"- {line}" for line in said)
        + "\n\n"
        + "\n".join(lines)
        + f"\n\nMedians: the whole command {seconds(median['baseline_wall_s'])} -> {seconds(median['new_wall_s'])} s "
        f"(ratio {ratio(median['wall_ratio'])}), `confidence_seconds` {seconds(median['baseline_confidence_s'])} -> "
        f"{seconds(median['new_confidence_s'])} s (ratio {ratio(median['confidence_ratio'])}). The cached values are "
        f"{same}."
    )


# -- writing -----------------------------------------------------------------------------------------
def recorded_paths() -> dict[str, str]:
    """The recorded JSONs that exist, as paths relative to the repository."""
    found = {"main": MAIN_JSON, "scale": SCALE_JSON, "demo": DEMO_JSON, "vs_lm_eval": VS_LM_EVAL_JSON}
    found["confidence"] = CONFIDENCE_JSON
    return {kind: path for kind, path in found.items() if (ROOT / path).is_file()}


def load(path) -> Optional[Recorded]:
    """A JSON's data and the path shown for it (relative to the repository where it lies inside)."""
    if path is None:
        return None
    path = Path(path)
    found = path if path.is_absolute() or path.is_file() else ROOT / path
    try:
        shown = str(found.resolve().relative_to(ROOT))
    except ValueError:
        shown = str(path)
    return json.loads(found.read_text()), shown


def write(json_path, page: Path, scale=None, demo=None, vs_lm_eval=None, confidence=None) -> None:
    """The page from the main JSON and, where given, the scale, demo, lm-eval and confidence JSONs."""
    page.parent.mkdir(parents=True, exist_ok=True)
    data, shown = load(json_path)
    page.write_text(render(data, shown, load(scale), load(demo), load(vs_lm_eval), load(confidence)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", type=Path, help="a bench_methods.py --out JSON")
    parser.add_argument("page", type=Path, help="the page to write, e.g. docs/benchmarks.md")
    parser.add_argument(
        "--scale", default=None, help=f"a bench_methods.py --facts JSON (default {SCALE_JSON} if there)"
    )
    parser.add_argument(
        "--demo", default=None, help=f"a bench_demo.py JSON (default {DEMO_JSON} if there; none: leave out)"
    )
    parser.add_argument(
        "--vs-lm-eval",
        default=None,
        help=f"a vs_lm_eval.py JSON (default {VS_LM_EVAL_JSON} if there; none: leave out)",
    )
    parser.add_argument(
        "--confidence",
        default=None,
        help=f"a bench_confidence.py JSON (default {CONFIDENCE_JSON} if there; none: leave out)",
    )
    args = parser.parse_args(argv)
    recorded = recorded_paths()
    flags = {"scale": "--scale", "demo": "--demo", "vs_lm_eval": "--vs-lm-eval", "confidence": "--confidence"}
    chosen = {}
    for kind, flag in flags.items():
        value = getattr(args, kind)
        chosen[kind] = None if value == "none" else value or recorded.get(kind)
        if chosen[kind] is not None and not (Path(chosen[kind]).is_file() or (ROOT / chosen[kind]).is_file()):
            parser.error(f"{flag} {chosen[kind]}: no such file")
    write(args.json, args.page, **chosen)
    print(f"written to {args.page}" + "".join(f" (with {v})" for v in chosen.values() if v))


if __name__ == "__main__":
    main()
