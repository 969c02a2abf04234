"""Teacher forcing: a decode that is handed its tokens, to score a given continuation.

Every method decodes through one loop (`selfens.decoding.loop.decode`), whose `choose` picks the
next token from the fused logits. Handing it the continuation's tokens instead makes any method
score a continuation under the very distribution it would decode from: the sum of their
log-probabilities (`Decoded.logprobs`), and whether each was the most likely token.
"""

from __future__ import annotations

from torch import Tensor, tensor


class Forced:
    """The tokens each example of a batch must produce, and, once decoded, whether each was the
    argmax of what it was chosen from, per unit (an example decodes as `units` units: 1 when its
    rows are fused, N when each phrasing decodes alone)."""

    def __init__(self, tokens: list[list[int]]):
        if any(not t for t in tokens):
            raise ValueError("a forced continuation needs at least one token")
        self.tokens = tokens
        self.greedy: dict[int, list[bool]] = {}  # unit -> per token
        self.units = 1

    def rules(self, place: list[int], units: int) -> dict:
        """`decode`'s choose and stop for a decode whose i-th example is unit `place[i]` (unit u
        belongs to example u // units)."""
        self.units = units
        of = lambda unit: self.tokens[unit // units]  # noqa: E731

        def choose(logits: Tensor, examples: Tensor) -> Tensor:  # [A, V], [A] -> [A]
            chosen = [place[i] for i in examples.tolist()]
            picks = [of(u)[len(self.greedy.setdefault(u, []))] for u in chosen]
            for u, pick, top in zip(chosen, picks, logits.argmax(-1).tolist()):
                self.greedy[u].append(pick == top)
            return tensor(picks, device=logits.device)

        stop = lambda i, generated: len(generated) >= len(of(place[i]))  # noqa: E731
        return {"choose": choose, "stop": stop, "max_new_tokens": max(len(t) for t in self.tokens), "eos_ids": []}

    def greedy_units(self, example: int) -> list[bool]:
        """Per unit of `example`: every forced token was the most likely one."""
        return [all(self.greedy[example * self.units + k]) for k in range(self.units)]
