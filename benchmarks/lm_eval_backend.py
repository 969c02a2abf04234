"""selfens's lm-eval backend (`selfens lm-eval --method origin`) against lm-eval's own `hf` backend on
the same model folder and tasks: whole-process wall time of each (imports and model load included),
in alternating order, and their per-sample answers compared (generations identical, log-likelihoods'
largest difference).

    python benchmarks/lm_eval_backend.py                      # both bundled tasks, all 175 documents, 3 runs
    python benchmarks/lm_eval_backend.py --limit 40 --runs 1 --out /tmp/lm_eval_backend.json

Needs the extra (pip install -e ".[lm-eval]"). Prints a table and the median ratio; writes JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def commands(model: str, tasks: str, limit: int, batch: int, out: Path) -> dict[str, list[str]]:
    from selfens.data.lm_eval_task import BUNDLED_TASKS
    from selfens.model.registry import model_path

    return {
        "selfens": [str(BIN / "selfens"), "lm-eval", "--tasks", tasks, "--method", "origin", "--model", model,
                    "--limit", str(limit), "--batch-size", str(batch), "--device", "cpu", "--output", str(out / "selfens")],
        "hf": [str(BIN / "lm_eval"), "run", "--model", "hf", "--model_args",
               f"pretrained={model_path(model)},dtype=float32", "--device", "cpu", "--tasks", tasks, "--include_path",
               str(BUNDLED_TASKS), "--limit", str(limit), "--batch_size", str(batch), "--log_samples",
               "--output_path", str(out / "hf")],
    }  # fmt: skip


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **OFFLINE})
    if done.returncode:
        raise SystemExit(f"lm_eval_backend: {command[0]} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def samples(folder: Path, task: str) -> dict[int, dict]:
    # samples_<task>_<date>.jsonl: the date, so that selfens_capitals does not match selfens_capitals_mc's
    (path,) = sorted(p for p in folder.rglob(f"samples_{task}_*.jsonl") if p.name[len(task) + 9 :][:1].isdigit())[-1:]
    return {s["doc_id"]: s for s in map(json.loads, path.read_text().splitlines())}


def agreement(out: Path, tasks: list[str]) -> dict:
    """Per task: generations that differ, and the largest log-likelihood difference."""
    found = {}
    for task in tasks:
        ours, theirs = samples(out / "selfens", task), samples(out / "hf", task)
        pairs = [(r, t) for d in theirs for r, t in zip(ours[d]["resps"], theirs[d]["resps"])]
        texts = [(r[0], t[0]) for r, t in pairs if isinstance(t[0], str)]
        lls = [abs(float(r[0][0]) - float(t[0][0])) for r, t in pairs if not isinstance(t[0], str)]
        found[task] = {
            "documents": len(theirs),
            "generations_differing": sum(a != b for a, b in texts),
            "max_abs_loglik_difference": max(lls, default=0.0),
        }
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2_135m_it")
    p.add_argument("--tasks", default="selfens_capitals,selfens_capitals_mc")
    p.add_argument("--limit", type=int, default=175)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    times: dict[str, list[float]] = {"selfens": [], "hf": []}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            out = Path(tmp) / f"run{run}"
            order = ["selfens", "hf"] if run % 2 == 0 else ["hf", "selfens"]
            loads.append(os.getloadavg()[0])
            for name in order:
                times[name].append(timed(commands(args.model, args.tasks, args.limit, args.batch_size, out)[name]))
        same = agreement(out, args.tasks.split(","))
    ratios = [s / h for s, h in zip(times["selfens"], times["hf"])]
    print(f"{'run':>3}  {'selfens s':>9}  {'hf s':>7}  {'ratio':>5}  load")
    for k, (s, h, r, load) in enumerate(zip(times["selfens"], times["hf"], ratios, loads)):
        print(f"{k:>3}  {s:>9.1f}  {h:>7.1f}  {r:>5.2f}  {load:.2f}")
    print(
        f"median ratio selfens/hf: {statistics.median(ratios):.2f} ({args.tasks}, {args.limit} documents, {args.model})"
    )
    for task, found in same.items():
        print(f"{task}: {found}")
    if args.out:
        record = {"args": {k: str(v) for k, v in vars(args).items()}, "seconds": times, "ratios": ratios,
                  "load_before": loads, "agreement": same}  # fmt: skip
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
