"""`selfens run` (or `selfens` alone, on a terminal): asks step by step what to evaluate, as the
original scripts' run_interactive.py did, then runs it.

  1. the dataset: ParaRel, WebQuestions or MyriadLAMA (those whose data is here), or a JSONL file;
  2. one or more methods, and their settings: N (phrasings per question), the confidence of the
     weighted rules, attention's layout, positions and first-token fusion;
  3. the model: the embedded default, a local folder, or another registry name;
  4. how many examples, and a name for the run folder.

Each question shows its default (Enter keeps it) and a line on what it means. The answers become
one `selfens test` config per method (the shipped config of that dataset and method, with the
answers put in), written to lightning_logs/<name>/configs/<method>.yaml; the commands that repeat
the runs are printed, and the runs go as `selfens test` would run them, each into
lightning_logs/<name>/version_<k>-<method>/, with `selfens report lightning_logs/<name>` at the end
when more than one method ran.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import questionary

from selfens.attention.packing import LAYOUTS
from selfens.cli import on_terminal
from selfens.cli import run_plan as plan
from selfens.cli.run_plan import METHODS, OWN_FILE, SETTINGS, Choices
from selfens.errors import ConfigError, SelfensError
from selfens.model.registry import model_spec

LOCAL = "local folder"
DEFAULT_METHODS = ("origin", "avg")
NO_ORIGIN = (
    "selfens: warning: origin is not among the methods: the report will have no baseline to compare them with "
    "(add origin, or run it later on the same data and model)"
)


class NotATerminal(SelfensError):
    """`selfens run` without a terminal to ask on."""


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="selfens run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args(argv)
    if not on_terminal():
        raise NotATerminal(
            "selfens run asks its questions on a terminal, and this is not one: run a config instead, "
            "e.g. selfens test --config configs/pararel/origin.yaml (or one selfens run wrote: "
            "lightning_logs/<name>/configs/<method>.yaml)"
        )
    try:
        choices = ask()
        paths = plan.write(choices)
        folder = plan.run_folder(choices.dataset, choices.name)
        print(f"\nselfens run: configs written to {plan.shown(folder / 'configs')}/; the same runs, as commands:")
        for path in paths:
            print(f"  selfens test --config {plan.shown(path)}")
        if len(paths) > 1:
            print(f"  selfens report {plan.shown(folder)}")
        go = questionary.confirm("Run now?", default=True, instruction="(Y/n: n keeps the configs only)")
        if not go.unsafe_ask():
            return
    except KeyboardInterrupt:
        print("selfens run: cancelled")
        raise SystemExit(130) from None
    run(paths, folder, choices.model)


def ask() -> Choices:
    """Ask every question; returns the answers."""
    missing = {name: plan.missing_file(name) for name in plan.DATASETS}
    dataset = select("Dataset", "what the model is asked", plan.DATASETS, "pararel", missing)
    data = plan.data_section(dataset)[0]["init_args"]
    own = own_file(data) if dataset == OWN_FILE else {}
    methods = checkbox("Methods", {name: METHODS[name] for name in plan.method_names()}, DEFAULT_METHODS)
    if "origin" not in methods:
        print(NO_ORIGIN, file=sys.stderr)
    what = "phrasings per question that each method reads; origin reads the first"
    n = number("N", what, data.get("num_paraphrases"), every=dataset == OWN_FILE)
    settings = method_settings(dataset, methods)
    model = choose_model()
    limit = number("Examples", "how many to evaluate, the first ones", data.get("limit"), every=True)
    name = questionary.text(
        "Run name:",
        default=time.strftime("run-%Y%m%d-%H%M%S"),
        validate=lambda text: plan.check_name(dataset, text) or True,
        instruction=f"(runs go to {plan.shown(plan.run_folder(dataset, '<name>'))}/; Enter keeps the default)",
    ).unsafe_ask()
    return Choices(dataset, tuple(methods), model, n, limit, name, settings, own)


def own_file(shipped: dict) -> dict:
    """The data settings of a JSONL file of your own: its path, prompt format and few-shot file (each
    defaulting to the shipped configs/jsonl/ example's, where there is one)."""
    path = questionary.path(
        'JSONL file (one {"id", "paraphrases", "answers"} a line; Tab completes):',
        default=shipped.get("path", ""),
        validate=_is_questions,
        validate_while_typing=False,  # it reads the file
    ).unsafe_ask()
    own = {"path": str(Path(path).expanduser())}
    shown = shipped.get("format", "qa")  # JsonlQuestions' default
    own["format"] = select("Prompt format", "how a phrasing is shown to the model", SETTINGS["format"], shown)
    if shipped.get("shots"):
        shots = questionary.path(
            "Few-shot file (solved questions in the same format, shown before each question; none: no examples):",
            default=shipped["shots"],
            validate=lambda text: text.strip() == "none" or _is_questions(text, shots=True),
            validate_while_typing=False,
        ).unsafe_ask()
        own.update({"shots": None, "num_shots": 0} if shots.strip() == "none" else {"shots": shots})
    return own


def method_settings(dataset: str, methods: list[str]) -> dict[str, dict]:
    """The settings of the chosen methods that are asked for, each defaulting to its shipped config."""
    settings = {}
    weighted = [m for m in methods if plan.weighted(m)]
    if weighted:
        shipped = plan.model_defaults(dataset, weighted[0])["confidence"]
        confidence = select("Confidence", f"the weights of {', '.join(weighted)}", SETTINGS["confidence"], shipped)
        settings.update({m: {"confidence": confidence} for m in weighted})
    if "attention" in methods:
        shipped = plan.model_defaults(dataset, "attention")
        layouts = {name: SETTINGS["layout"][name] for name in LAYOUTS}
        chosen = {
            "layout": select("Attention layout", "how the N phrasings are packed", layouts, shipped["layout"]),
            "positions": select(
                "Positions", "position ids of the packed phrasings", SETTINGS["positions"], shipped["positions"]
            ),
            "first_token": select(
                "First token", "how the first answer token is fused", SETTINGS["first_token"], shipped["first_token"]
            ),
        }
        if chosen["first_token"] == "block_ends":
            rules = {name: SETTINGS["first_fusion"][name] for name in plan.unweighted_fusions()}
            chosen["first_fusion"] = select(
                "Fusion rule", "fuses the N block ends into the first token", rules, shipped["first_fusion"]
            )
        settings["attention"] = chosen
    return settings


def choose_model() -> str:
    models = plan.models()
    first, *rest = models
    options = {first: models[first], LOCAL: "a model folder saved with save_pretrained", **{n: models[n] for n in rest}}
    model = select("Model", "which language model answers", options, first)
    if model != LOCAL:
        return model
    folder = questionary.path(
        "Model folder (saved with save_pretrained: config.json, weights, tokenizer; Tab completes):",
        only_directories=True,
        validate=_is_model,
    ).unsafe_ask()
    return str(Path(folder).expanduser())


def select(title: str, what: str, options: dict[str, str], default: str, disabled: dict | None = None) -> str:
    """One of `options` (name -> one line on it); `disabled`: name -> why it cannot be chosen (shown
    instead of its line)."""
    width, why = max(map(len, options)), {name: reason for name, reason in (disabled or {}).items() if reason}
    choices = [
        questionary.Choice(f"{name.ljust(width)}  {why.get(name, line)}", value=name, disabled=name in why or None)
        for name, line in options.items()
    ]
    return questionary.select(
        f"{title}:", choices, default=choices[list(options).index(default)], instruction=_hint(what, default)
    ).unsafe_ask()


def checkbox(title: str, options: dict[str, str], default: tuple[str, ...]) -> list[str]:
    width = max(map(len, options))
    choices = [
        questionary.Choice(f"{name.ljust(width)}  {line}", value=name, checked=name in default)
        for name, line in options.items()
    ]
    return questionary.checkbox(
        f"{title}:",
        choices,
        validate=lambda chosen: bool(chosen) or "choose at least one (Space toggles)",
        instruction=f"(Space toggles, Enter confirms; default {' + '.join(default)})",
    ).unsafe_ask()


def number(title: str, what: str, default: int | None, every: bool) -> int | None:
    """A whole number of at least 1, or with `every`, `all` (None)."""
    shown = "all" if default is None else str(default)
    kinds = "a number or all" if every else "a number"
    text = questionary.text(
        f"{title}:",
        default=shown,
        validate=lambda text: _is_count(text, every),
        instruction=f"({what}; {kinds}; default {shown})",
    ).unsafe_ask()
    return None if text.strip() == "all" else int(text)


def run(paths: list[Path], folder: Path, model: str) -> None:
    """Each config as `selfens test --config PATH`, in this process, all sharing one loaded model (as
    a study's runs do); then the report of them all."""
    # Lightning loads here, once the questions are answered.
    from selfens.cli.lightning import run_lightning
    from selfens.cli.report import main as report
    from selfens.model.language_model import LanguageModel, shared

    with shared(LanguageModel(model)):
        for path in paths:
            with _argv(["test", "--config", str(path)]):
                run_lightning(None)
    if len(paths) > 1:
        report([str(folder)])


@contextmanager
def _argv(args: list[str]):
    """sys.argv as the printed command's while it runs: LightningCLI reads it from there."""
    saved = sys.argv[:]
    sys.argv[1:] = args
    try:
        yield
    finally:
        sys.argv[:] = saved


def _hint(what: str, default: str) -> str:
    return f"({what}; default {default}; arrows and Enter)"


def _is_count(text: str, every: bool) -> bool | str:
    text = text.strip()
    if (every and text == "all") or (text.isdigit() and int(text) >= 1):
        return True
    return "a whole number of at least 1" + (", or all" if every else "")


def _is_questions(text: str, shots: bool = False) -> bool | str:
    """Whether `text` names a questions file that JsonlQuestions reads (with `shots`: as few-shot
    examples, the first phrasing and answer of each line), checked by its own reader, so that a
    malformed line is asked about here rather than found once the run starts."""
    path = Path(text).expanduser()
    if not path.is_file():
        return f"{text!r} is not a file"
    from selfens.data.jsonl import read_questions  # loads Lightning (seconds), once a file is given
    from selfens.data.records import DataError, Record

    try:
        lines = list(read_questions(path))
        for where, _, (qid, paraphrases, answers), _ in lines:
            Record(qid, paraphrases[:1] if shots else paraphrases, answers).check(where)
    except DataError as error:
        return str(error)
    return bool(lines) or f"{text!r} has no questions (one JSON object a line)"


def _is_model(text: str) -> bool | str:
    folder = Path(text).expanduser()
    try:
        model_spec(str(folder))
    except ConfigError as error:
        return str(error).split(". ")[0]
    return (folder / "config.json").is_file() or f"{text!r} has no config.json (save a model with save_pretrained)"
