"""Continuous batching: at most `max_rows` rows decode at once, waiting examples join as others stop,
and prompts of different prefixes decode together; every answer equals the example decoded alone."""

import pytest
import torch

from selfens.decoding.caches import PrefixCache
from selfens.decoding.loop import decode
from selfens.decoding.prompt import Prompt
from selfens.decoding.sampling import sampler
from selfens.model.registry import eos_token_ids

PREFIXES = ["Answer briefly.\nQ: who wrote Hamlet?\nA: Shakespeare\n", "Facts:\nParis is in France.\n"]
RESTS = [
    ["Q: what does jamaican people speak?\nA:", "Q: capital of Peru?\nA:", "Q: who?\nA:"],
    ["Berlin is in", "The Nile flows through the country of", "Tokyo is the capital of"],
]


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _prompts(tokenizer):
    """One prompt per prefix, three single prompts each, rests of different lengths (padding)."""
    pad = tokenizer.pad_token_id
    return [
        Prompt.with_prefix(_ids(tokenizer, p), [_ids(tokenizer, r) for r in rests], pad)
        for p, rests in zip(PREFIXES, RESTS)
    ]


def _alone(model, tokenizer, prefix, rest, **kwargs):
    prompt = Prompt.with_prefix(_ids(tokenizer, prefix), [_ids(tokenizer, rest)], tokenizer.pad_token_id)
    return decode(model, prompt, eos_ids=eos_token_ids(model, tokenizer), **kwargs).tokens[0]


@pytest.mark.parametrize("max_rows", [None, 1, 2, 4])
def test_mixed_prefixes_with_few_rows_equal_each_alone(tiny, max_rows):
    model, tokenizer = tiny
    eos = eos_token_ids(model, tokenizer)
    out = decode(model, _prompts(tokenizer), max_new_tokens=9, eos_ids=eos, max_rows=max_rows)
    alone = [_alone(model, tokenizer, p, r, max_new_tokens=9) for p, rests in zip(PREFIXES, RESTS) for r in rests]
    assert out.tokens == alone
    if max_rows is not None:
        assert out.cost.row_steps <= out.cost.decode_steps * max_rows


def test_rows_that_stop_early_make_room_for_waiting_ones(tiny):
    """With 2 rows in flight, a stopped example's seat goes to the next one at once: fewer decode
    steps than decoding the examples two by two, the same row-steps, every answer unchanged."""
    model, tokenizer = tiny
    eos = eos_token_ids(model, tokenizer)
    prompts = _prompts(tokenizer)
    stop = lambda b, tokens: b in (0, 3, 4) and len(tokens) == 3  # noqa: E731
    out = decode(model, prompts, max_new_tokens=8, eos_ids=eos, max_rows=2, stop=stop)
    free = decode(model, prompts, max_new_tokens=8, eos_ids=eos, stop=stop)
    assert out.tokens == free.tokens
    assert out.cost.row_steps == free.cost.row_steps
    lengths = [len(t) for t in out.tokens]
    assert lengths[0] == 3 and max(lengths) == 8
    two_by_two = sum(max(lengths[i : i + 2]) - 1 for i in range(0, 6, 2))  # steps after each pair's prefill
    assert out.cost.decode_steps < two_by_two


def test_groups_of_rows_join_whole(tiny):
    """rows_per_example > 1 (logit fusion): an example's rows join and leave together."""
    model, tokenizer = tiny
    eos = eos_token_ids(model, tokenizer)
    mean = lambda logits, examples: logits.mean(1)  # noqa: E731
    kwargs = dict(max_new_tokens=7, eos_ids=eos, rows_per_example=3, fuse=mean)
    together = decode(model, _prompts(tokenizer), **kwargs).tokens
    for max_rows in (1, 3, 4):  # 1 and 4: an example's 3 rows never split
        assert decode(model, _prompts(tokenizer), max_rows=max_rows, **kwargs).tokens == together
    alone = [decode(model, p, **kwargs).tokens[0] for p in _prompts(tokenizer)]
    assert together == alone


def test_copies_join_with_their_prompt_and_keep_their_draws(tiny):
    """Sampled copies: a prompt's copies join together, so a generator drawing for them draws the same."""
    model, tokenizer = tiny
    eos = eos_token_ids(model, tokenizer)
    prompt = _prompts(tokenizer)[0].select([1])

    def sampled(max_rows):
        generator = torch.Generator().manual_seed(7)
        choose = sampler(1.0, 0, 1.0, generator)
        return decode(model, prompt, max_new_tokens=6, eos_ids=eos, copies=5, choose=choose, max_rows=max_rows).tokens

    assert sampled(None) == sampled(2)  # fewer rows than copies: the copies still go in together
    assert len(set(map(tuple, sampled(None)))) > 1, "sampling should give different answers"


def test_prefix_is_prefilled_once_across_joins(tiny):
    model, tokenizer = tiny
    eos = eos_token_ids(model, tokenizer)
    cache = PrefixCache()
    out = decode(model, _prompts(tokenizer), max_new_tokens=4, eos_ids=eos, max_rows=1, prefix_cache=cache)
    prefix_tokens = sum(len(_ids(tokenizer, p)) for p in PREFIXES)
    rest_tokens = sum(len(_ids(tokenizer, r)) for rests in RESTS for r in rests)
    assert out.cost.prefill_tokens == prefix_tokens + rest_tokens


def test_select_keeps_a_dense_4d_mask_and_logit_positions(tiny):
    """A packed prompt's rows, selected, prefill to the same logits as in the whole prompt."""
    from selfens.attention.backend import prefill_mask
    from selfens.attention.packing import pack
    from selfens.attention.positions import position_ids
    from selfens.decoding.loop import prefill
    from selfens.prompting.segments import Segments

    model, tokenizer = tiny
    pad = tokenizer.pad_token_id
    segs = [
        Segments(instruction=[], shots=[], blocks=[_ids(tokenizer, r) for r in rests], suffix=[])
        for rests in (RESTS[0], RESTS[1], [RESTS[0][2], RESTS[1][0], RESTS[0][0]])
    ]
    packed = pack(segs, "shared_prefix", pad)
    prompt = Prompt(
        packed.input_ids,
        packed.valid,
        position_ids(packed, "sequential"),
        attention_mask=prefill_mask(packed, "dense"),
        logit_positions=packed.block_ends,
    )
    whole, _ = prefill(model, prompt)
    for rows in ([1], [0, 2], [2, 1]):
        part, _ = prefill(model, prompt.select(rows))
        torch.testing.assert_close(part, whole[rows], rtol=1e-4, atol=1e-4)
