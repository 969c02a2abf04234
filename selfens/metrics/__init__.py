"""Answer-matching metrics: SQuAD v1.1 exact match and F1, spaCy lemma match, and their exact mean."""

from selfens.metrics.functional import (
    Lemmatizer,
    exact_match,
    f1_score,
    lemma_match,
    load_lemmatizer,
    normalize_answer,
)

__all__ = [
    "Lemmatizer",
    "MeanScore",
    "exact_match",
    "f1_score",
    "lemma_match",
    "load_lemmatizer",
    "normalize_answer",
]


def __getattr__(name: str):
    # MeanScore on first use: torchmetrics takes seconds to import, and the scoring functions
    # (`selfens report`, the paraphrase filters) do not need it.
    if name == "MeanScore":
        from selfens.metrics.mean_score import MeanScore

        return MeanScore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
