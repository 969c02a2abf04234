"""How the time of one decode step grows with the rows decoded at once: where the CPU's knee is.

    python benchmarks/bench_rows.py                       # the embedded model, R = 1 .. 256, ~150 keys
    python benchmarks/bench_rows.py --rows 1 8 64 --repeats 5
    python benchmarks/bench_rows.py --threads 1 --clock cpu  # on a busy machine: the compute alone

One row is prefilled with `--keys` tokens; its KV cache is copied to R rows (a real copy, as a
batch of R prompts would hold), and `decode_one_token` runs `--steps` times after a warm-up step.
Every R has its cache at once and they take turns step by step (side by side, so that a busy
machine slows them alike); the table gives the median and the fastest of all timed steps. With
`--clock cpu` a step is timed by the process's CPU time, which waiting for a busy machine's cores
does not inflate (with one thread, it is the step's compute). A
bigger R costs more per step but less per row-step while the machine has idle compute; the knee
is the R beyond which the next R lowers ms per row-step by no more than `--gain` (10%):
`selfens.decoding.budget.CPU_ROW_KNEE` is set from it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selfens.decoding.loop import decode_one_token, prefill  # noqa: E402
from selfens.decoding.prompt import Prompt  # noqa: E402
from selfens.model.language_model import LanguageModel  # noqa: E402
from selfens.model.registry import EMBEDDED  # noqa: E402

ROWS = (1, 8, 16, 32, 64, 128, 256)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def knee(rows: list[int], ms_per_row_step: list[float], gain: float = 0.10) -> int:
    """The first R (rows ascending) whose next R lowers ms per row-step by no more than `gain`; the
    largest R if every step gains more."""
    if len(rows) != len(ms_per_row_step) or not rows:
        raise ValueError("knee() needs one time per row count, and at least one")
    for k in range(len(rows) - 1):
        if ms_per_row_step[k + 1] > (1.0 - gain) * ms_per_row_step[k]:
            return rows[k]
    return rows[-1]


def rows_cache(kv: list[tuple[torch.Tensor, torch.Tensor]], rows: int):
    """A DynamicCache of `rows` copies of one row's keys and values (each its own memory)."""
    from transformers import DynamicCache

    return DynamicCache([(k.repeat(rows, 1, 1, 1), v.repeat(rows, 1, 1, 1)) for k, v in kv])


class Rows:
    """R rows decoding together: their cache, keys and positions, stepped one token at a time."""

    def __init__(self, kv: list[tuple[torch.Tensor, torch.Tensor]], keys: int, rows: int):
        device = kv[0][0].device
        self.cache = rows_cache(kv, rows)
        self.token = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.position = torch.full((rows, 1), keys, dtype=torch.long, device=device)
        self.valid = torch.ones(rows, keys, dtype=torch.bool, device=device)
        self.key_positions = torch.arange(keys, device=device).expand(rows, -1)

    @torch.inference_mode()
    def step(self, model, clock=time.perf_counter) -> float:
        """Seconds of one decode step by `clock`, the next token read back (what a decode waits for)."""
        self.valid = torch.cat([self.valid, self.valid.new_ones(self.valid.shape[0], 1)], dim=-1)
        self.key_positions = torch.cat([self.key_positions, self.position], dim=-1)
        start = clock()
        logits, self.cache = decode_one_token(
            model, self.token, self.position, self.valid, self.cache, self.key_positions
        )
        self.token = logits.argmax(-1, keepdim=True)
        seconds = clock() - start
        self.position = self.position + 1
        return seconds


def step_times(model, kv, keys: int, rows: list[int], steps: int, clock=time.perf_counter) -> dict[int, list[float]]:
    """Seconds of `steps` decode steps for each R in `rows`, from caches of `keys` keys, after one
    untimed warm-up step each. The R take turns step by step (the order rotating), so that a busy
    machine slows them alike."""
    running = {r: Rows(kv, keys, r) for r in rows}
    for r in rows:
        running[r].step(model)
    times: dict[int, list[float]] = {r: [] for r in rows}
    for k in range(steps):
        for r in rows[k % len(rows) :] + rows[: k % len(rows)]:
            times[r].append(running[r].step(model, clock))
    return times


def prefilled_kv(model, keys: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values), [1, H, keys, D], of one row of `keys` random tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.get_text_config(decoder=True).vocab_size, (1, keys), generator=generator)
    with torch.inference_mode():
        _, cache = prefill(model, Prompt.left_padded(ids, torch.ones_like(ids, dtype=torch.bool)))
    return [(layer.keys, layer.values) for layer in cache.layers]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=EMBEDDED, help="a registry name or a local model folder")
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS))
    parser.add_argument("--keys", type=int, default=150, help="keys in each row's KV cache")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per R and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gain", type=float, default=0.10, help="the least gain per row-step worth more rows")
    parser.add_argument("--threads", type=int, default=None, help="torch's intra-op threads (default: its own)")
    parser.add_argument("--clock", choices=CLOCKS, default="wall", help="wall time, or the process's CPU time")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = sorted(set(args.rows))

    model = LanguageModel(args.model).load().hf_model
    kv = prefilled_kv(model, args.keys)
    times: dict[int, list[float]] = {r: [] for r in rows}
    for _ in range(args.repeats):  # fresh caches each repeat: the keys stay near --keys
        for r, seconds in step_times(model, kv, args.keys, rows, args.steps, CLOCKS[args.clock]).items():
            times[r] += seconds

    print(
        f"{args.model}, {args.keys} keys, {torch.get_num_threads()} threads, {os.cpu_count()} cores "
        f"({platform.processor() or platform.machine()}); {args.clock} clock, median of {args.repeats} x "
        f"{args.steps} steps"
    )
    print(f"{'R':>5} {'ms/step':>10} {'ms/row-step':>12} {'vs previous R':>14} {'fastest ms/step':>16}")
    table = []
    for r in rows:
        ms = 1000 * statistics.median(times[r])
        table.append({"rows": r, "ms_per_step": ms, "ms_per_row_step": ms / r, "fastest_ms": 1000 * min(times[r])})
    for k, row in enumerate(table):
        ratio = f"{row['ms_per_row_step'] / table[k - 1]['ms_per_row_step']:.2f}" if k else ""
        print(
            f"{row['rows']:>5} {row['ms_per_step']:>10.1f} {row['ms_per_row_step']:>12.2f} {ratio:>14} "
            f"{row['fastest_ms']:>16.1f}"
        )
    found = knee([t["rows"] for t in table], [t["ms_per_row_step"] for t in table], args.gain)
    print(f"knee: R = {found} (a bigger R lowers ms per row-step by no more than {args.gain:.0%})")
    return table


if __name__ == "__main__":
    main()
