"""Every paraphrase filter: what it rejects, and what it lets through; and the sidecar's summary of them."""

import pytest

from selfens.paraphrase.filters import REASONS, is_question, rejection
from selfens.paraphrase.summary import diversity, summary

ORIGINAL = "who wrote the novel pride and prejudice?"
ANSWERS = ["Jane Austen", "Austen"]


def reason(candidate, earlier=(), original=ORIGINAL, answers=ANSWERS, **kwargs):
    return rejection(candidate, original, list(earlier), list(answers), **kwargs)


def test_a_good_paraphrase_is_kept():
    assert reason("who is the author of pride and prejudice?") is None


@pytest.mark.parametrize("candidate", ["", "   ", "?!", "..."])
def test_empty(candidate):
    assert reason(candidate) == "empty"


@pytest.mark.parametrize(
    "candidate", [ORIGINAL, "Who wrote the novel Pride and Prejudice", "who wrote  the novel, pride and prejudice?!"]
)
def test_copy_of_the_original_after_normalisation(candidate):
    assert reason(candidate) == "copy_of_original"


def test_copy_of_an_earlier_paraphrase():
    earlier = ["who is the author of pride and prejudice?"]
    assert reason("Who is the author of 'Pride and Prejudice'?", earlier) == "copy_of_earlier"
    assert reason("which writer wrote pride and prejudice?", earlier) is None


def test_not_a_question_when_the_original_is_one():
    assert reason("the author of pride and prejudice") == "not_a_question"
    assert reason("pride and prejudice was written by whom?") is None  # a question mark suffices
    assert reason("which writer wrote pride and prejudice") is None  # so does a question word
    # An original that is not a question does not ask for one.
    assert (
        reason("the author of pride and prejudice", original="the novel pride and prejudice was written by [MASK].")
        is None
    )


def test_is_question():
    assert is_question("what does jamaican people speak?")
    assert is_question("where is jamarcus russell from")
    assert not is_question("jamaican people speak")


def test_too_long():
    long = "who wrote the famous english novel called pride and prejudice in the early years of the nineteenth century?"
    assert reason(long) == "too_long"
    assert reason(long, max_length_ratio=3.0) is None
    # Short originals get at least 5 words of slack.
    assert reason("who sang it, the famous song, then?", original="who sang it?") is None
    assert reason("who sang it, the famous song, back then at the time?", original="who sang it?") == "too_long"


def test_answer_leak():
    assert reason("did jane austen write pride and prejudice?") == "answer_leak"
    assert reason("was it Austen who wrote pride and prejudice?") == "answer_leak"
    # Whole words only: "austenite" does not contain the answer "austen".
    assert reason("was austenite used to print pride and prejudice?") is None
    # An answer the original already contains gives nothing away.
    original = "which austen wrote pride and prejudice?"
    assert reason("which austen is the author of pride and prejudice?", original=original) is None


def test_reasons_checked_in_order_and_can_be_switched_off():
    assert reason(ORIGINAL, earlier=[ORIGINAL]) == "copy_of_original"
    assert reason("jane austen", checks=frozenset(REASONS) - {"not_a_question"}) == "answer_leak"
    assert reason("jane austen", checks=frozenset()) is None


# -- the sidecar's summary -----------------------------------------------------------------------------


def test_summary_counts_kept_missing_and_rejected():
    rows = [
        {"original": "who wrote it?", "paraphrases": ["who is its author?", "who penned it?"]},
        {
            "original": "where is it?",
            "paraphrases": ["where can it be found?"],
            "rejected": [{"reason": "copy_of_original"}, {"reason": "answer_leak"}, {"reason": "answer_leak"}],
        },
    ]
    s = summary(rows, num_paraphrases=2)
    assert {k: v for k, v in s.items() if k not in ("rejected", "diversity")} == {
        "questions": 2,
        "paraphrases_asked": 4,
        "paraphrases_kept": 3,
        "questions_complete": 1,
        "samples_drawn": 6,
    }
    assert list(s["rejected"]) == list(REASONS)  # every reason, zero or not
    assert s["rejected"]["answer_leak"] == 2 and s["rejected"]["copy_of_original"] == 1 and s["rejected"]["empty"] == 0
    assert s["diversity"] == diversity(rows)


def test_diversity():
    rows = [{"original": "a b c d", "paraphrases": ["a b c d", "a b x y"]}]
    assert diversity(rows) == {
        "overlap_with_original": round((1 + 2 / 6) / 2, 4),
        "overlap_between_paraphrases": round(2 / 6, 4),
        "distinct_1": round(6 / 8, 4),
        "distinct_2": round(5 / 6, 4),
    }
    assert diversity([{"original": "q", "paraphrases": []}]) == {
        "overlap_with_original": None,
        "overlap_between_paraphrases": None,
        "distinct_1": None,
        "distinct_2": None,
    }
