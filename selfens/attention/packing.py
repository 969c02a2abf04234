"""Pack the N paraphrases of each example into one left-padded sequence.

Every packed token carries a ``level`` and a ``segment`` id; ``masks.py`` turns them into the
attention rule "see causally earlier tokens of your own segment or of a lower level" and
``positions.py`` into position ids.
"""

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from selfens.prompting.segments import Segments

# Levels: a token sees every earlier token of a strictly lower level.
PAD, ROOT, SEED, PARAPHRASE, FUSED = -1, 0, 1, 2, 3


@dataclass
class Packed:
    """A batch of packed examples; B examples, L packed tokens, N paraphrases."""

    input_ids: Tensor  # [B, L] long, left-padded with pad_id
    level: Tensor  # [B, L] long, -1 on padding
    segment: Tensor  # [B, L] long, -1 on padding
    valid: Tensor  # [B, L] bool, False on padding
    block_ends: Tensor  # [B, N] long, packed index of the last token of each paraphrase
    shared: int  # the first `shared` columns are the same in every row (the prompt prefix): padding follows them
    # Per example: (name, start, end) with half-open [start, end) packed indices; empty pieces omitted.
    labels: list[list[tuple[str, int, int]]]

    def prefix(self) -> "Packed":
        """The shared columns of the first row: the prefix, packed alone."""
        p = self.shared
        cut = {name: getattr(self, name)[:1, :p] for name in ("input_ids", "level", "segment", "valid")}
        return Packed(**cut, block_ends=self.block_ends[:1, :0], shared=p, labels=[])

    def to(self, device) -> "Packed":
        tensors = {
            name: getattr(self, name).to(device) for name in ("input_ids", "level", "segment", "valid", "block_ends")
        }
        return Packed(**tensors, shared=self.shared, labels=self.labels)


# One piece of a packed example: (label, token ids, level, segment id, ends a paraphrase).
_Piece = tuple[str, list[int], int, int, bool]


def _seed(ex: Segments) -> list[_Piece]:
    # Each full single prompt is its own segment; only generated tokens (level 3) see all.
    return [(f"paraphrase {k + 1}", ex.prompt(k), SEED, k + 1, True) for k in range(len(ex.blocks))]


def _shared_prefix(ex: Segments) -> list[_Piece]:
    n = len(ex.blocks)
    return [
        ("prefix", ex.prefix, ROOT, 0, False),
        *((f"paraphrase {k + 1}", b, PARAPHRASE, k + 1, True) for k, b in enumerate(ex.blocks)),
        ("suffix", ex.suffix, FUSED, n + 1, False),
    ]


def _isolated_fewshot(ex: Segments) -> list[_Piece]:
    n, s = len(ex.blocks), len(ex.shots)
    return [
        ("instruction", ex.instruction, ROOT, 0, False),
        *((f"shot {j + 1}", shot, SEED, j + 1, False) for j, shot in enumerate(ex.shots)),
        *((f"paraphrase {k + 1}", b, PARAPHRASE, s + k + 1, True) for k, b in enumerate(ex.blocks)),
        ("suffix", ex.suffix, FUSED, s + n + 1, False),
    ]


@dataclass(frozen=True)
class LayoutRule:
    pieces: Callable[[Segments], list[_Piece]]  # one example's pieces in packed order; segment ids unique
    shared_suffix: bool  # one suffix after every block, seeing them all (else each segment ends with its own)


# The one list of layouts: the method's signature, configs and tests read their names from here.
LAYOUTS: dict[str, LayoutRule] = {
    "seed": LayoutRule(_seed, shared_suffix=False),
    "shared_prefix": LayoutRule(_shared_prefix, shared_suffix=True),
    "isolated_fewshot": LayoutRule(_isolated_fewshot, shared_suffix=True),
}
Layout = Literal[tuple(LAYOUTS)]  # type: ignore[valid-type]


def pack(examples: list[Segments], layout: Layout, pad_id: int, share_prefix: bool = False) -> Packed:
    """Pack each example's paraphrases into one sequence and left-pad the batch to [B, L].

    With `share_prefix`, when every row starts with the same prompt prefix (same tokens, levels and
    segments: its KV is then the same in every row), the padding goes after it instead, so that
    the prefix can be prefilled once for the batch.
    """
    if not examples:
        raise ValueError("pack() needs at least one example")
    counts = {len(ex.blocks) for ex in examples}
    if len(counts) != 1:
        raise ValueError(f"all examples in a batch need the same number of paraphrases, got {sorted(counts)}")
    if 0 in counts:
        raise ValueError("each example needs at least one paraphrase block")
    if any(not block for ex in examples for block in ex.blocks):
        raise ValueError("paraphrase blocks must not be empty")

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}, expected one of {tuple(LAYOUTS)}")
    rows = []
    for ex in examples:
        ids, level, segment, labels, ends = [], [], [], [], []
        for name, tokens, lvl, seg, ends_block in LAYOUTS[layout].pieces(ex):
            if tokens:
                labels.append((name, len(ids), len(ids) + len(tokens)))
            ids += tokens
            level += [lvl] * len(tokens)
            segment += [seg] * len(tokens)
            if ends_block:
                ends.append(len(ids) - 1)
        rows.append((ids, level, segment, labels, ends))

    shared = _shared_prefix_length(examples, rows) if share_prefix else 0
    length = max(len(r[0]) for r in rows)
    batch = len(rows)
    packed = Packed(
        input_ids=torch.full((batch, length), pad_id, dtype=torch.long),
        level=torch.full((batch, length), PAD, dtype=torch.long),
        segment=torch.full((batch, length), PAD, dtype=torch.long),
        valid=torch.zeros((batch, length), dtype=torch.bool),
        block_ends=torch.zeros((batch, counts.pop()), dtype=torch.long),
        shared=shared,
        labels=[],
    )
    for i, (ids, level, segment, labels, ends) in enumerate(rows):
        pad = length - len(ids)  # padding: real tokens end at the last column
        columns = torch.cat([torch.arange(shared), torch.arange(shared + pad, length)])  # where the tokens go
        packed.input_ids[i, columns] = torch.tensor(ids, dtype=torch.long)
        packed.level[i, columns] = torch.tensor(level, dtype=torch.long)
        packed.segment[i, columns] = torch.tensor(segment, dtype=torch.long)
        packed.valid[i, columns] = True
        packed.block_ends[i] = columns[torch.tensor(ends, dtype=torch.long)]
        shift = lambda index: index if index < shared else index + pad  # noqa: B023 (used at once)
        packed.labels.append([(name, shift(start), shift(end - 1) + 1) for name, start, end in labels])
    return packed


def _shared_prefix_length(examples: list[Segments], rows) -> int:
    """len(prefix) if every example has the same prompt prefix and every row starts with the same
    tokens, levels and segments for that long; else 0."""
    prefix = examples[0].prefix
    if not prefix or any(ex.prefix != prefix for ex in examples):
        return 0
    p = len(prefix)
    first = [r[:p] for r in rows[0][:3]]
    return p if all([r[:p] for r in row[:3]] == first for row in rows) else 0


def structure(packed: Packed | tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(level, segment, valid), each [B, L], from a Packed or from such a tuple."""
    if isinstance(packed, Packed):
        return packed.level, packed.segment, packed.valid
    level, segment, valid = packed
    return level, segment, valid
