"""The packed attention rule as composable FlexAttention ``mask_mod``s, plus dense and block forms.

A mask_mod is ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor`` (True = attend). The ones here only
index captured tensors, so they work under ``vmap`` (FlexAttention) and with broadcast index grids
(``dense_mask``).
"""

from typing import Callable

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, and_masks, create_block_mask, or_masks

from .packing import Packed, structure

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def _named(mask_mod: MaskMod, name: str) -> MaskMod:
    mask_mod.__name__ = name
    return mask_mod


def causal() -> MaskMod:
    """Keys at or before the query's packed index."""

    def causal(b, h, q_idx, kv_idx):
        return kv_idx <= q_idx

    return causal


def diagonal() -> MaskMod:
    """Every token sees itself, so no row is fully masked (SDPA would give NaN there)."""

    def diagonal(b, h, q_idx, kv_idx):
        return q_idx == kv_idx

    return diagonal


def not_padding(valid: Tensor) -> MaskMod:
    """Query and key are both real tokens. valid: [B, L] bool."""

    def not_padding(b, h, q_idx, kv_idx):
        return valid[b, q_idx] & valid[b, kv_idx]

    return not_padding


def same_segment(segment: Tensor) -> MaskMod:
    """Query and key share a segment id. segment: [B, L] long."""

    def same_segment(b, h, q_idx, kv_idx):
        return segment[b, q_idx] == segment[b, kv_idx]

    return same_segment


def lower_level(level: Tensor) -> MaskMod:
    """The key's level is strictly below the query's. level: [B, L] long."""

    def lower_level(b, h, q_idx, kv_idx):
        return level[b, kv_idx] < level[b, q_idx]

    return lower_level


def packed_mask_mod(packed: Packed | tuple[Tensor, Tensor, Tensor]) -> MaskMod:
    """causal & not_padding & (same_segment | lower_level), or the diagonal."""
    level, segment, valid = structure(packed)
    visible = or_masks(same_segment(segment), lower_level(level))
    rule = and_masks(causal(), not_padding(valid), _named(visible, "same_segment_or_lower_level"))
    return _named(or_masks(rule, diagonal()), "packed")


def dense_mask(
    mask_mod: MaskMod, batch: int, length: int, device: torch.device | str | None = None, kv_length: int | None = None
) -> Tensor:
    """Evaluate mask_mod on broadcast index grids -> [B, 1, L, K] bool (True = attend); K = L by default.

    This is the 4D mask the dense backend hands to a transformers model running SDPA.
    """
    kv_length = length if kv_length is None else kv_length
    b = torch.arange(batch, device=device).view(-1, 1, 1, 1)
    h = torch.zeros(1, 1, 1, 1, dtype=torch.long, device=device)
    q_idx = torch.arange(length, device=device).view(1, 1, -1, 1)
    kv_idx = torch.arange(kv_length, device=device).view(1, 1, 1, -1)
    return mask_mod(b, h, q_idx, kv_idx).expand(batch, 1, length, kv_length)


def block_mask(
    mask_mod: MaskMod, batch: int, length: int, device: torch.device | str | None = None, kv_length: int | None = None
) -> BlockMask:
    """FlexAttention BlockMask of mask_mod for [B, L] queries and [B, K] keys (K = L by default),
    shared by all heads.

    L need not be a multiple of the 128 block size: create_block_mask pads internally and never
    calls mask_mod beyond L (checked on CPU with torch 2.13).
    """
    kv_length = length if kv_length is None else kv_length
    return create_block_mask(mask_mod, B=batch, H=None, Q_LEN=length, KV_LEN=kv_length, device=device)


def from_query(mask_mod: MaskMod, first: int) -> MaskMod:
    """mask_mod for the queries from packed index `first` on (the earlier ones already cached)."""

    def later_queries(b, h, q_idx, kv_idx):
        return mask_mod(b, h, q_idx + first, kv_idx)

    return later_queries


def decode_mask(valid_keys: Tensor) -> Tensor:
    """Mask of one generated token over the cache: valid_keys [B, K] (new token last) -> [B, 1, 1, K].

    A generated token is level 3, so it sees every real key; the last column (itself) is forced True.
    """
    mask = valid_keys.to(torch.bool).clone()
    mask[:, -1] = True
    return mask[:, None, None, :]
