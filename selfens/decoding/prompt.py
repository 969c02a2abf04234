"""What the model reads at prefill (`Prompt`), and left padding: real tokens end at the last column,
where the next token is read."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from selfens.attention.positions import sequential_positions


def pad_left(t: Tensor, length: int, dim: int = -1, value=0) -> Tensor:
    """`t` left-padded with `value` along `dim` to `length`."""
    missing = length - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_full(shape, value), t], dim=dim)


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Token rows -> (ids [R, L] long, valid [R, L] bool), L the longest row."""
    length = max(map(len, rows))
    tensors = [torch.tensor(tokens, dtype=torch.long) for tokens in rows]
    ids = torch.stack([pad_left(t, length, value=pad_id) for t in tensors])
    valid = torch.stack([pad_left(torch.ones(len(t), dtype=torch.bool), length) for t in tensors])
    return ids, valid


@dataclass
class Prompt:
    """What the model reads at prefill, R rows: everything decoding needs to know about how the rows
    are laid out comes in here (packed prompts: from `selfens.attention`).

    With a `prefix`, every row starts with the same tokens: the prefix (one row, P tokens) is
    prefilled once, or its KV taken from a `PrefixCache`, and shared by all R rows; the rows here
    are what follows it, and `attention_mask` covers the prefix's keys and theirs.
    """

    input_ids: Tensor  # [R, L]
    valid: Tensor  # [R, L] bool: real tokens (False on padding)
    position_ids: Tensor  # [R, L]
    attention_mask: object  # [R, P+L] padding mask (causal implied), or [R, 1, L, P+L] bool, or a BlockMask
    logit_positions: Optional[Tensor] = None  # [R, Q] where the prefill's next-token logits are read; None: the last
    prefix: Optional[Prompt] = None  # one row of P tokens that every row starts with
    key: Optional[Hashable] = None  # a prefix's identity (tokens, positions, mask) for the PrefixCache

    @classmethod
    def left_padded(cls, input_ids: Tensor, valid: Tensor) -> Prompt:
        """Independent prompts: positions count the real tokens of each row, as `generate` does."""
        return cls(input_ids, valid, sequential_positions(valid), attention_mask=valid.long())

    @classmethod
    def with_prefix(cls, prefix: list[int], rests: list[list[int]], pad_id: int) -> Prompt:
        """Single prompts `prefix + rest` that share `prefix`: the rests left-padded after it."""
        prefix_ids = torch.tensor(prefix, dtype=torch.long)[None]  # [1, P]
        shared = cls.left_padded(prefix_ids, torch.ones_like(prefix_ids, dtype=torch.bool))
        shared.key = ("causal", tuple(prefix))
        ids, valid = left_pad(rests, pad_id)
        positions = (sequential_positions(valid) + len(prefix)).masked_fill(~valid, 0)
        mask = torch.cat([valid.new_ones(len(rests), len(prefix)), valid], dim=-1).long()
        return cls(ids, valid, positions, attention_mask=mask, prefix=shared)

    @property
    def key_valid(self) -> Tensor:
        """[R, P+L]: which keys are real once prefilled, the prefix's included."""
        if self.prefix is None:
            return self.valid
        return torch.cat([self.prefix.valid.expand(self.valid.shape[0], -1), self.valid], dim=-1)

    @property
    def key_positions(self) -> Tensor:
        """[R, P+L]: the position ids of the keys once prefilled, the prefix's included."""
        if self.prefix is None:
            return self.position_ids
        return torch.cat([self.prefix.position_ids.expand(self.valid.shape[0], -1), self.position_ids], dim=-1)

    def to(self, device) -> Prompt:
        move = lambda t: t.to(device) if isinstance(t, Tensor) else t
        prefix = self.prefix.to(device) if self.prefix is not None else None
        return Prompt(
            *(move(t) for t in (self.input_ids, self.valid, self.position_ids, self.attention_mask)),
            logit_positions=move(self.logit_positions),
            prefix=prefix,
            key=self.key,
        )

    def select(self, rows: list[int]) -> Prompt:
        """Some rows of the prompt, without the columns that are padding in all of them (a padding
        mask or a dense 4D mask; a BlockMask cannot be cut)."""
        mask = self.attention_mask
        if not isinstance(mask, Tensor):
            raise ValueError("select() needs a tensor mask (a padding mask or a dense 4D mask), not a BlockMask")
        valid = self.valid[rows]
        keep = valid.any(0).nonzero().squeeze(-1)  # [L']
        p = mask.shape[-1] - self.valid.shape[-1]  # the prefix's keys
        key_cols = torch.cat([torch.arange(p, device=keep.device), keep + p])
        mask = mask[rows][..., key_cols]
        if mask.dim() == 4:  # [r, 1, L, P+L]: the queries are the kept columns too
            mask = mask[:, :, keep]
        logit_positions = self.logit_positions
        if logit_positions is not None:  # a kept column's new index
            logit_positions = torch.searchsorted(keep, logit_positions[rows])
        return Prompt(
            self.input_ids[rows][:, keep],
            valid[:, keep],
            self.position_ids[rows][:, keep],
            attention_mask=mask,
            logit_positions=logit_positions,
            prefix=self.prefix,
            key=self.key,
        )
