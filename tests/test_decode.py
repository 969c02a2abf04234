import pytest
import torch

from selfens.decode import Prompt, greedy_decode
from selfens.models import eos_token_ids

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
        input_ids=ids, attention_mask=valid.long(), max_new_tokens=max_new_tokens, do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )[:, ids.shape[1]:]
    eos = set(eos_token_ids(model, tokenizer))
    result = []
    for row in out.tolist():
        cut = next((i for i, t in enumerate(row) if t in eos), len(row))
        result.append(row[:cut])
    return result


def _ours(model, tokenizer, texts, max_new_tokens):
    ids, valid = _batch(tokenizer, texts)
    return greedy_decode(
        model, Prompt.left_padded(ids, valid), max_new_tokens=max_new_tokens,
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
    stopped = greedy_decode(
        model, Prompt.left_padded(ids, valid), max_new_tokens=8, eos_ids=[],
        stop=lambda b, toks: b == 1 and len(toks) == 3,
    ).tokens
    assert stopped[1] == full[1][:3]
    assert stopped[0] == full[0] and stopped[2] == full[2]


@pytest.mark.slow
def test_decode_equals_generate_smollm(smollm):
    model, tokenizer = smollm
    texts = ["Paris is the capital of", "Q: who wrote hamlet?\nA:"]
    assert _ours(model, tokenizer, texts, 8) == _generate(model, tokenizer, texts, 8)
