"""Which sampled paraphrases to reject, and why: pure functions over text.

The original method kept whatever the model wrote. A paraphrase is useless as a second phrasing
when it is empty or a copy, misleading when it is not a question any more or rambles on, and
it breaks the evaluation when it gives the answer away; each such output is rejected with its
reason and sampled again.
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from selfens.metrics import normalize_answer

Reason = Literal["empty", "copy_of_original", "copy_of_earlier", "not_a_question", "too_long", "answer_leak"]
REASONS: tuple[str, ...] = Reason.__args__

# Words that open an English question (WebQuestions mostly starts with one and often has no "?").
_QUESTION_WORDS = frozenset(
    "what who whom whose which where when why how is are was were do does did can could will would "
    "should shall may might has have had am name list tell give".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lowercased word tokens (letters and digits)."""
    return _WORD.findall(text.lower())


def is_question(text: str) -> bool:
    """Ends with '?' or opens with a question word."""
    found = words(text)
    return text.rstrip().endswith("?") or bool(found and found[0] in _QUESTION_WORDS)


def _contains(haystack: str, needle: str) -> bool:
    """Whether normalised `needle` occurs in normalised `haystack` as whole words."""
    needle = normalize_answer(needle)
    return bool(needle) and f" {needle} " in f" {normalize_answer(haystack)} "


def rejection(
    candidate: str,
    original: str,
    earlier: list[str],
    answers: list[str],
    *,
    max_length_ratio: float = 2.0,
    checks: frozenset[str] = frozenset(REASONS),
) -> Optional[Reason]:
    """Why `candidate` is not kept as a paraphrase of `original` (None: it is kept).

    Args:
        candidate: the model's output, first line already taken.
        original: the question as the dataset has it.
        earlier: paraphrases of this question kept so far.
        answers: gold answers; one that the candidate contains and the original does not leaks.
        max_length_ratio: a candidate with more words than this times the original's (and at
            least 5 more) is too long.
        checks: the reasons in force (REASONS: all).
    """
    same = normalize_answer(candidate)
    if "empty" in checks and not words(candidate):
        return "empty"
    if "copy_of_original" in checks and same == normalize_answer(original):
        return "copy_of_original"
    if "copy_of_earlier" in checks and any(same == normalize_answer(e) for e in earlier):
        return "copy_of_earlier"
    if "not_a_question" in checks and is_question(original) and not is_question(candidate):
        return "not_a_question"
    length, limit = len(words(candidate)), len(words(original))
    if "too_long" in checks and length > max(max_length_ratio * limit, limit + 5):
        return "too_long"
    if "answer_leak" in checks and any(_contains(candidate, a) and not _contains(original, a) for a in answers):
        return "answer_leak"
    return None
