"""Greedy decoding with a KV cache, for one prompt per row or N fused rows per example.

One loop serves every method: rows are grouped `rows_per_example` at a time, the logits of a
group are fused into one next token, and that token is appended to every row of the group.
`origin` and `per_prompt` use groups of one; logit fusion groups the N paraphrases of an example;
attention fusion packs them into one row and may fuse the prefill logits at N positions.
"""

from __future__ import annotations

import operator
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, fields
from typing import Callable, Optional

import torch
from torch import Tensor

from selfens.attention.layers import full_cache, model_mask
from selfens.attention.masks import decode_mask
from selfens.attention.positions import next_position, sequential_positions
from selfens.kv_cache import cache_bytes, joined, roomy_cache
from selfens.padding import left_pad

Fuse = Callable[[Tensor, Tensor], Tensor]  # (logits [A, G, V], example ids [A]) -> [A, V]
Choose = Callable[[Tensor, Tensor], Tensor]  # (fused logits [A, V], example ids [A]) -> next token ids [A]
Stop = Callable[[int, list[int]], bool]  # (example index, generated ids) -> done?


def first_row(logits: Tensor, examples: Optional[Tensor] = None) -> Tensor:
    """No fusion: the logits of a group's only row. [B, 1, V] -> [B, V]."""
    return logits[:, 0]


def greedy(logits: Tensor, examples: Optional[Tensor] = None) -> Tensor:
    """The most likely token. [B, V] -> [B]."""
    return logits.argmax(-1)


def _warped(logits: Tensor, temperature: float, top_k: int, top_p: float) -> tuple[Tensor, Tensor]:
    """(probs, token ids), each [B, V'], of softmax(logits / temperature) restricted to the top_k
    tokens (0: all) and then to the smallest set whose probability reaches top_p (transformers'
    order of warpers); sorted by probability, descending."""
    if 0 < top_k < logits.shape[-1]:
        values, index = logits.topk(top_k, dim=-1)  # sorted, descending
    else:
        values, index = logits.sort(dim=-1, descending=True)
    probs = (values / temperature).softmax(-1)
    if top_p < 1.0:
        before = probs.cumsum(-1) - probs  # mass of the more likely tokens
        probs = probs.masked_fill(before >= top_p, 0.0)  # keeps the token that crosses top_p
    return probs, index


def sampler(
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, generator: Optional[torch.Generator] = None
) -> Choose:
    """Sample every row from one `generator` (see `_warped` for the distribution)."""

    def sample(logits: Tensor, examples: Optional[Tensor] = None) -> Tensor:  # [B, V] -> [B]
        probs, index = _warped(logits, temperature, top_k, top_p)
        choice = torch.multinomial(probs, 1, generator=generator)  # [B, 1]
        return index.gather(-1, choice).squeeze(-1)

    return sample


def seeded_sampler(temperature: float, top_k: int, top_p: float, seeds: list[int]) -> Choose:
    """Sample example b from its own generator, seeded with seeds[b]: what it draws does not depend
    on which other examples share its batch, or when they stop."""
    generators: dict[int, torch.Generator] = {}

    def sample(logits: Tensor, examples: Tensor) -> Tensor:  # [A, V], [A] -> [A]
        probs, index = _warped(logits, temperature, top_k, top_p)
        choices = []
        for row, b in enumerate(examples.tolist()):
            if b not in generators:
                generators[b] = torch.Generator(device=logits.device).manual_seed(seeds[b])
            choices.append(torch.multinomial(probs[row : row + 1], 1, generator=generators[b]))
        return index.gather(-1, torch.cat(choices)).squeeze(-1)

    return sample


@dataclass
class Prompt:
    """What the model reads at prefill, R rows: everything decoding needs to know about how the rows
    are laid out comes in here (packed prompts: from `selfens.attention`).

    With a `prefix`, every row starts with the same tokens: the prefix (one row, P tokens) is
    prefilled once, or its KV taken from a `PrefixCache`, and shared by all R rows; the rows here
    are what follows it, and `attention_mask` covers the prefix's keys and theirs.
    """

    input_ids: Tensor  # [R, L]
    valid: Tensor  # [R, L] bool: real tokens (False on padding)
    position_ids: Tensor  # [R, L]
    attention_mask: object  # [R, P+L] padding mask (causal implied), or [R, 1, L, P+L] bool, or a BlockMask
    logit_positions: Optional[Tensor] = None  # [R, Q] where the prefill's next-token logits are read; None: the last
    prefix: Optional[Prompt] = None  # one row of P tokens that every row starts with
    key: Optional[Hashable] = None  # a prefix's identity (tokens, positions, mask) for the PrefixCache

    @classmethod
    def left_padded(cls, input_ids: Tensor, valid: Tensor) -> Prompt:
        """Independent prompts: positions count the real tokens of each row, as `generate` does."""
        return cls(input_ids, valid, sequential_positions(valid), attention_mask=valid.long())

    @classmethod
    def with_prefix(cls, prefix: list[int], rests: list[list[int]], pad_id: int) -> Prompt:
        """Single prompts `prefix + rest` that share `prefix`: the rests left-padded after it."""
        prefix_ids = torch.tensor(prefix, dtype=torch.long)[None]  # [1, P]
        shared = cls.left_padded(prefix_ids, torch.ones_like(prefix_ids, dtype=torch.bool))
        shared.key = ("causal", tuple(prefix))
        ids, valid = left_pad(rests, pad_id)
        positions = (sequential_positions(valid) + len(prefix)).masked_fill(~valid, 0)
        mask = torch.cat([valid.new_ones(len(rests), len(prefix)), valid], dim=-1).long()
        return cls(ids, valid, positions, attention_mask=mask, prefix=shared)

    @property
    def key_valid(self) -> Tensor:
        """[R, P+L]: which keys are real once prefilled, the prefix's included."""
        if self.prefix is None:
            return self.valid
        return torch.cat([self.prefix.valid.expand(self.valid.shape[0], -1), self.valid], dim=-1)

    @property
    def key_positions(self) -> Tensor:
        """[R, P+L]: the position ids of the keys once prefilled, the prefix's included."""
        if self.prefix is None:
            return self.position_ids
        return torch.cat([self.prefix.position_ids.expand(self.valid.shape[0], -1), self.position_ids], dim=-1)

    def to(self, device) -> Prompt:
        move = lambda t: t.to(device) if isinstance(t, Tensor) else t
        prefix = self.prefix.to(device) if self.prefix is not None else None
        return Prompt(
            *(move(t) for t in (self.input_ids, self.valid, self.position_ids, self.attention_mask)),
            logit_positions=move(self.logit_positions),
            prefix=prefix,
            key=self.key,
        )

    def select(self, rows: list[int]) -> Prompt:
        """Some rows of the prompt, without the columns that are padding in all of them (a padding
        mask or a dense 4D mask; a BlockMask cannot be cut)."""
        mask = self.attention_mask
        if not isinstance(mask, Tensor):
            raise ValueError("select() needs a tensor mask (a padding mask or a dense 4D mask), not a BlockMask")
        valid = self.valid[rows]
        keep = valid.any(0).nonzero().squeeze(-1)  # [L']
        p = mask.shape[-1] - self.valid.shape[-1]  # the prefix's keys
        key_cols = torch.cat([torch.arange(p, device=keep.device), keep + p])
        mask = mask[rows][..., key_cols]
        if mask.dim() == 4:  # [r, 1, L, P+L]: the queries are the kept columns too
            mask = mask[:, :, keep]
        logit_positions = self.logit_positions
        if logit_positions is not None:  # a kept column's new index
            logit_positions = torch.searchsorted(keep, logit_positions[rows])
        return Prompt(
            self.input_ids[rows][:, keep],
            valid[:, keep],
            self.position_ids[rows][:, keep],
            attention_mask=mask,
            logit_positions=logit_positions,
            prefix=self.prefix,
            key=self.key,
        )


class PrefixCache:
    """The KV of recently prefilled prefixes (one row each), keyed by what determines it; least
    recently used first out, at most `size` of them."""

    def __init__(self, size: int = 32):
        self.size, self.entries = size, OrderedDict()

    def get(self, key: Hashable):
        if key is None or key not in self.entries:
            return None
        self.entries.move_to_end(key)
        return self.entries[key]

    def put(self, key: Hashable, kv) -> None:
        if key is None or self.size < 1:
            return
        self.entries[key] = kv
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)


class PrefillMemo:
    """The prefills of whole prompts, for a later decode of equal prompts: a weighted method's greedy
    confidence pass prefills the very prompts its fused decode then reads, and the second decode
    takes the first one's logits and KV instead of running the prompts again (the same tensors, so
    the same answers). An entry is a whole prompt's KV: keep a memo only as long as its prompts
    may come again (one batch). At most `max_rows` prompt rows are kept (None: all); a prompt that
    would pass that is run as usual and not kept."""

    def __init__(self, max_rows: Optional[int] = None):
        self.max_rows, self.rows = max_rows, 0
        self.entries: dict[Hashable, tuple[Tensor, object]] = {}

    @staticmethod
    def key(prompt: Prompt) -> Optional[Hashable]:
        """What determines a prompt's prefill: its tokens, positions, mask and prefix. None: a prompt
        this memo does not keep (a BlockMask, or a prefix with no key)."""
        if not isinstance(prompt.attention_mask, Tensor) or (prompt.prefix is not None and prompt.prefix.key is None):
            return None
        tensors = (prompt.input_ids, prompt.valid, prompt.position_ids, prompt.attention_mask, prompt.logit_positions)
        contents = tuple(
            None if t is None else (tuple(t.shape), str(t.dtype), t.detach().cpu().numpy().tobytes()) for t in tensors
        )
        return (prompt.prefix.key if prompt.prefix is not None else None, contents)

    def get(self, key: Optional[Hashable]):
        return None if key is None else self.entries.get(key)

    def put(self, key: Optional[Hashable], logits: Tensor, cache) -> None:
        rows = logits.shape[0]
        if key is None or key in self.entries or (self.max_rows is not None and self.rows + rows > self.max_rows):
            return
        self.entries[key], self.rows = (logits, cache), self.rows + rows


@dataclass
class DecodeCost:
    """What a decode costs, summed over calls."""

    prefill_tokens: int = 0
    """Real (non-padding) tokens run at prefill; a prefix taken from the PrefixCache is not run."""
    prefill_padded_tokens: int = 0
    """Tokens run at prefill, padding included: what the model computed."""
    forward_calls: int = 0
    decode_steps: int = 0
    row_steps: int = 0
    """Rows decoded, summed over decode steps (finished rows are dropped)."""
    seconds: float = 0.0
    peak_kv_bytes: int = 0
    """The largest KV cache held (max over calls, not summed)."""

    def add(self, other: DecodeCost) -> None:
        for f in fields(self):
            combine = max if f.name == "peak_kv_bytes" else operator.add
            setattr(self, f.name, combine(getattr(self, f.name), getattr(other, f.name)))


@dataclass
class Decoded:
    tokens: list[list[int]]  # per example: generated ids, without the EOS that stopped it
    # Per example: softmax of the fused scores at each generated token; for a single prompt, the
    # model's probability of its own token (the cheap confidence measure).
    token_probs: list[list[float]]
    cost: DecodeCost = field(default_factory=DecodeCost)

    def reordered(self, order: list[int]) -> Decoded:
        """The examples put back in another order: position i of the decode answered `order[i]`, in
        units of len(tokens) // len(order) decoded examples (e.g. an example's N single prompts)."""
        units = len(self.tokens) // len(order)
        place = [order[i // units] * units + i % units for i in range(len(self.tokens))]
        tokens, token_probs = [None] * len(place), [None] * len(place)
        for i, j in enumerate(place):
            tokens[j], token_probs[j] = self.tokens[i], self.token_probs[i]
        return Decoded(tokens, token_probs, self.cost)


def decode_order(groups: list[list[int]]) -> list[int]:
    """The examples of `groups` in the order a decode of one prompt per group numbers them."""
    return [b for group in groups for b in group]


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

    cache: object  # a roomy cache (`selfens.kv_cache`), [R, H, K, D] a layer, with room for `room` more keys
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
        self.valid = torch.cat([_pad_left(self.valid, length, 1), _pad_left(other.valid, length, 1)])
        self.key_positions = torch.cat(
            [_pad_left(self.key_positions, length, 1), _pad_left(other.key_positions, length, 1)]
        )
        self.position = torch.cat([self.position, other.position])

    def step(self, model, token: Tensor) -> Tensor:
        """One decode step: `token` [R, 1] goes in at each row's position -> next-token logits [R, V]."""
        self.valid = torch.cat([self.valid, self.valid.new_ones(self.rows, 1)], dim=-1)
        self.key_positions = torch.cat([self.key_positions, self.position], dim=-1)
        logits, self.cache = decode_one_token(model, token, self.position, self.valid, self.cache, self.key_positions)
        self.position = self.position + 1
        return logits


def _pad_left(t: Tensor, length: int, dim: int) -> Tensor:
    """`t` left-padded with zeros (False) along `dim` to `length`."""
    missing = length - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


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
        chosen = fused.softmax(-1).gather(-1, next_token.unsqueeze(-1)).squeeze(-1)  # [A]
        finished = torch.isin(next_token, eos)
        for i, b in enumerate(alive.tolist()):
            if finished[i]:
                continue
            generated[b].append(int(next_token[i]))
            probs[b].append(float(chosen[i]))
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
    return Decoded(generated, probs, cost)


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
