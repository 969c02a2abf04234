import pytest
import torch

from selfens.decoding.loop import decode
from selfens.decoding.prompt import Prompt
from selfens.decoding.sampling import sampler, seeded_sampler
from selfens.model.registry import eos_token_ids

PROMPTS = [
    "Q: what does jamaican people speak?\nA:",
    "The capital of France is",
    "Allan Peiper was born in Alexandra. Paul Mounsey is originally from",
]


def _batch(tokenizer, texts):
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"].bool()


def _generate(model, tokenizer, texts, max_new_tokens):
    ids, valid = _batch(tokenizer, texts)
    out = model.generate(
        input_ids=ids,
        attention_mask=valid.long(),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )[:, ids.shape[1] :]
    eos = set(eos_token_ids(model, tokenizer))
    result = []
    for row in out.tolist():
        cut = next((i for i, t in enumerate(row) if t in eos), len(row))
        result.append(row[:cut])
    return result


def _ours(model, tokenizer, texts, max_new_tokens):
    ids, valid = _batch(tokenizer, texts)
    return decode(
        model,
        Prompt.left_padded(ids, valid),
        max_new_tokens=max_new_tokens,
        eos_ids=eos_token_ids(model, tokenizer),
    ).tokens


def test_decode_equals_generate_tiny(tiny):
    model, tokenizer = tiny
    assert _ours(model, tokenizer, PROMPTS, 12) == _generate(model, tokenizer, PROMPTS, 12)


def test_batch_equals_each_alone(tiny):
    model, tokenizer = tiny
    together = _ours(model, tokenizer, PROMPTS, 10)
    alone = [_ours(model, tokenizer, [p], 10)[0] for p in PROMPTS]
    assert together == alone


def test_stop_callback_ends_one_example(tiny):
    model, tokenizer = tiny
    full = _ours(model, tokenizer, PROMPTS, 8)
    ids, valid = _batch(tokenizer, PROMPTS)
    stopped = decode(
        model,
        Prompt.left_padded(ids, valid),
        max_new_tokens=8,
        eos_ids=[],
        stop=lambda b, toks: b == 1 and len(toks) == 3,
    ).tokens
    assert stopped[1] == full[1][:3]
    assert stopped[0] == full[0] and stopped[2] == full[2]


@pytest.mark.slow
def test_decode_equals_generate_smollm(smollm):
    model, tokenizer = smollm
    texts = ["Paris is the capital of", "Q: who wrote hamlet?\nA:"]
    assert _ours(model, tokenizer, texts, 8) == _generate(model, tokenizer, texts, 8)


@pytest.mark.slow
def test_eager_batch_equals_each_alone_smollm():
    """eager adds a 4D mask to the scores: given the boolean decode-step mask, it added 0/1 and padding
    leaked from the second generated token on (rows 0 and 1 here decoded other tokens in a batch)."""
    from selfens.model.registry import EMBEDDED, load_model, load_tokenizer

    model, tokenizer = load_model(EMBEDDED, attn_implementation="eager"), load_tokenizer(EMBEDDED)
    together = _ours(model, tokenizer, PROMPTS, 6)
    assert together == [_ours(model, tokenizer, [p], 6)[0] for p in PROMPTS]


# -- copies and sampling ---------------------------------------------------------------------------


def test_copies_repeat_each_prompt_greedy(tiny):
    model, tokenizer = tiny
    k = 3
    ids, valid = _batch(tokenizer, PROMPTS)
    plain = _ours(model, tokenizer, PROMPTS, 8)
    assert all(plain)
    out = decode(
        model, Prompt.left_padded(ids, valid), max_new_tokens=8, eos_ids=eos_token_ids(model, tokenizer), copies=k
    )
    assert len(out.tokens) == len(PROMPTS) * k
    # Prompt-major: example b is copy b % k of prompt b // k.
    assert out.tokens == [t for t in plain for _ in range(k)]
    assert out.cost.prefill_tokens == int(valid.sum())  # one prefill, not k


def test_copies_with_one_copy_stopped_early(tiny):
    model, tokenizer = tiny
    k = 3
    ids, valid = _batch(tokenizer, PROMPTS)
    plain = _ours(model, tokenizer, PROMPTS, 8)
    out = decode(
        model,
        Prompt.left_padded(ids, valid),
        max_new_tokens=8,
        eos_ids=eos_token_ids(model, tokenizer),
        copies=k,
        stop=lambda b, toks: b == 4 and len(toks) == 2,  # copy 1 of prompt 1
    )
    expected = [t for t in plain for _ in range(k)]
    expected[4] = expected[4][:2]
    assert out.tokens == expected


def test_copies_need_one_row_per_example(tiny):
    model, tokenizer = tiny
    ids, valid = _batch(tokenizer, PROMPTS[:2])
    with pytest.raises(ValueError, match="copies"):
        decode(model, Prompt.left_padded(ids, valid), max_new_tokens=2, eos_ids=[], rows_per_example=2, copies=2)


def _sampled(model, tokenizer, seed, **kwargs):
    ids, valid = _batch(tokenizer, PROMPTS)
    generator = torch.Generator().manual_seed(seed)
    return decode(
        model,
        Prompt.left_padded(ids, valid),
        max_new_tokens=6,
        eos_ids=[],
        copies=4,
        choose=sampler(generator=generator, **kwargs),
    ).tokens


def test_seeded_sampling_through_decode_is_reproducible(tiny):
    model, tokenizer = tiny
    a = _sampled(model, tokenizer, 7, temperature=1.5)
    assert a == _sampled(model, tokenizer, 7, temperature=1.5)
    assert a != _sampled(model, tokenizer, 8, temperature=1.5)
    assert len({tuple(t) for t in a}) > 1  # the copies really are sampled, not all the same


# Logits of 2 rows over 8 tokens, no ties; probabilities of row 0: .5, .3, .15, .05, then ~0.
_PROBS = torch.tensor(
    [
        [0.5, 0.3, 0.15, 0.05, 4e-9, 3e-9, 2e-9, 1e-9],
        [0.02, 0.03, 0.05, 0.1, 0.12, 0.18, 0.2, 0.3],
    ]
)
_LOGITS = _PROBS.log()


def _draws(choose, logits=_LOGITS, times=3000) -> torch.Tensor:
    """`times` draws for each row: [times, R]."""
    return choose(logits.repeat(times, 1)).view(times, -1)


def test_sampler_with_seeded_generator_is_reproducible():
    a = _draws(sampler(1.0, 0, 1.0, torch.Generator().manual_seed(3)), times=200)
    b = _draws(sampler(1.0, 0, 1.0, torch.Generator().manual_seed(3)), times=200)
    c = _draws(sampler(1.0, 0, 1.0, torch.Generator().manual_seed(4)), times=200)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("top_k", [1, 2, 3, 5])
def test_sampler_never_leaves_the_top_k(top_k):
    draws = _draws(sampler(1.0, top_k, 1.0, torch.Generator().manual_seed(0)))
    for row in range(_LOGITS.shape[0]):
        allowed = set(_LOGITS[row].topk(top_k).indices.tolist())
        seen = set(draws[:, row].tolist())
        assert seen <= allowed
        if row == 1:  # row 1 is flat enough that every allowed token shows up
            assert seen == allowed


def test_sampler_top_k_with_high_temperature():
    # Temperature flattens the distribution but must not widen the top-k set.
    draws = _draws(sampler(5.0, 2, 1.0, torch.Generator().manual_seed(0)))
    assert set(draws[:, 0].tolist()) == {0, 1}
    assert set(draws[:, 1].tolist()) == {7, 6}


@pytest.mark.parametrize(
    "top_p, kept", [(0.01, {0}), (0.45, {0}), (0.7, {0, 1}), (0.9, {0, 1, 2}), (0.97, {0, 1, 2, 3})]
)
def test_sampler_respects_top_p(top_p, kept):
    # The smallest set of most likely tokens whose probability reaches top_p (row 0).
    draws = _draws(sampler(1.0, 0, top_p, torch.Generator().manual_seed(0)), logits=_LOGITS[:1])
    assert set(draws[:, 0].tolist()) == kept


def test_sampler_without_limits_follows_the_distribution():
    draws = _draws(sampler(1.0, 0, 1.0, torch.Generator().manual_seed(0)), logits=_LOGITS[1:], times=20000)
    freq = torch.bincount(draws[:, 0], minlength=8).float() / draws.shape[0]
    assert torch.allclose(freq, _PROBS[1], atol=0.015)


def test_seeded_sampler_draws_of_an_example_do_not_depend_on_its_batch(tiny):
    """Example b's draws come from its own seed: alone, or beside others that stop earlier, the same."""
    model, tokenizer = tiny

    def sampled(rows: list[int], seeds: list[int], max_new_tokens=6):
        prompt = Prompt.left_padded(*_batch(tokenizer, [PROMPTS[r] for r in rows]))
        choose = seeded_sampler(1.5, 0, 0.9, seeds)
        return decode(model, prompt, max_new_tokens=max_new_tokens, eos_ids=[], choose=choose).tokens

    together = sampled([0, 1], [11, 12])
    assert sampled([1], [12]) == [together[1]]
    assert sampled([0], [11]) == [together[0]]
    assert sampled([0], [13]) != [together[0]]  # another seed, other draws
    # A different companion that stops after one token leaves example 1's draws unchanged.
    stop_first = seeded_sampler(1.5, 0, 0.9, [99, 12])
    prompt = Prompt.left_padded(*_batch(tokenizer, [PROMPTS[0], PROMPTS[1]]))
    out = decode(model, prompt, max_new_tokens=6, eos_ids=[], choose=stop_first, stop=lambda b, t: b == 0)
    assert out.tokens[1] == together[1] and len(out.tokens[0]) == 1


def test_a_memoized_prefill_is_not_run_again(tiny):
    """A prompt equal to one already prefilled into the memo (built anew from the same token ids) takes
    its logits and KV: no forward for it, and the same tokens as decoding without a memo, also when
    the first decode sampled and this one is greedy. A prompt with one other token is run."""
    from selfens.decoding.caches import PrefillMemo, PrefixCache

    model, tokenizer = tiny
    eos = eos_token_ids(model, tokenizer)
    prefix = tokenizer("Allan Peiper was born in Alexandra.")["input_ids"]
    rests = [tokenizer(t)["input_ids"] for t in (" Paul Mounsey is from", " The capital of France is")]

    def prompt(rests):
        return Prompt.with_prefix(prefix, rests, tokenizer.pad_token_id)

    def run(p, memo, **kwargs):
        return decode(model, p, max_new_tokens=6, eos_ids=eos, prefix_cache=PrefixCache(), prefill_memo=memo, **kwargs)

    plain = run(prompt(rests), None)
    memo = PrefillMemo()
    first = run(prompt(rests), memo, choose=sampler(generator=torch.Generator().manual_seed(0)), copies=2)
    assert first.cost.prefill_tokens == len(prefix) + sum(map(len, rests)) and len(memo.entries) == 1
    again = run(prompt(rests), memo)
    assert again.tokens == plain.tokens
    assert again.cost.prefill_tokens == 0 and again.cost.forward_calls == plain.cost.forward_calls - 2  # prefix, rows

    other = [rests[0], rests[1][:-1] + [rests[1][-1] + 1]]
    changed = run(prompt(other), memo)
    assert changed.cost.prefill_tokens == len(prefix) + sum(map(len, other)) and len(memo.entries) == 2
    assert PrefillMemo.key(prompt(rests)) == PrefillMemo.key(prompt(rests)) != PrefillMemo.key(prompt(other))

    full = PrefillMemo(max_rows=3)  # room for one of these two-row prompts: the second is run, not kept
    run(prompt(rests), full), run(prompt(other), full)
    assert full.rows == 2 and list(full.entries) == [PrefillMemo.key(prompt(rests))]
    assert run(prompt(other), full).cost.prefill_tokens > 0
