"""What a decode returns: each example's tokens and their probabilities, what it cost, and the order
in which a decode numbers the examples of prefix groups."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field, fields
from typing import Optional


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
    # Per example: the log-softmax of the fused scores at each generated token (exact where the
    # probability underflows); None: taken from `token_probs`.
    token_logprobs: Optional[list[list[float]]] = None

    def logprobs(self) -> list[tuple[float, int]]:
        """Per example: (the sum of the log-probabilities of its generated tokens, their count), under
        the distribution each token was chosen from (the model's for one prompt; the fused one)."""
        if self.token_logprobs is not None:
            return [(math.fsum(lps), len(lps)) for lps in self.token_logprobs]
        # A probability that underflowed to 0 in float32 counts as the smallest one, not as -inf (JSON).
        return [(math.fsum(math.log(max(p, 1e-45)) for p in probs), len(probs)) for probs in self.token_probs]

    def reordered(self, order: list[int]) -> Decoded:
        """The examples put back in another order: position i of the decode answered `order[i]`, in
        units of len(tokens) // len(order) decoded examples (e.g. an example's N single prompts)."""
        place = placed(order, len(self.tokens) // len(order))

        def put(values: Optional[list]) -> Optional[list]:
            if values is None:
                return None
            out = [None] * len(place)
            for i, j in enumerate(place):
                out[j] = values[i]
            return out

        return Decoded(put(self.tokens), put(self.token_probs), self.cost, put(self.token_logprobs))


def decode_order(groups: list[list[int]]) -> list[int]:
    """The examples of `groups` in the order a decode of one prompt per group numbers them."""
    return [b for group in groups for b in group]


def placed(order: list[int], units: int) -> list[int]:
    """Where each decoded example belongs: decode position i answered unit i % units of example
    `order[i // units]` (e.g. an example's N single prompts are its units)."""
    return [order[i // units] * units + i % units for i in range(len(order) * units)]
