"""The levers of one decode step on the CPU, side by side in one process with the model loaded once.

    python benchmarks/bench_levers.py --out /tmp/levers.json     # the embedded model, R in 8, 32, 64
    python benchmarks/bench_levers.py --quick                    # the tiny random model: a smoke run
    python benchmarks/bench_levers.py --threads 1 --clock cpu    # CPU seconds: steadier on a busy machine

R rows of real ParaRel prompts (raw completion, `--shots` few-shot facts: ~150 tokens) are prefilled
once; each variant then runs `--steps` decode steps from that KV (one new token per row), fed the same
tokens (the greedy choices of today's path), `--repeats` times, interleaved with the other variants
(the order rotates each round) so that other work on the machine slows them alike. Variants:

- a: the step as it was, `selfens.decode.decode_one_token` on a transformers DynamicCache (each
  step concatenates: every row's cache is copied) under `torch.inference_mode()`;
- e: the same step on selfens's roomy cache (`selfens.kv_cache`: the new key written in place), what
  `selfens.decode` now uses;
- b: the same under `torch.no_grad()`, and under neither (grad mode on);
- c: the model's forward on a transformers `StaticCache` (batch R, K0 + steps keys), eager (the
  control) and `torch.compile`d (`--compile-modes`; "+freezing" adds inductor's weight freezing,
  "+gqa" SDPA's grouped-query attention: eager transformers folds the query heads for one token, but
  compiled it copies each layer's keys and values once per query head);
- d: today's step with `torch.set_num_threads(1)`, and with bf16 weights (its own bf16 prefill).

Each variant's next-token logits are compared with a's at every step (max |diff|, and the share of
row-steps whose argmax is a's): a faster path that changes tokens is not usable. Prints a markdown
table, with ratios to a's median, and writes JSON (`--out`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import itertools
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfens.data import ParaRel, collate  # noqa: E402
from selfens.decode import Prompt, decode_one_token, prefill  # noqa: E402
from selfens.lm import LanguageModel  # noqa: E402
from selfens.models import EMBEDDED  # noqa: E402

ROWS = [8, 32, 64]
STEPS = 16
SHOTS = 13  # ~150 tokens per prompt with the embedded model's tokenizer
REPEATS = 3
CLOCKS = {
    "wall": time.perf_counter,
    # CPU seconds of the process, all its threads summed: other work on the machine inflates them less
    # than wall time (compare variants at one thread with it).
    "cpu": time.process_time,
}
COMPILE_MODES = ["default", "default+gqa"]  # max-autotune-no-cudagraphs was no faster on the CPU
BASELINE = "a: inference_mode"

GRAD_MODES = {
    "inference_mode": torch.inference_mode,
    "no_grad": torch.no_grad,
    "neither": torch.enable_grad,  # grad mode on, as outside any context (the weights need no grad)
}


@dataclass
class Workload:
    """R rows right after prefill: where every run of every variant starts (never modified)."""

    valid: Tensor  # [R, K0] real keys
    key_positions: Tensor  # [R, K0]
    position: Tensor  # [R, 1] the first generated token's position
    kv: list[tuple[Tensor, Tensor]]  # per layer: keys, values [R, H, K0, D]
    tokens: list[Tensor]  # steps x [R, 1]: the token fed at each step

    @property
    def rows(self) -> int:
        return self.valid.shape[0]

    def first(self, rows: int) -> Workload:
        """The first `rows` rows (rows decode independently of each other)."""
        return Workload(
            self.valid[:rows],
            self.key_positions[:rows],
            self.position[:rows],
            [(k[:rows], v[:rows]) for k, v in self.kv],
            [t[:rows] for t in self.tokens],
        )


def prompts(tokenizer, model_name: str, rows: int, shots: int) -> Prompt:
    """The single prompts of `rows` ParaRel facts (first paraphrase each), left-padded."""
    dm = ParaRel(num_paraphrases=1, num_shots=shots, limit=rows, prompt_style="raw", fill_style="completion")
    dm.connect(tokenizer, model_name)
    dm.setup("test")
    if len(dm.examples) < rows:
        raise SystemExit(f"ParaRel gave {len(dm.examples)} facts with {shots} shots; {rows} rows were asked")
    ids, valid = collate(dm.examples, pad_id=tokenizer.pad_token_id).rows()
    return Prompt.left_padded(ids, valid)


@torch.inference_mode()
def prefilled(model, prompt: Prompt, steps: int, chunk: int) -> Workload:
    """Prefill `prompt` (`chunk` rows per forward, as today's `prefill`), then `steps` greedy steps of
    today's path: the tokens every variant is fed."""
    firsts, kvs = [], []
    for start in range(0, prompt.input_ids.shape[0], chunk):
        rows = list(range(start, min(start + chunk, prompt.input_ids.shape[0])))
        part = Prompt(*(t[rows] for t in (prompt.input_ids, prompt.valid, prompt.position_ids, prompt.attention_mask)))
        logits, cache = prefill(model, part)
        firsts.append(logits[:, -1].argmax(-1, keepdim=True))
        kvs.append([(layer.keys, layer.values) for layer in cache.layers])
    kv = [(torch.cat([p[i][0] for p in kvs]), torch.cat([p[i][1] for p in kvs])) for i in range(len(kvs[0]))]
    position = (prompt.position_ids.masked_fill(~prompt.valid, -1).amax(-1) + 1).unsqueeze(-1)
    work = Workload(prompt.valid, prompt.position_ids, position, kv, [torch.cat(firsts)])
    work.tokens += [step.argmax(-1, keepdim=True) for step in eager_run(model, work, steps - 1, greedy=True)]
    return work


def eager_run(
    model, work: Workload, steps: Optional[int] = None, greedy: bool = False, roomy: bool = False
) -> list[Tensor]:
    """The decode steps of `selfens.decode.decode`'s loop (no row finishing): `decode_one_token` on a
    DynamicCache that grows by one key per step (torch.cat), or with `roomy` on selfens's cache written
    in place (`selfens.kv_cache`, what decode uses), fed `work.tokens` (greedy: its first, then the
    argmax of each step). The next-token logits [R, V] of each of `steps` steps (default: one per token)."""
    from transformers import DynamicCache

    from selfens.kv_cache import roomy_cache

    # Neither changes the workload's tensors: concatenation makes new ones, the roomy cache copies them.
    cache = roomy_cache(work.kv, len(work.tokens)) if roomy else DynamicCache(work.kv)
    valid, key_positions, position = work.valid, work.key_positions, work.position
    token, out = work.tokens[0], []
    for step in range(len(work.tokens) if steps is None else steps):
        valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1)], dim=-1)
        key_positions = torch.cat([key_positions, position], dim=-1)
        logits, cache = decode_one_token(model, token, position, valid, cache, key_positions)
        position = position + 1
        out.append(logits)
        if greedy:
            token = logits.argmax(-1, keepdim=True)
        elif step + 1 < len(work.tokens):
            token = work.tokens[step + 1]
    return out


def compile_options(spec: str) -> tuple[dict, dict[str, str]]:
    """torch.compile's arguments, and the environment to run in, for a `--compile-modes` entry: a mode
    ("default": none) with optional suffixes: "+freezing", inductor's freezing (weights as constants),
    which torch.compile takes only as options; "+gqa", SDPA's own grouped-query attention, as compiled
    transformers otherwise copies each layer's keys and values once per query head (`repeat_kv`)."""
    mode, *extras = spec.split("+")
    if set(extras) - {"freezing", "gqa"}:
        raise SystemExit(f"compile mode {spec!r}: the suffixes are +freezing and +gqa")
    environ = {"TRANSFORMERS_SDPA_FORCE_GQA": "1"} if "gqa" in extras else {}
    if "freezing" not in extras:
        return {"mode": None if mode == "default" else mode}, environ
    if mode not in ("default", "max-autotune", "max-autotune-no-cudagraphs"):
        raise SystemExit(f"compile mode {spec!r}: +freezing goes with default or max-autotune*")
    return {"options": {"freezing": True, "max_autotune": mode != "default"}}, environ


def own_code(forward: Callable) -> Callable:
    """`forward` called through a function with a code object of its own. Dynamo keeps compiled graphs
    on the code object and hands a later torch.compile with equal settings the graph already there:
    one traced in another environment (+gqa's is not in its guards) would be reused."""

    def step(**kwargs):
        return forward(**kwargs)

    step.__code__ = step.__code__.replace(co_name=f"step_{next(_STEPS)}")
    return step


_STEPS = itertools.count()


class StaticRun:
    """The decode step on a transformers StaticCache of fixed shape (batch R, K0 + steps keys), its
    forward eager or compiled for that shape. The mask is a [R, 1, 1, K0 + steps] bool buffer (as
    `decode_mask` gives today, padded with unwritten slots), updated in place between steps."""

    def __init__(self, model, work: Workload, compile_spec: Optional[str]):
        from transformers import StaticCache

        self.k0, steps = work.valid.shape[1], len(work.tokens)
        self.cache = StaticCache(config=model.config, max_cache_len=self.k0 + steps)
        for layer, (keys, values) in zip(self.cache.layers, work.kv):
            layer.update(keys, values)  # allocates the layer and writes the prefill's keys at 0..K0-1
        self.mask = torch.zeros(work.rows, 1, 1, self.k0 + steps, dtype=torch.bool)
        self.forward, self.environ = model.forward, {}
        if compile_spec is not None:
            options, self.environ = compile_options(compile_spec)
            self.forward = torch.compile(own_code(model.forward), dynamic=False, fullgraph=True, **options)

    def __call__(self, work: Workload) -> list[Tensor]:
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(self.k0)  # later slots are rewritten before they are read
        self.mask.zero_()
        self.mask[:, 0, 0, : self.k0] = work.valid
        position, out = work.position, []
        for i, token in enumerate(work.tokens):
            self.mask[:, 0, 0, self.k0 + i] = True
            logits = self.forward(
                input_ids=token, attention_mask=self.mask, position_ids=position, cache=self.cache, use_cache=True
            ).logits
            out.append(logits[:, -1].float())
            position = position + 1
        return out


@dataclass
class Variant:
    name: str
    run: Callable[[], list[Tensor]]
    grad_mode: str = "inference_mode"
    threads: Optional[int] = None  # None: the process's
    environ: dict[str, str] = field(default_factory=dict)  # environment variables set during a run
    compile_s: Optional[float] = None

    def __call__(self, clock: Callable[[], float] = time.perf_counter) -> tuple[float, list[Tensor]]:
        """(seconds on `clock`, logits per step) of one run."""
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(self.threads or threads)
            with GRAD_MODES[self.grad_mode](), environment(self.environ):
                start = clock()
                logits = self.run()
                return clock() - start, logits
        finally:
            torch.set_num_threads(threads)


@contextlib.contextmanager
def environment(environ: dict[str, str]):
    """`environ` set in os.environ, then put back as it was."""
    saved = {name: os.environ.get(name) for name in environ}
    os.environ.update(environ)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def variants(model, work: Workload, bf16: Optional[tuple], compile_specs: list[str]) -> list[Variant]:
    """Every variant at `work`'s R; compiled ones are compiled here (their first call, timed)."""
    found = [
        Variant(BASELINE, lambda: eager_run(model, work)),
        Variant("b: no_grad", lambda: eager_run(model, work), grad_mode="no_grad"),
        Variant("b: neither", lambda: eager_run(model, work), grad_mode="neither"),
    ]
    found.append(Variant("e: roomy cache (selfens.kv_cache)", lambda: eager_run(model, work, roomy=True)))
    with torch.inference_mode():
        static = StaticRun(model, work, None)
    found.append(Variant("c: StaticCache, eager", lambda: static(work)))
    for spec in compile_specs:
        with torch.inference_mode():
            compiled = StaticRun(model, work, spec)
        variant = Variant(f"c: StaticCache, compile {spec}", lambda run=compiled: run(work), environ=compiled.environ)
        start = time.perf_counter()
        variant()  # compiles (one step's time is in it, noise next to compiling)
        variant.compile_s = time.perf_counter() - start
        found.append(variant)
    if torch.get_num_threads() > 1:
        found.append(Variant("d: 1 thread", lambda: eager_run(model, work), threads=1))
    if bf16 is not None:
        bf16_model, bf16_work = bf16
        found.append(Variant("d: bf16 weights", lambda: eager_run(bf16_model, bf16_work)))
    return found


def agreement(logits: list[Tensor], reference: list[Tensor]) -> tuple[float, float]:
    """(max |diff| of the logits, share of row-steps whose argmax is the reference's)."""
    diff = max(float((a - b).abs().max()) for a, b in zip(logits, reference))
    same = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(logits, reference))
    return diff, same / sum(b.shape[0] for b in reference)


def cpu_pressure() -> Optional[float]:
    """The share of the last 60 s in which some runnable task waited for a CPU (Linux PSI), in %."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None
    return float(dict(item.split("=") for item in line.split()[1:])["avg60"])


def busy() -> dict:
    """How busy the machine is: 1-minute load average (our own threads included) and CPU pressure."""
    return {"load_1min": round(os.getloadavg()[0], 2), "cpu_pressure_avg60": cpu_pressure()}


def measure(found: list[Variant], rows: int, steps: int, repeats: int, clock: Callable[[], float]) -> list[dict]:
    """One warm-up run each (its logits checked against the baseline's), then `repeats` rounds of
    every variant, the order rotating; the median of each."""
    reference = None
    checks = {}
    for variant in found:  # warm-up; the baseline comes first
        _, logits = variant()
        reference = reference or logits
        checks[variant.name] = agreement(logits, reference)
    seconds = {v.name: [] for v in found}
    for round_ in range(repeats):
        shift = round_ % len(found)
        for variant in found[shift:] + found[:shift]:
            elapsed, _ = variant(clock)
            seconds[variant.name].append(elapsed)
    base, base_min = statistics.median(seconds[BASELINE]), min(seconds[BASELINE])
    results = []
    for variant in found:
        times = seconds[variant.name]
        median = statistics.median(times)
        diff, argmax_equal = checks[variant.name]
        results.append(
            {
                "variant": variant.name,
                "rows": rows,
                "ms_per_step": 1000 * median / steps,
                "ms_per_row_step": 1000 * median / steps / rows,
                "vs_a": median / base,
                "min_ms_per_step": 1000 * min(times) / steps,
                "min_vs_a": min(times) / base_min,  # the least disturbed runs' ratio
                "spread": (max(times) - min(times)) / median,  # of the repeats, relative to their median
                "compile_s": variant.compile_s,
                "logits_max_abs_diff": diff,
                "argmax_equal": argmax_equal,
                "runs_ms_per_step": [1000 * t / steps for t in times],
            }
        )
    return results


def table(results: list[dict]) -> str:
    lines = [
        "| variant | rows | ms/step | ms/row-step | x a | spread | min ms/step | x a (min) | compile s "
        "| logits max abs diff | argmax equal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        compile_s = f"{r['compile_s']:.0f}" if r["compile_s"] is not None else ""
        lines.append(
            f"| {r['variant']} | {r['rows']} | {r['ms_per_step']:.1f} | {r['ms_per_row_step']:.2f} | "
            f"{r['vs_a']:.2f} | {r['spread']:.0%} | {r['min_ms_per_step']:.1f} | {r['min_vs_a']:.2f} | {compile_s} | "
            f"{r['logits_max_abs_diff']:.2g} | "
            f"{r['argmax_equal']:.1%} |"
        )
    return "\n".join(lines)


def machine() -> dict:
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the tiny random model, R in 2, 4, 4 steps: a smoke run")
    parser.add_argument("--model", default=EMBEDDED, help="registry name or local folder (default: the embedded model)")
    parser.add_argument("--rows", type=int, nargs="+", default=ROWS, help="R: rows decoded together")
    parser.add_argument("--steps", type=int, default=STEPS, help="decode steps per run")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="timed runs per variant (the median is kept)")
    parser.add_argument("--shots", type=int, default=SHOTS, help="few-shot facts per prompt (its length)")
    parser.add_argument(
        "--compile-modes",
        nargs="*",
        default=None,
        help="torch.compile modes for the StaticCache step ('default', 'max-autotune-no-cudagraphs', suffixes "
        f"'+freezing', '+gqa'; default: {' '.join(COMPILE_MODES)}, with --quick default); none: no compiling",
    )
    parser.add_argument(
        "--compile-rows", type=int, nargs="*", default=None, help="compile at these R (default: the least and most)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for every variant")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="cpu: the process's CPU seconds (use with --threads 1)"
    )
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16-weights variant (and its prefill)")
    parser.add_argument(
        "--warm-compile-cache",
        action="store_true",
        help="keep inductor's on-disk cache (default: a fresh one, so that compile s is a cold compile)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if min(args.rows) < 1 or args.steps < 1 or args.repeats < 1 or (args.threads or 1) < 1:
        raise SystemExit("--rows, --steps, --repeats and --threads must be at least 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    command = shlex.join(["python", "benchmarks/bench_levers.py", *(sys.argv[1:] if argv is None else argv)])
    model_name, rows, steps = args.model, sorted(args.rows), args.steps
    compile_modes = COMPILE_MODES if args.compile_modes is None else args.compile_modes
    if args.quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_model

        model_name = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="selfens-tiny-"))))
        rows, steps = [2, 4], 4
        compile_modes = ["default"] if args.compile_modes is None else compile_modes
    if not args.warm_compile_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="selfens-inductor-")
    compile_rows = set([rows[0], rows[-1]] if args.compile_rows is None else args.compile_rows)
    torch._dynamo.config.recompile_limit = 4 * len(compile_modes) + 8  # one graph per R and mode

    started, start = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    load = {"start": busy()}
    lm = LanguageModel(model_name).load()
    model = lm.model
    prompt = prompts(lm.tokenizer, model_name, max(rows), args.shots)
    prefill_start = time.perf_counter()
    work = prefilled(model, prompt, steps, chunk=min(rows))
    prefill_s = time.perf_counter() - prefill_start
    bf16 = None
    if not args.no_bf16:
        bf16_model = copy.deepcopy(model).to(torch.bfloat16)
        bf16 = bf16_model, prefilled(bf16_model, prompt, 1, chunk=min(rows))  # its own KV; fed a's tokens
    print(
        f"{max(rows)} prompts of {int(prompt.valid.sum(-1).float().mean())} tokens on average "
        f"(K0 = {prompt.valid.shape[1]} with padding), prefilled in {prefill_s:.0f} s",
        flush=True,
    )
    results = []
    for r in rows:
        load[f"before R={r}"] = busy()
        mine = work.first(r)
        bf16_here = None
        if bf16 is not None:
            bf16_work = bf16[1].first(r)
            bf16_work.tokens = mine.tokens
            bf16_here = bf16[0], bf16_work
        found = variants(model, mine, bf16_here, compile_modes if r in compile_rows else [])
        torch._dynamo.config.error_on_recompile = True  # a timed run that recompiles is a bug here
        try:
            results += measure(found, r, steps, args.repeats, CLOCKS[args.clock])
        finally:
            torch._dynamo.config.error_on_recompile = False
        print(table([x for x in results if x["rows"] == r]), flush=True)
    load["end"] = busy()
    print("\n" + table(results))
    print(f"\nload: {json.dumps(load)}")
    if args.out is not None:
        meta = {
            "command": command,
            "date": started.isoformat(timespec="seconds"),
            "total_wall_s": time.perf_counter() - start,
            "model": model_name,
            "rows": rows,
            "steps": steps,
            "repeats": args.repeats,
            "clock": args.clock,
            "shots": args.shots,
            "prompt_tokens_mean": float(prompt.valid.sum(-1).float().mean()),
            "k0": prompt.valid.shape[1],
            "prefill_s": prefill_s,
            "compile_modes": compile_modes,
            "compile_rows": sorted(compile_rows),
            "cold_compile_cache": not args.warm_compile_cache,
            "busy": load,
            **machine(),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
