"""How the next token is chosen from (fused) logits: greedy, or sampled from the warped distribution.

Every sampler draws a group of rows (their owner: all rows, one example, one prompt's copies) with
one `torch.multinomial` call on the owner's generator, so what a row draws does not depend on which
other owners share its batch, or when they stop.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

Choose = Callable[[Tensor, Tensor], Tensor]  # (fused logits [A, V], example ids [A]) -> next token ids [A]


def greedy(logits: Tensor, examples: Optional[Tensor] = None) -> Tensor:
    """The most likely token. [B, V] -> [B]."""
    return logits.argmax(-1)


def warped(logits: Tensor, temperature: float, top_k: int, top_p: float) -> tuple[Tensor, Tensor]:
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


def _owned_sampler(
    temperature: float,
    top_k: int,
    top_p: float,
    owners: Callable[[Tensor], Tensor],
    generator: Callable[[int, torch.device], Optional[torch.Generator]],
) -> Choose:
    """Rows of consecutive equal `owners(examples)` are drawn together from `generator(owner, device)`."""

    def sample(logits: Tensor, examples: Optional[Tensor] = None) -> Tensor:  # [A, V], [A] -> [A]
        if examples is None:
            examples = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        probs, index = warped(logits, temperature, top_k, top_p)
        groups, counts = torch.unique_consecutive(owners(examples), return_counts=True)
        choices = [
            torch.multinomial(rows, 1, generator=generator(g, logits.device))
            for g, rows in zip(groups.tolist(), probs.split(counts.tolist()))
        ]
        return index.gather(-1, torch.cat(choices)).squeeze(-1)

    return sample


def sampler(
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, generator: Optional[torch.Generator] = None
) -> Choose:
    """Sample every row from one `generator` (see `warped` for the distribution)."""
    return _owned_sampler(temperature, top_k, top_p, torch.zeros_like, lambda owner, device: generator)


def seeded_sampler(temperature: float, top_k: int, top_p: float, seeds: list[int]) -> Choose:
    """Sample example b from its own generator, seeded with seeds[b]."""
    generators: dict[int, torch.Generator] = {}

    def generator(b: int, device: torch.device) -> torch.Generator:
        if b not in generators:
            generators[b] = torch.Generator(device=device).manual_seed(seeds[b])
        return generators[b]

    return _owned_sampler(temperature, top_k, top_p, lambda examples: examples, generator)


def per_prompt_sampler(
    temperature: float, top_k: int, top_p: float, generators: list[torch.Generator], copies: int
) -> Choose:
    """Sample example b, copy b % copies of prompt b // copies, from its prompt's generator: a
    prompt's alive copies are drawn in order with one call, as `sampler` draws them when that prompt
    is decoded alone, so its samples do not depend on which prompts share its batch."""

    def owners(examples: Tensor) -> Tensor:
        prompts = examples // copies
        if bool((prompts.diff() < 0).any()):  # a prompt split in two runs would draw twice
            raise ValueError("per_prompt_sampler needs the examples in order (a prompt's copies together)")
        return prompts

    return _owned_sampler(temperature, top_k, top_p, owners, lambda prompt, device: generators[prompt])
