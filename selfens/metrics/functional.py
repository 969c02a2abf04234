"""Answer-matching metrics for open-domain QA: one prediction against its gold aliases -> a score.

``exact_match`` and ``f1_score`` follow the official SQuAD v1.1 script (evaluate-v1.1.py), with
one widening: every Unicode punctuation character is stripped, not only ASCII's (``北京。`` matches
``北京``); on ASCII text they are SQuAD's scores exactly. ``lemma_match`` is a looser "gold lemmas appear in the prediction" check built on spaCy.
Their mean over a run is :class:`selfens.metrics.mean_score.MeanScore`.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spacy.language import Language

__all__ = [
    "METRICS",
    "Lemmatizer",
    "exact_match",
    "f1_score",
    "lemma_match",
    "load_lemmatizer",
    "normalize_answer",
]

_PUNCTUATION = frozenset(string.punctuation)  # SQuAD's: ASCII punctuation and symbols ($, +, <, ...)


def _is_punctuation(ch: str) -> bool:
    """SQuAD's ASCII set, or any Unicode punctuation (category P*: full-width and CJK marks, dashes, quotes)."""
    return ch in _PUNCTUATION or unicodedata.category(ch).startswith("P")


_ARTICLES = re.compile(r"\b(a|an|the)\b")

BLANK_EN = "blank_en"

METRICS = ("em", "f1", "lemma")  # the scores of exact_match, f1_score and lemma_match


def normalize_answer(text: str) -> str:
    """Lowercase, strip punctuation, drop the articles a/an/the, collapse whitespace.

    Same steps, in the same order, as ``normalize_answer`` in SQuAD's evaluate-v1.1.py; punctuation
    is any Unicode punctuation besides SQuAD's ASCII set.

    >>> normalize_answer("The Forbidden City。")
    'forbidden city'
    """
    text = text.lower()
    text = "".join(ch for ch in text if not _is_punctuation(ch))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _exact_match_single(prediction: str, answer: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(answer))


def _f1_single(prediction: str, answer: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(answer).split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    # v1.1 scores 0 here even when both sides normalise to nothing (v2.0 would give 1).
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _check_answers(answers: Sequence[str]) -> None:
    # A bare string would silently be scored character by character.
    if isinstance(answers, str):
        raise TypeError(f"answers must be a sequence of gold aliases, not a string: {answers!r}")
    if len(answers) == 0:
        raise ValueError("answers is empty: each prediction needs at least one gold answer to score against")


def _max_over_answers(score: Callable[[str, str], float], prediction: str, answers: Sequence[str]) -> float:
    """Best score of ``prediction`` against any gold alias."""
    _check_answers(answers)
    return max(score(prediction, answer) for answer in answers)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold alias, else 0.0."""
    return _max_over_answers(_exact_match_single, prediction, answers)


def f1_score(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD v1.1 bag-of-tokens F1 against the best-matching gold alias."""
    return _max_over_answers(_f1_single, prediction, answers)


class Lemmatizer:
    """spaCy-backed text -> lemmas, lowercased, punctuation and whitespace dropped, cached.

    ``"blank_en"`` is a blank English pipeline with the lookup lemmatizer, whose tables come
    from the installed ``spacy-lookups-data`` package (no download, no model). Any other
    name is passed to ``spacy.load``, e.g. ``"en_core_web_lg"``.
    """

    def __init__(self, name: str = BLANK_EN, cache_size: int = 65536) -> None:
        self.name = name
        self.nlp = _load_pipeline(name)
        # The lookup tables are keyed on lowercase forms ("Was" is missing, "was" -> "be");
        # trained pipelines need the original casing for their tagger.
        self._lowercase_input = name == BLANK_EN
        self._cached = functools.lru_cache(maxsize=cache_size)(self._lemmatize)

    def __call__(self, text: str) -> list[str]:
        """Lemmas of ``text``; a fresh list each call, so callers cannot corrupt the cache."""
        return list(self._cached(text))

    def _lemmatize(self, text: str) -> tuple[str, ...]:
        doc = self.nlp(text.lower() if self._lowercase_input else text)
        return tuple(tok.lemma_.lower() for tok in doc if not (tok.is_punct or tok.is_space))

    def __reduce__(self) -> tuple[Callable[[str], Lemmatizer], tuple[str]]:
        # Pickle/deepcopy by name (the method holding one gets deep-copied and sent to workers) instead of
        # serialising the spaCy pipeline.
        return load_lemmatizer, (self.name,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _load_pipeline(name: str) -> Language:
    import spacy  # lazy: spaCy takes seconds to import and only lemma_match needs it

    if name == BLANK_EN:
        nlp = spacy.blank("en")
        nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
        nlp.initialize()  # loads the lookup tables from spacy-lookups-data
        return nlp
    try:
        return spacy.load(name)
    except OSError as err:
        raise OSError(
            f"spaCy pipeline {name!r} is not installed. Install it with "
            f"`python -m spacy download {name}`, or use {BLANK_EN!r} (lookup lemmatizer, no download)."
        ) from err


def load_lemmatizer(name: str = BLANK_EN) -> Lemmatizer:
    """Shared :class:`Lemmatizer` per pipeline name, so every user reuses one spaCy pipeline."""
    return _shared_lemmatizer(name)


@functools.lru_cache(maxsize=None)
def _shared_lemmatizer(name: str) -> Lemmatizer:
    # Behind load_lemmatizer so that f(), f("blank_en") and f(name="blank_en") share one cache key.
    return Lemmatizer(name)


def _contains_run(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """Whether ``needle`` occurs as a contiguous run in ``haystack``; an empty needle never does."""
    hay, run = tuple(haystack), tuple(needle)
    n = len(run)
    return n > 0 and any(hay[i : i + n] == run for i in range(len(hay) - n + 1))


def lemma_match(prediction: str, answers: Sequence[str], lemmatizer: Callable[[str], Sequence[str]]) -> float:
    """1.0 if the lemmas of any gold alias appear contiguously in the prediction's lemmas.

    ``lemmatizer`` maps text to lemmas, e.g. a :class:`Lemmatizer` from :func:`load_lemmatizer`.
    """
    _check_answers(answers)
    pred_lemmas = lemmatizer(prediction)
    return max(float(_contains_run(pred_lemmas, lemmatizer(answer))) for answer in answers)
