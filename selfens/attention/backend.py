"""Attention backends for packed prompts: `dense` (a 4D boolean mask through SDPA) and `flex`.

`flex` registers a transformers attention function, "selfens_flex", that runs FlexAttention with
the BlockMask of a packed prefill and SDPA for the one-token decode steps (whose mask is a plain
4D padding mask). FlexAttention is compiled on CUDA; on CPU it runs eagerly, because the compiled
CPU kernel failed here on left-padded batches.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from selfens.attention.masks import block_mask, dense_mask, from_query, packed_mask_mod
from selfens.attention.packing import Packed

Backend = Literal["dense", "flex"]
FLEX_IMPLEMENTATION = "selfens_flex"
_compiled = None


def default_backend(device: torch.device) -> Backend:
    return "flex" if device.type == "cuda" else "dense"


def attn_implementation(backend: Backend) -> str:
    """The transformers `attn_implementation` a model needs for this backend."""
    if backend == "flex":
        register_flex()
        return FLEX_IMPLEMENTATION
    return "sdpa"


def prefill_mask(packed: Packed, backend: Backend, first_query: int = 0):
    """The packed prefill's mask for its queries from column `first_query` on (the earlier columns
    being a prefix already in the cache) over all keys, on the packed tensors' device:
    [B, 1, L - first_query, L] bool (dense) or a BlockMask (flex)."""
    mask_mod = from_query(packed_mask_mod(packed), first_query) if first_query else packed_mask_mod(packed)
    batch, length = packed.input_ids.shape
    device = packed.input_ids.device
    make = block_mask if backend == "flex" else dense_mask
    return make(mask_mod, batch, length - first_query, device, kv_length=length)


def _flex_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: FlexAttention for a BlockMask, SDPA for a tensor mask."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not isinstance(attention_mask, BlockMask):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    global _compiled
    if query.device.type == "cuda":
        _compiled = _compiled or torch.compile(flex_attention)
        attend = _compiled
    else:
        attend = flex_attention
    out = attend(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None  # [B, L, H, D], as transformers expects


def register_flex() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(FLEX_IMPLEMENTATION, _flex_forward)
