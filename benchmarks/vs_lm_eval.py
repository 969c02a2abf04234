"""selfens `origin` against lm-evaluation-harness on identical prompts, the same model folder and
the same stop string: whole-process wall time of each (imports and model load included), answers
compared fact by fact.

    python benchmarks/vs_lm_eval.py                           # configs/pararel/origin.yaml, 3 paired runs
    python benchmarks/vs_lm_eval.py --runs 5 --out /tmp/vs.json

lm-eval lives in its own virtual environment, outside the repository; its transformers must be
selfens's (checked; the error says how to install it).

- The prompts are the token ids selfens's origin reads (`segments.prompt(0)` of the config's data,
  set up as `selfens test` sets it up); their text goes verbatim into a JSONL file that an lm-eval
  task reads (`generate_until`, no few-shot, no chat template). Every prompt is checked to tokenize
  back to selfens's ids the way lm-eval tokenizes it, and lm-eval's logged contexts to be the prompts.
- Both decode greedily in the config's dtype on the CPU (selfens in its config's batches, lm-eval in
  batches of `--lm-eval-batch-size`), at most max_new_tokens, ending at EOS or a stop string.
  selfens skips leading whitespace before looking for a stop string, lm-eval does not; lm-eval's
  answer is cut and stripped as selfens cuts its own, and an answer that differs only because the
  generation starts with a stop string is named as such (`likely_cause`).
- Each run starts both commands as fresh processes, in alternating order: wall time to exit, their
  CPU time, and the load average before the run.

Prints a table and the median ratio, writes JSON (`--out`; write_docs.py renders it). Exits 1,
naming the first differing facts, when the answers differ in any run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LM_EVAL_VERSION = "0.4.13"
DEFAULT_LM_EVAL_PYTHON = "/work/lmeval/bin/python"
TASK = "selfens_vs_lm_eval"
SHOWN_DIFFERENCES = 5
INSTALL = (
    "python3 -m venv /work/lmeval && /work/lmeval/bin/pip install torch==2.13.0 && "
    "/work/lmeval/bin/pip install 'lm-eval[hf]==0.4.13' transformers=={transformers}"
)
# Both processes stay off the network: the model is a local folder, the data a local file.
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class BenchmarkError(SystemExit):
    """A one-line reason the comparison cannot run or failed (exit status 1)."""

    def __init__(self, message: str):
        super().__init__(f"vs_lm_eval: {message}")


@dataclass(frozen=True)
class Fact:
    id: str
    prompt: str
    answers: list[str]


@dataclass(frozen=True)
class Setup:
    """What both sides run: the facts, the model folder and the decoding settings of the config."""

    facts: list[Fact]
    model_folder: str
    dtype: str
    max_new_tokens: int
    stop_strings: list[str]
    batch_size: int


@dataclass(frozen=True)
class Timed:
    wall_s: float
    cpu_s: float  # user + system of the process and its children


# -- the prompts ------------------------------------------------------------------------------------
def selfens_setup(config: Path, scratch: Path, lm_eval_batch_size: int) -> Setup:
    """The facts and settings of an origin config, with the prompt ids selfens's origin reads."""
    import torch

    from selfens.cli.lightning import build, connect
    from selfens.methods import Origin
    from selfens.model.registry import model_path, resolve_dtype

    # Parsed as `selfens test` parses it, not run (a logger folder, if any, goes to `scratch`).
    cli = build(["--config", str(config), "--trainer.logger.init_args.save_dir", str(scratch)], run=False)
    module, data = cli.model, cli.datamodule
    if type(module) is not Origin:
        raise BenchmarkError(f"{config} runs {type(module).__name__}; this comparison is of selfens.methods.Origin")
    connect(data, module)
    data.setup("test")
    tokenizer = module.tokenizer
    facts = []
    for example in data.examples:
        ids = example.segments.prompt(0)
        text = tokenizer.decode(ids)
        check_lm_eval_reads(tokenizer, text, ids, example.id)
        facts.append(Fact(example.id, text, list(example.answers)))
    dtype = resolve_dtype(module.hparams.dtype, torch.device("cpu"))
    return Setup(
        facts=facts,
        model_folder=model_path(module.model_name),
        dtype=str(dtype).removeprefix("torch."),
        max_new_tokens=module.hparams.max_new_tokens,
        stop_strings=list(module.hparams.stop_strings),
        # selfens batches as its config says (auto: from its memory budget); lm-eval as asked.
        batch_size=lm_eval_batch_size,
    )


def check_lm_eval_reads(tokenizer, text: str, ids: list[int], fact_id: str) -> None:
    """Fail unless lm-eval's tokenization of `text` gives `ids`: it adds the tokenizer's default
    special tokens, none when the text starts with the BOS text (`HFLM.tok_batch_encode`)."""
    bos = tokenizer.bos_token
    add_special_tokens = not (bos and text.startswith(bos))
    read = tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    if read != ids:
        raise BenchmarkError(
            f"fact {fact_id}: lm-eval would read other token ids than selfens "
            f"({len(read)} vs {len(ids)} tokens, first {read[:4]} vs {ids[:4]}): the comparison would not be fair"
        )


def selfens_answer(text: str, stop_strings: list[str]) -> str:
    """An answer cut the way selfens cuts its own (`LanguageModel.text`): leading whitespace
    skipped, cut at the first stop string, stripped."""
    text = text.lstrip()
    for stop in stop_strings:
        text = text.split(stop, 1)[0]
    return text.strip()


# -- the lm-eval task -------------------------------------------------------------------------------
def write_task(setup: Setup, folder: Path) -> Path:
    """The facts as JSONL and an lm-eval task that reads each prompt verbatim; returns the task folder."""
    facts_file = folder / "facts.jsonl"
    with facts_file.open("w") as f:
        for fact in setup.facts:
            f.write(json.dumps({"id": fact.id, "prompt": fact.prompt, "answer": fact.answers[0]}) + "\n")
    task_dir = folder / "task"
    task_dir.mkdir()
    task = {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(facts_file)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "prompt",  # a column name: the text as it is, not a template
        "doc_to_target": "answer",
        "num_fewshot": 0,
        "generation_kwargs": {
            "until": setup.stop_strings,
            "max_gen_toks": setup.max_new_tokens,
            "do_sample": False,
        },
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }
    # JSON is YAML, and keeps "\n" as it is.
    (task_dir / f"{TASK}.yaml").write_text(json.dumps(task, indent=2) + "\n")
    return task_dir


# -- the two commands -------------------------------------------------------------------------------
def selfens_command(config: Path, save_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "selfens", "test", "--config", str(config)]
    return command + ["--trainer.logger.init_args.save_dir", str(save_dir)]


def lm_eval_command(lm_eval: Path, setup: Setup, task_dir: Path, output: Path) -> list[str]:
    model = f"pretrained={setup.model_folder},dtype={setup.dtype}"
    command = [str(lm_eval), "--model", "hf", "--model_args", model, "--tasks", TASK, "--include_path", str(task_dir)]
    command += ["--batch_size", str(setup.batch_size), "--device", "cpu", "--log_samples"]
    return command + ["--output_path", str(output)]


def timed(command: list[str], log: Path) -> Timed:
    """Run a command from the repository root to its exit; fail with its log's tail if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as out:
        rc = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        print(tail, file=sys.stderr)
        raise BenchmarkError(f"exit {rc.returncode}: {shlex.join(command)} (log above, all of it in {log})")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(wall, cpu)


def only_file(folder: Path, pattern: str) -> Path:
    found = sorted(folder.rglob(pattern))
    if len(found) != 1:
        raise BenchmarkError(f"expected one {pattern} under {folder}, found {len(found)}")
    return found[0]


def selfens_answers(save_dir: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in only_file(save_dir, "predictions.jsonl").read_text().splitlines()]
    return {row["id"]: row["prediction"] for row in rows}


def lm_eval_answers(output: Path, setup: Setup) -> dict[str, str]:
    """lm-eval's filtered responses, cut as selfens cuts; fails if a context is not the prompt."""
    prompts = {fact.id: fact.prompt for fact in setup.facts}
    answers = {}
    for line in only_file(output, f"samples_{TASK}_*.jsonl").read_text().splitlines():
        sample = json.loads(line)
        fact_id = sample["doc"]["id"]
        context = sample["arguments"]["gen_args_0"]["arg_0"]
        if context != prompts[fact_id]:
            raise BenchmarkError(f"fact {fact_id}: lm-eval's context is not the prompt: {context[-80:]!r}")
        answers[fact_id] = selfens_answer(sample["filtered_resps"][0], setup.stop_strings)
    return answers


def differences(setup: Setup, ours: dict[str, str], theirs: dict[str, str]) -> list[dict]:
    """Facts whose answers differ (a missing answer is None), in the facts' order."""
    found = []
    for fact in setup.facts:
        a, b = ours.get(fact.id), theirs.get(fact.id)
        if a != b:
            row = {"id": fact.id, "prompt_end": fact.prompt[-60:], "selfens": a, "lm_eval": b}
            if a and b == "":
                row["likely_cause"] = "lm-eval cut at a stop string before the answer; selfens skips leading whitespace"
            found.append(row)
    return found


# -- the runs ---------------------------------------------------------------------------------------
def installed_versions(lm_eval_python: str) -> dict[str, str]:
    """lm-eval's, torch's and transformers' versions in lm-eval's environment; a one-line error
    saying how to install it when it is not there."""
    import transformers

    install = INSTALL.format(transformers=transformers.__version__)
    # The hf backend's own imports too (accelerate: the `hf` extra).
    probe = "import json, lm_eval.models.huggingface; from importlib.metadata import version; "
    probe += "print(json.dumps({p: version(p) for p in ('lm_eval', 'torch', 'transformers')}))"
    try:
        done = subprocess.run([lm_eval_python, "-c", probe], capture_output=True, text=True)
    except OSError:
        raise BenchmarkError(f"no Python at {lm_eval_python}: install lm-eval with `{install}`") from None
    if done.returncode != 0:
        raise BenchmarkError(f"lm-eval is not installed for {lm_eval_python}: install it with `{install}`")
    versions = json.loads(done.stdout.strip().splitlines()[-1])
    if versions["transformers"] != transformers.__version__:
        raise BenchmarkError(
            f"lm-eval's transformers is {versions['transformers']}, selfens's {transformers.__version__}: "
            f"they must be the same (`{Path(lm_eval_python).with_name('pip')} install transformers=={transformers.__version__}`)"
        )
    if versions["lm_eval"] != LM_EVAL_VERSION:
        print(f"note: lm-eval {versions['lm_eval']}, not the {LM_EVAL_VERSION} this script was written against")
    return versions


def lm_eval_cli(lm_eval_python: str) -> Path:
    cli = Path(lm_eval_python).with_name("lm_eval")
    if not cli.exists():
        raise BenchmarkError(f"no lm_eval command next to {lm_eval_python} ({cli})")
    return cli


def run_pair(k: int, config: Path, setup: Setup, lm_eval: Path, folder: Path) -> dict:
    """Run k: both commands, selfens first on even runs and lm-eval first on odd ones."""
    save_dir, output = folder / f"selfens_{k}", folder / f"lm_eval_{k}"
    commands = {
        "selfens": (selfens_command(config, save_dir), folder / f"selfens_{k}.log"),
        "lm_eval": (lm_eval_command(lm_eval, setup, folder / "task", output), folder / f"lm_eval_{k}.log"),
    }
    order = ["selfens", "lm_eval"] if k % 2 == 0 else ["lm_eval", "selfens"]
    load = os.getloadavg()[0]  # other work on the machine: what makes a run's times noisy
    times = {name: timed(*commands[name]) for name in order}
    diff = differences(setup, selfens_answers(save_dir), lm_eval_answers(output, setup))
    return {
        "run": k + 1,
        "order": order,
        "load_1min_before": round(load, 2),
        "selfens_s": round(times["selfens"].wall_s, 2),
        "lm_eval_s": round(times["lm_eval"].wall_s, 2),
        "ratio": round(times["selfens"].wall_s / times["lm_eval"].wall_s, 3),
        "selfens_cpu_s": round(times["selfens"].cpu_s, 2),
        "lm_eval_cpu_s": round(times["lm_eval"].cpu_s, 2),
        "identical": len(setup.facts) - len(diff),
        "facts": len(setup.facts),
        "differences": diff,
    }


TABLE_HEADER = (
    f"{'run':>3}  {'selfens s':>9}  {'lm-eval s':>9}  {'ratio':>6}  {'cpu s (selfens / lm-eval)':>25}  identical"
)


def table_row(r: dict) -> str:
    cpu = f"{r['selfens_cpu_s']:.1f} / {r['lm_eval_cpu_s']:.1f}"
    same = f"{r['identical']}/{r['facts']}"
    return f"{r['run']:>3}  {r['selfens_s']:>9.1f}  {r['lm_eval_s']:>9.1f}  {r['ratio']:>6.3f}  {cpu:>25}  {same}"


def report_differences(rows: list[dict], folder: Path) -> None:
    """Name the runs whose answers differ and the first differing facts of the first of them."""
    failed = [r for r in rows if r["differences"]]
    runs = ", ".join(str(r["run"]) for r in failed)
    print(f"answers differ in run(s) {runs} (both sides' files in {folder}); first facts:", file=sys.stderr)
    for d in failed[0]["differences"][:SHOWN_DIFFERENCES]:
        cause = f" ({d['likely_cause']})" if "likely_cause" in d else ""
        print(
            f"  {d['id']}: ...{d['prompt_end']!r} selfens {d['selfens']!r} lm-eval {d['lm_eval']!r}{cause}",
            file=sys.stderr,
        )


def summary(rows: list[dict]) -> dict:
    medians = {
        f"median_{k}": round(statistics.median(r[k] for r in rows), 3) for k in ("selfens_s", "lm_eval_s", "ratio")
    }
    medians |= {
        f"median_{k}": round(statistics.median(r[k] for r in rows), 3) for k in ("selfens_cpu_s", "lm_eval_cpu_s")
    }
    return medians | {"all_identical": all(not r["differences"] for r in rows)}


def git_state() -> dict:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"commit": git("rev-parse", "--short", "HEAD"), "changed_files": git("status", "--porcelain").splitlines()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("configs/pararel/origin.yaml"), help="an origin config")
    parser.add_argument("--runs", type=int, default=3, help="paired runs (default 3)")
    parser.add_argument(
        "--lm-eval-batch-size", type=int, default=8, help="lm-eval's --batch_size (default 8; selfens: its config's)"
    )
    parser.add_argument("--lm-eval-python", default=DEFAULT_LM_EVAL_PYTHON, help="the Python of lm-eval's venv")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "vs_lm_eval.json", help="JSON written here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        raise BenchmarkError(f"--runs must be at least 1, got {args.runs}")
    config = args.config if args.config.is_absolute() else (Path.cwd() / args.config)
    if not config.is_file():
        raise BenchmarkError(f"no config at {config}")
    versions = installed_versions(args.lm_eval_python)
    lm_eval = lm_eval_cli(args.lm_eval_python)

    folder = Path(tempfile.mkdtemp(prefix="vs_lm_eval-"))
    try:
        setup = selfens_setup(config, folder / "parse", args.lm_eval_batch_size)
    except BaseException:
        shutil.rmtree(folder)  # nothing ran yet: nothing to read there
        raise
    write_task(setup, folder)
    print(
        f"{len(setup.facts)} facts of {config.name}; model {setup.model_folder} ({setup.dtype}); "
        f"batch {setup.batch_size}; max_new_tokens {setup.max_new_tokens}; working in {folder}"
    )
    rows = []
    print(TABLE_HEADER)
    for k in range(args.runs):
        rows.append(run_pair(k, config, setup, lm_eval, folder))
        print(table_row(rows[-1]), flush=True)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else config),
        "facts": len(setup.facts),
        "model_folder": setup.model_folder,
        "dtype": setup.dtype,
        "batch_size": setup.batch_size,
        "max_new_tokens": setup.max_new_tokens,
        "stop_strings": setup.stop_strings,
        "commands": {
            "selfens": shlex.join(selfens_command(config, Path("SAVE_DIR"))),
            "lm_eval": shlex.join(lm_eval_command(lm_eval, setup, Path("TASK_DIR"), Path("OUTPUT"))),
        },
        "versions": {"python": platform.python_version(), "lm_eval_env": versions},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        "git": git_state(),
        "runs": rows,
        **summary(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(
        f"median: selfens {result['median_selfens_s']:.1f} s, lm-eval {result['median_lm_eval_s']:.1f} s, "
        f"ratio {result['median_ratio']:.3f} ({args.runs} runs); written to {args.out}"
    )
    if not result["all_identical"]:
        report_differences(rows, folder)
        sys.exit(1)
    shutil.rmtree(folder)  # kept when something failed: the logs and both sides' answers


if __name__ == "__main__":
    main()
