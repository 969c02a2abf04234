import pytest
import torch

from selfens.attention import pack
from selfens.prompting.segments import Segments

# instruction=[1, 2], shots [3] and [4, 5], paraphrase blocks [6, 7] and [8], suffix [9].
EXAMPLE = Segments(instruction=[1, 2], shots=[[3], [4, 5]], blocks=[[6, 7], [8]], suffix=[9])


def test_shared_prefix():
    p = pack([EXAMPLE], "shared_prefix", pad_id=0)
    assert p.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert p.level.tolist() == [[0, 0, 0, 0, 0, 2, 2, 2, 3]]
    assert p.segment.tolist() == [[0, 0, 0, 0, 0, 1, 1, 2, 3]]
    assert p.valid.all()
    assert p.block_ends.tolist() == [[6, 7]]
    assert p.labels == [[("prefix", 0, 5), ("paraphrase 1", 5, 7), ("paraphrase 2", 7, 8), ("suffix", 8, 9)]]


def test_isolated_fewshot():
    p = pack([EXAMPLE], "isolated_fewshot", pad_id=0)
    assert p.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert p.level.tolist() == [[0, 0, 1, 1, 1, 2, 2, 2, 3]]
    assert p.segment.tolist() == [[0, 0, 1, 2, 2, 3, 3, 4, 5]]
    assert p.block_ends.tolist() == [[6, 7]]
    assert [name for name, _, _ in p.labels[0]] == [
        "instruction",
        "shot 1",
        "shot 2",
        "paraphrase 1",
        "paraphrase 2",
        "suffix",
    ]


def test_seed():
    p = pack([EXAMPLE], "seed", pad_id=0)
    assert p.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 9, 1, 2, 3, 4, 5, 8, 9]]
    assert p.level.tolist() == [[1] * 15]
    assert p.segment.tolist() == [[1] * 8 + [2] * 7]
    assert p.block_ends.tolist() == [[7, 14]]
    assert p.labels == [[("paraphrase 1", 0, 8), ("paraphrase 2", 8, 15)]]


def test_left_padding():
    short = Segments(instruction=[1], shots=[], blocks=[[6], [8]], suffix=[])
    p = pack([EXAMPLE, short], "shared_prefix", pad_id=-7)
    assert p.input_ids[1].tolist() == [-7] * 6 + [1, 6, 8]
    assert p.level[1].tolist() == [-1] * 6 + [0, 2, 2]
    assert p.segment[1].tolist() == [-1] * 6 + [0, 1, 2]
    assert p.valid[1].tolist() == [False] * 6 + [True] * 3
    assert p.block_ends.tolist() == [[6, 7], [7, 8]]
    assert p.labels[1] == [("prefix", 6, 7), ("paraphrase 1", 7, 8), ("paraphrase 2", 8, 9)]
    assert int(p.valid.sum()) == 12
    assert p.input_ids.dtype == p.level.dtype == p.segment.dtype == p.block_ends.dtype == torch.long


def test_different_paraphrase_counts_rejected():
    one = Segments(instruction=[1], shots=[], blocks=[[2]], suffix=[])
    with pytest.raises(ValueError, match="same number of paraphrases"):
        pack([EXAMPLE, one], "shared_prefix", pad_id=0)


def test_empty_block_rejected():
    bad = Segments(instruction=[1], shots=[], blocks=[[2], []], suffix=[])
    with pytest.raises(ValueError, match="must not be empty"):
        pack([bad], "isolated_fewshot", pad_id=0)


def test_no_blocks_and_unknown_layout_rejected():
    with pytest.raises(ValueError):
        pack([Segments(instruction=[1], shots=[], blocks=[], suffix=[])], "seed", pad_id=0)
    with pytest.raises(ValueError, match="unknown layout"):
        pack([EXAMPLE], "interleaved", pad_id=0)
