"""The package's import structure: each part of `selfens` imports only parts below it, so there is
no cycle, and the pure tensor code knows nothing of Lightning. Imports inside functions count."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "selfens"

# Lowest first: a part may import the parts of lower levels only.
LEVELS = {
    **dict.fromkeys(["errors", "stats", "prompting"], 0),
    "resources": 0,  # bundled data (and the bundled lm-eval tasks' loader: no selfens import)
    **dict.fromkeys(["attention", "metrics"], 1),  # pure: torch (and transformers) only
    "decoding": 2,  # pure: the decode engine
    "model": 3,  # the registry of models and the LanguageModel wrapper
    "data": 4,
    "run": 5,  # the run record: rows, results, costs, resume, progress
    "methods": 6,
    **dict.fromkeys(["report", "paraphrase", "study", "harness"], 7),
    "cli": 8,  # one module per command
    "__main__": 9,
}
PURE = ["prompting", "attention", "metrics", "decoding", "stats"]


def part(module: str) -> str | None:
    """selfens.data.base -> data; other packages -> None."""
    names = module.split(".")
    return names[1] if len(names) > 1 and names[0] == "selfens" else None


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [f"{node.module}.{a.name}" if node.module == "selfens" else node.module for a in node.names]
    return found


def files():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_part_has_a_level():
    parts = {p.relative_to(PACKAGE).with_suffix("").parts[0] for p in files()}
    assert parts <= set(LEVELS), f"give these parts a level in LEVELS: {sorted(parts - set(LEVELS))}"


@pytest.mark.parametrize("path", files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    here = path.relative_to(PACKAGE).with_suffix("").parts[0]
    upward = [m for m in imports(path) if (there := part(m)) and there != here and LEVELS[there] >= LEVELS[here]]
    assert not upward, f"{path.relative_to(PACKAGE)} ({here}, level {LEVELS[here]}) imports {upward}"


@pytest.mark.parametrize("name", PURE)
def test_pure_code_knows_no_lightning(name):
    paths = sorted((PACKAGE / name).rglob("*.py")) if (PACKAGE / name).is_dir() else [PACKAGE / f"{name}.py"]
    for path in paths:
        assert not [m for m in imports(path) if m.split(".")[0] in ("lightning", "pytorch_lightning")], path
