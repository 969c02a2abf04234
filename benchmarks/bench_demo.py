"""`make demo`'s decoding, this tree against a baseline tree, in one sitting.

    python benchmarks/bench_demo.py --baseline ../base --out benchmarks/results_demo_cpu.json

Runs the demo's configs (configs/pararel/{origin,per_prompt,avg,attention}.yaml, each tree its own,
as `make demo` in that tree would) as `python -m selfens test --config ...` into a temporary
save_dir, with each tree's selfens package first on PYTHONPATH, interleaved: per method the
baseline's run, then this tree's. Each side's time is the decode seconds its runs' results.json
record (`cost.decode_seconds` + `cost.confidence_seconds`: decoding, prefill included; not loading
the model or the data). Prints a table and checks that every fact's `prediction` and
`per_paraphrase` in predictions.jsonl are the same bytes (as JSON) on both sides; exits 1 naming the
first differences if not. `--out` writes the JSON that `write_docs.py` renders. Needs only the
standard library (each run imports its own tree's package).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
DEMO_METHODS = ("origin", "per_prompt", "avg", "attention")  # the Makefile's DEMO_METHODS
COMPARED = ("prediction", "per_paraphrase")  # predictions.jsonl fields that must match per id
SHOWN_DIFFERENCES = 5
LOG_TAIL = 3000  # characters of a failed run's output shown


# -- the trees -------------------------------------------------------------------------------------
def tree_identity(tree: Path) -> dict:
    """A code tree: its path, and its git commit (with `+changes` if its work tree differs from it)."""
    identity = {"path": str(tree)}
    try:
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain"], capture_output=True, text=True)
    except OSError:
        return identity
    if commit.returncode == 0:
        identity["commit"] = commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    return identity


def identities(trees: dict[str, Path], at_start: dict[str, dict]) -> dict[str, dict]:
    """Each tree as it was at the start of the run, and its commit at the end if that differs (a
    commit, or a change to its files, while the runs ran)."""
    found = {}
    for side, tree in trees.items():
        now = tree_identity(tree)
        changed = now.get("commit") != at_start[side].get("commit")
        found[side] = {**at_start[side], **({"commit_at_end": now.get("commit")} if changed else {})}
    return found


def check_tree(tree: Path, methods: tuple[str, ...]) -> None:
    """A tree to run: its selfens package and every demo config there, or a one-line error."""
    if not (tree / "selfens" / "__init__.py").is_file():
        raise SystemExit(f"{tree}: no selfens package there (expected {tree}/selfens/__init__.py)")
    for method in methods:
        if not config_of(tree, method).is_file():
            raise SystemExit(f"{tree}: no demo config {config_of(tree, method)}")


def config_of(tree: Path, method: str) -> Path:
    return tree / "configs" / "pararel" / f"{method}.yaml"


# -- one run ---------------------------------------------------------------------------------------
def run_demo_config(tree: Path, method: str, save_dir: Path, name: str) -> Path:
    """`python -m selfens test` on `tree`'s config for `method`, with `tree`'s package, into
    save_dir/name; returns the run's folder. A failed run exits, showing the end of its output."""
    command = [
        sys.executable,
        "-m",
        "selfens",
        "test",
        "--config",
        str(config_of(tree, method)),
        "--trainer.logger.init_args.save_dir",
        str(save_dir),
        "--trainer.logger.init_args.name",
        name,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
    log = save_dir / f"{name}.log"
    with log.open("w") as out:
        done = subprocess.run(command, env=env, cwd=save_dir, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(
            f"{name}: `{shlex.join(command)}` (PYTHONPATH={tree}) failed with exit status {done.returncode}:\n"
            + log.read_text()[-LOG_TAIL:]
        )
    folders = sorted(p.parent for p in (save_dir / name).glob("*/results.json"))
    if len(folders) != 1:  # e.g. stopped by SIGTERM: Lightning exits 0 without writing results
        raise SystemExit(
            f"{name}: expected one results.json under {save_dir / name}, found {len(folders)}; its output ends:\n"
            + log.read_text()[-LOG_TAIL:]
        )
    return folders[0]


def run_figures(folder: Path) -> dict:
    """What a run's results.json says it spent and scored."""
    results = json.loads((folder / "results.json").read_text())
    cost = results["cost"]
    return {
        "decode_s": cost["decode_seconds"] + cost.get("confidence_seconds", 0.0),
        "decode_seconds": cost["decode_seconds"],
        "confidence_seconds": cost.get("confidence_seconds", 0.0),
        "run_wall_s": results.get("wall_time_s"),  # the whole run: loading, decoding, writing
        "examples": results["num_examples"],
        "em": results["metrics"]["test/em"],
        "batch_size": results.get("batch_size"),  # as resolved, where the package records it
        "decode_rows": results.get("decode_rows"),
    }


def compared_fields(folder: Path) -> dict[str, str]:
    """id -> the compared fields of its predictions.jsonl row, as JSON text."""
    rows = {}
    for line in (folder / "predictions.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["id"]] = json.dumps({k: row.get(k) for k in COMPARED}, ensure_ascii=False)
    return rows


def differences(baseline: dict[str, str], new: dict[str, str]) -> list[str]:
    """Every fact whose compared fields differ (or that one side lacks), described, in id order."""
    found = []
    for fact in sorted(set(baseline) | set(new)):
        a, b = baseline.get(fact), new.get(fact)
        if a is None or b is None:
            found.append(f"{fact}: only in the {'new' if a is None else 'baseline'} run")
        elif a != b:
            found.append(f"{fact}: baseline {a} / new {b}")
    return found


# -- the comparison --------------------------------------------------------------------------------
def compare(baseline: Path, new: Path, methods: tuple[str, ...], save_dir: Path) -> list[dict]:
    """Per method: the baseline tree's run, then the new tree's; each row holds both sides' figures,
    new / baseline decode time, and the facts whose predictions differ (the first few)."""
    rows = []
    for method in methods:
        sides = {}
        for side, tree in (("baseline", baseline), ("new", new)):
            print(f"-- {method}: {side} ({tree})", flush=True)
            folder = run_demo_config(tree, method, save_dir, f"{side}-{method}")
            sides[side] = (run_figures(folder), compared_fields(folder))
        (base, base_fields), (mine, my_fields) = sides["baseline"], sides["new"]
        differ = differences(base_fields, my_fields)
        rows.append(
            {
                "method": method,
                "examples": mine["examples"],
                "baseline": base,
                "new": mine,
                "ratio": mine["decode_s"] / base["decode_s"],
                "identical": not differ,
                "differing": len(differ),
                "differences": differ[:SHOWN_DIFFERENCES],
            }
        )
    return rows


def totals(rows: list[dict]) -> dict:
    """Both sides' decode seconds summed over the methods, and their ratio."""
    base = sum(r["baseline"]["decode_s"] for r in rows)
    new = sum(r["new"]["decode_s"] for r in rows)
    return {"baseline_decode_s": base, "new_decode_s": new, "ratio": new / base}


def table(rows: list[dict]) -> str:
    total = totals(rows)
    cells = [["method", "facts", "baseline s", "new s", "new/base", "same predictions"]]
    for r in rows:
        same = "yes" if r["identical"] else f"NO ({r['differing']})"
        cells.append(
            [r["method"], str(r["examples"]), f"{r['baseline']['decode_s']:.2f}", f"{r['new']['decode_s']:.2f}"]
            + [f"{r['ratio']:.2f}", same]
        )
    same = "yes" if all(r["identical"] for r in rows) else "NO"
    cells.append(["total", "", f"{total['baseline_decode_s']:.2f}", f"{total['new_decode_s']:.2f}"])
    cells[-1] += [f"{total['ratio']:.2f}", same]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in cells
    ]
    return "\n".join(lines[:1] + ["  ".join("-" * w for w in widths)] + lines[1:])


def parse(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the code tree to compare with, e.g. ../base")
    parser.add_argument("--new", type=Path, default=ROOT, help="the tree measured against it (default: this one)")
    parser.add_argument(
        "--methods", nargs="+", choices=DEMO_METHODS, default=list(DEMO_METHODS), help="default: all four"
    )
    parser.add_argument(
        "--save-dir", type=Path, default=None, help="keep the runs here (default: a temporary folder, removed)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write the JSON here (e.g. benchmarks/results_demo_cpu.json)"
    )
    args = parser.parse_args(argv)
    args.baseline, args.new = args.baseline.resolve(), args.new.resolve()
    args.methods = tuple(dict.fromkeys(args.methods))
    for tree in (args.baseline, args.new):
        check_tree(tree, args.methods)
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse(argv)
    command = shlex.join(["python", "benchmarks/bench_demo.py", *(sys.argv[1:] if argv is None else argv)])
    started, start = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    load_at_start = os.getloadavg()[0]
    trees = {"baseline": args.baseline, "new": args.new}
    at_start = {side: tree_identity(tree) for side, tree in trees.items()}
    save_dir = args.save_dir or Path(tempfile.mkdtemp(prefix="selfens-bench-demo-"))
    save_dir.mkdir(parents=True, exist_ok=True)
    try:
        rows = compare(args.baseline, args.new, args.methods, save_dir.resolve())
    finally:
        if args.save_dir is None:
            shutil.rmtree(save_dir, ignore_errors=True)
    print(table(rows))
    meta = {
        "command": command,
        "date": started.isoformat(timespec="seconds"),
        "total_wall_s": time.perf_counter() - start,  # every run, loading included
        **identities(trees, at_start),
        "methods": list(args.methods),
        "configs": [str(config_of(Path("."), m)) for m in args.methods],  # in each tree
        "compared": list(COMPARED),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": [round(load_at_start, 2), round(os.getloadavg()[0], 2)],  # 1-minute, at start and end
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows, "total": totals(rows)}, indent=2) + "\n")
        print(f"written to {args.out}")
    differing = [r for r in rows if not r["identical"]]
    if differing:
        first = [f"{r['method']}: {d}" for r in differing for d in r["differences"]][:SHOWN_DIFFERENCES]
        print(
            f"predictions differ from the baseline's in {', '.join(r['method'] for r in differing)}:\n  "
            + "\n  ".join(first),
            file=sys.stderr,
        )
        raise SystemExit(1)


if __name__ == "__main__":
    main()
