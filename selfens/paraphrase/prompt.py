"""The paraphrase prompt: an instruction and five worked examples, as in the original method.

Paraphrase k of a question is asked for with the examples' k-th rewrites, so that the slots differ
in the style they show as well as in their sampling seed.
"""

from __future__ import annotations

from typing import Callable, Optional

from selfens.prompts import Part

INSTRUCTION = (
    "Paraphrase the question: ask for exactly the same thing in different words. "
    "Write only the new question, on one line."
)

# (question, rewrites): hand-written, not taken from any evaluated split.
WORKED_EXAMPLES: list[tuple[str, list[str]]] = [
    (
        "what is the capital city of australia?",
        [
            "which city is the capital of australia?",
            "what city serves as australia's capital?",
            "australia's capital is which city?",
            "where is the capital of australia?",
            "name the capital city of australia?",
            "what is australia's seat of government?",
        ],
    ),
    (
        "who wrote the novel pride and prejudice?",
        [
            "who is the author of pride and prejudice?",
            "pride and prejudice was written by whom?",
            "which writer wrote pride and prejudice?",
            "who penned the book pride and prejudice?",
            "whose novel is pride and prejudice?",
            "who was the writer of the novel pride and prejudice?",
        ],
    ),
    (
        "what currency do they use in japan?",
        [
            "what is the currency of japan?",
            "which money is used in japan?",
            "what do people in japan pay with?",
            "japan uses which currency?",
            "what is japan's official currency?",
            "what kind of money does japan use?",
        ],
    ),
    (
        "where did albert einstein go to college?",
        [
            "which college did albert einstein attend?",
            "where did einstein study at university?",
            "at which university was albert einstein a student?",
            "what school did albert einstein go to for college?",
            "where was albert einstein educated after school?",
            "which university did einstein study at?",
        ],
    ),
    (
        "when did the titanic sink?",
        [
            "in what year did the titanic sink?",
            "when was the titanic lost at sea?",
            "what date did the titanic go down?",
            "the titanic sank when?",
            "at what time in history did the titanic sink?",
            "when did the ship titanic sink?",
        ],
    ),
]


def paraphrase_parts(question: str, k: int, chat: Optional[Callable[[str], str]] = None) -> list[Part]:
    """The prompt asking for paraphrase k (1-based) of `question`, as parts: the instruction and
    worked examples (the same for every question, so read once per batch) and the question."""
    examples = "".join(
        f"Question: {q}\nParaphrase: {rewrites[(k - 1) % len(rewrites)]}\n\n" for q, rewrites in WORKED_EXAMPLES
    )
    head = f"{INSTRUCTION}\n\n{examples}"
    query = f"Question: {question.strip()}\nParaphrase:"
    if chat is None:
        return [("instruction", head), ("block", query), ("suffix", "")]
    full = chat(head + query)
    start = full.index(head + query)
    return [("instruction", full[:start] + head), ("block", query), ("suffix", full[start + len(head + query) :])]
