"""ParaRel: records, templates, few-shot facts, limits, short relations, and bad input."""

import json
import logging
from pathlib import Path

import pytest

from selfens.data import DataError, ParaRel
from selfens.data.pararel import BUNDLED
from selfens.prompts import Shot

BUNDLED_DIR = Path(str(BUNDLED))
RELATIONS = sorted(p.stem for p in (BUNDLED_DIR / "patterns").glob("P*.jsonl"))

PATTERNS = ["[X] was born in [Y].", "[Y] is the birthplace of [X].", "[X] is from [Y]", "[X]'s birthplace is [Y] ."]
FACTS = [("Alice", "Paris"), ("Bob", "Rome"), ("Carol", "Oslo"), ("Dan", "Lima"), ("Eve", "Kyiv"), ("Fay", "Bern")]


def write_lines(path: Path, lines) -> Path:
    """Each line: a dict (written as JSON) or a str (written as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines), encoding="utf-8")
    return path


def write_pararel(root: Path, patterns=None, triples=None, relation="P1") -> Path:
    patterns = [{"pattern": p} for p in PATTERNS] if patterns is None else patterns
    if triples is None:
        triples = [{"uuid": f"u{i}", "sub_label": s, "obj_label": o} for i, (s, o) in enumerate(FACTS)]
    write_lines(root / "patterns" / f"{relation}.jsonl", patterns)
    write_lines(root / "triples" / f"{relation}.jsonl", triples)
    return root


def records(**kwargs):
    kwargs.setdefault("fill_style", "mask")
    return ParaRel(**kwargs).load_records()


def shot_subjects(relation: str, shots: list[Shot]) -> set[str]:
    """uuids of the facts whose filled first mask template is a shot query."""
    first = json.loads((BUNDLED_DIR / "patterns" / f"{relation}.jsonl").read_text().splitlines()[0])["pattern"]
    facts = [json.loads(line) for line in (BUNDLED_DIR / "triples" / f"{relation}.jsonl").read_text().splitlines()]
    queries = {s.query for s in shots}
    found = {f["uuid"] for f in facts if first.replace("[X]", f["sub_label"]).replace("[Y]", "[MASK]") in queries}
    assert len(found) == len(shots)
    return found


# -- records -------------------------------------------------------------------------------------------


def test_mask_style_uses_the_first_n_templates(tmp_path):
    rs = records(data_dir=str(write_pararel(tmp_path)), num_paraphrases=3, num_shots=2)
    assert len(rs) == len(FACTS) - 2
    by_subject = {r.meta["subject"]: r for r in rs}
    for subject, obj in FACTS:
        if subject not in by_subject:
            continue
        r = by_subject[subject]
        assert r.paraphrases == [
            f"{subject} was born in [MASK].",
            f"[MASK] is the birthplace of {subject}.",
            f"{subject} is from [MASK]",
        ]
        assert r.answers == [obj]
        assert r.meta["relation"] == "P1" and r.id.startswith("P1/u")
    shot = rs[0].shots[0]
    assert shot.query.endswith(" was born in [MASK].") and shot.tail == ""


def test_completion_style_cuts_before_y_and_keeps_templates_ending_in_y(tmp_path):
    # "[Y] is the birthplace of [X]." does not end in [Y]; the others do (trailing " ." allowed).
    rs = records(data_dir=str(write_pararel(tmp_path)), num_paraphrases=3, num_shots=2, fill_style="completion")
    for r in rs:
        s = r.meta["subject"]
        assert r.paraphrases == [f"{s} was born in", f"{s} is from", f"{s}'s birthplace is"]
        assert all("[Y]" not in p and "[MASK]" not in p for p in r.paraphrases)
    answers = dict(FACTS)
    for shot in rs[0].shots:
        subject = shot.query.removesuffix(" was born in")
        assert shot.answer == answers[subject] and shot.tail == "."


def test_completion_style_tail_after_y(tmp_path):
    write_pararel(tmp_path, patterns=[{"pattern": "[X]'s birthplace is [Y] ."}, {"pattern": "[X] is from [Y]"}])
    rs = records(data_dir=str(tmp_path), num_paraphrases=2, num_shots=1, fill_style="completion")
    assert rs[0].shots[0].tail == " ."


def test_examples_after_setup(tmp_path, tiny, tiny_model_path):
    dm = ParaRel(data_dir=str(write_pararel(tmp_path)), num_paraphrases=2, num_shots=1)
    dm.connect(tiny[1], tiny_model_path)
    dm.setup("test")
    assert len(dm.examples) == len(FACTS) - 1
    assert [e.index for e in dm.examples] == list(range(len(FACTS) - 1))
    assert all(len(e.paraphrases) == 2 and "[MASK]" in e.paraphrases[0] for e in dm.examples)


def test_few_shot_facts_are_never_evaluated():
    rs = records(num_paraphrases=3, num_shots=4)
    for relation in RELATIONS:
        group = [r for r in rs if r.meta["relation"] == relation]
        assert len(group) == 50 - 4
        shots = group[0].shots
        assert len(shots) == 4 and all(r.shots == shots for r in group)
        evaluated = {r.id.split("/", 1)[1] for r in group}
        assert not shot_subjects(relation, shots) & evaluated


def test_few_shot_facts_depend_on_the_seed_only():
    def shots(seed):
        return {r.meta["relation"]: r.shots for r in records(num_paraphrases=3, seed=seed)}

    first, again, other = shots(0), shots(0), shots(1)
    assert first == again
    assert all(first[rel] != other[rel] for rel in RELATIONS)


def test_limit_takes_a_round_robin_mix(tiny, tiny_model_path):
    dm = ParaRel(num_paraphrases=3, limit=len(RELATIONS) + 2, fill_style="mask")
    dm.connect(tiny[1], tiny_model_path)
    dm.setup("test")
    relations = [e.id.split("/")[0] for e in dm.examples]
    assert relations == RELATIONS + RELATIONS[:2]


def test_relations_subset():
    rs = records(num_paraphrases=3, relations=["P20", "P19"])
    assert {r.meta["relation"] for r in rs} == {"P19", "P20"}
    assert [r.meta["relation"] for r in rs[:2]] == ["P20", "P19"]


def test_unknown_relation_lists_the_available_ones():
    with pytest.raises(DataError, match=r"P999.*available: " + ", ".join(RELATIONS)):
        records(relations=["P19", "P999"])


# -- short relations -----------------------------------------------------------------------------------


def test_short_relation_is_skipped_with_a_warning(caplog):
    # P937 has 5 templates, the other relations more.
    with caplog.at_level(logging.WARNING, logger="selfens.data.pararel"):
        rs = records(num_paraphrases=6)
    assert {r.meta["relation"] for r in rs} == set(RELATIONS) - {"P937"}
    assert all(len(r.paraphrases) == 6 for r in rs)
    assert caplog.messages == [
        f"ParaRel: skipped 1 of {len(RELATIONS)} relations with fewer than num_paraphrases=6 templates usable "
        "with fill_style 'mask': P937"
    ]


def test_short_relation_error():
    with pytest.raises(
        DataError, match=r"relation P937 has 5 templates usable with fill_style 'mask', fewer than num_paraphrases=6"
    ):
        ParaRel(num_paraphrases=6, fill_style="mask", on_short_relation="error").load_records()


def test_completion_counts_only_usable_templates(tmp_path, caplog):
    write_pararel(tmp_path)  # 3 of 4 templates end in [Y]
    with pytest.raises(DataError, match=r"P1 has 3 templates usable with fill_style 'completion'"):
        records(data_dir=str(tmp_path), num_paraphrases=4, fill_style="completion", on_short_relation="error")
    assert len(records(data_dir=str(tmp_path), num_paraphrases=4, fill_style="mask", on_short_relation="error")) > 0


def test_every_relation_skipped_is_an_error_at_setup(tmp_path, tiny, tiny_model_path):
    dm = ParaRel(data_dir=str(write_pararel(tmp_path)), num_paraphrases=5, fill_style="mask")
    dm.connect(tiny[1], tiny_model_path)
    with pytest.raises(DataError, match="no records to evaluate"):
        dm.setup("test")


# -- data hash -----------------------------------------------------------------------------------------


def test_data_hash(tiny, tiny_model_path):
    def data_hash(**kwargs):
        dm = ParaRel(num_paraphrases=2, fill_style="mask", **{"limit": 5, "seed": 0, **kwargs})
        dm.connect(tiny[1], tiny_model_path)
        dm.setup("test")
        return dm.data_hash

    base = data_hash()
    assert isinstance(base, str) and len(base) == 64
    assert data_hash() == base
    assert data_hash(batch_size=2) == base  # how it is batched is not what is evaluated
    assert data_hash(limit=6) != base
    assert data_hash(seed=1) != base


# -- bad input: clear errors at setup, before any decoding ----------------------------------------------


def setup_error(tiny, tiny_model_path, match, **kwargs):
    dm = ParaRel(**{"num_paraphrases": 2, "num_shots": 1, "fill_style": "mask", **kwargs})
    dm.connect(tiny[1], tiny_model_path)
    with pytest.raises(DataError, match=match) as error:
        dm.setup("test")
    assert dm.examples is None
    return str(error.value)


def test_missing_data_dir(tmp_path, tiny, tiny_model_path):
    setup_error(tiny, tiny_model_path, r"has no patterns/ folder", data_dir=str(tmp_path / "nowhere"))


def test_missing_triples_file(tmp_path, tiny, tiny_model_path):
    write_lines(tmp_path / "patterns" / "P1.jsonl", [{"pattern": p} for p in PATTERNS])
    message = setup_error(tiny, tiny_model_path, r"data file not found", data_dir=str(tmp_path))
    assert str(tmp_path / "triples" / "P1.jsonl") in message


@pytest.mark.parametrize("folder", ["patterns", "triples"])
def test_malformed_json_line(tmp_path, tiny, tiny_model_path, folder):
    write_pararel(tmp_path)
    path = tmp_path / folder / "P1.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-1]  # drop the closing brace of line 3
    path.write_text("\n".join(lines) + "\n")
    setup_error(tiny, tiny_model_path, rf"{path}:3: malformed JSON", data_dir=str(tmp_path))


def test_line_that_is_not_an_object(tmp_path, tiny, tiny_model_path):
    write_pararel(tmp_path, patterns=[{"pattern": PATTERNS[0]}, '["[X] is from [Y]"]'])
    setup_error(tiny, tiny_model_path, r"P1.jsonl:2: expected a JSON object, got list", data_dir=str(tmp_path))


def test_missing_field_in_triples(tmp_path, tiny, tiny_model_path):
    triples = [{"uuid": "u0", "sub_label": "Alice", "obj_label": "Paris"}] * 2 + [{"uuid": "u2", "sub_label": "Bob"}]
    write_pararel(tmp_path, triples=triples)
    message = setup_error(
        tiny, tiny_model_path, r"triples/P1.jsonl:3: missing field 'obj_label'", data_dir=str(tmp_path)
    )
    assert "sub_label" in message  # the fields present


def test_missing_pattern_field(tmp_path, tiny, tiny_model_path):
    write_pararel(tmp_path, patterns=[{"pattern": PATTERNS[0]}, {"template": PATTERNS[1]}])
    setup_error(tiny, tiny_model_path, r"patterns/P1.jsonl:2: missing field 'pattern'", data_dir=str(tmp_path))


def test_wrong_field_type(tmp_path, tiny, tiny_model_path):
    write_pararel(tmp_path, triples=[{"uuid": 7, "sub_label": "Alice", "obj_label": "Paris"}])
    setup_error(
        tiny, tiny_model_path, r"triples/P1.jsonl:1: field 'uuid' should be str, got int", data_dir=str(tmp_path)
    )


@pytest.mark.parametrize("pattern", ["[Y] is where it was born.", "[X] was born somewhere."])
def test_pattern_without_x_or_y(tmp_path, tiny, tiny_model_path, pattern):
    write_pararel(tmp_path, patterns=[{"pattern": PATTERNS[0]}, {"pattern": pattern}])
    setup_error(
        tiny,
        tiny_model_path,
        r"patterns/P1.jsonl:2: field 'pattern' needs both \[X\] and \[Y\]",
        data_dir=str(tmp_path),
    )


def test_empty_answer_names_its_line(tmp_path, tiny, tiny_model_path):
    triples = [
        {"uuid": "u0", "sub_label": "Alice", "obj_label": "Paris"},
        "",
        {"uuid": "u1", "sub_label": "Bob", "obj_label": " "},
    ]
    write_pararel(tmp_path, triples=triples)
    setup_error(
        tiny,
        tiny_model_path,
        r"triples/P1.jsonl:3: record 'P1/u1' needs a non-empty list of non-empty answers",
        data_dir=str(tmp_path),
        num_shots=0,
    )
