"""Every method's cost side by side, in one process with the model loaded once.

    python benchmarks/bench_methods.py                # the embedded model, 100 bundled ParaRel facts
    python benchmarks/bench_methods.py --quick        # the tiny random model, a few facts (CI)
    python benchmarks/bench_methods.py --out benchmarks/results_cpu.json --docs docs/benchmarks.md
    python benchmarks/bench_methods.py --facts 1000 --baseline ../base --out benchmarks/results_scale_cpu.json

For each N, every method runs on the same facts, with prefix reuse on and off; `origin` is the
baseline of each N's rows. Per row: wall time and its ratio to origin's, facts per second, prefill
tokens (real and computed with padding) against the floor (each distinct prompt prefix once plus
every paraphrase block once), forward calls, decoded row-steps and row-steps per decode forward
(the rows in flight), peak KV-cache bytes, peak memory, EM, and a hash of the answers.

At one N (`--seed-n`), the seed's own loop for `avg` (no KV cache: the N full sequences re-run
every step) runs twice, to separate what each change gains:

- "avg, seed loop (as written)": one fact per forward, 20 steps, no early stop, every position's logits.
- "avg, seed loop (same stop & batch)": the same no-cache loop with `avg`'s stop rule (stop strings,
  EOS, max_new_tokens), its batches (the data module's, finished facts dropped) and its last-position
  logits: it differs from `avg` with reuse off only in re-running the sequences instead of keeping a
  KV cache, and should give its answers (its `agreement` field: the share of facts that do).

At scale (`--facts K`): K facts sampled evenly over every bundled relation with N usable templates
(as the study draws them; all that qualify if fewer), N = 5, reuse on only, no seed loops (hours).

`--baseline TREE` runs the same bench (this script) with TREE's selfens package (PYTHONPATH) in the
same sitting: one process per method and side, the baseline's first, then this tree's. Each row
gets the baseline's wall time, new / baseline, and whether the answers (prediction and each
paraphrase's answer, per fact) and EM are the same; the run exits 1, after writing, if they are not.
The JSON is written after each method (`meta.complete`: all done), so a run stopped early keeps
the methods it finished.

Batches are the data module's own test loader's, as a run's. Prints a table and writes JSON;
`--docs` then writes the docs page from that JSON and the other recorded ones
(`benchmarks/write_docs.py`, which also rewrites it from saved JSONs).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
# Last: PYTHONPATH (or the installed package) decides which selfens runs; see --baseline.
sys.path.append(str(ROOT))

import selfens  # noqa: E402
from selfens.attention.backend import attn_implementation, default_backend  # noqa: E402
from selfens.attention.layers import model_mask  # noqa: E402
from selfens.confidence import ConfidenceCache  # noqa: E402
from selfens.data import ParaRel, collate  # noqa: E402
from selfens.decode import DecodeCost  # noqa: E402
from selfens.lm import LanguageModel  # noqa: E402
from selfens.methods import AttentionFusion, LogitFusion, Origin, PerPrompt  # noqa: E402
from selfens.metrics import exact_match  # noqa: E402
from selfens.models import EMBEDDED  # noqa: E402

# name -> (class, init args); weighted rules with the cheap token_prob confidence (sampling K answers
# per prompt would dominate the table; its cost is its own: see results.json's confidence_* costs).
METHODS = {
    "origin": (Origin, {}),
    "per_prompt": (PerPrompt, {}),
    "avg": (LogitFusion, {"fusion": "avg"}),
    "max": (LogitFusion, {"fusion": "max"}),
    "weighted_avg": (LogitFusion, {"fusion": "weighted_avg", "confidence": "token_prob"}),
    "attention": (AttentionFusion, {"layout": "shared_prefix", "first_token": "block_ends"}),
}
SEED_AS_WRITTEN = "avg, seed loop (as written)"
SEED_SAME_STOP = "avg, seed loop (same stop & batch)"
SEED_STEPS = 20  # the seed loop as written: this many tokens, no early stop
MAX_NEW_TOKENS = 10
NUM_SHOTS = 4
SCALE_N = 5  # at scale (--facts): the study's N
SAMPLE_SEED = 0  # at scale: the study's sample
# 2: both seed rows; their padded tokens count padding, their row-steps skip each batch's first forward.
# 3: decode_steps, facts_per_s, rows_per_step, answers_sha256 per row; at scale, meta.data; --baseline.
SCHEMA = 3


class Plan(NamedTuple):
    """What one bench runs (the same in every process of a --baseline run)."""

    model: str
    ns: list[int]
    limit: Optional[int]  # the first `limit` facts (the demo's first) ...
    sample: Optional[int]  # ... or a sample of this many over every relation (--facts)
    batch_size: int | str  # or "auto", where the package has it
    seed_n: Optional[int]
    reuse: tuple[bool, ...]
    methods: tuple[str, ...]
    device: str
    dtype: str
    decode_rows: Optional[int]


def facts(plan: Plan, tokenizer, n: int) -> ParaRel:
    """The bundled ParaRel facts at N = n: the first `limit` (the demo's facts first), or a sample
    of `sample` facts spread evenly over every relation with n usable templates (the study's)."""
    dm = ParaRel(
        num_paraphrases=n,
        num_shots=NUM_SHOTS,
        limit=plan.limit,
        sample=plan.sample,
        sample_seed=SAMPLE_SEED,
        batch_size=data_batch_size(plan.batch_size),
        prompt_style="raw",
        fill_style="completion",
    )
    dm.connect(tokenizer, plan.model)
    dm.setup("test")
    return dm


def data_summary(dm: ParaRel, asked: Optional[int]) -> dict:
    """How many facts it got of how many asked, and of which relations (what qualifies at N)."""
    qualified = getattr(dm, "qualified", None) or {}
    return {
        "asked": asked,
        "facts": len(dm.examples),
        "relations_used": len({e.id.split("/")[0] for e in dm.examples}),
        "relations_qualifying": sum(1 for count in qualified.values() if count > 0) if qualified else None,
        "relations_bundled": len(qualified) if qualified else None,
        "facts_qualifying": sum(qualified.values()) if qualified else None,
    }


def batches(dm: ParaRel):
    """The batches a run decodes: the data module's own test loader (collated as it collates)."""
    return dm.test_dataloader()


def floor_tokens(examples, rows: int) -> int:
    """Each distinct prefix once, plus the first `rows` blocks (and their suffix) of every example."""
    prefixes = {tuple(e.segments.prefix) for e in examples}
    rest = sum(len(e.segments.blocks[k]) + len(e.segments.suffix) for e in examples for k in range(rows))
    return sum(map(len, prefixes)) + rest


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the process's peak so far


def answers_hash(answers: dict) -> str:
    """sha256 of every fact's answers, in id order: equal hashes, equal answers."""
    return hashlib.sha256(json.dumps(sorted(answers.items()), ensure_ascii=False).encode()).hexdigest()


def throughput(row: dict) -> dict:
    """Facts per second, and row-steps per decode forward: the rows in flight when a step runs."""
    steps = row["decode_steps"]
    return {
        "facts_per_s": row["examples"] / row["wall_s"],
        "rows_per_step": row["row_steps"] / steps if steps else None,
    }


def start_afresh(module) -> None:
    """Every run computes its own prefixes and confidences (these in a fresh temporary cache)."""
    module.prefix_cache.entries.clear()
    if isinstance(module, LogitFusion) and module.confidence is not None:
        module.confidence.cache = ConfidenceCache(Path(tempfile.mkdtemp(prefix="selfens-bench-")), module.model_name)


def warm_up(module, dm: ParaRel) -> None:
    """One batch, untimed: the process's first forwards (allocations, kernel choices) are not any row's."""
    start_afresh(module)
    module.decode(next(iter(batches(dm))))


def run_method(module, dm: ParaRel) -> dict:
    """One method over the facts. The `answers` (id -> [prediction, per-paraphrase answers or None])
    are for comparing rows, not the JSON (which keeps their hash)."""
    start_afresh(module)
    if module.lm.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(module.lm.device)
    cost, confidence, correct, answers = DecodeCost(), DecodeCost(), [], {}
    loader = batches(dm)
    start = time.perf_counter()
    for batch in loader:
        out = module.decode(batch)
        cost.add(out.cost)
        confidence.add(out.confidence_cost)
        correct += [exact_match(p, gold) for p, gold in zip(out.predictions, batch.answers)]
        each = out.per_paraphrase or [None] * len(batch.ids)
        answers.update((i, [p, e]) for i, p, e in zip(batch.ids, out.predictions, each))
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "batches": len(loader),
        "prefill_tokens": cost.prefill_tokens + confidence.prefill_tokens,
        "prefill_padded_tokens": cost.prefill_padded_tokens + confidence.prefill_padded_tokens,
        "forward_calls": cost.forward_calls + confidence.forward_calls,
        "decode_steps": cost.decode_steps + confidence.decode_steps,
        "row_steps": cost.row_steps + confidence.row_steps,
        "peak_kv_bytes": max(cost.peak_kv_bytes, confidence.peak_kv_bytes),
        "peak_memory_bytes": peak_memory_bytes(module.lm.device),
        "em": sum(correct) / len(correct),
        "answers": answers,
    }


class _NoCacheCost:
    """What a no-cache loop runs, counted as DecodeCost counts a decode: every token a forward reads
    (real and with padding), forward calls, and the forwards and rows of every forward but a batch's
    first (the decode steps)."""

    def __init__(self):
        self.tokens = self.padded = self.calls = self.steps = self.row_steps = 0

    def forward(self, valid: torch.Tensor, first: bool) -> None:
        self.tokens += int(valid.sum())
        self.padded += valid.numel()
        self.calls += 1
        self.steps += 0 if first else 1
        self.row_steps += 0 if first else valid.shape[0]

    def row(self, wall: float, batches: int, device: torch.device, correct: list[bool], answers: dict) -> dict:
        return {
            "wall_s": wall,
            "batches": batches,
            "prefill_tokens": self.tokens,
            "prefill_padded_tokens": self.padded,
            "forward_calls": self.calls,
            "decode_steps": self.steps,
            "row_steps": self.row_steps,
            "peak_kv_bytes": 0,
            "peak_memory_bytes": peak_memory_bytes(device),
            "em": sum(correct) / len(correct),
            "answers": answers,
        }


def _next_logits(lm, ids: torch.Tensor, valid: torch.Tensor, last_only: bool) -> torch.Tensor:
    """The whole left-padded sequences run again, no cache: the next-token logits [R, V]."""
    position = (valid.long().cumsum(-1) - 1).clamp(min=0)
    keep = {"logits_to_keep": 1} if last_only else {}
    mask = model_mask(lm, valid.long(), position, position)
    return lm(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=False, **keep).logits[:, -1].float()


@torch.inference_mode()
def run_seed_avg(module, dm: ParaRel) -> dict:
    """The seed's loop for avg as written, one fact at a time: no KV cache; each of SEED_STEPS steps
    re-runs the N full sequences (logits at every position) and appends the argmax of their mean
    last-position logits to all of them; no stop (the answer is cut at a stop string afterwards)."""
    module.language_model.use_implementation(module.implementation)  # the model is shared
    lm, pad = module.lm, dm.tokenizer.pad_token_id
    cost, correct, answers = _NoCacheCost(), [], {}
    start = time.perf_counter()
    for example in dm.examples:
        ids, valid = collate([example], pad_id=pad).rows()  # [N, L]
        ids, valid = ids.to(lm.device), valid.to(lm.device)
        generated = []
        for step in range(SEED_STEPS):
            logits = _next_logits(lm, ids, valid, last_only=False)
            cost.forward(valid, first=step == 0)
            token = logits.mean(0).argmax()
            generated.append(int(token))
            ids = torch.cat([ids, token.view(1, 1).expand(ids.shape[0], 1)], dim=-1)
            valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1)], dim=-1)
        answers[example.id] = [module.text(generated), None]
        correct.append(exact_match(answers[example.id][0], example.answers))
    return cost.row(time.perf_counter() - start, len(dm.examples), lm.device, correct, answers)


@torch.inference_mode()
def run_seed_avg_same_stop(module, dm: ParaRel) -> dict:
    """The seed's no-cache loop for avg with `module`'s stop rule and batches: the facts of a loader
    batch together (the B*N single prompts left-padded, as `avg` with reuse off reads them); every
    step re-runs the full sequences of the facts still decoding, takes the mean of their N rows'
    last-position logits, and appends its argmax to all N. A fact stops at EOS (not appended), at a
    stop string, or after max_new_tokens; its rows then leave the batch (and all-padding columns go)."""
    lm_wrap = module.language_model
    lm_wrap.use_implementation(module.implementation)  # the model is shared
    lm, n = module.lm, dm.num_paraphrases
    eos, stops, steps = set(module.eos_ids), module.hparams.stop_strings, module.hparams.max_new_tokens
    cost, correct, answers = _NoCacheCost(), [], {}
    loader = batches(dm)
    start = time.perf_counter()
    for batch in loader:
        ids, valid = batch.rows()  # [B*N, L], example-major
        ids, valid = ids.to(lm.device), valid.to(lm.device)
        alive, generated = list(range(len(batch.ids))), [[] for _ in batch.ids]
        for step in range(steps):
            logits = _next_logits(lm, ids, valid, last_only=True)
            cost.forward(valid, first=step == 0)
            tokens = logits.view(len(alive), n, -1).mean(1).argmax(-1).tolist()  # avg: the mean of raw logits
            keep = []
            for i, (b, token) in enumerate(zip(alive, tokens)):
                if token in eos:
                    continue
                generated[b].append(token)
                if not any(s in lm_wrap.raw_text(generated[b]) for s in stops):
                    keep.append(i)
            if not keep or step == steps - 1:
                break
            rows = torch.tensor([i * n + k for i in keep for k in range(n)], device=ids.device)
            ids, valid, alive = ids[rows], valid[rows], [alive[i] for i in keep]
            new = torch.tensor([tokens[i] for i in keep], device=ids.device).repeat_interleave(n)
            ids = torch.cat([ids, new[:, None]], dim=-1)
            valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1)], dim=-1)
            first = int(valid.any(0).long().argmax())  # columns that are padding in every row left
            ids, valid = ids[:, first:], valid[:, first:]
        for b, (fact, gold) in enumerate(zip(batch.ids, batch.answers)):
            answers[fact] = [module.text(generated[b]), None]
            correct.append(exact_match(answers[fact][0], gold))
    return cost.row(time.perf_counter() - start, len(loader), lm.device, correct, answers)


def data_batch_size(batch_size: int | str) -> int | str:
    """The data module's batch_size: `auto` only where this package has it (else 8, as before it)."""
    return 8 if batch_size == "auto" and not hasattr(ParaRel, "resolve_batch_size") else batch_size


def run_like(module, dm: ParaRel, plan: Plan) -> dict:
    """HOOK: what a run sets once its model is loaded (`selfens.budget.resolve`, for one process),
    set here for one method on one N's facts: the most rows in flight (`decode_rows`: the memory
    budget over the longest row these facts need; `--decode-rows` instead where given) and, for
    `--batch-size auto`, the data module's batch size. A package without them (an older baseline)
    runs as it always did: each batch decoded whole. Returns both, as used."""
    try:
        from selfens import budget
    except ImportError:
        budget = None
    if budget is not None and hasattr(module, "decode_rows"):
        if plan.decode_rows is not None:
            module.decode_rows = plan.decode_rows
        else:
            longest = max(module.prompt_length(e.segments) for e in dm.examples)
            module.decode_rows = budget.decode_rows(
                module.lm, longest + module.hparams.max_new_tokens, module.lm.device
            )
        if getattr(dm, "batch_size_auto", False):
            per_example = module.rows_per_example(dm.num_paraphrases)
            dm.resolve_batch_size(budget.auto_batch_size(per_example, module.decode_rows, len(dm.examples), 1))
    return {"batch_size": dm.batch_size, "decode_rows": getattr(module, "decode_rows", None)}


def build_modules(plan: Plan) -> dict:
    """(method, reuse_prefix) -> a configured module; all share one loaded model. Attention fusion
    uses its device's default backend (flex on CUDA, whose attention function runs SDPA for the
    other methods' plain masks; dense elsewhere)."""
    device = torch.device(plan.device)
    backend = default_backend(device)
    lm = LanguageModel(plan.model).load(plan.dtype, attn_implementation(backend), device=device).to(device)
    modules = {}
    for name in plan.methods:
        cls, kwargs = METHODS[name]
        if cls is AttentionFusion:
            kwargs = {**kwargs, "backend": backend}
        for reuse in plan.reuse:
            m = cls(model=lm, dtype=plan.dtype, max_new_tokens=MAX_NEW_TOKENS, reuse_prefix=reuse, **kwargs)
            m.configure_model()  # the model is loaded already: this builds what the method needs around it
            modules[name, reuse] = m.to(device)
    return modules


def agreement(answers: dict, reference: dict) -> float:
    """The share of facts whose answer is the reference's."""
    return sum(answers[i] == reference[i] for i in reference) / len(reference)


def answers_key(n: int, method: str, reuse: bool) -> str:
    return f"{n}|{method}|{'on' if reuse else 'off'}"


def benchmark(modules: dict, plan: Plan) -> tuple[list[dict], dict, dict]:
    """Every (N, reuse, method) of the plan on the same facts per N, and at `seed_n` the seed loops
    (where `avg` with reuse off is in the plan). Returns the rows, every row's answers (by
    `answers_key`) and each N's data summary."""
    tokenizer = next(iter(modules.values())).tokenizer
    rows, answers, data = [], {}, {}
    for n in plan.ns:
        dm = facts(plan, tokenizer, n)
        data[str(n)] = data_summary(dm, plan.sample or plan.limit)
        print(describe_data(n, data[str(n)]), flush=True)
        if not rows:
            warm_up(next(iter(modules.values())), dm)
        common = {
            "n": n,
            "examples": len(dm.examples),
            "prefixes": len({tuple(e.segments.prefix) for e in dm.examples}),
        }
        for reuse in plan.reuse:
            for name in plan.methods:
                settings = run_like(modules[name, reuse], dm, plan)
                result = {**settings, **run_method(modules[name, reuse], dm)}
                answers[answers_key(n, name, reuse)] = mine = result.pop("answers")
                used = 1 if name == "origin" else n
                row = {**common, "method": name, "reuse_prefix": reuse, "floor_tokens": floor_tokens(dm.examples, used)}
                if not reuse and (name, True) in modules:  # the share of facts whose answer is the same as with reuse
                    row["agreement_with_reuse"] = agreement(mine, answers[answers_key(n, name, True)])
                rows.append({**row, **result, "answers_sha256": answers_hash(mine)})
        if n == plan.seed_n and ("avg", False) in modules:
            avg = modules["avg", False]
            batch_size = run_like(avg, dm, plan)["batch_size"]  # avg's batches; no rows limit in these loops
            for name, result in (
                (SEED_AS_WRITTEN, {"batch_size": 1, "decode_rows": None, **run_seed_avg(avg, dm)}),
                (SEED_SAME_STOP, {"batch_size": batch_size, "decode_rows": None, **run_seed_avg_same_stop(avg, dm)}),
            ):
                mine = result.pop("answers")
                answers[answers_key(n, name, False)] = mine
                row = {**common, "method": name, "reuse_prefix": False, "floor_tokens": floor_tokens(dm.examples, n)}
                # the share of facts whose answer is avg's (reuse off, the same facts)
                reference = answers[answers_key(n, "avg", False)]
                rows.append(
                    {**row, **result, "answers_sha256": answers_hash(mine), "agreement": agreement(mine, reference)}
                )
    return [{**r, **throughput(r)} for r in rows], answers, data


def add_origin_ratio(rows: list[dict]) -> None:
    """The ratio to origin with prefix reuse, on the same facts (where that row was run)."""
    for row in rows:
        base = next((r for r in rows if r["n"] == row["n"] and r["method"] == "origin" and r["reuse_prefix"]), None)
        row["wall_vs_origin"] = row["wall_s"] / base["wall_s"] if base else None


def describe_data(n: int, data: dict) -> str:
    """One line: the facts it got, of how many asked, of which relations."""
    line = f"N = {n}: {data['facts']:,} facts" + (f" (asked {data['asked']:,})" if data["asked"] else "")
    line += f" of {data['relations_used']} relations"
    if data["facts_qualifying"] is not None:
        line += (
            f"; {data['facts_qualifying']:,} facts of {data['relations_qualifying']} of the "
            f"{data['relations_bundled']} bundled relations qualify"
        )
    return line


# -- against a baseline tree -------------------------------------------------------------------------
def child_argv(plan: Plan, method: str, out: Path, answers: Path) -> list[str]:
    """This script's arguments for one method of the plan, in a process of its own."""
    argv = ["--model", plan.model, "--ns", *map(str, plan.ns), "--batch-size", str(plan.batch_size)]
    argv += ["--facts", str(plan.sample)] if plan.sample else ["--limit", str(plan.limit)]
    argv += ["--seed-n", str(plan.seed_n or 0), "--reuse", reuse_name(plan.reuse), "--methods", method]
    argv += ["--device", plan.device, "--dtype", plan.dtype, "--out", str(out), "--answers-out", str(answers)]
    return argv + (["--decode-rows", str(plan.decode_rows)] if plan.decode_rows is not None else [])


def run_side(tree: Path, argv: list[str], out: Path, answers: Path) -> tuple[dict, dict]:
    """This script with `tree`'s selfens package (first on PYTHONPATH): its JSON and its answers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
    command = [sys.executable, str(Path(__file__).resolve()), *argv]
    status = subprocess.run(command, env=env, cwd=tempfile.gettempdir()).returncode
    if status != 0:
        why = f"stopped by signal {-status}" if status < 0 else f"exit status {status}"
        raise SystemExit(f"the bench failed ({why}) with PYTHONPATH={tree}: {shlex.join(command)}")
    return json.loads(out.read_text()), json.loads(answers.read_text())


def compare(new_rows: list[dict], base_rows: list[dict], new_answers: dict, base_answers: dict) -> list[str]:
    """Each new row gets the baseline's wall time, new / baseline, EM and whether its answers are
    the baseline's (every fact's prediction and per-paraphrase answers). Returns the differences,
    described, first facts first."""
    differences = []
    for row in new_rows:
        key = answers_key(row["n"], row["method"], row["reuse_prefix"])
        base = next((r for r in base_rows if answers_key(r["n"], r["method"], r["reuse_prefix"]) == key), None)
        if base is None:
            differences.append(f"{key}: not run by the baseline")
            continue
        mine, theirs = new_answers[key], base_answers[key]
        differ = sorted(i for i in set(mine) | set(theirs) if mine.get(i) != theirs.get(i))
        row.update(
            baseline_wall_s=base["wall_s"],
            vs_baseline=row["wall_s"] / base["wall_s"],
            baseline_em=base["em"],
            same_answers=not differ,
            answers_differ=len(differ),
        )
        if base["em"] != row["em"]:
            differences.append(f"{key}: EM {row['em']:.4f} against the baseline's {base['em']:.4f}")
        for fact in differ[:3]:
            differences.append(f"{key}: {fact}: {mine.get(fact)!r} against the baseline's {theirs.get(fact)!r}")
    return differences


class Result(NamedTuple):
    """What a bench found: its rows, each N's data summary, the settings its meta needs, the
    answers ({"new": ...} and, against a baseline, {"baseline": ...}), and against a baseline
    both sides' identities and the differences."""

    rows: list[dict]
    data: dict
    settings: dict
    answers: dict
    sides: Optional[dict] = None
    differences: tuple[str, ...] | list[str] = ()


def against_baseline(plan: Plan, baseline: Path, parts: Path):
    """Per method, the baseline tree's process, then this tree's (each writing its JSON and answers
    under `parts`). Yields the Result so far after each method: the new rows with the baseline's
    figures, so that a run stopped early keeps the methods it finished."""
    demo = _load("bench_demo")
    trees = {"baseline": baseline, "new": ROOT}
    at_start = {side: demo.tree_identity(tree) for side, tree in trees.items()}
    runs = {"baseline": [], "new": []}
    for method in plan.methods:
        for side, tree in (("baseline", baseline), ("new", ROOT)):
            out, answers = parts / f"{side}-{method}.json", parts / f"{side}-{method}-answers.json"
            print(f"-- {method}: {side} ({tree}), into {out}", flush=True)
            runs[side].append(run_side(tree, child_argv(plan, method, out, answers), out, answers))
        yield merge(plan, runs, demo.identities(trees, at_start))


def merge(plan: Plan, runs: dict, trees: dict) -> Result:
    """Both sides' processes as one Result: this tree's rows, compared with the baseline's; `trees`:
    each side's identity (`bench_demo.identities`)."""
    merged = {}
    for side, results in runs.items():
        rows = [r for data, _ in results for r in data["rows"]]
        rows.sort(key=lambda r: row_order(plan, r))
        add_origin_ratio(rows)
        answers = {k: v for _, a in results for k, v in a.items()}
        metas = [data["meta"] for data, _ in results]
        merged[side] = rows, answers, metas
    (new_rows, new_answers, new_metas), (base_rows, base_answers, base_metas) = merged["new"], merged["baseline"]
    differences = compare(new_rows, base_rows, new_answers, base_answers)
    sides = {
        "new": {**trees["new"], **side_meta(new_metas)},
        "baseline": {**trees["baseline"], **side_meta(base_metas), "rows": base_rows},
    }
    first = new_metas[0]
    settings = {k: first[k] for k in ("stop_strings", "weights_dtype", "package")}
    answers = {"new": new_answers, "baseline": base_answers}
    return Result(new_rows, first["data"], settings, answers, sides, differences)


def row_order(plan: Plan, row: dict) -> tuple:
    """The order of one process's rows: by N, reuse on first, the methods in order, the seed loops last."""
    seed = row["method"] not in METHODS
    method = 0 if seed else list(METHODS).index(row["method"])
    return plan.ns.index(row["n"]), seed, not row["reuse_prefix"], method


def side_meta(metas: list[dict]) -> dict:
    """One side's processes: its package, the load average at its start and end, its total time."""
    return {
        "package": metas[0]["package"],
        "load_average": [metas[0]["load_average"][0], metas[-1]["load_average"][1]],
        "total_wall_s": sum(m["total_wall_s"] for m in metas),
    }


# -- output ------------------------------------------------------------------------------------------
COLUMNS = [
    ("n", "N", "{}"),
    ("method", "method", "{}"),
    ("reuse_prefix", "reuse", "{}"),
    ("examples", "facts", "{}"),
    ("wall_s", "wall s", "{:.2f}"),
    ("wall_vs_origin", "x origin", "{:.2f}"),
    ("facts_per_s", "facts/s", "{:.2f}"),
    ("prefill_tokens", "prefill", "{}"),
    ("prefill_padded_tokens", "padded", "{}"),
    ("floor_tokens", "floor", "{}"),
    ("forward_calls", "forwards", "{}"),
    ("row_steps", "row-steps", "{}"),
    ("rows_per_step", "rows/step", "{:.1f}"),
    ("peak_kv_bytes", "peak KV MB", "{}"),
    ("peak_memory_bytes", "peak mem MB", "{}"),
    ("em", "EM", "{:.1%}"),
]
BASELINE_COLUMNS = [
    ("baseline_wall_s", "base s", "{:.2f}"),
    ("vs_baseline", "new/base", "{:.2f}"),
    ("same_answers", "same answers", "{}"),
]


def table(rows: list[dict]) -> str:
    columns = COLUMNS + (BASELINE_COLUMNS if any("baseline_wall_s" in r for r in rows) else [])

    def cell(row, key, fmt):
        value = row.get(key)
        if value is None:
            return "-"
        if key.endswith("bytes"):
            return f"{value / 2**20:.1f}"
        if key == "same_answers":
            return "yes" if value else f"NO ({row['answers_differ']})"
        return fmt.format("on" if value is True else "off" if value is False else value)

    cells = [[title for _, title, _ in columns]] + [[cell(r, k, f) for k, _, f in columns] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    lines = [
        "  ".join(c.rjust(w) if i not in (1,) else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths)))
        for line in cells
    ]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])


def machine(device: torch.device) -> dict:
    """Where the figures come from."""
    import transformers

    info = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# -- the command line --------------------------------------------------------------------------------
REUSE = {"both": (True, False), "on": (True,), "off": (False,)}


def reuse_name(reuse: tuple[bool, ...]) -> str:
    return next(name for name, value in REUSE.items() if value == reuse)


def batch_size(text: str) -> int | str:
    """--batch-size: a whole number of facts, at least 1, or auto."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of facts, at least 1, or auto, got {text!r}")
    return int(text)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the tiny random model on 6 facts, N in {1, 2} (with --facts: at scale): a CI check",
    )
    parser.add_argument("--model", default=EMBEDDED, help="registry name or local folder (default: the embedded model)")
    parser.add_argument(
        "--ns", type=int, nargs="+", default=None, help="numbers of paraphrases (default 1 2 5 10; 5 at scale)"
    )
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--limit", type=int, default=None, help="the first facts per N, the demo's first (default 100)")
    count.add_argument(
        "--facts",
        type=int,
        default=None,
        help="at scale: this many facts sampled evenly over every relation (e.g. 1000); N = 5, reuse on, no seed loops",
    )
    parser.add_argument(
        "--batch-size",
        type=batch_size,
        default=8,
        help="facts per batch (the data module's batch_size), or auto where the package has it (8 where not)",
    )
    parser.add_argument(
        "--seed-n",
        type=int,
        default=None,
        help="N at which the seed's avg loops run (0: never; default 5, never at scale)",
    )
    parser.add_argument("--reuse", choices=sorted(REUSE), default=None, help="prefix reuse (default both; on at scale)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="default: all")
    parser.add_argument(
        "--decode-rows",
        type=int,
        default=None,
        help="rows decoded at once, where the package has decode_rows (default: as a run sets it)",
    )
    parser.add_argument("--baseline", type=Path, default=None, help="a code tree to compare with (its selfens package)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto: bf16 on CUDA, fp32 on CPU")
    parser.add_argument(
        "--out", type=Path, default=None, help="default benchmarks/results.json (results_scale.json at scale)"
    )
    parser.add_argument(
        "--answers-out",
        type=Path,
        default=None,
        help="also write every row's answers (JSON; with --baseline, the baseline's in NAME.baseline.json)",
    )
    parser.add_argument(
        "--docs", type=Path, default=None, help="then write this docs page from the JSONs (e.g. docs/benchmarks.md)"
    )
    args = parser.parse_args(argv)
    for name in ("limit", "facts", "decode_rows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.baseline is not None and not (args.baseline / "selfens" / "__init__.py").is_file():
        parser.error(
            f"--baseline {args.baseline}: no selfens package there (expected {args.baseline}/selfens/__init__.py)"
        )
    if args.out is None:
        args.out = Path("benchmarks/results_scale.json" if args.facts else "benchmarks/results.json")
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    """The bench's settings: the defaults for a plain run, at scale and for --quick (the tiny model)."""
    scale = args.facts is not None
    plan = Plan(
        model=args.model,
        ns=args.ns or ([SCALE_N] if scale else [1, 2, 5, 10]),
        limit=None if scale else args.limit or 100,
        sample=args.facts,
        batch_size=args.batch_size,
        seed_n=(None if scale else 5) if args.seed_n is None else args.seed_n or None,
        reuse=REUSE[args.reuse or ("on" if scale else "both")],
        methods=tuple(args.methods),
        device=args.device,
        dtype=args.dtype,
        decode_rows=args.decode_rows,
    )
    if args.quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_model

        tiny = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="selfens-tiny-"))))
        # with --facts, the scale path on the tiny model; else a few facts at N in {1, 2}
        plan = plan._replace(model=tiny) if scale else plan._replace(model=tiny, ns=[1, 2], limit=6, seed_n=2)
    return plan


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    command = shlex.join(["python", "benchmarks/bench_methods.py", *(sys.argv[1:] if argv is None else argv)])
    plan = plan_of(args)
    started = Started(datetime.datetime.now(datetime.timezone.utc), time.perf_counter(), os.getloadavg()[0])
    if args.baseline is not None:
        parts = Path(tempfile.mkdtemp(prefix="selfens-bench-baseline-"))  # each process's JSON and answers
        for done, result in enumerate(against_baseline(plan, args.baseline.resolve(), parts), start=1):
            write_results(args, plan, command, started, result, complete=done == len(plan.methods))
    else:
        modules = build_modules(plan)
        rows, answers, data = benchmark(modules, plan)
        add_origin_ratio(rows)
        first = next(iter(modules.values()))
        settings = {
            "stop_strings": list(first.hparams.stop_strings),
            "weights_dtype": str(first.lm.dtype).removeprefix("torch."),
            "package": str(Path(selfens.__file__).resolve().parent),
        }
        result = Result(rows, data, settings, {"new": answers})
        write_results(args, plan, command, started, result, complete=True)
    print(table(result.rows))
    print(f"written to {args.out}")
    if args.docs is not None:
        write_page(args, plan)
    if result.differences:
        print(
            "the answers or EM differ from the baseline's:\n  " + "\n  ".join(result.differences[:10]), file=sys.stderr
        )
        raise SystemExit(1)


class Started(NamedTuple):
    """When the bench started: the date, the clock, the 1-minute load average."""

    date: datetime.datetime
    clock: float
    load: float


def write_results(args, plan: Plan, command: str, started: Started, result: Result, complete: bool) -> None:
    """The JSON (`--out`) and the answers (`--answers-out`; against a baseline, the baseline's in
    NAME.baseline.json). Against a baseline it is written after each method: `meta.complete` says
    whether every method of the plan is in."""
    meta = {
        "schema": SCHEMA,
        "command": command,
        "date": started.date.isoformat(timespec="seconds"),
        "total_wall_s": time.perf_counter() - started.clock,  # model loading and data setup included
        "complete": complete,
        "model": plan.model,
        "device": plan.device,
        "dtype": plan.dtype,
        "weights_dtype": result.settings["weights_dtype"],
        **machine(torch.device(plan.device)),
        "package": result.settings["package"],  # which selfens ran (PYTHONPATH decides)
        "ns": plan.ns,
        "limit": plan.limit,
        "facts": plan.sample,
        "sample_seed": SAMPLE_SEED if plan.sample else None,
        "data": result.data,
        "batch_size": plan.batch_size,
        "decode_rows": plan.decode_rows,  # --decode-rows; each row has the rows in flight it ran with
        "methods": list(plan.methods),
        "reuse": reuse_name(plan.reuse),
        "num_shots": NUM_SHOTS,
        "max_new_tokens": MAX_NEW_TOKENS,
        "stop_strings": result.settings["stop_strings"],
        "seed_n": plan.seed_n,
        "seed_steps": SEED_STEPS,
        "load_average": [round(started.load, 2), round(os.getloadavg()[0], 2)],  # 1-minute, at start and end
    }
    if result.sides is not None:  # where each side's package is, and each side's own rows
        meta = {**meta, **result.sides, "differences": result.differences}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": result.rows}, indent=2) + "\n")
    if args.answers_out is not None:
        args.answers_out.parent.mkdir(parents=True, exist_ok=True)
        args.answers_out.write_text(json.dumps(result.answers["new"], ensure_ascii=False) + "\n")
        if "baseline" in result.answers:
            baseline_answers = args.answers_out.with_name(args.answers_out.stem + ".baseline.json")
            baseline_answers.write_text(json.dumps(result.answers["baseline"], ensure_ascii=False) + "\n")


def write_page(args: argparse.Namespace, plan: Plan) -> None:
    """The docs page from this run's JSON and, in the other sections, the recorded JSONs (not for --quick)."""
    write_docs = _load("write_docs")
    recorded = {} if args.quick else write_docs.recorded_paths()
    if plan.sample:
        main_json = recorded.pop("main", None)
        if main_json is None:
            raise SystemExit(f"--docs at scale needs the main run's JSON ({write_docs.MAIN_JSON}) for the page")
        write_docs.write(main_json, args.docs, scale=args.out, demo=recorded.get("demo"))
    else:
        write_docs.write(args.out, args.docs, scale=recorded.get("scale"), demo=recorded.get("demo"))
    print(f"docs written to {args.docs}")


def _load(name: str):
    """A sibling script (benchmarks/<name>.py), imported."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return importlib.import_module(name)


if __name__ == "__main__":
    main()
