import math

import pytest
import torch
from torch.testing import assert_close

from selfens.decoding.fusion import FUSIONS, avg, bind, get_fusion, max_prob, weighted_avg, weighted_max

# B=2, N=3, V=4
LOGITS = torch.tensor(
    [
        [[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [0.0, 0.0, 6.0, 0.0]],
        [[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]],
    ]
)
W = torch.tensor([[1.0, 1.0, 2.0], [0.0, 3.0, 1.0]])


def _all(logits, weights):
    return {name: rule.fn(logits, weights) for name, rule in FUSIONS.items()}


def test_avg_formula():
    expected = torch.tensor([[5 / 3, 5 / 3, 11 / 3, 5 / 3], [2 / 3, 2 / 3, 0.0, 5 / 3]])
    assert_close(avg(LOGITS), expected)


def test_max_prob_formula():
    # Two rows with logits [a, 0, 0, 0] up to permutation: softmax max = e^a / (e^a + 3).
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    p2, p1 = math.e**2 / (math.e**2 + 3), math.e / (math.e + 3)
    q2, q1 = 1 / (math.e**2 + 3), 1 / (math.e + 3)
    expected = torch.tensor([[p2, max(q1, q2), max(q1, q2), p1]])
    assert_close(max_prob(logits), expected.log())
    # the fused distribution: the max probabilities, normalised
    assert_close(torch.softmax(max_prob(logits), -1), expected / expected.sum())


def test_weighted_avg_formula():
    # Example 0: w = [.25, .25, .5]; example 1: w = [0, .75, .25].
    expected = torch.tensor(
        [
            [0.25 * 1 + 0.25 * 4, 0.25 * 2 + 0.25 * 3, 0.25 * 3 + 0.25 * 2 + 0.5 * 6, 0.25 * 4 + 0.25 * 1],
            [0.0, 1.5, 0.0, 1.25],
        ]
    )
    assert_close(weighted_avg(LOGITS, W), expected)


def test_weighted_avg_normalises_equal_and_zero_weights():
    assert_close(weighted_avg(LOGITS, W), weighted_avg(LOGITS, W / W.sum(1, keepdim=True)))
    assert_close(weighted_avg(LOGITS, torch.full((2, 3), 7.0)), avg(LOGITS))
    zero = torch.tensor([[0.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    out = weighted_avg(LOGITS, zero)
    assert_close(out[0], avg(LOGITS)[0])  # all-zero row falls back to equal weights
    assert_close(out[1], weighted_avg(LOGITS, W)[1])  # other rows unaffected


def test_weighted_max_picks_max_weight_ties_first():
    assert_close(weighted_max(LOGITS, W), torch.stack([LOGITS[0, 2], LOGITS[1, 1]]))
    tie = torch.tensor([[0.5, 0.9, 0.9], [1.0, 1.0, 1.0]])
    assert_close(weighted_max(LOGITS, tie), torch.stack([LOGITS[0, 1], LOGITS[1, 0]]))


def test_single_paraphrase_returns_the_row():
    row = LOGITS[:, :1]  # [2, 1, 4]
    out = _all(row, torch.tensor([[0.3], [0.0]]))
    for name in ("avg", "weighted_avg", "weighted_max"):
        assert_close(out[name], row[:, 0])
    assert_close(out["max"], torch.log_softmax(row[:, 0], -1))  # its softmax: the row's own distribution
    for o in out.values():
        assert torch.equal(o.argmax(-1), row[:, 0].argmax(-1))


def test_identical_paraphrases_keep_the_argmax():
    row = torch.tensor([[0.5, -1.0, 3.0, 2.0]])
    same = row.expand(3, 4).unsqueeze(0)  # [1, 3, 4]
    for name, o in _all(same, torch.tensor([[0.2, 0.5, 0.3]])).items():
        assert o.argmax(-1).item() == 2, name


def test_avg_and_max_disagree():
    # One paraphrase is sure of token 0, two others prefer token 1.
    logits = torch.tensor([[[3.0, 0.0], [0.0, 2.0], [0.0, 2.0]]])
    assert avg(logits).argmax(-1).item() == 1  # mean logits: [1.0, 1.33]
    # max probs: [e^3/(e^3+1), e^2/(e^2+1)] = [0.953, 0.881]
    assert max_prob(logits).argmax(-1).item() == 0


def test_bf16_in_float32_out():
    for o in _all(LOGITS.bfloat16(), W.bfloat16()).values():
        assert o.dtype == torch.float32


def test_registry_bind_and_errors():
    assert get_fusion("max") is max_prob
    weighted = {n for n, rule in FUSIONS.items() if rule.needs_weights}
    assert weighted == {"weighted_avg", "weighted_max"}
    everyone = torch.arange(LOGITS.shape[0])
    assert_close(bind(weighted_avg, W)(LOGITS, everyone), weighted_avg(LOGITS, W))
    # The decoder names the examples still decoding; their weight rows are used.
    last = torch.tensor([LOGITS.shape[0] - 1])
    assert_close(bind(weighted_avg, W)(LOGITS[-1:], last), weighted_avg(LOGITS[-1:], W[-1:]))
    for name in weighted:
        with pytest.raises(ValueError, match="weights"):
            get_fusion(name)(LOGITS)
        with pytest.raises(ValueError, match="weights"):
            bind(get_fusion(name), None)(LOGITS, everyone)
        with pytest.raises(ValueError, match="does not match"):
            get_fusion(name)(LOGITS, W[:, :2])
    with pytest.raises(ValueError, match="avg, max, weighted_avg, weighted_max"):
        get_fusion("median")
