"""`make demo`'s decoding, this tree against a baseline tree, in one sitting.

    python benchmarks/bench_demo.py --baseline ../base --out benchmarks/results_demo_cpu.json

Runs the demo's configs (configs/pararel/{origin,per_prompt,avg,attention}.yaml, each tree its own)
as `python -m selfens test --config ...` with each tree's package first on PYTHONPATH (benchmarks/ab.py),
per method the baseline's run, then this tree's (or `--new`'s). Each side's time is the decode seconds
its results.json records (`decode_seconds` + `confidence_seconds`: decoding, prefill included; not
loading). Every fact's `prediction` and `per_paraphrase` in predictions.jsonl must be the same on both
sides; the run exits 1 naming the first differences if not. `--out` writes the JSON that
`write_docs.py` renders.
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

DEMO_METHODS = ("origin", "per_prompt", "avg", "attention")  # the Makefile's DEMO_METHODS
COMPARED = ("prediction", "per_paraphrase")  # predictions.jsonl fields that must match per id


def config_of(method: str) -> Path:
    return Path("configs") / "pararel" / f"{method}.yaml"


def run_demo_config(tree: Path, method: str, save_dir: Path, name: str) -> Path:
    """`selfens test` on `tree`'s config for `method` with `tree`'s package, into save_dir/name: the run's folder."""
    command = [sys.executable, "-m", "selfens", "test", "--config", str(tree / config_of(method))]
    command += ["--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.name", name]
    ab.run(tree, command, save_dir / f"{name}.log")
    folders = sorted(p.parent for p in (save_dir / name).glob("*/results.json"))
    if len(folders) != 1:  # e.g. stopped by SIGTERM: Lightning exits 0 without writing results
        raise SystemExit(f"{name}: expected one results.json under {save_dir / name}, found {len(folders)}")
    return folders[0]


def figures(folder: Path) -> tuple[dict, dict]:
    """What a run's results.json says it spent and scored, and id -> its compared fields (as JSON text)."""
    results = json.loads((folder / "results.json").read_text())
    cost = results["cost"]
    spent = {
        "decode_s": cost["decode_seconds"] + cost.get("confidence_seconds", 0.0),
        "examples": results["num_examples"],
    }
    spent |= {"run_wall_s": results.get("wall_time_s"), "em": results["metrics"]["test/em"]}
    spent |= {"batch_size": results.get("batch_size"), "decode_rows": results.get("decode_rows")}
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines() if line.strip()]
    return spent, {r["id"]: json.dumps({k: r.get(k) for k in COMPARED}, ensure_ascii=False) for r in rows}


def compare(trees: dict[str, Path], methods: tuple[str, ...], save_dir: Path) -> list[dict]:
    """Per method, the baseline's run and then the new one's, compared."""
    rows = []
    for method in methods:
        sides = {}
        for side in ab.SIDES:
            print(f"-- {method}: {side} ({trees[side]})", flush=True)
            sides[side] = figures(run_demo_config(trees[side], method, save_dir, f"{side}-{method}"))
        (base, base_fields), (new, new_fields) = sides["baseline"], sides["new"]
        row = ab.compared(base, new, base_fields, new_fields, {"ratio": "decode_s"})
        rows.append({"method": method, "examples": new["examples"], **row})
    return rows


def totals(rows: list[dict]) -> dict:
    """Both sides' decode seconds summed over the methods, and their ratio."""
    base, new = (sum(r[side]["decode_s"] for r in rows) for side in ab.SIDES)
    return {"baseline_decode_s": base, "new_decode_s": new, "ratio": new / base}


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the code tree to compare with, e.g. ../base")
    parser.add_argument("--new", type=Path, default=ab.ROOT, help="the tree measured against it (default: this one)")
    parser.add_argument("--methods", nargs="+", choices=DEMO_METHODS, default=list(DEMO_METHODS))
    parser.add_argument("--save-dir", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="the JSON (e.g. benchmarks/results_demo_cpu.json)")
    args = parser.parse_args(argv)
    methods = tuple(dict.fromkeys(args.methods))
    configs = [config_of(m) for m in methods]
    trees = {side: ab.check_tree(getattr(args, side), *configs) for side in ab.SIDES}
    sitting = ab.Sitting("bench_demo.py", argv, trees)
    save_dir = (args.save_dir or Path(tempfile.mkdtemp(prefix="selfens-bench-demo-"))).resolve()
    save_dir.mkdir(parents=True, exist_ok=True)
    try:
        rows = compare(trees, methods, save_dir)
    finally:
        if args.save_dir is None:
            shutil.rmtree(save_dir, ignore_errors=True)
    total = totals(rows)
    print(write_docs.demo({"rows": rows, "total": total}))
    meta = sitting.meta(methods=list(methods), configs=list(map(str, configs)), compared=list(COMPARED))
    ab.finish(args.out, {"meta": meta, "rows": rows, "total": total}, "predictions")


if __name__ == "__main__":
    main()
