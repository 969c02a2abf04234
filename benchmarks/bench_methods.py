"""Every method's cost side by side, in one process with the model loaded once.

    python benchmarks/bench_methods.py                # the embedded model, 100 bundled ParaRel facts
    python benchmarks/bench_methods.py --quick        # the tiny random model, a few facts (CI)

For each N, every method runs on the same facts, with prefix reuse on and off; `origin` is the
baseline of each N's rows. Per row: wall time and its ratio to origin's, prefill tokens (real and
computed with padding) against the floor (each distinct prompt prefix once plus every paraphrase
block once), forward calls, decoded row-steps, peak KV-cache bytes, peak memory, and EM. The seed's
own loop for `avg` (no KV cache: the N full sequences re-run every step, 20 steps, no early stop)
runs once, at N = 5, to measure the speed-up over it. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfens.attention.backend import attn_implementation, default_backend  # noqa: E402
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
SEED_STEPS = 20


def facts(model: str, tokenizer, n: int, limit: int) -> ParaRel:
    dm = ParaRel(num_paraphrases=n, num_shots=4, limit=limit, prompt_style="raw", fill_style="completion")
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
    module.prefix_cache.entries.clear()  # every run computes its own prefixes (and confidences)
    if isinstance(module, LogitFusion) and module.confidence is not None:
        module.confidence.cache = ConfidenceCache(Path(tempfile.mkdtemp(prefix="selfens-bench-")), module.model_name)
    if module.lm.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(module.lm.device)
    cost, confidence, correct = DecodeCost(), DecodeCost(), []
    start = time.perf_counter()
    for group in prefix_batches(dm.examples, batch_size):
        batch = collate(group, pad_id=dm.tokenizer.pad_token_id)
        out = module.decode(batch)
        cost.add(out.cost)
        confidence.add(out.confidence_cost)
        correct += [exact_match(p, gold) for p, gold in zip(out.predictions, batch.answers)]
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "prefill_tokens": cost.prefill_tokens + confidence.prefill_tokens,
        "prefill_padded_tokens": cost.prefill_padded_tokens + confidence.prefill_padded_tokens,
        "forward_calls": cost.forward_calls + confidence.forward_calls,
        "row_steps": cost.row_steps + confidence.row_steps,
        "peak_kv_bytes": max(cost.peak_kv_bytes, confidence.peak_kv_bytes),
        "peak_memory_bytes": peak_memory_bytes(module.lm.device),
        "em": sum(correct) / len(correct),
    }


@torch.inference_mode()
def run_seed_avg(module, dm: ParaRel) -> dict:
    """The seed's loop for avg, one example at a time: no KV cache; each step re-runs the N full
    sequences and appends the argmax of their mean last-position logits to all of them."""
    lm, pad = module.lm, dm.tokenizer.pad_token_id
    correct, tokens, calls = [], 0, 0
    start = time.perf_counter()
    for example in dm.examples:
        ids, valid = collate([example], pad_id=pad).rows()  # [N, L]
        ids, valid = ids.to(lm.device), valid.to(lm.device)
        generated = []
        for _ in range(SEED_STEPS):
            position = (valid.long().cumsum(-1) - 1).clamp(min=0)
            logits = lm(input_ids=ids, attention_mask=valid.long(), position_ids=position, use_cache=False).logits
            tokens, calls = tokens + int(valid.sum()), calls + 1
            token = logits[:, -1].float().mean(0).argmax()
            generated.append(int(token))
            ids = torch.cat([ids, token.view(1, 1).expand(ids.shape[0], 1)], dim=-1)
            valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1)], dim=-1)
        correct.append(exact_match(module.text(generated), example.answers))
    return {
        "wall_s": time.perf_counter() - start,
        "prefill_tokens": tokens,
        "prefill_padded_tokens": tokens,
        "forward_calls": calls,
        "row_steps": calls * dm.num_paraphrases,
        "peak_kv_bytes": 0,
        "peak_memory_bytes": peak_memory_bytes(lm.device),
        "em": sum(correct) / len(correct),
    }


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
            m = cls(model=lm, dtype=dtype, max_new_tokens=10, reuse_prefix=reuse, **kwargs)
            m.configure_model()  # the model is loaded already: this builds what the method needs around it
            modules[name, reuse] = m.to(device)
    return modules


def benchmark(
    model: str, ns: list[int], limit: int, batch_size: int, seed_n: int | None, device: torch.device, dtype: str
) -> list[dict]:
    modules = build_modules(model, device, dtype)
    tokenizer = modules["origin", True].tokenizer
    rows = []
    for n in ns:
        dm = facts(model, tokenizer, n, limit)
        for reuse in (True, False):
            for name in METHODS:
                result = run_method(modules[name, reuse], dm, batch_size)
                used = 1 if name == "origin" else n
                rows.append(
                    {
                        "n": n,
                        "method": name,
                        "reuse_prefix": reuse,
                        "examples": len(dm.examples),
                        "floor_tokens": floor_tokens(dm.examples, used),
                        **result,
                    }
                )
        if n == seed_n:
            result = run_seed_avg(modules["avg", False], dm)
            rows.append(
                {
                    "n": n,
                    "method": "avg, seed loop",
                    "reuse_prefix": False,
                    "examples": len(dm.examples),
                    "floor_tokens": floor_tokens(dm.examples, n),
                    **result,
                }
            )
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="the tiny random model on 6 facts, N in {1, 2}: a CI check"
    )
    parser.add_argument("--model", default=EMBEDDED, help="registry name or local folder (default: the embedded model)")
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 2, 5, 10], help="numbers of paraphrases")
    parser.add_argument("--limit", type=int, default=100, help="facts per N")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed-n", type=int, default=5, help="N at which the seed's avg loop runs (0: never)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="auto", help="auto: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results.json"))
    args = parser.parse_args(argv)
    model, ns, limit, seed_n = args.model, args.ns, args.limit, args.seed_n
    if args.quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_model

        model, ns, limit, seed_n = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="selfens-tiny-")))), [1, 2], 6, 2
    rows = benchmark(model, ns, limit, args.batch_size, seed_n or None, torch.device(args.device), args.dtype)
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": model,
        "device": args.device,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "batch_size": args.batch_size,
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
