"""Left padding of token rows: real tokens end at the last column, where the next token is read."""

from __future__ import annotations

import torch
from torch import Tensor


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Token rows -> (ids [R, L] long, valid [R, L] bool), L the longest row."""
    length = max(map(len, rows))
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    valid = torch.zeros((len(rows), length), dtype=torch.bool)
    for row, tokens in enumerate(rows):
        ids[row, length - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
        valid[row, length - len(tokens) :] = True
    return ids, valid
