"""The paraphrase prompt: an instruction and five worked examples, as in the original method.

Paraphrase k of a question is asked for with the examples' k-th rewrites, so that the slots differ
in the style they show as well as in their sampling seed.
"""

from __future__ import annotations

from selfens.prompting.formats import PromptFormat, Shot

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


# The worked examples are the shots; a question is the block; the model continues after "Paraphrase:".
PARAPHRASE_FORMAT = PromptFormat(
    instruction=INSTRUCTION,
    block="Question: {query}\nParaphrase:",
    shot="Question: {query}\nParaphrase: {answer}",
    cue="",
    separator="\n\n",
)


def worked_examples(k: int) -> list[Shot]:
    """The worked examples that ask for paraphrase k (1-based): each question with its k-th rewrite.
    They are the same for every question, so a batch reads them once."""
    return [Shot(q, rewrites[(k - 1) % len(rewrites)]) for q, rewrites in WORKED_EXAMPLES]
