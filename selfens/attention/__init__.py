"""Attention-level fusion: pack N paraphrases into one sequence, mask it and position it."""

from .masks import (
    MaskMod,
    block_mask,
    causal,
    decode_mask,
    dense_mask,
    diagonal,
    lower_level,
    not_padding,
    packed_mask_mod,
    same_segment,
)
from .packing import LAYOUTS, Layout, Packed, pack, structure
from .positions import next_position, position_ids, sequential_positions

__all__ = [
    "LAYOUTS",
    "Layout",
    "MaskMod",
    "Packed",
    "block_mask",
    "causal",
    "decode_mask",
    "dense_mask",
    "diagonal",
    "lower_level",
    "next_position",
    "not_padding",
    "pack",
    "packed_mask_mod",
    "position_ids",
    "same_segment",
    "sequential_positions",
    "structure",
]
