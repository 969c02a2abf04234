"""The rules ParaRel and MyriadLAMA share: which templates a fill style can show, and what a relation
or fact with too few of them becomes."""

import logging

import pytest

from selfens.data import DataError, MyriadLAMA, ParaRel
from selfens.data.blanks import completes_at_end

log = logging.getLogger("tests.blanks")


@pytest.mark.parametrize(
    "template, ends",
    [
        ("[X] was born in [Y].", True),
        ("[X] was born in [Y]", True),
        ("[X]'s birthplace is [Y] .", True),
        ("[X] is from [Y] . .\n", True),
        ("[Y] is the birthplace of [X].", False),
        ("[X] was born in [Y], France.", False),
        ("[X] was born in [Y]!", False),
    ],
)
def test_completes_at_end(template, ends):
    assert completes_at_end(template) is ends


@pytest.mark.parametrize("module", [ParaRel, MyriadLAMA])
def test_usable_templates_by_fill_style(module):
    mask, completion = module(fill_style="mask"), module(fill_style="completion")
    assert mask.usable("[Y] is the birthplace of [X].") and not completion.usable("[Y] is the birthplace of [X].")
    assert mask.usable("[X] was born in [Y] .") and completion.usable("[X] was born in [Y] .")
    for template in ("[X] was born somewhere.", "Someone was born in [Y]."):
        assert not mask.usable(template) and not completion.usable(template)


def test_too_few_is_an_error_that_says_where_and_what_to_do():
    short = ParaRel(fill_style="completion", num_paraphrases=3).too_few(
        "relation", "templates", "data/pararel", "on_short_relation", "error"
    )
    assert short.enough("P1", 3)
    with pytest.raises(
        DataError,
        match=r"^data/pararel: relation P2 has 2 templates usable with fill_style 'completion', fewer than "
        r"num_paraphrases=3; lower num_paraphrases or set on_short_relation: skip$",
    ):
        short.enough("P2", 2)


def test_too_few_skipped_are_counted_in_one_warning(caplog):
    short = ParaRel(fill_style="mask", num_paraphrases=3).too_few("relation", "templates", "d", "option", "skip")
    short.warn(log, 5, "relations")
    assert not caplog.messages  # nothing skipped, nothing said
    names = [f"P{i}" for i in range(12)]
    assert [short.enough(name, 2) for name in names] == [False] * 12
    short.warn(log, 20, "relations")
    assert caplog.messages == [
        "ParaRel: skipped 12 of 20 relations with fewer than num_paraphrases=3 templates usable with fill_style "
        f"'mask': {', '.join(names[:10])} and 2 more"
    ]
