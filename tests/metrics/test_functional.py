"""SQuAD v1.1 exact match / F1 against hand-computed values, and spaCy lemma match."""

import copy
import pickle

import pytest

from selfens.metrics import Lemmatizer, exact_match, f1_score, lemma_match, load_lemmatizer, normalize_answer


@pytest.fixture(scope="module")
def lemmatizer() -> Lemmatizer:
    return load_lemmatizer("blank_en")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower", "eiffel tower"),  # lowercase + leading article
        ("a cat and an owl", "cat and owl"),  # every article, whole words only
        ("theatre anthem", "theatre anthem"),  # articles inside words stay
        ("U.S.A.!", "usa"),  # punctuation deleted, not replaced by a space
        ("rock-n-roll", "rocknroll"),
        ("  New\tYork \n City ", "new york city"),  # whitespace collapsed
        ("the.", ""),  # "the." -> "the" -> removed
        ("", ""),
        # Unicode punctuation (category P*) goes too: full-width and CJK marks, dashes, quotes.
        ("北京。", "北京"),
        ("「東京」、日本！", "東京日本"),
        ("（巴黎）？", "巴黎"),
        ("Québec — ‘city’…", "québec city"),
        ("¿Madrid?", "madrid"),
        ("$5 + 3", "5 3"),  # ASCII symbols are in SQuAD's set; Unicode symbols (category S*) stay:
        ("£5 ≥ 3", "£5 ≥ 3"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_after_normalisation() -> None:
    assert exact_match("The Eiffel Tower!", ["eiffel tower"]) == 1.0
    assert exact_match("北京。", ["北京"]) == 1.0  # full-width full stop
    assert f1_score("东京，日本", ["東京"]) == 0.0 and f1_score("東京 。日本", ["東京"]) == pytest.approx(2 / 3)
    assert exact_match("Eiffel Tower in Paris", ["Eiffel Tower"]) == 0.0


def test_exact_match_max_over_aliases() -> None:
    assert exact_match("NYC", ["New York City", "nyc"]) == 1.0
    assert exact_match("LA", ["New York City", "nyc"]) == 0.0


def test_f1_partial_overlap() -> None:
    # pred "eiffel tower in paris" (4 tokens), gold "eiffel tower" (2); common = 2
    # P = 2/4, R = 2/2, F1 = 2 * 0.5 * 1 / 1.5 = 2/3
    assert f1_score("the Eiffel tower in Paris", ["Eiffel Tower"]) == pytest.approx(2 / 3)


def test_f1_counts_repeated_tokens_once_per_match() -> None:
    # pred "paris paris" vs gold "paris": Counter overlap = min(2, 1) = 1
    # P = 1/2, R = 1/1, F1 = 2 * 0.5 * 1 / 1.5 = 2/3
    assert f1_score("Paris Paris", ["Paris"]) == pytest.approx(2 / 3)


def test_f1_max_over_aliases() -> None:
    # vs "barack obama": P = 1/1, R = 1/2 -> F1 = 2/3
    # vs "obama":        exact -> F1 = 1
    assert f1_score("Obama", ["Barack Obama", "Obama"]) == 1.0
    # vs "president barack obama" (3): common = 2 ("barack", "obama"); P = 2/2, R = 2/3 -> F1 = 0.8
    # vs "michelle obama" (2):         common = 1; P = 1/2, R = 1/2 -> F1 = 0.5
    assert f1_score("Barack Obama", ["President Barack Obama", "Michelle Obama"]) == pytest.approx(0.8)


def test_f1_no_overlap_and_empty_after_normalisation() -> None:
    assert f1_score("London", ["Paris"]) == 0.0
    # v1.1: no common tokens -> 0, even though both sides normalise to "" (EM says 1).
    assert f1_score("the", ["a"]) == 0.0
    assert exact_match("the", ["a"]) == 1.0


@pytest.mark.parametrize("fn", [exact_match, f1_score])
def test_empty_answers_raise(fn) -> None:
    with pytest.raises(ValueError, match="at least one gold answer"):
        fn("Paris", [])


def test_bare_string_answers_rejected() -> None:
    # Otherwise "Paris" would be scored against the aliases "P", "a", "r", ...
    with pytest.raises(TypeError, match="not a string"):
        exact_match("a", "Paris")


def test_lemmatizer_lookup_output(lemmatizer: Lemmatizer) -> None:
    # Lowercased, punctuation dropped; the lookup tables map inflections to lemmas.
    assert lemmatizer("He was born in Paris.") == ["he", "be", "bear", "in", "paris"]
    assert lemmatizer("The geese saw three children") == ["the", "goose", "see", "three", "child"]
    assert lemmatizer("!!! ") == []


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("He was born in Paris.", "Paris", 1.0),
        ("Parisian", "Paris", 0.0),  # different lemma, not a substring test
        ("Cats are mammals.", "cat", 1.0),  # plural, sentence-initial capital
        ("The Twin Towers were built in 1973.", "tower was built", 1.0),  # inflected multi-word run
        ("The geese flew", "goose", 1.0),  # irregular plural
        ("York, New", "New York", 0.0),  # order matters
        ("New York-based", "New York", 1.0),  # hyphen is a dropped punctuation token
        ("Paris", "!!!", 0.0),  # gold with no lemmas never matches
    ],
)
def test_lemma_match(lemmatizer: Lemmatizer, prediction: str, answer: str, expected: float) -> None:
    assert lemma_match(prediction, [answer], lemmatizer) == expected


def test_lemma_match_max_over_aliases(lemmatizer: Lemmatizer) -> None:
    assert lemma_match("She moved to the USA.", ["United States", "USA"], lemmatizer) == 1.0
    with pytest.raises(ValueError, match="at least one gold answer"):
        lemma_match("Paris", [], lemmatizer)


def test_load_lemmatizer_is_shared() -> None:
    assert load_lemmatizer() is load_lemmatizer("blank_en") is load_lemmatizer(name="blank_en")


def test_lemmatizer_copies_by_name(lemmatizer: Lemmatizer) -> None:
    # The method holding it gets deep-copied and pickled: the copy is the shared lemmatizer.
    assert copy.deepcopy(lemmatizer) is lemmatizer
    assert pickle.loads(pickle.dumps(lemmatizer)) is lemmatizer


@pytest.mark.parametrize("load", [Lemmatizer, load_lemmatizer])
def test_unknown_spacy_pipeline_error(load) -> None:
    with pytest.raises(OSError, match=r"python -m spacy download en_core_web_nonexistent.*blank_en"):
        load("en_core_web_nonexistent")


PREDS = ["the Eiffel tower in Paris", "NYC", "London", "He was born in Paris."]
TARGETS = [["Eiffel Tower"], ["New York City", "nyc"], ["Paris"], ["Paris", "France"]]


def test_per_example_scores(lemmatizer: Lemmatizer) -> None:
    assert [exact_match(p, t) for p, t in zip(PREDS, TARGETS)] == [0.0, 1.0, 0.0, 0.0]
    # F1: 2/3 (above), 1, 0, pred 5 tokens vs "paris": P = 1/5, R = 1 -> 2 * 0.2 / 1.2 = 1/3
    assert [f1_score(p, t) for p, t in zip(PREDS, TARGETS)] == pytest.approx([2 / 3, 1.0, 0.0, 1 / 3])
    assert [lemma_match(p, t, lemmatizer) for p, t in zip(PREDS, TARGETS)] == [1.0, 1.0, 0.0, 1.0]
