"""The roomy KV cache (`selfens.decoding.caches`): decode steps write into it in place, and the model sees
exactly the keys a transformers DynamicCache would hold, so the logits are the same bits."""

import pytest
import torch
from transformers import DynamicCache

from selfens.decoding.caches import cache_bytes, joined, roomy_cache
from selfens.decoding.loop import decode_one_token, prefill
from selfens.decoding.prompt import Prompt, left_pad


def _prefilled(model, tokenizer, texts):
    ids, valid = left_pad([tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], tokenizer.pad_token_id)
    prompt = Prompt.left_padded(ids, valid)
    logits, cache = prefill(model, prompt)
    return prompt, logits[:, -1], [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]


def _steps(model, prompt, first, kv_cache, steps):
    """Greedy steps from a prefill: each step's logits [R, V]."""
    valid, key_positions = prompt.valid, prompt.position_ids
    position = prompt.position_ids[:, -1:] + 1
    token, out = first.argmax(-1, keepdim=True), []
    for _ in range(steps):
        valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1)], -1)
        key_positions = torch.cat([key_positions, position], -1)
        logits, kv_cache = decode_one_token(model, token, position, valid, kv_cache, key_positions)
        out.append(logits)
        token, position = logits.argmax(-1, keepdim=True), position + 1
    return out


TEXTS = ["Paris is the capital of", "Q: who wrote Hamlet?\nA:", "The Nile"]


@pytest.mark.parametrize("room", [6, 1])  # room for every step; too little: the buffers grow
@torch.inference_mode()
def test_steps_give_the_same_logits_as_a_dynamic_cache(tiny, room):
    model, tokenizer = tiny
    prompt, first, kv = _prefilled(model, tokenizer, TEXTS)
    dynamic = _steps(model, prompt, first, DynamicCache([(k.clone(), v.clone()) for k, v in kv]), 6)
    roomy = _steps(model, prompt, first, roomy_cache(kv, room), 6)
    assert all(torch.equal(a, b) for a, b in zip(dynamic, roomy))


@torch.inference_mode()
def test_a_step_writes_in_place_while_room_lasts(tiny):
    model, tokenizer = tiny
    prompt, first, kv = _prefilled(model, tokenizer, TEXTS)
    kv_cache = roomy_cache(kv, 4)
    buffer = kv_cache.layers[0].key_buffer
    _steps(model, prompt, first, kv_cache, 4)
    assert kv_cache.layers[0].key_buffer is buffer and kv_cache.layers[0].room == 0
    assert kv_cache.layers[0].keys.data_ptr() == buffer.data_ptr()
    layer, keys = kv_cache.layers[0], kv_cache.layers[0].keys.clone()
    new = torch.randn(keys.shape[0], keys.shape[1], 1, keys.shape[3])
    layer.update(new, new)  # out of room: a new buffer, with room for as many keys again
    assert layer.key_buffer is not buffer and layer.room == keys.shape[2] - 1
    assert torch.equal(layer.keys, torch.cat([keys, new], 2))


def test_rows_selected_joined_and_trimmed_hold_the_keys_a_dynamic_cache_would():
    torch.manual_seed(0)
    a = [(torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)) for _ in range(2)]
    b = [(torch.randn(2, 2, 7, 4), torch.randn(2, 2, 7, 4)) for _ in range(2)]
    both = joined(roomy_cache(a, 3), roomy_cache(b, 2), room=4)
    for layer, (ka, _), (kb, vb) in zip(both.layers, a, b):
        left_padded = torch.cat([torch.cat([ka.new_zeros(3, 2, 2, 4), ka], 2), kb])
        assert torch.equal(layer.keys, left_padded) and layer.room == 4
        assert torch.equal(layer.values[3:], vb)
    both.batch_select_indices(torch.tensor([1, 4]))
    for layer in both.layers:
        layer.drop_first(2)
    for layer, (ka, _), (kb, _) in zip(both.layers, a, b):
        assert torch.equal(layer.keys, torch.stack([ka[1], kb[1, :, 2:]]))
    both.batch_repeat_interleave(2)
    assert both.layers[0].keys.shape == (4, 2, 5, 4) and torch.equal(both.layers[0].keys[0], both.layers[0].keys[1])


def test_bytes_count_the_room():
    kv = [(torch.zeros(2, 3, 5, 4), torch.zeros(2, 3, 5, 4))]
    assert cache_bytes(roomy_cache(kv, 3)) == 2 * (2 * 3 * 8 * 4) * 4
    assert cache_bytes(DynamicCache(kv)) == 2 * (2 * 3 * 5 * 4) * 4
