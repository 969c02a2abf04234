"""Every method's cost side by side, in one process with the model loaded once.

    python benchmarks/bench_methods.py                # the embedded model, 100 bundled ParaRel facts
    python benchmarks/bench_methods.py --quick        # the tiny random model, a few facts (CI)
    python benchmarks/bench_methods.py --out benchmarks/results_cpu.json --docs docs/benchmarks.md
    python benchmarks/bench_methods.py --facts 1000 --baseline ../base --out benchmarks/results_scale_cpu.json

For each N, every method runs on the same facts (the data module's own batches), with prefix reuse
on and off. Per row: wall time and its ratio to origin's (reuse on), prefill tokens (real and with
padding) against the floor (each distinct prompt prefix once plus every paraphrase block once),
forward calls, decode steps and row-steps, peak KV-cache bytes, peak memory, EM, a hash of the answers.

At one N (`--seed-n`), the seed's own `avg` loop (no KV cache: the N full sequences re-run every
step) runs twice: "as written" (one fact per forward, 20 steps, no early stop, every position's
logits) and "same stop & batch" (`avg`'s stop rule, batches and last-position logits: it differs
from `avg` with reuse off only in keeping no KV cache; its `agreement` is the share of facts whose
answer is `avg`'s).

At scale (`--facts K`): K facts sampled evenly over every bundled relation with N usable templates
(as the study draws them), N = 5, reuse on, no seed loops. `--baseline TREE` runs this script again
with TREE's package first on PYTHONPATH (benchmarks/ab.py), one process per method and side, the
baseline's first: each row gets the baseline's wall time, new / baseline and whether every fact's
answers are the same (exit 1 if not). The JSON is written after each method (`meta.complete`: all
done). `--docs PAGE` then renders PAGE's tables from the recorded JSONs (benchmarks/write_docs.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
# Last: PYTHONPATH (or the installed package) decides which selfens runs; see --baseline.
sys.path.append(str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ab  # noqa: E402
import write_docs  # noqa: E402

import selfens  # noqa: E402
from selfens.attention.backend import attn_implementation, default_backend  # noqa: E402
from selfens.attention.layers import model_mask  # noqa: E402
from selfens.data import ParaRel, collate  # noqa: E402
from selfens.decoding import budget  # noqa: E402
from selfens.decoding.result import DecodeCost  # noqa: E402
from selfens.methods import AttentionFusion, LogitFusion, Origin, PerPrompt  # noqa: E402
from selfens.methods.confidence import ConfidenceCache  # noqa: E402
from selfens.metrics import exact_match  # noqa: E402
from selfens.model.language_model import LanguageModel  # noqa: E402
from selfens.model.registry import EMBEDDED  # noqa: E402

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
SCHEMA = 3  # 3: decode_steps, facts_per_s, rows_per_step, answers_sha256 per row; meta.data; --baseline
REUSE = {"both": (True, False), "on": (True,), "off": (False,)}


class Plan(NamedTuple):
    """What one bench runs (the same in every process of a --baseline run)."""

    model: str
    ns: list[int]
    limit: Optional[int]  # the first `limit` facts (the demo's first) ...
    sample: Optional[int]  # ... or a sample of this many over every relation (--facts)
    batch_size: int | str  # or "auto"
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
        batch_size=plan.batch_size,
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


def start_afresh(module) -> None:
    """Every run computes its own prefixes and confidences (these in a fresh temporary cache)."""
    module.prefix_cache.entries.clear()
    if isinstance(module, LogitFusion) and module.confidence is not None:
        module.confidence.cache = ConfidenceCache(Path(tempfile.mkdtemp(prefix="selfens-bench-")), module.model_name)


def run_method(module, dm: ParaRel) -> dict:
    """One method over the facts. The `answers` (id -> [prediction, per-paraphrase answers or None])
    are for comparing rows, not the JSON (which keeps their hash)."""
    start_afresh(module)
    if module.hf_model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(module.hf_model.device)
    cost, confidence, correct, answers = DecodeCost(), DecodeCost(), [], {}
    loader = dm.test_dataloader()
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
        "peak_memory_bytes": peak_memory_bytes(module.hf_model.device),
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
    lm, pad = module.hf_model, dm.tokenizer.pad_token_id
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
    lm, n = module.hf_model, dm.num_paraphrases
    eos, stops, steps = set(module.eos_ids), module.hparams.stop_strings, module.hparams.max_new_tokens
    cost, correct, answers = _NoCacheCost(), [], {}
    loader = dm.test_dataloader()
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


def size_decode(module, dm: ParaRel, plan: Plan) -> dict:
    """What `EnsembleModule.size_decode` sets in a run (it needs a Trainer), set here for one method on
    one N's facts: the rows in flight (the memory budget over the longest row these facts need, or
    `--decode-rows`) and, for `--batch-size auto`, the data module's batch size. Returns both."""
    if plan.decode_rows is not None:
        module.decode_rows = plan.decode_rows
    else:
        longest = max(module.prompt_length(e.segments) for e in dm.examples) + module.hparams.max_new_tokens
        module.decode_rows = budget.decode_rows(module.hf_model, longest, module.hf_model.device)
    if dm.batch_size_auto:
        per_example = module.rows_per_example(dm.num_paraphrases)
        dm.resolve_batch_size(budget.auto_batch_size(per_example, module.decode_rows, len(dm.examples), 1))
    return {"batch_size": dm.batch_size, "decode_rows": module.decode_rows}


def build_modules(plan: Plan) -> dict:
    """(method, reuse_prefix) -> a configured module; all share one loaded model. Attention fusion
    uses its device's default backend (flex on CUDA, dense elsewhere)."""
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


def answers_key(row: dict) -> str:
    return f"{row['n']}|{row['method']}|{'on' if row['reuse_prefix'] else 'off'}"


def benchmark(modules: dict, plan: Plan) -> tuple[list[dict], dict, dict]:
    """Every (N, reuse, method) of the plan on the same facts per N, and at `seed_n` the seed loops
    (where `avg` with reuse off is in the plan). Returns the rows, every row's answers (by
    `answers_key`) and each N's data summary."""
    first = next(iter(modules.values()))
    rows, answers, data = [], {}, {}
    for n in plan.ns:
        dm = facts(plan, first.tokenizer, n)
        data[str(n)] = data_summary(dm, plan.sample or plan.limit)
        print(f"N = {n}: {json.dumps(data[str(n)])}", flush=True)
        if not rows:  # one batch, untimed: the process's first forwards are not any row's
            start_afresh(first)
            first.decode(next(iter(dm.test_dataloader())))
        common = {
            "n": n,
            "examples": len(dm.examples),
            "prefixes": len({tuple(e.segments.prefix) for e in dm.examples}),
        }
        runs = [(name, reuse, modules[name, reuse]) for reuse in plan.reuse for name in plan.methods]
        if n == plan.seed_n and ("avg", False) in modules:
            runs += [(SEED_AS_WRITTEN, False, run_seed_avg), (SEED_SAME_STOP, False, run_seed_avg_same_stop)]
        for name, reuse, run in runs:
            row = {**common, "method": name, "reuse_prefix": reuse}
            row["floor_tokens"] = floor_tokens(dm.examples, 1 if name == "origin" else n)
            if name not in METHODS:  # a seed loop, with avg's module (reuse off) and batches, no rows limit
                result = {**size_decode(modules["avg", False], dm, plan), **run(modules["avg", False], dm)}
                result.update(decode_rows=None, batch_size=1 if name == SEED_AS_WRITTEN else result["batch_size"])
                reference = answers[f"{n}|avg|off"]
            else:
                result = {**size_decode(run, dm, plan), **run_method(run, dm)}
                reference = answers.get(f"{n}|{name}|on") if not reuse else None
            answers[answers_key(row)] = mine = result.pop("answers")
            if reference is not None:  # the share of facts whose answer is avg's (seed loops) or the same with reuse
                row["agreement" if name not in METHODS else "agreement_with_reuse"] = agreement(mine, reference)
            rows.append({**row, **result, "answers_sha256": answers_hash(mine)})
    for row in rows:
        row["facts_per_s"] = row["examples"] / row["wall_s"]
        row["rows_per_step"] = row["row_steps"] / row["decode_steps"] if row["decode_steps"] else None
    return rows, answers, data


def add_origin_ratio(rows: list[dict]) -> None:
    """The ratio to origin with prefix reuse, on the same facts (where that row was run)."""
    for row in rows:
        base = next((r for r in rows if r["n"] == row["n"] and r["method"] == "origin" and r["reuse_prefix"]), None)
        row["wall_vs_origin"] = row["wall_s"] / base["wall_s"] if base else None


# -- against a baseline tree -------------------------------------------------------------------------
def against_baseline(plan: Plan, trees: dict[str, Path], parts: Path):
    """Per method, the baseline tree's process of this script, then this tree's (each writing its JSON,
    answers and log under `parts`). Yields (rows, both sides' answers, meta) after each method: the
    new rows with the baseline's figures, so that a run stopped early keeps the methods it finished."""
    runs = {side: [] for side in ab.SIDES}
    for done, method in enumerate(plan.methods, 1):
        for side in ab.SIDES:
            out, answers, log = (parts / f"{side}-{method}{end}" for end in (".json", "-answers.json", ".log"))
            print(f"-- {method}: {side} ({trees[side]}), log {log}", flush=True)
            argv = [*child_argv(plan), "--methods", method, "--out", str(out), "--answers-out", str(answers)]
            ab.run(trees[side], [sys.executable, str(Path(__file__).resolve()), *argv], log)
            runs[side].append((json.loads(out.read_text()), json.loads(answers.read_text())))
        merged, sides = {}, {}
        for side, results in runs.items():
            rows = sorted((r for data, _ in results for r in data["rows"]), key=lambda r: row_order(plan, r))
            add_origin_ratio(rows)
            merged[side] = rows, {k: v for _, a in results for k, v in a.items()}
            metas = [data["meta"] for data, _ in results]
            sides[side] = {"package": metas[0]["package"], "total_wall_s": sum(m["total_wall_s"] for m in metas)}
            sides[side]["load_average"] = [metas[0]["load_average"][0], metas[-1]["load_average"][1]]
        (rows, new_answers), (base_rows, base_answers) = merged["new"], merged["baseline"]
        found = {k: v for k, v in runs["new"][0][0]["meta"].items() if k in RECORDED}
        found |= {
            "complete": done == len(plan.methods),
            "differences": compare(rows, base_rows, new_answers, base_answers),
        }
        found |= {"new": sides["new"], "baseline": {**sides["baseline"], "rows": base_rows}}
        yield rows, {"new": new_answers, "baseline": base_answers}, found


def row_order(plan: Plan, row: dict) -> tuple:
    """The order of one process's rows: by N, reuse on first, the methods in order, the seed loops last."""
    seed = row["method"] not in METHODS
    return plan.ns.index(row["n"]), seed, not row["reuse_prefix"], 0 if seed else list(METHODS).index(row["method"])


def compare(rows: list[dict], base_rows: list[dict], answers: dict, base_answers: dict) -> list[str]:
    """Each new row gets the baseline's wall time, new / baseline, EM and whether every fact's answers
    (prediction and per-paraphrase answers) are the baseline's. Returns the differences, described."""
    differences = []
    for row in rows:
        key = answers_key(row)
        base = next((r for r in base_rows if answers_key(r) == key), None)
        if base is None:
            differences.append(f"{key}: not run by the baseline")
            continue
        differ = ab.differences(base_answers[key], answers[key])
        row.update(baseline_wall_s=base["wall_s"], vs_baseline=row["wall_s"] / base["wall_s"], baseline_em=base["em"])
        row.update(same_answers=not differ, answers_differ=len(differ))
        if base["em"] != row["em"]:
            differences.append(f"{key}: EM {row['em']:.4f} against the baseline's {base['em']:.4f}")
        differences += [f"{key}: {d}" for d in differ[:3]]
    return differences


# -- the command line --------------------------------------------------------------------------------
def table(rows: list[dict]) -> str:
    """The rows as the docs page shows them (benchmarks/write_docs.py), as a markdown table."""
    compared = any("baseline_wall_s" in r for r in rows)
    more = ", facts/s=facts_per_s, rows/step=rows_per_step, peak memory MB=peak_memory_bytes"
    return write_docs.table(write_docs.SCALE_COLUMNS if compared else write_docs.METHOD_COLUMNS + more, rows)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny random model on 6 facts, N in {1, 2} (CI)")
    parser.add_argument("--model", default=EMBEDDED, help="registry name or local folder (default: the embedded model)")
    parser.add_argument(
        "--ns", type=int, nargs="+", default=None, help="numbers of paraphrases (default 1 2 5 10; 5 at scale)"
    )
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--limit", type=int, default=None, help="the first facts per N, the demo's first (default 100)")
    count.add_argument("--facts", type=int, default=None, help="at scale: this many facts sampled over every relation")
    parser.add_argument("--batch-size", default="8", help="facts per batch (the data module's batch_size), or auto")
    parser.add_argument(
        "--seed-n", type=int, default=None, help="N of the seed's avg loops (0: never; default 5, never at scale)"
    )
    parser.add_argument("--reuse", choices=sorted(REUSE), default=None, help="prefix reuse (default both; on at scale)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="default: all")
    parser.add_argument(
        "--decode-rows", type=int, default=None, help="rows decoded at once (default: as a run sets it)"
    )
    parser.add_argument("--baseline", type=Path, default=None, help="a code tree to compare with (its selfens package)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto: bf16 on CUDA, fp32 on CPU")
    parser.add_argument(
        "--out", type=Path, default=None, help="default benchmarks/results.json (results_scale.json at scale)"
    )
    parser.add_argument("--answers-out", type=Path, default=None, help="also write every row's answers (JSON)")
    parser.add_argument("--docs", type=Path, default=None, help="then render this page's tables (write_docs.py)")
    args = parser.parse_args(argv)
    if args.batch_size != "auto" and not (args.batch_size.isdigit() and int(args.batch_size) >= 1):
        parser.error(f"--batch-size: a whole number of facts, at least 1, or auto, got {args.batch_size!r}")
    args.batch_size = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    for name in ("limit", "facts", "decode_rows"):
        if (getattr(args, name) or 1) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.baseline is not None:
        args.baseline = ab.check_tree(args.baseline)
    args.out = args.out or Path("benchmarks/results_scale.json" if args.facts else "benchmarks/results.json")
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
        from helpers import build_tiny_model

        tiny = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="selfens-tiny-"))))
        # with --facts, the scale path on the tiny model; else a few facts at N in {1, 2}
        plan = plan._replace(model=tiny) if scale else plan._replace(model=tiny, ns=[1, 2], limit=6, seed_n=2)
    return plan


def child_argv(plan: Plan) -> list[str]:
    """This script's arguments for the plan, but its methods and outputs (--baseline's processes)."""
    argv = ["--model", plan.model, "--ns", *map(str, plan.ns), "--batch-size", str(plan.batch_size)]
    argv += ["--facts", str(plan.sample)] if plan.sample else ["--limit", str(plan.limit)]
    reuse = next(name for name, value in REUSE.items() if value == plan.reuse)
    argv += ["--seed-n", str(plan.seed_n or 0), "--reuse", reuse, "--device", plan.device, "--dtype", plan.dtype]
    return argv + (["--decode-rows", str(plan.decode_rows)] if plan.decode_rows is not None else [])


RECORDED = ("package", "data", "stop_strings", "weights_dtype", "torch", "transformers", "threads", "gpu")


def here(modules: dict) -> dict:
    """Which package, model weights, stop strings and software this process ran with."""
    import transformers

    first = next(iter(modules.values()))
    found = {"package": str(Path(selfens.__file__).resolve().parent), "stop_strings": list(first.hparams.stop_strings)}
    found |= {"weights_dtype": str(first.hf_model.dtype).removeprefix("torch."), "threads": torch.get_num_threads()}
    found |= {"torch": torch.__version__, "transformers": transformers.__version__}
    if first.hf_model.device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(first.hf_model.device)
    return found


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    plan = plan_of(args)
    trees = {"baseline": args.baseline, "new": ROOT} if args.baseline else {}
    sitting = ab.Sitting("bench_methods.py", argv, trees)
    if args.baseline is None:
        modules = build_modules(plan)
        rows, answers, data = benchmark(modules, plan)
        add_origin_ratio(rows)
        results = [(rows, {"new": answers}, {**here(modules), "data": data, "complete": True, "differences": []})]
    else:  # each process's JSON, answers and log in a temporary folder
        results = against_baseline(plan, trees, Path(tempfile.mkdtemp(prefix="selfens-bench-baseline-")))
    for rows, answers, found in results:
        write_results(args, plan, sitting.meta(**found), rows, answers)
    print(table(rows))
    print(f"written to {args.out}")
    if args.docs is not None:
        write_docs.main(["--page", str(args.docs)])
    if found["differences"]:
        print(
            "the answers or EM differ from the baseline's:\n  " + "\n  ".join(found["differences"][:10]),
            file=sys.stderr,
        )
        raise SystemExit(1)


def write_results(args, plan: Plan, meta: dict, rows: list[dict], answers: dict) -> None:
    """The JSON (`--out`) and the answers (`--answers-out`; the baseline's in NAME.baseline.json)."""
    settings = {"schema": SCHEMA, "model": plan.model, "device": plan.device, "dtype": plan.dtype, "ns": plan.ns}
    settings |= {"limit": plan.limit, "facts": plan.sample, "sample_seed": SAMPLE_SEED if plan.sample else None}
    settings |= {"batch_size": plan.batch_size, "decode_rows": plan.decode_rows, "methods": list(plan.methods)}
    settings |= {"reuse": next(name for name, value in REUSE.items() if value == plan.reuse), "num_shots": NUM_SHOTS}
    settings |= {"max_new_tokens": MAX_NEW_TOKENS, "seed_n": plan.seed_n, "seed_steps": SEED_STEPS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": {**settings, **meta}, "rows": rows}, indent=2) + "\n")
    if args.answers_out is not None:
        args.answers_out.parent.mkdir(parents=True, exist_ok=True)
        args.answers_out.write_text(json.dumps(answers["new"], ensure_ascii=False) + "\n")
        if "baseline" in answers:
            args.answers_out.with_name(args.answers_out.stem + ".baseline.json").write_text(
                json.dumps(answers["baseline"]) + "\n"
            )


if __name__ == "__main__":
    main()
