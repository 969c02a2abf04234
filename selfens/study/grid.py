"""A study config: models x methods (each with its own settings) x N over one data section, as the
list of its cells, each an ordinary `selfens test` config.

```yaml
folder: lightning_logs/study-pararel   # default: lightning_logs/study-<config name>
models: [smollm2_135m_it, gemma3_270m]
N: [5]                                 # default for every method
defaults: {max_new_tokens: 10}         # init_args every method gets
methods:
  - {name: origin, class_path: selfens.methods.Origin}
  - {name: avg, class_path: selfens.methods.LogitFusion, init_args: {fusion: avg}}
  - {name: avg, ..., N: [1, 2, 5, 10], models: [smollm2_135m_it]}   # its own N and models
data: {class_path: selfens.data.ParaRel, init_args: {num_shots: 4, sample: 1000}}
trainer: {}                            # as `selfens test`'s, without the logger (the study names runs)
```

Every cell is parsed by the same parser as `selfens test` before anything loads, so a bad class or
option fails at once, naming the cell.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from selfens.errors import ConfigError

KEYS = {"folder", "models", "N", "defaults", "methods", "data", "trainer"}
METHOD_KEYS = {"name", "class_path", "init_args", "N", "models"}


@dataclass(frozen=True)
class Cell:
    model: str  # as the config names it
    method: str  # the method entry's name
    n: int
    config: dict  # the `selfens test` config of this cell

    @property
    def name(self) -> str:
        """The run folder's name inside the model's folder, e.g. `avg-N5`."""
        return f"{self.method}-N{self.n}"

    @property
    def model_key(self) -> str:
        return model_key(self.model)

    @property
    def title(self) -> str:
        return f"{self.model_key}/{self.name}"


@dataclass(frozen=True)
class Study:
    path: Path  # the study config
    folder: Path  # where the cells' run folders and the report go
    models: list[str]
    cells: list[Cell]


def model_key(model: str) -> str:
    """A folder name for a model: its registry name, or a local folder's last part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name if "/" in model else model)


def load_study(path: str | Path, data_overrides: dict | None = None) -> Study:
    """The study at `path`, with every cell's config; the structure is checked here, the cells' classes
    and options by `check_cells`. `data_overrides` (init_args) go into every cell's data, and make it
    another study, in a folder of its own (`study-pararel-limit5`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config {path} does not exist (e.g. configs/study/pararel.yaml)")
    try:
        spec = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        raise ConfigError(_yaml_fault(path, error)) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from error
    where = str(path)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: a study config is a mapping with {', '.join(sorted(KEYS))}")
    _only(spec, KEYS, where)
    models = _list(spec, "models", str, where, required=True)
    default_ns = _ns(spec.get("N", [5]), f"{where}: N")
    data = spec.get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise ConfigError(f"{where}: data: a data module (class_path, init_args), e.g. selfens.data.ParaRel")
    if data_overrides:
        data = {**data, "init_args": {**(data.get("init_args") or {}), **data_overrides}}
    if "num_paraphrases" in (data.get("init_args") or {}):
        raise ConfigError(f"{where}: data.init_args.num_paraphrases: the study sets N per cell; use N: [...]")
    trainer = spec.get("trainer") or {}
    if "logger" in trainer:
        raise ConfigError(f"{where}: trainer.logger: the study names every cell's run folder; leave it out")
    folder = Path(spec.get("folder") or f"lightning_logs/study-{path.stem}")
    if data_overrides:
        tried = (re.sub(r"[^A-Za-z0-9_.]+", "_", f"{key}{value}") for key, value in data_overrides.items())
        folder = folder.with_name("-".join([folder.name, *tried]))
    defaults = spec.get("defaults") or {}
    entries = spec.get("methods")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: methods: a list of {{name, class_path, init_args}} entries")
    cells, seen = [], set()
    for k, entry in enumerate(entries):
        at = f"{where}: methods[{k}]"
        if not isinstance(entry, dict) or "name" not in entry or "class_path" not in entry:
            raise ConfigError(f"{at}: each method needs a name and a class_path")
        _only(entry, METHOD_KEYS, at)
        for model in _list(entry, "models", str, at) or models:
            if model not in models:
                raise ConfigError(f"{at}: model {model!r} is not one of the study's models {models}")
            for n in _ns(entry["N"], f"{at}: N") if "N" in entry else default_ns:
                cell = Cell(model, entry["name"], n, _cell_config(entry, defaults, model, n, data, trainer, folder))
                if (model, cell.name) in seen:
                    raise ConfigError(f"{at}: cell {cell.title} twice: give the method entries distinct names")
                seen.add((model, cell.name))
                cells.append(cell)
    idle = [m for m in models if not any(c.model == m for c in cells)]
    if idle:
        raise ConfigError(f"{where}: model {idle[0]!r} has no cell: no method entry runs on it")
    return Study(path, folder, models, cells)


def _yaml_fault(path: Path, error: yaml.MarkedYAMLError) -> str:
    """PyYAML's problem as `path:line:column: problem` (where editors jump to), with where the construct
    it was in starts, as `selfens test` names a config's."""
    at, start = error.problem_mark, error.context_mark
    fault = f"{path}:{at.line + 1}:{at.column + 1}: {error.problem}"
    if error.context and start and (start.line, start.column) != (at.line, at.column):
        fault += f" ({error.context} that starts at line {start.line + 1}, column {start.column + 1})"
    return fault


def _cell_config(entry, defaults, model, n, data, trainer, folder: Path) -> dict:
    logger = {"save_dir": str(folder), "name": model_key(model), "version": f"{entry['name']}-N{n}"}
    return {
        "model": {
            "class_path": entry["class_path"],
            "init_args": {**defaults, **(entry.get("init_args") or {}), "model": model},
        },
        "data": {
            "class_path": data["class_path"],
            "init_args": {**(data.get("init_args") or {}), "num_paraphrases": n},
        },
        "trainer": {
            **trainer,
            "enable_progress_bar": False,  # the study shows one line for all of its cells
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {**logger, "default_hp_metric": False},
            },
        },
    }


def _only(spec: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (a study has {', '.join(sorted(known))})")


def _list(spec: dict, key: str, kind: type, where: str, required: bool = False) -> list:
    value = spec.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) for v in value):
        raise ConfigError(f"{where}: {key}: a non-empty list of {kind.__name__}s, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: {key}: {value} names one twice")
    return value


def _ns(value, where: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(n, int) and n >= 1 for n in value):
        raise ConfigError(f"{where}: a list of numbers of paraphrases (each at least 1), got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: {value} names one N twice")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML would keep the last in silence)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        for i, key in enumerate(keys):
            if key in keys[:i]:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} twice", node.start_mark)
        return super().construct_mapping(node, deep=deep)
