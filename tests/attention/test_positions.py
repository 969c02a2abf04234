import pytest
import torch

from selfens.attention import next_position, pack, position_ids
from selfens.prompting.segments import Segments

# Block 1 ([6, 7]) is longer than block 2 ([8]): the suffix must start after block 1.
EXAMPLE = Segments(instruction=[1, 2], shots=[[3], [4, 5]], blocks=[[6, 7], [8]], suffix=[9])


def test_sequential_counts_real_tokens_only():
    short = Segments(instruction=[1], shots=[], blocks=[[6], [8]], suffix=[])
    p = pack([EXAMPLE, short], "shared_prefix", pad_id=0)
    assert position_ids(p, "sequential").tolist() == [list(range(9)), [0] * 6 + [0, 1, 2]]


def test_parallel_shared_prefix():
    p = pack([EXAMPLE], "shared_prefix", pad_id=0)
    # prefix 0..4 | block 1: 5, 6 | block 2: 5 | suffix after the longest block: 7
    assert position_ids(p, "parallel").tolist() == [[0, 1, 2, 3, 4, 5, 6, 5, 7]]


def test_parallel_isolated_fewshot():
    p = pack([EXAMPLE], "isolated_fewshot", pad_id=0)
    # instruction 0, 1 | shots restart at 2 | blocks start after the longest shot (ends at 3) | suffix 6
    assert position_ids(p, "parallel").tolist() == [[0, 1, 2, 2, 3, 4, 5, 4, 6]]


def test_parallel_seed():
    p = pack([EXAMPLE], "seed", pad_id=0)
    assert position_ids(p, "parallel").tolist() == [list(range(8)) + list(range(7))]


def test_parallel_with_padding_matches_alone():
    short = Segments(instruction=[1], shots=[[2, 3, 4]], blocks=[[6], [8, 8, 8]], suffix=[5])
    for layout in ("seed", "shared_prefix", "isolated_fewshot"):
        p = pack([EXAMPLE, short], layout, pad_id=0)
        pos = position_ids(p, "parallel")
        for i, ex in enumerate([EXAMPLE, short]):
            alone = position_ids(pack([ex], layout, pad_id=0), "parallel")[0]
            assert pos[i][p.valid[i]].tolist() == alone.tolist()
            assert (pos[i][~p.valid[i]] == 0).all()


@pytest.mark.parametrize("layout", ["seed", "shared_prefix", "isolated_fewshot"])
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_one_paraphrase_is_the_single_prompt(layout, mode):
    # One shot at most: with two, isolated_fewshot hides shot 1 from shot 2 even for N = 1.
    ex = Segments(instruction=[1, 2], shots=[[3, 4]], blocks=[[5, 6, 7]], suffix=[8, 9])
    p = pack([ex], layout, pad_id=0)
    assert position_ids(p, mode).tolist() == [list(range(9))]


def test_next_position():
    short = Segments(instruction=[1], shots=[], blocks=[[6], [8]], suffix=[])
    p = pack([EXAMPLE, short], "shared_prefix", pad_id=0)
    assert next_position(position_ids(p, "parallel"), p.valid).tolist() == [8, 2]
    assert next_position(position_ids(p, "sequential"), p.valid).tolist() == [9, 3]


def test_tuple_input_and_unknown_mode():
    p = pack([EXAMPLE], "shared_prefix", pad_id=0)
    assert torch.equal(position_ids((p.level, p.segment, p.valid), "parallel"), position_ids(p, "parallel"))
    with pytest.raises(ValueError):
        position_ids(p, "rotary")
