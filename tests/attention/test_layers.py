"""The masks a model's layers are given (selfens.attention.layers), without a model."""

import pytest
import torch
import transformers

from selfens.attention.layers import causal_padding, check_implementation, honoured, layer_windows, within_window
from selfens.attention.masks import dense_mask
from selfens.errors import ConfigError

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


@pytest.mark.parametrize(
    "config, windows",
    [
        (transformers.LlamaConfig(**TINY), {"full_attention": None}),
        (transformers.MistralConfig(**TINY, sliding_window=8), {"sliding_attention": 8}),
        (transformers.Qwen2Config(**TINY), {"full_attention": None}),  # use_sliding_window is off by default
        (transformers.Gemma2Config(**TINY, sliding_window=8), {"full_attention": None, "sliding_attention": 8}),
    ],
    ids=["llama", "mistral", "qwen2", "gemma2"],
)
def test_layer_windows(config, windows):
    assert layer_windows(config) == windows


@pytest.mark.parametrize(
    "config, why",
    [
        (transformers.Llama4TextConfig(**TINY), "chunked_attention"),
        (transformers.Gemma3TextConfig(**TINY, use_bidirectional_attention=True), "bidirectional"),
    ],
    ids=["llama4", "gemma3_bidirectional"],
)
def test_refused_architectures_are_named(config, why):
    with pytest.raises(ConfigError, match=f"model type '{config.model_type}'.*{why}"):
        layer_windows(config)


def test_causal_padding_is_the_causal_mask_over_real_keys():
    padding = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    mask = causal_padding(padding, queries=2)  # the last 2 keys are the queries
    assert mask.shape == (2, 1, 2, 5)
    assert mask[0, 0].tolist() == [[False, False, True, True, False], [False, False, True, True, True]]
    assert mask[1, 0].tolist() == [[True, True, True, True, False], [True] * 5]
    assert causal_padding(torch.tensor([[0, 1]]), queries=2)[0, 0, 0].tolist() == [True, False]  # sees itself


def test_within_window_counts_positions_not_columns():
    # One row: keys at positions 0 1 2, two padding columns (position 0), then the query at position 3.
    keys = torch.tensor([[0, 1, 2, 0, 0, 3]])
    near = dense_mask(within_window(keys, keys, window=3), 1, 6, kv_length=6)[0, 0]
    # Position 1 is 4 columns back but 2 positions: inside a window of 3; position 0 (3 back) is not.
    assert near[5].tolist() == [False, True, True, False, False, True]


def test_honoured_forms():
    mask = torch.tensor([[[[True, False]]]])
    assert honoured(mask, "sdpa", torch.float32) is mask
    additive = honoured(mask, "eager", torch.bfloat16)
    assert additive.dtype == torch.bfloat16
    assert additive.tolist() == [[[[0.0, torch.finfo(torch.bfloat16).min]]]]
    with pytest.raises(ConfigError, match="use sdpa or eager"):
        honoured(mask, "flash_attention_2", torch.float32)


def test_check_implementation():
    check_implementation("sdpa", torch.device("cpu"))
    check_implementation("flex_attention", torch.device("cuda"))
    with pytest.raises(ConfigError, match="fails on the CPU"):
        check_implementation("flex_attention", torch.device("cpu"))
    with pytest.raises(ConfigError, match="no custom attention mask"):
        check_implementation("flash_attention_2", torch.device("cuda"))
