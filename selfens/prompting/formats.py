"""Prompt formats (data, in one place) and rendering of a prompt into named parts.

A prompt is instruction, shots, one paraphrase block and a suffix: the prefix (instruction and
shots) and the suffix are shared by an example's phrasings, the block is one phrasing. Rendering
returns the parts as text; `selfens.data.encoding` tokenizes the whole prompt once and cuts it at
the parts' character offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

Part = tuple[str, str]  # (kind: "instruction" | "shot" | "block" | "suffix", text)
CuePlace = Literal["block", "suffix"]


@dataclass(frozen=True)
class Shot:
    """A solved few-shot example: the query as a block would show it, and its answer."""

    query: str
    answer: str
    tail: str = ""  # text after the answer (the "." of a completed sentence)


@dataclass(frozen=True)
class PromptFormat:
    instruction: str
    block: str  # formats {query}: how a paraphrase is shown
    shot: str  # formats {query}, {answer}, {tail}
    cue: str  # answer cue after the query ("\nA:"); in the block or, shared, in the suffix
    separator: str  # between instruction and shots and query


FORMATS: dict[str, PromptFormat] = {
    # The seed's WebQuestions prompt.
    "qa": PromptFormat(
        instruction="Answer the question based on general world knowledge. Provide a short and direct answer.",
        block="Q: {query}",
        shot="Q: {query}\nA: {answer}",
        cue="\nA:",
        separator="\n\n",
    ),
    # The seed's MyriadLAMA prompt: the sentence with [MASK], then "A:".
    "mask": PromptFormat(
        instruction="Predict the [MASK] in the sentence in one word.",
        block="{query}",
        shot="{query}\nA: {answer}",
        cue="\nA:",
        separator="\n\n",
    ),
    # The template cut before [Y]; shots are completed sentences; the model continues the text.
    "completion": PromptFormat(instruction="", block="{query}", shot="{query} {answer}{tail}", cue="", separator="\n"),
}


def render(
    fmt: PromptFormat,
    query: str,
    shots: list[Shot],
    *,
    cue_in: CuePlace = "block",
    chat: Optional[Callable[[str], str]] = None,
) -> list[Part]:
    """The parts of one prompt. `chat` maps a user message to the full chat text (None: raw text).

    The text of the parts, joined, is exactly the prompt a single-prompt run would see.
    """
    head = fmt.instruction + fmt.separator if fmt.instruction else ""
    shot_texts = [fmt.shot.format(query=s.query, answer=s.answer, tail=s.tail) + fmt.separator for s in shots]
    query = fmt.block.format(query=query)
    block = query + fmt.cue if cue_in == "block" else query
    cue = "" if cue_in == "block" else fmt.cue
    opening, closing = "", ""
    if chat is not None:
        content = head + "".join(shot_texts) + query + fmt.cue
        full = chat(content)
        start = full.index(content)
        opening, closing = full[:start], full[start + len(content) :]
    return [
        ("instruction", opening + head),
        *(("shot", text) for text in shot_texts),
        ("block", block),
        ("suffix", cue + closing),
    ]
