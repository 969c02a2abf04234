"""Tokenize each paraphrase's whole prompt once and cut it into segments at character offsets.

Tokenizing the parts apart would change merges ("\n\n" is one token alone, two inside a prompt),
so the cut happens on the tokens of the whole prompt, and every segment must fall on token
boundaries. The shared parts (instruction, shots, suffix) must then be the same tokens in every
paraphrase's prompt; if they are not, fusion would mix different prompts, so it is an error.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left, bisect_right

from selfens.errors import SelfensError
from selfens.prompting.formats import Part
from selfens.prompting.segments import Segments


class PromptCutError(SelfensError, ValueError):
    """The prompt parts cannot be cut on token boundaries, or shared parts differ."""


# Cuts already made, per tokenizer: the cells of a study (or a config run again in one process)
# render the same prompts with one shared tokenizer, and tokenizing them is most of a set-up.
_CUTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CUTS_KEPT = 200_000  # prompts per tokenizer; past this the memo starts again


def cut(tokenizer, parts: list[Part], *, add_special_tokens: bool) -> list[list[int]]:
    """Token ids of each part, from one tokenization of the joined text (memoized per tokenizer)."""
    memo = _CUTS.setdefault(tokenizer, {})
    key = (tuple(parts), add_special_tokens)  # (a loaded tokenizer is not changed afterwards)
    if key not in memo:
        if len(memo) >= _CUTS_KEPT:
            memo.clear()
        memo[key] = _cut(tokenizer, parts, add_special_tokens=add_special_tokens)
    return [list(piece) for piece in memo[key]]  # copies: callers own their segments


def _cut(tokenizer, parts: list[Part], *, add_special_tokens: bool) -> list[list[int]]:
    text = "".join(t for _, t in parts)
    starts, pos = [], 0
    for _, t in parts:
        starts.append(pos)
        pos += len(t)
    enc = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    pieces: list[list[int]] = [[] for _ in parts]
    for token, (begin, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        if begin == end:
            # An added special token (BOS) belongs to the first part starting here, even an empty
            # instruction, so that it stays shared across paraphrases.
            index = min(bisect_left(starts, begin), len(parts) - 1)
        else:
            index = bisect_right(starts, begin) - 1  # the part holding `begin`: never an empty one
            part_end = starts[index] + len(parts[index][1])
            if end > part_end:
                after = bisect_right(starts, end - 1) - 1  # the part holding the token's last character
                raise PromptCutError(
                    f"token {tokenizer.convert_ids_to_tokens(token)!r} spans the boundary between the "
                    f"{parts[index][0]} (part {index}) and the {parts[after][0]} (part {after}) "
                    f"({text[begin:end]!r}); end the {parts[index][0]} with a separator (prompt: {text!r})"
                )
        pieces[index].append(token)
    return pieces


def encode_example(tokenizer, prompts: list[list[Part]], *, add_special_tokens: bool, example_id: str) -> Segments:
    """Segments of one example from the rendered prompts of its N paraphrases."""
    cuts = [cut(tokenizer, parts, add_special_tokens=add_special_tokens) for parts in prompts]
    kinds = [kind for kind, _ in prompts[0]]
    shared = [i for i, kind in enumerate(kinds) if kind != "block"]
    block = kinds.index("block")
    for k, pieces in enumerate(cuts[1:], start=1):
        for i in shared:
            if pieces[i] != cuts[0][i]:
                raise PromptCutError(
                    f"example {example_id}: the {kinds[i]} tokens of paraphrase {k} differ from those of "
                    f"paraphrase 0 ({pieces[i]} vs {cuts[0][i]}); the shared parts must tokenize identically"
                )
        if not pieces[block]:
            raise PromptCutError(f"example {example_id}: paraphrase {k} has no tokens")
    if not cuts[0][block]:
        raise PromptCutError(f"example {example_id}: paraphrase 0 has no tokens")
    first = cuts[0]
    return Segments(
        instruction=first[kinds.index("instruction")],
        shots=[first[i] for i, kind in enumerate(kinds) if kind == "shot"],
        blocks=[pieces[block] for pieces in cuts],
        suffix=first[kinds.index("suffix")],
    )
