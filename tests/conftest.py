"""Shared fixtures: tiny random models (Llama by default; every family in FAMILIES) with a tokenizer
trained on the fly, saved as local model folders so that tests go through the same loading path as
real runs."""

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


def build_tokenizer():
    """A byte-level BPE tokenizer trained on CORPUS, with a chat template and a pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

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
    return tokenizer


# A sliding window shorter than the bundled ParaRel prompts (~40-90 tiny tokens), so that it matters.
WINDOW = 16

GEMMA3_TEXT = dict(
    head_dim=8, query_pre_attn_scalar=8, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"]
)

# Tiny configs of the families that transformers ships: (config class, model class, their own settings).
# Sliding windows are switched on wherever the family has them; Gemma 2 keeps its attention logit
# soft-capping, lowered from 50 to below the tiny model's scores (~0.01) so that it changes them.
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),  # layer 1 slides
    ),
    "qwen3": (
        "Qwen3Config",
        "Qwen3ForCausalLM",
        dict(head_dim=8, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),
    ),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(head_dim=8, sliding_window=WINDOW)),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        dict(head_dim=8, query_pre_attn_scalar=8, sliding_window=WINDOW, attn_logit_softcapping=0.02),
    ),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", GEMMA3_TEXT),  # gemma-3-1b: text only
    # gemma-3-4b and up: the multimodal wrapper, read with text-only prompts. Its image tokens lie
    # beyond the vocabulary, so no prompt holds one.
    "gemma3_vlm": (
        "Gemma3Config",
        "Gemma3ForConditionalGeneration",
        dict(
            text_config=("Gemma3TextConfig", GEMMA3_TEXT),
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=28,
                patch_size=14,
            ),
            mm_tokens_per_image=4,
            boi_token_index=1000,
            eoi_token_index=1001,
            image_token_index=1002,
        ),
    ),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(sliding_window=WINDOW)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
}


# Families selfens refuses by model type (selfens.attention.layers.check_architecture), each with why.
REFUSED: dict[str, tuple[str, dict]] = {
    "llama4": ("Llama4TextConfig", {}),  # chunked attention layers
    "qwen3_next": ("Qwen3NextConfig", {}),  # linear attention layers (a recurrent state, no mask)
    "gemma3_bidirectional": ("Gemma3TextConfig", dict(use_bidirectional_attention=True)),  # not causal
}


def tiny_config(config_class: str, tokenizer, **settings):
    """A transformers config of 2 tiny layers for `tokenizer`; `settings` add to or change it."""
    import transformers

    return getattr(transformers, config_class)(
        **{
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "tie_word_embeddings": False,
            **settings,
        }
    )


def build_tiny_model(folder: Path, seed: int = 0, family: str = "llama", **overrides) -> Path:
    """A tiny random model of `family` (see FAMILIES; `overrides` change its config) with the shared
    tokenizer, saved in `folder`."""
    import transformers

    tokenizer = build_tokenizer()
    config_class, model_class, own = FAMILIES[family]
    settings = {**own, **overrides}
    torch.manual_seed(seed)
    if "text_config" in settings:  # a multimodal wrapper around a tiny language model
        text_class, text_settings = settings.pop("text_config")
        text = tiny_config(text_class, tokenizer, **text_settings)
        tokens = {name: getattr(text, name) for name in ("eos_token_id", "pad_token_id", "bos_token_id")}
        config = getattr(transformers, config_class)(
            text_config=text.to_dict(), tie_word_embeddings=False, **tokens, **settings
        )
    else:
        config = tiny_config(config_class, tokenizer, **settings)
    model = getattr(transformers, model_class)(config)
    # Random weights give near-uniform logits; scale the head so greedy choices are well separated
    # (ties would make token-equality tests depend on float noise).
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_refused_model(folder: Path, family: str) -> Path:
    """A model folder of a REFUSED family: its config and the tokenizer, no weights (it is refused first)."""
    tokenizer = build_tokenizer()
    config_class, settings = REFUSED[family]
    tiny_config(config_class, tokenizer, **settings).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_llama")))


@pytest.fixture(scope="session")
def tiny(tiny_model_path):
    from selfens.model.registry import load_model, load_tokenizer

    return load_model(tiny_model_path), load_tokenizer(tiny_model_path)


@pytest.fixture(scope="session")
def smollm():
    """The embedded SmolLM2-135M-Instruct (converted once into the cache)."""
    from selfens.model.registry import EMBEDDED, load_model, load_tokenizer

    return load_model(EMBEDDED), load_tokenizer(EMBEDDED)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: tiny models gain nothing from more, and on a busy 2-core
    machine they cost a lot (tests/methods/test_attention.py took 140 s with 2 threads, 38 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    # Tests must never reach a model hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
