"""Answer-matching metrics: SQuAD v1.1 exact match and F1, and spaCy lemma match."""

from selfens.metrics.functional import (
    Lemmatizer,
    exact_match,
    exact_match_scores,
    f1_score,
    f1_scores,
    lemma_match,
    lemma_match_scores,
    load_lemmatizer,
    normalize_answer,
)
from selfens.metrics.text import ExactMatch, F1Score, LemmaMatch, MeanScore

__all__ = [
    "ExactMatch",
    "F1Score",
    "LemmaMatch",
    "Lemmatizer",
    "MeanScore",
    "exact_match",
    "exact_match_scores",
    "f1_score",
    "f1_scores",
    "lemma_match",
    "lemma_match_scores",
    "load_lemmatizer",
    "normalize_answer",
]
