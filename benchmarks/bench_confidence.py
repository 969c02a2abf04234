"""`selfens confidence`, this tree against a baseline tree, in one sitting.

    python benchmarks/bench_confidence.py --baseline ../base --out benchmarks/results_confidence_cpu.json

Runs `python -m selfens confidence --config configs/pararel/weighted_avg.yaml` (each tree its own
config; `--facts` facts, K samples as the config says) with each tree's selfens package first on
PYTHONPATH, each run into a fresh confidence folder, so both sides compute every value. Paired runs,
the order alternating (baseline first in run 1). Per run and side: the process's wall time (imports
and model load included) and the `confidence_seconds` its results.json records (the greedy and the
sampled decodes, prefill included). Checks that both sides cached the same value for every prompt
key; exits 1 naming the first differences if not. Prints a table and the median ratios; `--out`
writes the JSON that `write_docs.py` renders. Needs only the standard library.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_demo import LOG_TAIL, ROOT, SHOWN_DIFFERENCES, identities, tree_identity  # noqa: E402

CONFIG = Path("configs") / "pararel" / "weighted_avg.yaml"
SIDES = ("baseline", "new")


def run_confidence(tree: Path, facts: int, folder: Path) -> dict:
    """`selfens confidence` on `tree`'s config with `tree`'s package, into `folder` -> its figures and
    the values it cached (key -> value). A failed run exits, showing the end of its output."""
    command = [sys.executable, "-m", "selfens", "confidence", "--config", str(tree / CONFIG)]
    command += ["--data.init_args.limit", str(facts), "--model.init_args.confidence_dir", str(folder / "cache")]
    command += ["--trainer.logger.init_args.save_dir", str(folder / "logs"), "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
    folder.mkdir(parents=True)
    log = folder / "run.log"
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    results = sorted((folder / "logs").glob("*/*/results.json"))
    caches = sorted((folder / "cache").glob("*.jsonl"))
    if done.returncode != 0 or len(results) != 1 or len(caches) != 1:
        raise SystemExit(
            f"`{shlex.join(command)}` (PYTHONPATH={tree}) exited {done.returncode} with {len(results)} results.json "
            f"and {len(caches)} cache file(s) (expected 1 each); its output ends:\n" + log.read_text()[-LOG_TAIL:]
        )
    cost = json.loads(results[0].read_text())["cost"]
    values = {}
    for line in caches[0].read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            values[row["key"]] = row["confidence"]
    figures = {"wall_s": wall, "confidence_s": cost["confidence_seconds"], "prompts": len(values)}
    figures |= {
        "forward_calls": int(cost["confidence_forward_calls"]),
        "decode_steps": int(cost["confidence_decode_steps"]),
    }
    return {"figures": figures, "values": values}


def differences(baseline: dict[str, float], new: dict[str, float]) -> list[str]:
    """Every prompt key whose value differs (or that one side lacks), described."""
    found = []
    for key in sorted(set(baseline) | set(new)):
        a, b = baseline.get(key), new.get(key)
        if a != b:
            found.append(f"{key[:12]}: baseline {a} / new {b}")
    return found


def compare(trees: dict[str, Path], facts: int, runs: int, work: Path) -> list[dict]:
    """`runs` paired runs, the order alternating; each row holds both sides' figures and their ratios."""
    rows = []
    for run in range(1, runs + 1):
        order = SIDES if run % 2 else SIDES[::-1]
        sides = {}
        for side in order:
            print(f"-- run {run}: {side} ({trees[side]})", flush=True)
            sides[side] = run_confidence(trees[side], facts, work / f"{run}-{side}")
        base, new = sides["baseline"]["figures"], sides["new"]["figures"]
        differ = differences(sides["baseline"]["values"], sides["new"]["values"])
        rows.append(
            {
                "run": run,
                "order": list(order),
                "baseline": base,
                "new": new,
                "wall_ratio": new["wall_s"] / base["wall_s"],
                "confidence_ratio": new["confidence_s"] / base["confidence_s"],
                "identical": not differ,
                "differing": len(differ),
                "differences": differ[:SHOWN_DIFFERENCES],
            }
        )
    return rows


def medians(rows: list[dict]) -> dict:
    """The median of each side's seconds and of the per-run ratios."""
    found = {}
    for what in ("wall", "confidence"):
        for side in SIDES:
            found[f"{side}_{what}_s"] = statistics.median(r[side][f"{what}_s"] for r in rows)
        found[f"{what}_ratio"] = statistics.median(r[f"{what}_ratio"] for r in rows)
    return found


def table(rows: list[dict]) -> str:
    head = ["run", "first", "baseline s", "new s", "new/base", "base confidence s", "new confidence s"]
    cells = [head + ["new/base", "same values"]]
    for r in rows:
        b, n = r["baseline"], r["new"]
        cells.append(
            [str(r["run"]), r["order"][0], f"{b['wall_s']:.1f}", f"{n['wall_s']:.1f}", f"{r['wall_ratio']:.2f}"]
            + [f"{b['confidence_s']:.1f}", f"{n['confidence_s']:.1f}", f"{r['confidence_ratio']:.2f}"]
            + ["yes" if r["identical"] else f"NO ({r['differing']})"]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the code tree to compare with, e.g. ../base")
    parser.add_argument("--new", type=Path, default=ROOT, help="the tree measured against it (default: this one)")
    parser.add_argument("--facts", type=int, default=5, help="facts of the config's data (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="paired runs, the order alternating (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args(argv)
    if args.facts < 1 or args.runs < 1:
        parser.error("--facts and --runs must be at least 1")
    args.baseline, args.new = args.baseline.resolve(), args.new.resolve()
    for tree in (args.baseline, args.new):
        if not (tree / "selfens" / "__init__.py").is_file() or not (tree / CONFIG).is_file():
            raise SystemExit(f"{tree}: expected a selfens package and {CONFIG} there")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse(argv)
    command = shlex.join(["python", "benchmarks/bench_confidence.py", *(sys.argv[1:] if argv is None else argv)])
    started, load_at_start = datetime.datetime.now(datetime.timezone.utc), os.getloadavg()[0]
    trees = {"baseline": args.baseline, "new": args.new}
    at_start = {side: tree_identity(tree) for side, tree in trees.items()}
    work = Path(tempfile.mkdtemp(prefix="selfens-bench-confidence-"))
    try:
        rows = compare(trees, args.facts, args.runs, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    summary = medians(rows)
    print(
        f"median: whole command {summary['baseline_wall_s']:.1f} -> {summary['new_wall_s']:.1f} s "
        f"(ratio {summary['wall_ratio']:.2f}); confidence_seconds {summary['baseline_confidence_s']:.1f} -> "
        f"{summary['new_confidence_s']:.1f} s (ratio {summary['confidence_ratio']:.2f})"
    )
    meta = {
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        **identities(trees, at_start),
        "config": str(CONFIG),
        "facts": args.facts,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],  # 1-minute, at start and end
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows, "median": summary}, indent=2) + "\n")
        print(f"written to {args.out}")
    differing = [r for r in rows if not r["identical"]]
    if differing:
        first = [f"run {r['run']}: {d}" for r in differing for d in r["differences"]][:SHOWN_DIFFERENCES]
        print("cached values differ from the baseline's:\n  " + "\n  ".join(first), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
