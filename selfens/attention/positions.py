"""Position ids of packed sequences: sequential (like one prompt) or parallel (Parallel Context Windows)."""

from typing import Literal

import torch
from torch import Tensor

from .packing import Packed, structure


def sequential_positions(valid: Tensor) -> Tensor:
    """0, 1, 2, ... over the real tokens of each left-padded row; padding gets 0. [B, L] -> [B, L]."""
    return (valid.long().cumsum(-1) - 1).masked_fill(~valid, 0)


PositionMode = Literal["sequential", "parallel"]


def position_ids(packed: Packed | tuple[Tensor, Tensor, Tensor], mode: PositionMode) -> Tensor:
    """Position ids [B, L] long; padding gets 0.

    sequential: 0, 1, 2, ... over the real tokens of each row, as a single left-padded prompt.
    parallel: a segment starts right after the highest position among the earlier lower-level
    tokens it sees (0 if none) and counts up by 1, so blocks restart after the shared prefix and
    the suffix starts after the longest block.
    """
    level, segment, valid = structure(packed)  # each [B, L]
    if mode == "sequential":
        return sequential_positions(valid)
    if mode != "parallel":
        raise ValueError(f"unknown position mode {mode!r}, expected 'sequential' or 'parallel'")

    pos = torch.zeros_like(level)
    for b in range(level.shape[0]):
        real = valid[b].nonzero().squeeze(-1)
        # Segments in order of first appearance: every token before a segment's first token is
        # then already placed, and those are all the lower-level tokens it can see (causality).
        ids, first = [], {}
        for i, s in zip(real.tolist(), segment[b, real].tolist()):
            if s not in first:
                first[s] = i
                ids.append(s)
        for s in ids:
            idx = (valid[b] & (segment[b] == s)).nonzero().squeeze(-1)
            f = first[s]
            seen = valid[b, :f] & (level[b, :f] < level[b, f])
            start = int(pos[b, :f][seen].max()) + 1 if seen.any() else 0
            pos[b, idx] = start + torch.arange(len(idx), device=pos.device)
    return pos


def next_position(position_ids: Tensor, valid: Tensor) -> Tensor:
    """Position id of the first generated token: 1 + max position over real tokens. [B, L] -> [B]."""
    return position_ids.masked_fill(~valid, -1).amax(-1) + 1
