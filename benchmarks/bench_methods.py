"""Every method's cost side by side, in one process with the model loaded once.

    python benchmarks/bench_methods.py                # the embedded model, 100 bundled ParaRel facts
    python benchmarks/bench_methods.py --quick        # the tiny random model, a few facts (CI)
    python benchmarks/bench_methods.py --out benchmarks/results_cpu.json --docs docs/benchmarks.md

For each N, every method runs on the same facts, with prefix reuse on and off; `origin` is the
baseline of each N's rows. Per row: wall time and its ratio to origin's, prefill tokens (real and
computed with padding) against the floor (each distinct prompt prefix once plus every paraphrase
block once), forward calls, decoded row-steps, peak KV-cache bytes, peak memory, and EM.

At one N (`--seed-n`), the seed's own loop for `avg` (no KV cache: the N full sequences re-run
every step) runs twice, to separate what each change gains:

- "avg, seed loop (as written)": one fact per forward, 20 steps, no early stop, every position's logits.
- "avg, seed loop (same stop & batch)": the same no-cache loop with `avg`'s stop rule (stop strings,
  EOS, max_new_tokens), its batches (`prefix_batches`, finished facts dropped) and its last-position
  logits: it differs from `avg` with reuse off only in re-running the sequences instead of keeping a
  KV cache, and should give its answers (its `agreement` field: the share of facts that do).

Prints a table and writes JSON; `--docs` then writes the docs page from that JSON
(`benchmarks/write_docs.py`, which also rewrites it from a saved JSON).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfens.attention.backend import attn_implementation, default_backend  # noqa: E402
from selfens.attention.layers import model_mask  # noqa: E402
from selfens.confidence import ConfidenceCache  # noqa: E402
from selfens.data import ParaRel, collate  # noqa: E402
from selfens.data.base import prefix_batches  # noqa: E402
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
SCHEMA = 2  # 2: both seed rows; their padded tokens count padding, their row-steps skip each batch's first forward


def facts(model: str, tokenizer, n: int, limit: int) -> ParaRel:
    dm = ParaRel(num_paraphrases=n, num_shots=NUM_SHOTS, limit=limit, prompt_style="raw", fill_style="completion")
    dm.connect(tokenizer, model)
    dm.setup("test")
    return dm


def floor_tokens(examples, rows: int) -> int:
    """Each distinct prefix once, plus the first `rows` blocks (and their suffix) of every example."""
    prefixes = {tuple(e.segments.prefix) for e in examples}
    rest = sum(len(e.segments.blocks[k]) + len(e.segments.suffix) for e in examples for k in range(rows))
    return sum(map(len, prefixes)) + rest


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the process's peak so far


def run_method(module, dm: ParaRel, batch_size: int) -> dict:
    """One method over the facts. The `answers` (id -> answer) are for comparing rows, not the JSON."""
    module.prefix_cache.entries.clear()  # every run computes its own prefixes (and confidences)
    if isinstance(module, LogitFusion) and module.confidence is not None:
        module.confidence.cache = ConfidenceCache(Path(tempfile.mkdtemp(prefix="selfens-bench-")), module.model_name)
    if module.lm.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(module.lm.device)
    cost, confidence, correct, answers = DecodeCost(), DecodeCost(), [], {}
    batches = prefix_batches(dm.examples, batch_size)
    start = time.perf_counter()
    for group in batches:
        batch = collate(group, pad_id=dm.tokenizer.pad_token_id)
        out = module.decode(batch)
        cost.add(out.cost)
        confidence.add(out.confidence_cost)
        correct += [exact_match(p, gold) for p, gold in zip(out.predictions, batch.answers)]
        answers.update(zip(batch.ids, out.predictions))
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "batches": len(batches),
        "prefill_tokens": cost.prefill_tokens + confidence.prefill_tokens,
        "prefill_padded_tokens": cost.prefill_padded_tokens + confidence.prefill_padded_tokens,
        "forward_calls": cost.forward_calls + confidence.forward_calls,
        "row_steps": cost.row_steps + confidence.row_steps,
        "peak_kv_bytes": max(cost.peak_kv_bytes, confidence.peak_kv_bytes),
        "peak_memory_bytes": peak_memory_bytes(module.lm.device),
        "em": sum(correct) / len(correct),
        "answers": answers,
    }


class _NoCacheCost:
    """What a no-cache loop runs, counted as DecodeCost counts a decode: every token a forward reads
    (real and with padding), forward calls, and the rows of every forward but a batch's first."""

    def __init__(self):
        self.tokens = self.padded = self.calls = self.row_steps = 0

    def forward(self, valid: torch.Tensor, first: bool) -> None:
        self.tokens += int(valid.sum())
        self.padded += valid.numel()
        self.calls += 1
        self.row_steps += 0 if first else valid.shape[0]

    def row(self, wall: float, batches: int, device: torch.device, correct: list[bool], answers: dict) -> dict:
        return {
            "wall_s": wall,
            "batches": batches,
            "prefill_tokens": self.tokens,
            "prefill_padded_tokens": self.padded,
            "forward_calls": self.calls,
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
        answers[example.id] = module.text(generated)
        correct.append(exact_match(answers[example.id], example.answers))
    return cost.row(time.perf_counter() - start, len(dm.examples), lm.device, correct, answers)


@torch.inference_mode()
def run_seed_avg_same_stop(module, dm: ParaRel, batch_size: int) -> dict:
    """The seed's no-cache loop for avg with `module`'s stop rule and batches: the facts of a prefix
    batch together (the B*N single prompts left-padded, as `avg` with reuse off reads them); every
    step re-runs the full sequences of the facts still decoding, takes the mean of their N rows'
    last-position logits, and appends its argmax to all N. A fact stops at EOS (not appended), at a
    stop string, or after max_new_tokens; its rows then leave the batch (and all-padding columns go)."""
    lm_wrap = module.language_model
    lm_wrap.use_implementation(module.implementation)  # the model is shared
    lm, pad, n = module.lm, dm.tokenizer.pad_token_id, dm.num_paraphrases
    eos, stops, steps = set(module.eos_ids), module.hparams.stop_strings, module.hparams.max_new_tokens
    cost, correct, answers = _NoCacheCost(), [], {}
    batches = prefix_batches(dm.examples, batch_size)
    start = time.perf_counter()
    for group in batches:
        batch = collate(group, pad_id=pad)
        ids, valid = batch.rows()  # [B*N, L], example-major
        ids, valid = ids.to(lm.device), valid.to(lm.device)
        alive, generated = list(range(len(group))), [[] for _ in group]
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
        for b, example in enumerate(group):
            answers[example.id] = module.text(generated[b])
            correct.append(exact_match(answers[example.id], example.answers))
    return cost.row(time.perf_counter() - start, len(batches), lm.device, correct, answers)


def build_modules(model: str, device: torch.device, dtype: str) -> dict:
    """(method, reuse_prefix) -> a configured module; all share one loaded model. Attention fusion
    uses its device's default backend (flex on CUDA, whose attention function runs SDPA for the
    other methods' plain masks; dense elsewhere)."""
    backend = default_backend(device)
    lm = LanguageModel(model).load(dtype, attn_implementation(backend), device=device).to(device)
    modules = {}
    for name, (cls, kwargs) in METHODS.items():
        if cls is AttentionFusion:
            kwargs = {**kwargs, "backend": backend}
        for reuse in (True, False):
            m = cls(model=lm, dtype=dtype, max_new_tokens=MAX_NEW_TOKENS, reuse_prefix=reuse, **kwargs)
            m.configure_model()  # the model is loaded already: this builds what the method needs around it
            modules[name, reuse] = m.to(device)
    return modules


def agreement(answers: dict, reference: dict) -> float:
    """The share of facts whose answer is the reference's."""
    return sum(answers[i] == reference[i] for i in reference) / len(reference)


def benchmark(modules: dict, model: str, ns: list[int], limit: int, batch_size: int, seed_n: int | None) -> list[dict]:
    tokenizer = modules["origin", True].tokenizer
    rows = []
    for n in ns:
        dm = facts(model, tokenizer, n, limit)
        common = {
            "n": n,
            "examples": len(dm.examples),
            "prefixes": len({tuple(e.segments.prefix) for e in dm.examples}),
        }
        answers = {}
        for reuse in (True, False):
            for name in METHODS:
                result = run_method(modules[name, reuse], dm, batch_size)
                answers[name, reuse] = result.pop("answers")
                used = 1 if name == "origin" else n
                row = {**common, "method": name, "reuse_prefix": reuse, "floor_tokens": floor_tokens(dm.examples, used)}
                if not reuse:  # the share of facts whose answer is the same as with reuse
                    row["agreement_with_reuse"] = agreement(answers[name, False], answers[name, True])
                rows.append({**row, **result})
        if n == seed_n:
            avg = modules["avg", False]
            for name, result in (
                (SEED_AS_WRITTEN, run_seed_avg(avg, dm)),
                (SEED_SAME_STOP, run_seed_avg_same_stop(avg, dm, batch_size)),
            ):
                mine = result.pop("answers")
                row = {**common, "method": name, "reuse_prefix": False, "floor_tokens": floor_tokens(dm.examples, n)}
                # the share of facts whose answer is avg's (reuse off, the same facts)
                rows.append({**row, **result, "agreement": agreement(mine, answers["avg", False])})
    for row in rows:  # the ratio to origin with prefix reuse, on the same facts
        base = next(r for r in rows if r["n"] == row["n"] and r["method"] == "origin" and r["reuse_prefix"])
        row["wall_vs_origin"] = row["wall_s"] / base["wall_s"]
    return rows


COLUMNS = [
    ("n", "N", "{}"),
    ("method", "method", "{}"),
    ("reuse_prefix", "reuse", "{}"),
    ("examples", "facts", "{}"),
    ("wall_s", "wall s", "{:.2f}"),
    ("wall_vs_origin", "x origin", "{:.2f}"),
    ("prefill_tokens", "prefill", "{}"),
    ("prefill_padded_tokens", "padded", "{}"),
    ("floor_tokens", "floor", "{}"),
    ("forward_calls", "forwards", "{}"),
    ("row_steps", "row-steps", "{}"),
    ("peak_kv_bytes", "peak KV MB", "{}"),
    ("peak_memory_bytes", "peak mem MB", "{}"),
    ("em", "EM", "{:.1%}"),
]


def table(rows: list[dict]) -> str:
    def cell(row, key, fmt):
        value = row[key]
        if key.endswith("bytes"):
            return f"{value / 2**20:.1f}"
        return fmt.format("on" if value is True else "off" if value is False else value)

    cells = [[title for _, title, _ in COLUMNS]] + [[cell(r, k, f) for k, _, f in COLUMNS] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="the tiny random model on 6 facts, N in {1, 2}: a CI check"
    )
    parser.add_argument("--model", default=EMBEDDED, help="registry name or local folder (default: the embedded model)")
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 2, 5, 10], help="numbers of paraphrases")
    parser.add_argument("--limit", type=int, default=100, help="facts per N")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed-n", type=int, default=5, help="N at which the seed's avg loops run (0: never)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    parser.add_argument(
        "--docs", type=Path, default=None, help="then write this docs page from the JSON (e.g. docs/benchmarks.md)"
    )
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/bench_methods.py", *(sys.argv[1:] if argv is None else argv)])
    model, ns, limit, seed_n = args.model, args.ns, args.limit, args.seed_n
    if args.quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_model

        model, ns, limit, seed_n = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="selfens-tiny-")))), [1, 2], 6, 2
    device = torch.device(args.device)
    started, start = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    load_at_start = os.getloadavg()[0]  # other work on the machine slows every row alike, not evenly
    modules = build_modules(model, device, args.dtype)
    rows = benchmark(modules, model, ns, limit, args.batch_size, seed_n or None)
    avg = modules["avg", False]
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "schema": SCHEMA,
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        "total_wall_s": time.perf_counter() - start,  # model loading and data setup included
        "model": model,
        "device": args.device,
        "dtype": args.dtype,
        "weights_dtype": str(avg.lm.dtype).removeprefix("torch."),
        **machine(device),
        "ns": ns,
        "limit": limit,
        "batch_size": args.batch_size,
        "num_shots": NUM_SHOTS,
        "max_new_tokens": MAX_NEW_TOKENS,
        "stop_strings": list(avg.hparams.stop_strings),
        "seed_n": seed_n or None,
        "seed_steps": SEED_STEPS,
        "load_average": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],  # 1-minute, at start and end
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"written to {args.out}")
    if args.docs is not None:
        write_docs = _load_write_docs()
        write_docs.write(args.out, args.docs)
        print(f"docs written to {args.docs}")


def _load_write_docs():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import write_docs

    return write_docs


if __name__ == "__main__":
    main()
