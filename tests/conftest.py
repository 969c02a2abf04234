"""Shared fixtures: a tiny random Llama with a tokenizer trained on the fly, saved as a local model
folder so that tests go through the same loading path as real runs."""

from __future__ import annotations

import os

# Equality tests compare floats bit for bit: keep the BLAS thread count fixed even on a busy
# machine (dynamic adjustment changes reduction order). Set before torch is imported.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("OMP_DYNAMIC", "FALSE")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "Answer the question based on general world knowledge. Provide a short and direct answer.",
    "Predict the [MASK] in the sentence in one word.",
    "Q: what does jamaican people speak?\nA: Jamaican English",
    "Allan Peiper was born in Alexandra. Paul Mounsey is originally from Scotland.",
    "The capital of France is Paris. Tokyo is located in Japan. Berlin is the capital of Germany.",
    "the a an of in is was from born located capital city country language speaks works plays",
]


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # Random weights give near-uniform logits; scale the head so greedy choices are well separated
    # (ties would make token-equality tests depend on float noise).
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_llama")))


@pytest.fixture(scope="session")
def tiny(tiny_model_path):
    from selfens.models import load_model, load_tokenizer

    return load_model(tiny_model_path), load_tokenizer(tiny_model_path)


@pytest.fixture(scope="session")
def smollm():
    """The embedded SmolLM2-135M-Instruct (converted once into the cache)."""
    from selfens.models import EMBEDDED, load_model, load_tokenizer

    return load_model(EMBEDDED), load_tokenizer(EMBEDDED)


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    # Tests must never reach a model hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
