"""The collated multi-paraphrase batch that every method decodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from selfens.decoding.prompt import left_pad
from selfens.prompting.segments import Segments


@dataclass
class Example:
    """One encoded record: what a dataset item yields."""

    index: int  # position in the evaluated data, for ordering and exactly-once accounting
    id: str
    paraphrases: list[str]
    answers: list[str]
    segments: Segments
    group: Optional[str] = None  # the example's group (ParaRel: its relation), for results per group


@dataclass
class ParaphraseBatch:
    """B examples with N paraphrases each; L the longest single prompt."""

    index: Tensor  # [B] long
    ids: list[str]  # [B]
    paraphrases: list[list[str]]  # [B][N] query texts
    answers: list[list[str]]  # [B][*] gold aliases
    segments: list[Segments]  # [B] token pieces, for packing
    input_ids: Tensor  # [B, N, L] each paraphrase's single prompt, left-padded
    valid: Tensor  # [B, N, L] bool, False on padding
    groups: list[Optional[str]] = field(default_factory=list)  # [B] each example's group, if its data has one

    @property
    def num_paraphrases(self) -> int:
        return self.input_ids.shape[1]

    def rows(self, paraphrases: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """The single prompts of the chosen paraphrases as rows, example-major: ([B*n, L'], [B*n, L']).

        Columns that are padding in every row are dropped.
        """
        chosen = slice(None) if paraphrases is None else paraphrases
        ids, valid = self.input_ids[:, chosen], self.valid[:, chosen]
        ids, valid = ids.reshape(-1, ids.shape[-1]), valid.reshape(-1, valid.shape[-1])
        first = int(valid.any(0).long().argmax())
        return ids[:, first:], valid[:, first:]


def collate(examples: list[Example], pad_id: int) -> ParaphraseBatch:
    counts = {len(e.segments.blocks) for e in examples}
    if len(counts) != 1:
        raise ValueError(f"examples of one batch need the same number of paraphrases, got {sorted(counts)}")
    n = counts.pop()
    input_ids, valid = left_pad([e.segments.prompt(k) for e in examples for k in range(n)], pad_id)
    length = input_ids.shape[-1]
    return ParaphraseBatch(
        index=torch.tensor([e.index for e in examples], dtype=torch.long),
        ids=[e.id for e in examples],
        paraphrases=[e.paraphrases for e in examples],
        answers=[e.answers for e in examples],
        segments=[e.segments for e in examples],
        input_ids=input_ids.view(len(examples), n, length),
        valid=valid.view(len(examples), n, length),
        groups=[e.group for e in examples],
    )
