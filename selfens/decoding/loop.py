"""Greedy decoding with a KV cache, for one prompt per row or N fused rows per example.

One loop serves every method: rows are grouped `rows_per_example` at a time, the logits of a
group are fused into one next token, and that token is appended to every row of the group.
`origin` and `per_prompt` use groups of one; logit fusion groups the N paraphrases of an example;
attention fusion packs them into one row and may fuse the prefill logits at N positions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from selfens.attention.layers import full_cache, model_mask
from selfens.attention.masks import decode_mask
from selfens.attention.positions import next_position
from selfens.decoding.caches import PrefillMemo, PrefixCache, cache_bytes, joined, roomy_cache
from selfens.decoding.prompt import Prompt, pad_left
from selfens.decoding.result import DecodeCost, Decoded
from selfens.decoding.sampling import Choose, greedy

Fuse = Callable[[Tensor, Tensor], Tensor]  # (logits [A, G, V], example ids [A]) -> [A, V]
Stop = Callable[[int, list[int]], bool]  # (example index, generated ids) -> done?


def first_row(logits: Tensor, examples: Optional[Tensor] = None) -> Tensor:
    """No fusion: the logits of a group's only row. [B, 1, V] -> [B, V]."""
    return logits[:, 0]


def prefill(
    model,
    prompt: Prompt,
    prefix_cache: Optional[PrefixCache] = None,
    cost: Optional[DecodeCost] = None,
    memo: Optional[PrefillMemo] = None,
):
    """Run the prompt once and keep the logits at its `logit_positions` ([R, Q]; default: the last).
    A prefix is run once for all rows, or its KV taken from `prefix_cache`; what runs is added to `cost`.
    A prompt in `memo` is not run at all (its entry is returned); one that runs is added to it.

    Returns (logits [R, Q, V], cache). The cache is not changed by decoding (`roomy_cache` copies it).
    """
    cost = cost if cost is not None else DecodeCost()
    key = PrefillMemo.key(prompt) if memo is not None else None
    found = memo.get(key) if memo is not None else None
    if found is not None:
        return found
    cache = None
    if prompt.prefix is not None:
        kv = prefix_cache.get(prompt.prefix.key) if prefix_cache is not None else None
        if kv is None:
            out = _forward(model, prompt.prefix, cost, logits_to_keep=1, cache=full_cache())
            kv = [(layer.keys, layer.values) for layer in out.cache.layers]  # each [1, H, P, D]
            if prefix_cache is not None:
                prefix_cache.put(prompt.prefix.key, kv)
        from transformers import DynamicCache

        rows = prompt.input_ids.shape[0]
        # A view per row: the rows' own keys are concatenated to it, so the prefix is never copied.
        # No config: every layer keeps all its keys (sliding windows are in the masks).
        cache = DynamicCache([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in kv])
    logit_positions = prompt.logit_positions
    if logit_positions is None:
        keep, index = 1, None
    else:
        # logits_to_keep takes one list of positions for all rows: keep their union, then gather.
        keep = torch.unique(logit_positions)
        index = torch.searchsorted(keep, logit_positions)
    out = _forward(model, prompt, cost, logits_to_keep=keep, cache=cache if cache is not None else full_cache())
    logits = out.logits  # [R, Q or 1, V]
    if index is not None:
        logits = logits.gather(1, index.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    logits = logits.float()
    if memo is not None:
        memo.put(key, logits, out.cache)
    return logits, out.cache


def _forward(model, prompt: Prompt, cost: DecodeCost, logits_to_keep, cache=None):
    cost.prefill_tokens += int(prompt.valid.sum())
    cost.prefill_padded_tokens += prompt.valid.numel()
    cost.forward_calls += 1
    return model(
        input_ids=prompt.input_ids,
        attention_mask=model_mask(model, prompt.attention_mask, prompt.position_ids, prompt.key_positions),
        position_ids=prompt.position_ids,
        cache=cache,
        use_cache=True,
        logits_to_keep=logits_to_keep,
    )


def decode_one_token(model, token: Tensor, position: Tensor, valid: Tensor, cache, key_positions: Tensor):
    """One step for every row. token, position: [R, 1]; valid, key_positions: [R, K] keys incl. the new one."""
    # Positions are explicit because RoPE must not take the cache length.
    mask = model_mask(model, decode_mask(valid), position, key_positions)
    out = model(input_ids=token, attention_mask=mask, position_ids=position, cache=cache, use_cache=True)
    return out.logits[:, -1].float(), out.cache  # [R, V]


@dataclass
class _Running:
    """The rows decoding together, left-padded to one key length: their KV cache, which of their
    keys are real and at which positions, and the position each row's next token takes."""

    cache: object  # a roomy cache (`selfens.decoding.caches`), [R, H, K, D] a layer, with room for `room` more keys
    valid: Tensor  # [R, K]
    key_positions: Tensor  # [R, K]
    position: Tensor  # [R, 1]
    room: int  # keys a row may add while decoding (max_new_tokens): the room a cache is given when rows join

    @property
    def rows(self) -> int:
        return self.valid.shape[0]

    def keep(self, rows: Tensor) -> None:
        """Keep the rows where `rows` [R] is True; the key columns that are padding in every row
        left go too (they were some finished row's longer prompt)."""
        index = rows.nonzero().flatten()
        self.cache.batch_select_indices(index)
        self.valid, self.key_positions, self.position = (
            self.valid[index],
            self.key_positions[index],
            self.position[index],
        )
        first = int(self.valid.any(0).long().argmax())
        if first:
            for layer in self.cache.layers:
                layer.drop_first(first)
            self.valid, self.key_positions = self.valid[:, first:], self.key_positions[:, first:]

    def extend(self, other: _Running) -> None:
        """Add `other`'s rows after these: the shorter side's keys are left-padded (masked: never attended)."""
        length = max(self.valid.shape[1], other.valid.shape[1])
        self.cache = joined(self.cache, other.cache, max(self.room, other.room))
        self.valid = torch.cat([pad_left(self.valid, length, 1), pad_left(other.valid, length, 1)])
        self.key_positions = torch.cat(
            [pad_left(self.key_positions, length, 1), pad_left(other.key_positions, length, 1)]
        )
        self.position = torch.cat([self.position, other.position])

    def step(self, model, token: Tensor) -> Tensor:
        """One decode step: `token` [R, 1] goes in at each row's position -> next-token logits [R, V]."""
        self.valid = torch.cat([self.valid, self.valid.new_ones(self.rows, 1)], dim=-1)
        self.key_positions = torch.cat([self.key_positions, self.position], dim=-1)
        logits, self.cache = decode_one_token(model, token, self.position, self.valid, self.cache, self.key_positions)
        self.position = self.position + 1
        return logits


class _Waiting:
    """The examples of a list of prompts not yet decoding, in order. An entry is one example's
    `group` rows of a prompt; prefilled, it decodes as `copies` examples."""

    def __init__(self, prompts: list[Prompt], group: int, copies: int):
        self.prompts, self.group, self.copies = prompts, group, copies
        self.entries = [p.input_ids.shape[0] // group for p in prompts]
        self.prompt, self.entry, self.next_id = 0, 0, 0  # the next entry to take, and its first example id

    @property
    def total(self) -> int:
        """Examples in all: every entry's copies."""
        return sum(self.entries) * self.copies

    def take(self, free_rows: Optional[int], must: bool) -> list[tuple[Prompt, Tensor]]:
        """Prompts of the next entries that fit in `free_rows` (None: all), each with its examples'
        ids; with `must`, at least one entry, even one that does not fit."""
        taken, rows = [], self.group * self.copies  # rows an entry decodes as
        while self.prompt < len(self.prompts):
            prompt, left = self.prompts[self.prompt], self.entries[self.prompt] - self.entry
            fit = left if free_rows is None else max(0, min(left, free_rows // rows))
            if not _selectable(prompt) and fit < left:
                fit = left if self.entry == 0 and must and not taken else 0  # a BlockMask prompt goes whole
            if fit == 0 and must and not taken:
                fit = 1
            if fit == 0:
                break
            chosen = range(self.entry * self.group, (self.entry + fit) * self.group)
            part = prompt if fit == self.entries[self.prompt] else prompt.select(list(chosen))
            ids = torch.arange(self.next_id, self.next_id + fit * self.copies)
            taken.append((part, ids))
            self.next_id += fit * self.copies
            self.entry += fit
            if free_rows is not None:
                free_rows -= fit * rows
            if self.entry == self.entries[self.prompt]:
                self.prompt, self.entry = self.prompt + 1, 0
        return taken


def _selectable(prompt: Prompt) -> bool:
    return isinstance(prompt.attention_mask, Tensor)


@torch.inference_mode()
def decode(
    model,
    prompts: Prompt | Sequence[Prompt],
    *,
    max_new_tokens: int,
    eos_ids: list[int],
    stop: Optional[Stop] = None,
    rows_per_example: int = 1,
    fuse: Fuse = first_row,
    fuse_first: Optional[Fuse] = None,
    choose: Choose = greedy,
    copies: int = 1,
    prefix_cache: Optional[PrefixCache] = None,
    max_rows: Optional[int] = None,
    prefill_memo: Optional[PrefillMemo] = None,
) -> Decoded:
    """Decoding of the examples of `prompts` (greedy unless `choose` samples), each example being
    `rows_per_example` rows of a prompt; examples are numbered across the prompts, in order.

    Step 0 fuses the prefill logits at the prompt's `logit_positions` ([R, P], default the last one),
    viewed as [B, rows_per_example * P, V], with `fuse_first` (default `fuse`); later steps fuse
    [B, rows_per_example, V] with `fuse`. An example stops at an EOS id, when `stop` says so, or
    after `max_new_tokens`.

    At most `max_rows` rows decode at once (None: every example from the start): when examples
    stop, the next waiting ones are prefilled and join the others' decode steps (continuous
    batching). Rows of different prompts, so of different prefixes, decode together, each
    attending to its own keys (left-padded). A prompt with a FlexAttention BlockMask joins whole.

    `copies` > 1 decodes each prompt row that many times after one prefill (the cache is repeated,
    not recomputed): for sampling several answers of a prompt. Examples are then ordered
    prompt-major: example b is copy b % copies of row b // copies; a row's copies join together.

    A prompt's prefix KV is looked up in, and added to, `prefix_cache`; a whole prompt's prefill in
    `prefill_memo` (see `PrefillMemo`).
    """
    if copies > 1 and rows_per_example != 1:
        raise ValueError("copies > 1 decodes independent rows: it needs rows_per_example == 1")
    start = time.perf_counter()
    group = rows_per_example
    waiting = _Waiting([prompts] if isinstance(prompts, Prompt) else list(prompts), group, copies)
    eos = torch.tensor(eos_ids, device=waiting.prompts[0].input_ids.device, dtype=torch.long)
    cost = DecodeCost()
    generated: list[list[int]] = [[] for _ in range(waiting.total)]
    probs: list[list[float]] = [[] for _ in range(waiting.total)]
    logprobs: list[list[float]] = [[] for _ in range(waiting.total)]
    running: Optional[_Running] = None
    alive, fused = None, None  # [A] examples decoding, in row-group order; [A, V] their next logits
    while True:
        free = None if max_rows is None else max_rows - (running.rows if running is not None else 0)
        for part, ids in waiting.take(free, must=running is None):
            newcomers, first = _prefill_part(model, part, copies, prefix_cache, cost, max_new_tokens, prefill_memo)
            ids = ids.to(eos.device)
            first = (fuse_first or fuse)(first.reshape(len(ids), -1, first.shape[-1]), ids)  # [n, V]
            if running is None:
                running, alive, fused = newcomers, ids, first
            else:
                running.extend(newcomers)
                alive, fused = torch.cat([alive, ids]), torch.cat([fused, first])
            cost.peak_kv_bytes = max(cost.peak_kv_bytes, cache_bytes(running.cache))
        if running is None:
            break
        next_token = choose(fused, alive)  # [A]
        # log-softmax of the chosen token only (exact when tiny), and its probability
        chosen_log = fused.gather(-1, next_token.unsqueeze(-1)).squeeze(-1) - fused.logsumexp(-1)  # [A]
        chosen = chosen_log.exp()
        finished = torch.isin(next_token, eos)
        for i, b in enumerate(alive.tolist()):
            if finished[i]:
                continue
            generated[b].append(int(next_token[i]))
            probs[b].append(float(chosen[i]))
            logprobs[b].append(float(chosen_log[i]))
            if len(generated[b]) == max_new_tokens or (stop is not None and stop(b, generated[b])):
                finished[i] = True
        if bool(finished.all()):
            running = None
            continue
        if bool(finished.any()):
            # Drop finished examples' rows from the batch and the cache: no work on what is done.
            keep = ~finished
            running.keep(keep.repeat_interleave(group))
            alive, next_token = alive[keep], next_token[keep]
        token = next_token.repeat_interleave(group).unsqueeze(-1)  # [A*G, 1]
        logits = running.step(model, token)
        cost.forward_calls += 1
        cost.decode_steps += 1
        cost.row_steps += token.shape[0]
        cost.peak_kv_bytes = max(cost.peak_kv_bytes, cache_bytes(running.cache))
        fused = fuse(logits.view(len(alive), group, -1), alive)
    cost.seconds = time.perf_counter() - start
    return Decoded(generated, probs, cost, logprobs)


def _prefill_part(
    model, prompt: Prompt, copies: int, prefix_cache, cost: DecodeCost, room: int, memo: Optional[PrefillMemo] = None
) -> tuple[_Running, Tensor]:
    """Prefill some prompt rows, each repeated `copies` times -> (the rows, ready to decode, with
    room for `room` more keys; their first logits [R * copies, Q, V])."""
    logits, cache = prefill(model, prompt, prefix_cache, cost, memo)  # [R, Q, V]
    cache = roomy_cache([(layer.keys, layer.values) for layer in cache.layers], room)
    position = next_position(prompt.position_ids, prompt.valid).unsqueeze(-1)  # [R, 1]
    valid, key_positions = prompt.key_valid, prompt.key_positions  # [R, K]
    if copies > 1:
        cache.batch_repeat_interleave(copies)
        logits, position, valid, key_positions = (
            t.repeat_interleave(copies, dim=0) for t in (logits, position, valid, key_positions)
        )
    return _Running(cache, valid, key_positions, position, room), logits
