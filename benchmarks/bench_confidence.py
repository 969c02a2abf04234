"""`selfens confidence`, this tree against a baseline tree, in one sitting.

    python benchmarks/bench_confidence.py --baseline ../base --out benchmarks/results_confidence_cpu.json

Runs `python -m selfens confidence --config configs/pararel/weighted_avg.yaml` (each tree its own config,
`--facts` facts) with each tree's package first on PYTHONPATH (benchmarks/ab.py), each run into a fresh
confidence folder, so both sides compute every value. Paired runs, the order alternating (the baseline
first in run 1). Per run and side: the process's wall time (imports and model load included) and the
`confidence_seconds` its results.json records. Both sides must cache the same value for every prompt;
the run exits 1 naming the first differences if not. `--out` writes the JSON that `write_docs.py` renders.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab  # noqa: E402
import write_docs  # noqa: E402

CONFIG = Path("configs") / "pararel" / "weighted_avg.yaml"


def run_confidence(tree: Path, facts: int, folder: Path) -> dict:
    """`selfens confidence` on `tree`'s config with `tree`'s package, into `folder`: its figures and
    the values it cached (key -> value)."""
    command = [sys.executable, "-m", "selfens", "confidence", "--config", str(tree / CONFIG)]
    command += ["--data.init_args.limit", str(facts), "--model.init_args.confidence_dir", str(folder / "cache")]
    command += ["--trainer.logger.init_args.save_dir", str(folder / "logs"), "--trainer.enable_progress_bar", "false"]
    wall = ab.run(tree, command, folder / "run.log")
    results, caches = sorted((folder / "logs").glob("*/*/results.json")), sorted((folder / "cache").glob("*.jsonl"))
    if len(results) != 1 or len(caches) != 1:
        raise SystemExit(f"{folder}: {len(results)} results.json and {len(caches)} cache files (expected 1 each)")
    cost = json.loads(results[0].read_text())["cost"]
    rows = [json.loads(line) for line in caches[0].read_text().splitlines() if line.strip()]
    values = {r["key"]: r["confidence"] for r in rows}
    spent = {"wall_s": wall, "confidence_s": cost["confidence_seconds"], "prompts": len(values)}
    spent |= {
        "forward_calls": int(cost["confidence_forward_calls"]),
        "decode_steps": int(cost["confidence_decode_steps"]),
    }
    return {"figures": spent, "values": values}


def compare(trees: dict[str, Path], facts: int, runs: int, work: Path) -> list[dict]:
    """`runs` paired runs, the order alternating, each compared."""
    rows = []
    for run in range(1, runs + 1):
        order = ab.SIDES if run % 2 else ab.SIDES[::-1]
        sides = {}
        for side in order:
            print(f"-- run {run}: {side} ({trees[side]})", flush=True)
            sides[side] = run_confidence(trees[side], facts, work / f"{run}-{side}")
        base, new = sides["baseline"], sides["new"]
        ratios = {"wall_ratio": "wall_s", "confidence_ratio": "confidence_s"}
        rows.append(
            {
                "run": run,
                "order": list(order),
                **ab.compared(base["figures"], new["figures"], base["values"], new["values"], ratios),
            }
        )
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the code tree to compare with, e.g. ../base")
    parser.add_argument("--new", type=Path, default=ab.ROOT, help="the tree measured against it (default: this one)")
    parser.add_argument("--facts", type=int, default=5, help="facts of the config's data (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="paired runs, the order alternating (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args(argv)
    if args.facts < 1 or args.runs < 1:
        parser.error("--facts and --runs must be at least 1")
    trees = {side: ab.check_tree(getattr(args, side), CONFIG) for side in ab.SIDES}
    sitting = ab.Sitting("bench_confidence.py", argv, trees)
    work = Path(tempfile.mkdtemp(prefix="selfens-bench-confidence-"))
    try:
        rows = compare(trees, args.facts, args.runs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = ab.medians(rows, ["wall_s", "confidence_s"], ["wall_ratio", "confidence_ratio"])
    print(write_docs.confidence({"rows": rows, "median": median}))
    print(
        f"median ratio: whole command {median['wall_ratio']:.2f}, confidence_seconds {median['confidence_ratio']:.2f}"
    )
    meta = sitting.meta(config=str(CONFIG), facts=args.facts)
    ab.finish(args.out, {"meta": meta, "rows": rows, "median": median}, "cached values")


if __name__ == "__main__":
    main()
