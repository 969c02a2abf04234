"""`selfens lm-eval`: run lm-evaluation-harness tasks with a selfens method over N phrasings.

    selfens lm-eval --tasks selfens_capitals,selfens_capitals_mc --method avg \\
        --paraphrases lightning_logs/paraphrases/selfens_capitals.jsonl --limit 40

Writes, under --output (default lightning_logs/lm-eval):
- `<task>/version_<k>-<label>/`: selfens's results.json and predictions.jsonl of each task, which
  `selfens report <output>/<task>` pairs with the `origin` run of the same task;
- `lm_eval/selfens__<model>__<label>/`: lm-eval's own results and per-sample files (as
  `lm_eval --output_path` writes them).

Answered requests are kept in lm-eval's request cache (`<output>/.requests/<run>.db`): a run stopped
by Ctrl-C or SIGTERM goes on where it stopped when the same command runs again.
Needs the extra: pip install -e ".[lm-eval]" (or make install-lm-eval).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import time
from importlib.metadata import version
from pathlib import Path

from selfens.errors import ConfigError
from selfens.run.files import write_atomic, write_rows
from selfens.run.interrupt import Interrupted

INSTALL = 'selfens lm-eval needs lm-evaluation-harness: pip install -e ".[lm-eval]" (or make install-lm-eval)'


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="selfens lm-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--tasks",
        required=True,
        help="comma-separated lm-eval task names (bundled: selfens_capitals, selfens_capitals_mc)",
    )
    p.add_argument(
        "--method", default="avg", help="origin, per_prompt, avg, max, weighted_avg, weighted_max or attention"
    )
    p.add_argument("--model", default="smollm2_135m_it", help="a selfens registry name or a local model folder")
    p.add_argument("--num-paraphrases", type=int, default=5, help="N: phrasings read per request, the original first")
    p.add_argument(
        "--paraphrases", help="the phrasing file (selfens paraphrase --config configs/paraphrase/lm_eval.yaml)"
    )
    p.add_argument("--limit", type=int, help="the first LIMIT documents of each task")
    p.add_argument("--num-fewshot", type=int, help="few-shot examples (default: the task's)")
    p.add_argument("--batch-size", type=int, default=8, help="requests decoded together")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", help="e.g. cuda:0 or cpu (default: the first GPU if any, else the CPU)")
    p.add_argument("--method-args", default="", help="the method's settings, k=v,k=v (e.g. layout=seed)")
    p.add_argument("--include-path", action="append", default=[], help="a folder of your own task YAMLs (repeatable)")
    p.add_argument("--output", default="lightning_logs/lm-eval", help="where results go")
    return p


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    for name in ("limit", "batch_size", "num_paraphrases"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "selfens lm-eval runs in one process (it does not split requests between processes); for several GPUs "
            "start one run per GPU, each with its own tasks or --device"
        )
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL) from None
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    from selfens.data.lm_eval_task import load_tasks, task_manager
    from selfens.harness import SelfensLM

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    manager = task_manager(args.include_path)
    load_tasks(tasks, args.include_path)  # an unknown task fails here, before the model loads
    settings = _method_args(args.method_args)
    output = Path(args.output)
    _writable(output / ".requests")  # before the model loads
    lm = SelfensLM(
        model=args.model,
        method=args.method,
        num_paraphrases=args.num_paraphrases,
        paraphrases=args.paraphrases,
        batch_size=args.batch_size,
        dtype=args.dtype,
        device=args.device,
        **settings,
    )
    if lm.phrasing_file is not None:
        lm.phrasing_file.check_tasks(tasks)
    label = _label(lm.module())
    cache = output / ".requests" / f"{label}-{_run_key(args, lm, tasks)}"
    started = time.time()
    try:
        results = simple_evaluate(
            model=lm,
            tasks=tasks,
            num_fewshot=args.num_fewshot,
            limit=args.limit,
            task_manager=manager,
            log_samples=True,
            use_cache=str(cache),
            bootstrap_iters=1000,
        )
    except Interrupted as stop:
        stop.folder = f"{cache}_rank0.db"  # lm-eval's request cache: the same command answers from it
        raise
    wall = time.time() - started
    tracker = EvaluationTracker(output_path=str(output / "lm_eval"))
    run_name = f"selfens__{Path(lm.language_model.name).name}__{label}"
    tracker.general_config_tracker.model_name = tracker.general_config_tracker.model_name_sanitized = run_name
    samples = results.pop("samples")  # as lm-eval's own command saves them: apart from the results
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in samples:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    # Every task's files are made before any is written: a failure leaves no run half written.
    made = {}
    for task in tasks:
        if not samples.get(task):
            print(f"{task}: no documents were evaluated (its evaluation split is empty): nothing written for it")
            continue
        made[task] = _task_run(task, results, samples[task], lm, label, args, wall)
    for task, (rows, record) in made.items():
        folder = _new_version(output / task, label)
        write_rows(folder / "predictions.jsonl", rows)
        write_atomic(folder / "results.json", json.dumps(record, indent=2, default=float) + "\n")
        shown = ", ".join(f"{m} {record['metrics'][f'test/{m}']:.3f}" for m in ("em", "f1", "lemma"))
        lm_shown = ", ".join(
            f"{k} {v:.3f}"
            for k, v in results["results"].get(task, {}).items()
            if isinstance(v, float) and "stderr" not in k
        )
        print(f"{task} {label}: {shown} (lm-eval: {lm_shown}); written to {folder}")
    print(f"lm-eval's own results and samples: {output / 'lm_eval' / run_name}")


def _task_run(task: str, results: dict, samples: list, lm, label: str, args, wall: float) -> tuple[list, dict]:
    """predictions.jsonl rows and results.json of one task's run."""
    from selfens.harness.records import per_prompt_views, results_record, sample_row

    module = lm.module()
    view = module.main_view
    rows = [
        sample_row(s, task, module.method, view, module.lemmatizer, lm)
        for s in sorted(samples, key=lambda s: s["doc_id"])
    ]
    if module.method == "per_prompt":
        per_prompt_views(rows, module, lm.num_paraphrases)
    record = results_record(
        task=task,
        rows=rows,
        lm_eval_results=results["results"].get(task, {}),
        task_config=results["configs"].get(task, {}),
        module=module,
        label=label,
        view=view,
        num_paraphrases=lm.num_paraphrases,
        phrasings=lm.phrasing_file,
        cost=lm.cost_of(task),
        limit=args.limit,
        wall_time_s=wall,
        versions={"python": platform.python_version(), **{p: version(p) for p in ("torch", "transformers", "lm_eval")}},
    )
    return rows, record


def _method_args(text: str) -> dict:
    settings = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--method-args: {item!r} is not key=value")
        settings[key.strip()] = _value(value.strip())
    return settings


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _label(module) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", module.label()).strip("-")


def _run_key(args, lm, tasks: list[str]) -> str:
    """What a request's answer depends on, hashed: the request cache of one run is never another's."""
    key = {
        "tasks": sorted(tasks),
        "model": lm.language_model.name,
        "method": lm.method,
        "settings": lm.settings,
        "N": lm.num_paraphrases,
        "paraphrases": lm.phrasing_file.sha256 if lm.phrasing_file is not None else None,
        "fewshot": args.num_fewshot,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _new_version(folder: Path, label: str) -> Path:
    taken = [int(m.group(1)) for p in folder.glob("version_*") if (m := re.match(r"version_(\d+)", p.name))]
    path = folder / f"version_{max(taken, default=-1) + 1}-{label}"
    path.mkdir(parents=True)
    return path


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".probe"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"cannot write under {folder} ({error.strerror}); choose another --output") from None
