"""Attention backends for packed prompts: `dense` (a 4D boolean mask through SDPA) and `flex`.

`flex` registers a transformers attention function, "selfens_flex", that runs FlexAttention with
the BlockMask of a packed prefill and SDPA for the one-token decode steps (whose mask is a plain
4D padding mask). FlexAttention is compiled on CUDA; on CPU it runs eagerly, because the compiled
CPU kernel failed here on left-padded batches. Attention logit soft-capping (Gemma 2) is applied
in both, as SDPA cannot: the decode steps then run the attention by hand.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from selfens.attention.masks import block_mask, dense_mask, from_query, packed_mask_mod
from selfens.attention.packing import Packed
from selfens.errors import ConfigError

Backend = Literal["dense", "flex"]
FLEX_IMPLEMENTATION = "selfens_flex"
_compiled = None


def default_backend(device: torch.device) -> Backend:
    return "flex" if device.type == "cuda" else "dense"


def attn_implementation(backend: Backend, dense: str = "sdpa") -> str:
    """The transformers `attn_implementation` a model needs for this backend; `dense`: the one the
    dense backend runs ("sdpa", or "eager", which takes the mask as additive floats)."""
    if backend == "flex":
        register_flex()
        return FLEX_IMPLEMENTATION
    return dense


def prefill_mask(packed: Packed, backend: Backend, first_query: int = 0):
    """The packed prefill's mask for its queries from column `first_query` on (the earlier columns
    being a prefix already in the cache) over all keys, on the packed tensors' device:
    [B, 1, L - first_query, L] bool (dense) or a BlockMask (flex)."""
    mask_mod = from_query(packed_mask_mod(packed), first_query) if first_query else packed_mask_mod(packed)
    batch, length = packed.input_ids.shape
    device = packed.input_ids.device
    make = block_mask if backend == "flex" else dense_mask
    return make(mask_mod, batch, length - first_query, device, kv_length=length)


def _flex_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, softcap=None, **kwargs):
    """transformers attention function: FlexAttention for a BlockMask, SDPA for a tensor mask
    (by hand where the scores are soft-capped)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if kwargs.get("s_aux") is not None:  # never silently drop a model's attention sinks
        raise ConfigError(
            f"backend: flex cannot apply the attention sinks of {module.config.model_type}; use backend: dense"
        )
    if not isinstance(attention_mask, BlockMask):
        if softcap is not None:
            return capped_attention(query, key, value, attention_mask, scaling, softcap), None
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    global _compiled
    if query.device.type == "cuda":
        _compiled = _compiled or torch.compile(flex_attention)
        attend = _compiled
    else:
        attend = flex_attention
    score_mod = None
    if softcap is not None:
        score_mod = lambda score, b, h, q_idx, kv_idx: softcap * torch.tanh(score / softcap)
    out = attend(
        query,
        key,
        value,
        score_mod=score_mod,
        block_mask=attention_mask,
        scale=scaling,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None  # [B, L, H, D], as transformers expects


def capped_attention(query, key, value, mask, scaling, softcap: float):
    """Attention with soft-capped scores, softcap * tanh(scores / softcap), as Gemma 2's eager one.

    Args:
        query: [B, H, Q, D]; key, value: [B, H_kv, K, D] (grouped heads are repeated).
        mask: [B, 1, Q, K] bool, True = attend; None: causal, the queries being the last keys.
        scaling: the scores' scale.
        softcap: the cap.

    Returns:
        [B, Q, H, D], as transformers expects.
    """
    if mask is None:
        queries, keys = query.shape[-2], key.shape[-2]
        mask = torch.ones(queries, keys, dtype=torch.bool, device=query.device).tril(keys - queries)
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = softcap * torch.tanh(query @ key.transpose(-1, -2) * scaling / softcap)
    weights = scores.masked_fill(~mask, float("-inf")).softmax(-1, dtype=torch.float32).to(query.dtype)
    return (weights @ value).transpose(1, 2).contiguous()


def register_flex() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(FLEX_IMPLEMENTATION, _flex_forward)
    # transformers builds no mask at all for an implementation it has no mask function for: a padding
    # mask [B, K] would be dropped. Built as for SDPA, it reaches the tensor branch above.
    ALL_MASK_ATTENTION_FUNCTIONS.register(FLEX_IMPLEMENTATION, sdpa_mask)
