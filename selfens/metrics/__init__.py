"""Answer-matching metrics: SQuAD v1.1 exact match and F1, spaCy lemma match, and their exact mean."""

from selfens.metrics.functional import (
    Lemmatizer,
    exact_match,
    f1_score,
    lemma_match,
    load_lemmatizer,
    normalize_answer,
)
from selfens.metrics.text import MeanScore

__all__ = [
    "Lemmatizer",
    "MeanScore",
    "exact_match",
    "f1_score",
    "lemma_match",
    "load_lemmatizer",
    "normalize_answer",
]
