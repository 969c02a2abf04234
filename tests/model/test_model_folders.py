"""A local model folder that is not a whole model is refused in one line, naming the folder and what is
missing, before anything loads (transformers failed deep in loading, or only after the data)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from selfens.errors import ConfigError
from selfens.model.registry import model_spec
from tests.helpers import ORIGIN, selfens_fails

# What the folder keeps of a whole saved model -> what the error says is missing.
PARTS = {
    "config only": (["config.json"], "no tokenizer (tokenizer.json, tokenizer.model, vocab.json), no weights"),
    "no weights": (["config.json", "tokenizer.json", "tokenizer_config.json"], "no weights (model.safetensors or"),
    "no config": (["tokenizer.json", "tokenizer_config.json", "model.safetensors"], "no config.json."),
    "empty": ([], "no config.json, no tokenizer"),
}


def partial_copy(whole: str, folder: Path, keep: list[str]) -> Path:
    folder.mkdir()
    for name in keep:
        shutil.copy(Path(whole) / name, folder / name)
    return folder


@pytest.mark.parametrize("case", PARTS)
def test_a_folder_without_part_of_a_model_is_refused_naming_what(case, tiny_model_path, tmp_path):
    keep, missing = PARTS[case]
    folder = partial_copy(tiny_model_path, tmp_path / "model", keep)
    with pytest.raises(ConfigError) as refused:
        model_spec(str(folder))
    message = str(refused.value)
    assert message.startswith(f"model folder {folder} is not a whole model: it has ") and missing in message
    assert "\n" not in message


def test_a_whole_folder_is_a_model(tiny_model_path):
    assert model_spec(tiny_model_path).source == str(Path(tiny_model_path).resolve())


def test_selfens_test_refuses_it_in_one_line(tiny_model_path, tmp_path, capsys):
    folder = partial_copy(
        tiny_model_path, tmp_path / "model", ["config.json", "tokenizer.json", "tokenizer_config.json"]
    )
    message = selfens_fails(capsys, "test", "--config", ORIGIN, "--model.init_args.model", folder)
    assert message.startswith(f"selfens: error: model folder {folder} is not a whole model: it has no weights")
