"""The caches of the decode: the KV cache that decode steps write into in place, the KV of shared
prefixes (`PrefixCache`) and whole prompts' prefills kept for a second decode (`PrefillMemo`).

The in-place KV cache:

transformers' `DynamicLayer` appends a step's key with `torch.cat`, which copies every row's whole
cache on every step: at 64 rows of ~150 keys that is ~560 MB a step for SmolLM2-135M, and a step's
cost grows with rows x keys. Here each layer's keys and values live in buffers with room for more
keys, and the model sees views of their filled part: a step writes one column. The views hold the
same numbers a `DynamicLayer` would, so attention computes the same logits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from functools import cache
from typing import Optional

from torch import Tensor

from selfens.decoding.prompt import Prompt


def _buffer(parts: list[Tensor], length: int, room: int) -> Tensor:
    """The rows of `parts` (each [r, H, k, D], k <= length) stacked in one buffer
    [sum r, H, length + room, D], each part's keys right-aligned to end at `length`. The columns to
    their left are padding, which masks never attend, zeroed: a masked score must still be finite.
    The room is left as allocated: a step writes a column before any view covers it."""
    rows = sum(p.shape[0] for p in parts)
    _, heads, _, dim = parts[0].shape
    buffer = parts[0].new_empty(rows, heads, length + room, dim)
    start = 0
    for part in parts:
        end, first = start + part.shape[0], length - part.shape[2]
        buffer[start:end, :, :first] = 0
        buffer[start:end, :, first:length] = part
        start = end
    return buffer


@cache
def _roomy_layer():
    from transformers.cache_utils import DynamicLayer  # here: importing selfens does not load transformers

    class RoomyLayer(DynamicLayer):
        """One layer's cache: `keys`/`values` are [R, H, K, D] views of the first K columns of
        buffers [R, H, K + room, D]."""

        def __init__(self, key_buffer: Tensor, value_buffer: Tensor, length: int):
            super().__init__()
            self.device, self.is_initialized = key_buffer.device, True
            self.key_buffer, self.value_buffer, self.length = key_buffer, value_buffer, length
            self._refresh()

        def _refresh(self) -> None:
            self.keys = self.key_buffer[:, :, : self.length]
            self.values = self.value_buffer[:, :, : self.length]

        @property
        def room(self) -> int:
            return self.key_buffer.shape[2] - self.length

        @property
        def nbytes(self) -> int:
            """Bytes the buffers hold, room included."""
            return sum(t.numel() * t.element_size() for t in (self.key_buffer, self.value_buffer))

        def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
            new = key_states.shape[2]
            if new > self.room:  # more keys than planned for: grow, doubling
                more = max(new, self.length)
                self.key_buffer = _buffer([self.keys], self.length, more)
                self.value_buffer = _buffer([self.values], self.length, more)
            self.key_buffer[:, :, self.length : self.length + new] = key_states
            self.value_buffer[:, :, self.length : self.length + new] = value_states
            self.length += new
            self._refresh()
            return self.keys, self.values

        def batch_select_indices(self, indices: Tensor) -> None:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self._refresh()

        def batch_repeat_interleave(self, repeats: int) -> None:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._refresh()

        def drop_first(self, columns: int) -> None:
            """Forget the first `columns` keys (padding in every row): a view, nothing is copied."""
            self.key_buffer, self.value_buffer = self.key_buffer[:, :, columns:], self.value_buffer[:, :, columns:]
            self.length -= columns
            self._refresh()

    return RoomyLayer


def _cache(layers: list):
    from transformers import DynamicCache

    kv_cache = DynamicCache()
    kv_cache.layers = layers
    return kv_cache


def roomy_cache(kv: list[tuple[Tensor, Tensor]], room: int):
    """A cache of layers (keys, values), each [R, H, K, D], with room for `room` more keys a layer."""
    length = kv[0][0].shape[2]
    layer = _roomy_layer()
    return _cache([layer(_buffer([k], length, room), _buffer([v], length, room), length) for k, v in kv])


def joined(first, second, room: int):
    """The rows of two roomy caches, `first`'s then `second`'s, in one cache with room for `room`
    more keys; the shorter side's keys are left-padded."""
    length = max(first.layers[0].length, second.layers[0].length)
    layer = _roomy_layer()
    return _cache(
        [
            layer(_buffer([a.keys, b.keys], length, room), _buffer([a.values, b.values], length, room), length)
            for a, b in zip(first.layers, second.layers)
        ]
    )


def cache_bytes(kv_cache) -> int:
    """Bytes a cache holds: a roomy layer's buffers, room included; another layer's keys and values."""
    return sum(
        layer.nbytes
        if hasattr(layer, "nbytes")
        else sum(t.numel() * t.element_size() for t in (layer.keys, layer.values))
        for layer in kv_cache.layers
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
