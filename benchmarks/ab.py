"""A/B against another code tree: run a command with a tree's selfens package first on PYTHONPATH,
and compare what the two sides ("baseline" and "new") found, fact by fact or key by key.

Used by bench_methods.py (`--baseline`), bench_demo.py and bench_confidence.py. Needs only the
standard library (each run imports its own tree's package).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("baseline", "new")
SHOWN = 5  # differences kept in a row (and printed)
LOG_TAIL = 3000  # characters of a failed run's output shown


def check_tree(tree: Path, *needed: Path) -> Path:
    """The tree, resolved, if it holds a selfens package and every `needed` file; else a one-line error."""
    tree = tree.resolve()
    for path in (Path("selfens") / "__init__.py", *needed):
        if not (tree / path).is_file():
            raise SystemExit(f"{tree}: no {path} there")
    return tree


def identity(tree: Path) -> dict:
    """A code tree: its path and its git commit (`+changes` where its work tree differs from it)."""
    git = lambda *args: subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
    found = {"path": str(tree)}
    head = git("rev-parse", "HEAD")
    if head.returncode == 0:
        found["commit"] = head.stdout.strip() + ("+changes" if git("status", "--porcelain").stdout.strip() else "")
    return found


def run(tree: Path, command: list[str], log: Path, cwd: Optional[Path] = None) -> float:
    """`command` with `tree`'s package first on PYTHONPATH, its output into `log`: its wall seconds.
    A failed run exits, showing the end of its output."""
    paths = [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])]
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(
            command,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
            cwd=cwd or log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        raise SystemExit(
            f"`{shlex.join(command)}` (PYTHONPATH={tree}) exited {done.returncode}; its output ends:\n"
            + log.read_text()[-LOG_TAIL:]
        )
    return time.perf_counter() - start


def differences(baseline: dict, new: dict) -> list[str]:
    """Every key whose value differs (or that one side lacks), described, in key order."""
    found = []
    for key in sorted(set(baseline) | set(new)):
        a, b = baseline.get(key), new.get(key)
        if key not in baseline or key not in new:
            found.append(f"{key}: only in the {'new' if key not in baseline else 'baseline'} run")
        elif a != b:
            found.append(f"{key}: baseline {a} / new {b}")
    return found


def compared(base: dict, new: dict, base_values: dict, new_values: dict, ratios: dict[str, str]) -> dict:
    """A comparison row: both sides' figures, new / baseline for each `ratios` name -> figure, and the
    keys whose values differ (how many, and the first few)."""
    differ = differences(base_values, new_values)
    row = {"baseline": base, "new": new, **{name: new[key] / base[key] for name, key in ratios.items()}}
    return row | {"identical": not differ, "differing": len(differ), "differences": differ[:SHOWN]}


def medians(rows: list[dict], seconds: list[str], ratios: list[str]) -> dict:
    """The median of each side's `seconds` figures and of the rows' `ratios`."""
    found = {f"{side}_{key}": statistics.median(r[side][key] for r in rows) for key in seconds for side in SIDES}
    return found | {key: statistics.median(r[key] for r in rows) for key in ratios}


class Sitting:
    """One sitting of runs: the command, the trees as they were at its start (and their commit at the
    end where it changed), the date, the 1-minute load average at its start and end, its wall time."""

    def __init__(self, script: str, argv: Optional[list[str]], trees: dict[str, Path]):
        self.command = shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])
        self.trees = trees
        self.at_start = {side: identity(tree) for side, tree in trees.items()}
        self.date, self.clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
        self.load = os.getloadavg()[0]

    def meta(self, **more) -> dict:
        trees = {}
        for side, tree in self.trees.items():
            now = identity(tree).get("commit")
            changed = now != self.at_start[side].get("commit")
            trees[side] = {**self.at_start[side], **({"commit_at_end": now} if changed else {}), **more.pop(side, {})}
        return {
            "command": self.command,
            "date": self.date.isoformat(timespec="seconds"),
            "total_wall_s": time.perf_counter() - self.clock,
            **trees,
            **more,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_average": [round(self.load, 2), round(os.getloadavg()[0], 2)],
        }


def finish(out: Optional[Path], data: dict, what: str) -> None:
    """Write `data` to `out` (if any); exit 1 naming the first differences if a row's `what` differ."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(data, indent=2) + "\n")
        print(f"written to {out}")
    differing = [r for r in data["rows"] if not r["identical"]]
    if differing:
        first = [f"{r.get('method') or r.get('run')}: {d}" for r in differing for d in r["differences"]]
        print(f"{what} differ from the baseline's:\n  " + "\n  ".join(first[:SHOWN]), file=sys.stderr)
        raise SystemExit(1)
