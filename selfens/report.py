"""`selfens report PATH...`: one table of EM / F1 / lemma match over finished runs.

PATH is a run folder (holding results.json) or a folder searched for them, e.g. lightning_logs/demo.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from selfens.metrics.views import METRICS


def collect(paths: list[str]) -> list[tuple[Path, dict]]:
    found = []
    for p in map(Path, paths):
        files = [p / "results.json"] if (p / "results.json").exists() else sorted(p.rglob("results.json"))
        found += [(f.parent, json.loads(f.read_text())) for f in files]
    return found


def rows(runs: list[tuple[Path, dict]]) -> list[list[str]]:
    """One row per (run, view): run folder, method, view, EM, F1, lemma, examples, and the cost of
    the whole run (a resumed run's included): prefill tokens (real, and computed with padding),
    forward calls, decode seconds, and the seconds spent on confidences (weighted methods)."""
    table = []
    for folder, r in runs:
        views: dict[str, dict[str, float]] = {}
        for key, value in r.get("metrics", {}).items():
            parts = key.split("/")
            if len(parts) == 3 and parts[2] in METRICS:
                views.setdefault(parts[1], {})[parts[2]] = value
        cost = r.get("total_cost", r.get("cost", {}))
        for view, values in views.items():
            table.append(
                [
                    str(folder),
                    r["method"],
                    view,
                    *(f"{100 * values.get(m, float('nan')):.1f}" for m in METRICS),
                    str(r.get("num_examples", "")),
                    f"{cost.get('prefill_tokens', 0):.0f}",
                    f"{cost.get('prefill_padded_tokens', 0):.0f}",
                    f"{cost.get('forward_calls', 0):.0f}",
                    f"{cost.get('decode_seconds', 0):.1f}",
                    f"{cost.get('confidence_seconds', 0):.1f}",
                ]
            )
    return table


def format_table(table: list[list[str]]) -> str:
    header = [
        "run",
        "method",
        "view",
        "EM",
        "F1",
        "lemma",
        "n",
        "prefill tok",
        "padded",
        "forwards",
        "decode s",
        "conf s",
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table)]
    line = lambda cells: "  ".join(
        str(c).ljust(w) if i < 3 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in table])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="selfens report", description=__doc__)
    parser.add_argument("paths", nargs="+", help="run folders or folders to search for results.json")
    args = parser.parse_args(argv)
    runs = collect(args.paths)
    if not runs:
        raise SystemExit(f"no results.json under {', '.join(args.paths)}: run `selfens test --config ...` first")
    print(format_table(rows(runs)))
