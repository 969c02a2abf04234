"""What a model's attention layers are given: our masks with each layer's sliding window, in the form
the model's attention implementation honours.

transformers hands a 4D mask as it is to every layer: it adds no sliding window to it, and `eager`
(and `flex_attention`) add the mask to the scores, so a boolean mask would add 0 or 1 and let
padding through. Windows are measured in position ids, as for a single prompt: the padding inside a
packed or prefix-sharing row then does not shorten them. Sliding layers keep every key in the cache
(`full_cache`), as the window is in the mask.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, and_masks

from selfens.attention.backend import FLEX_IMPLEMENTATION
from selfens.attention.masks import MaskMod, block_mask, dense_mask
from selfens.errors import ConfigError

BOOLEAN = {"sdpa", FLEX_IMPLEMENTATION}  # read a boolean 4D mask as True = attend
ADDITIVE = {"eager", "flex_attention"}  # add a 4D mask to the scores: 0 attends, the dtype's min does not
BLOCK = {FLEX_IMPLEMENTATION, "flex_attention"}  # take a FlexAttention BlockMask
LAYER_TYPES = ("full_attention", "sliding_attention")
# Why a layer type is refused.
_WHY = {
    "chunked_attention": "attend within chunks that transformers cuts itself (a given mask drops them)",
    "linear_attention": "carry a recurrent state over every earlier token, which no mask isolates",
}


def check_architecture(config) -> None:
    """Refuse, by model type, a model whose attention our masks and cache cannot describe.

    Raises:
        ConfigError: bidirectional attention, or layers other than full and sliding-window attention.
    """
    layer_windows(config)


def check_implementation(implementation: str, device: torch.device) -> None:
    """Refuse an attention implementation that cannot run our masks here.

    Raises:
        ConfigError: flash attention (no custom 4D masks), or transformers' flex_attention off CUDA.
    """
    if implementation.startswith("flash_attention"):
        raise ConfigError(
            f"attn_implementation {implementation} takes no custom attention mask, which selfens decodes with; "
            f"use sdpa or eager"
        )
    if implementation == "flex_attention" and device.type != "cuda":
        raise ConfigError(
            "attn_implementation flex_attention compiles FlexAttention, which fails on the CPU (torch 2.13); "
            "use sdpa or eager, or run on CUDA"
        )


def layer_windows(config) -> dict[str, Optional[int]]:
    """The sliding window of each kind of attention layer (None: full attention), by layer type.

    Raises:
        ConfigError: as `check_architecture`.
    """
    name = getattr(config, "model_type", type(config).__name__)
    if hasattr(config, "get_text_config"):  # a multimodal model's language model
        config = config.get_text_config(decoder=True)
    if getattr(config, "use_bidirectional_attention", False) or not getattr(config, "is_causal", True):
        raise ConfigError(
            f"model type {name!r} is configured for bidirectional attention (use_bidirectional_attention): "
            f"selfens decodes causal LMs only; use a causal checkpoint"
        )
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if types is None:  # one kind of layer (Llama, Mistral, Phi-3): the window, if any, is on all of them
        return {"sliding_attention" if window else "full_attention": window}
    other = sorted(set(types) - set(LAYER_TYPES))
    if other:
        why = "; ".join(f"{t} layers {_WHY.get(t, 'are not plain attention layers')}" for t in other)
        raise ConfigError(
            f"model type {name!r} cannot be decoded by selfens, whose masks describe full and sliding-window "
            f"attention layers only: its {why}; use a model of another family"
        )
    return {t: window if t == "sliding_attention" else None for t in sorted(set(types))}


def within_window(query_positions: Tensor, key_positions: Tensor, window: int) -> MaskMod:
    """The key is less than `window` positions before the query (transformers' sliding window, in
    position ids). query_positions: [B, Q]; key_positions: [B, K]."""

    def within_window(b, h, q_idx, kv_idx):
        return query_positions[b, q_idx] - key_positions[b, kv_idx] < window

    return within_window


def causal_padding(padding: Tensor, queries: int) -> Tensor:
    """A padding mask [B, K] (causality implied, the queries being the last `queries` keys) as a 4D
    mask [B, 1, Q, K] bool; a query always sees itself, so no row is fully masked."""
    keys = padding.shape[-1]
    kv_idx = torch.arange(keys, device=padding.device)
    q_idx = torch.arange(keys - queries, keys, device=padding.device)[:, None]  # [Q, 1]
    return (padding.bool()[:, None, None, :] & (kv_idx <= q_idx)) | (kv_idx == q_idx)


def honoured(mask, implementation: str, dtype: torch.dtype):
    """A 4D mask (bool tensor or BlockMask) in the form `implementation` honours."""
    if isinstance(mask, BlockMask):
        if implementation not in BLOCK:
            raise ConfigError(
                f"a FlexAttention mask needs attn_implementation {FLEX_IMPLEMENTATION}, not {implementation}"
            )
        return mask
    if implementation in BOOLEAN:
        return mask
    if implementation in ADDITIVE:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    raise ConfigError(
        f"attn_implementation {implementation!r} cannot take a custom 4D attention mask; use sdpa or eager"
    )


def model_mask(model, mask, query_positions: Tensor, key_positions: Tensor):
    """The `attention_mask` to give `model` for `mask`: a padding mask [B, K] (causality implied),
    a bool [B, 1, Q, K] (True = attend) or a BlockMask, with each layer's sliding window, in the form
    its attention implementation honours; a dict by layer type where the layers differ.

    Args:
        model: the transformers causal LM.
        mask: what the queries may attend to, windows aside.
        query_positions: [B, Q] position ids of the queries.
        key_positions: [B, K] position ids of the keys (the queries' included, last).
    """
    config = model.config
    implementation, dtype = config._attn_implementation, model.dtype
    windows = layer_windows(config)
    padding = isinstance(mask, Tensor) and mask.dim() == 2
    if not any(windows.values()):
        # transformers builds a padding mask in its implementation's form itself.
        return mask if padding else honoured(mask, implementation, dtype)
    if padding:
        mask = causal_padding(mask, query_positions.shape[1])
    batch, queries = query_positions.shape
    keys = key_positions.shape[1]
    masks = {}
    for layer_type, window in windows.items():
        layer_mask = mask
        if window is not None:
            near = within_window(query_positions, key_positions, window)
            if isinstance(mask, BlockMask):
                layer_mask = block_mask(and_masks(mask.mask_mod, near), batch, queries, mask.kv_indices.device, keys)
            else:
                layer_mask = mask & dense_mask(near, batch, queries, mask.device, kv_length=keys)
        masks[layer_type] = honoured(layer_mask, implementation, dtype)
    return masks if len(masks) > 1 else next(iter(masks.values()))


def full_cache():
    """An empty KV cache that keeps every key of every layer (sliding ones included)."""
    from transformers import DynamicCache

    return DynamicCache()
