import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention

from selfens.attention import (
    LAYOUTS,
    block_mask,
    causal,
    decode_mask,
    dense_mask,
    pack,
    packed_mask_mod,
)
from selfens.prompting.segments import Segments

EXAMPLE = Segments(instruction=[1, 2], shots=[[3], [4, 5]], blocks=[[6, 7], [8]], suffix=[9])
SHORT = Segments(instruction=[1], shots=[], blocks=[[6], [8]], suffix=[])


def mask_of(p):
    batch, length = p.valid.shape
    return dense_mask(packed_mask_mod(p), batch, length, "cpu")


def rows(*lines):
    """Hand-written mask: one string of 0/1 per query row -> [1, 1, L, L] bool."""
    return torch.tensor([[c == "1" for c in line.replace(" ", "")] for line in lines])[None, None]


# Packed: prefix 1 2 3 4 5 | block 6 7 | block 8 | suffix 9
SHARED_PREFIX = rows(
    "10000 00 0 0",
    "11000 00 0 0",
    "11100 00 0 0",
    "11110 00 0 0",
    "11111 00 0 0",
    "11111 10 0 0",
    "11111 11 0 0",
    "11111 00 1 0",
    "11111 11 1 1",
)

# Packed: instruction 1 2 | shot 3 | shot 4 5 | block 6 7 | block 8 | suffix 9
ISOLATED_FEWSHOT = rows(
    "10 0 00 00 0 0",
    "11 0 00 00 0 0",
    "11 1 00 00 0 0",
    "11 0 10 00 0 0",
    "11 0 11 00 0 0",
    "11 1 11 10 0 0",
    "11 1 11 11 0 0",
    "11 1 11 00 1 0",
    "11 1 11 11 1 1",
)

# Packed: 1 2 3 4 5 6 7 9 | 1 2 3 4 5 8 9, two independent causal prompts
SEED = rows(
    "10000000 0000000",
    "11000000 0000000",
    "11100000 0000000",
    "11110000 0000000",
    "11111000 0000000",
    "11111100 0000000",
    "11111110 0000000",
    "11111111 0000000",
    "00000000 1000000",
    "00000000 1100000",
    "00000000 1110000",
    "00000000 1111000",
    "00000000 1111100",
    "00000000 1111110",
    "00000000 1111111",
)


HAND_WRITTEN = {"shared_prefix": SHARED_PREFIX, "isolated_fewshot": ISOLATED_FEWSHOT, "seed": SEED}


def test_every_layout_has_a_hand_written_mask():
    assert set(HAND_WRITTEN) == set(LAYOUTS)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_hand_written(layout):
    mask = mask_of(pack([EXAMPLE], layout, pad_id=0))
    assert mask.dtype == torch.bool
    assert torch.equal(mask, HAND_WRITTEN[layout])


def test_padding():
    p = pack([EXAMPLE, SHORT], "shared_prefix", pad_id=0)
    mask = mask_of(p)[:, 0]  # [B, L, L]
    assert mask.shape == (2, 9, 9)
    pad = ~p.valid[1]
    assert torch.equal(mask[1][pad], torch.eye(9, dtype=torch.bool)[pad])  # padded rows see only themselves
    assert not mask[1][p.valid[1]][:, pad].any()  # real tokens never see padding
    assert torch.equal(mask[1, 6:, 6:], rows("100", "110", "101")[0, 0])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_equals_each_alone(layout):
    examples = [EXAMPLE, SHORT, Segments(instruction=[1, 2, 3], shots=[[4, 5, 6]], blocks=[[7], [8, 9]], suffix=[10])]
    p = pack(examples, layout, pad_id=0)
    mask = mask_of(p)
    for i, ex in enumerate(examples):
        alone = pack([ex], layout, pad_id=0)
        real = p.valid[i]
        assert torch.equal(p.input_ids[i][real], alone.input_ids[0])
        assert torch.equal(mask[i, 0][real][:, real], mask_of(alone)[0, 0])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_paraphrase_is_causal(layout):
    # One shot at most: with two, isolated_fewshot hides shot 1 from shot 2 even for N = 1.
    ex = Segments(instruction=[1, 2], shots=[[3, 4]], blocks=[[5, 6, 7]], suffix=[8, 9])
    p = pack([ex], layout, pad_id=0)
    assert torch.equal(mask_of(p), dense_mask(causal(), 1, 9, "cpu"))


def test_tuple_input_and_names():
    p = pack([EXAMPLE], "isolated_fewshot", pad_id=0)
    assert torch.equal(mask_of(p), dense_mask(packed_mask_mod((p.level, p.segment, p.valid)), 1, 9, "cpu"))
    assert packed_mask_mod(p).__name__ == "packed"
    assert causal().__name__ == "causal"


def random_example(gen, n):
    def tokens(lo, hi):
        return torch.randint(1, 100, (int(torch.randint(lo, hi, (), generator=gen)),), generator=gen).tolist()

    return Segments(
        instruction=tokens(5, 40),
        shots=[tokens(1, 30) for _ in range(int(torch.randint(0, 3, (), generator=gen)))],
        blocks=[tokens(1, 40) for _ in range(n)],
        suffix=tokens(0, 10),
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_flex_block_mask_matches_dense_sdpa(layout):
    gen = torch.Generator().manual_seed(0)
    p = pack([random_example(gen, 3) for _ in range(3)], layout, pad_id=0)
    batch, length = p.valid.shape
    assert length > 128 and length % 128  # several blocks, the last one partial
    q, k, v = torch.randn(3, batch, 2, length, 16, generator=gen)
    mod = packed_mask_mod(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager (uncompiled) flex warns that it is unfused
        out = flex_attention(q, k, v, block_mask=block_mask(mod, batch, length, "cpu"))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=dense_mask(mod, batch, length, "cpu"))
    assert not expected.isnan().any()
    torch.testing.assert_close(out, expected)


def test_decode_mask():
    valid = torch.tensor([[False, True, True, True], [True, True, False, False]])
    assert decode_mask(valid).tolist() == [[[[False, True, True, True]]], [[[True, True, False, True]]]]
    assert valid[1, 3].item() is False  # input untouched
