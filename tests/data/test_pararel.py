"""ParaRel: the bundled data, records, templates, few-shot facts, the demo's facts (pinned), the
stratified sample, limits, short relations, and bad input."""

import collections
import hashlib
import json
import logging
import re
from pathlib import Path

import pytest

from selfens.data import DataError, ParaRel
from selfens.data.pararel import BUNDLED, DEMO_RELATIONS, SHOT_POOL, stratified_shares
from selfens.errors import ConfigError
from selfens.prompting.formats import Shot

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


def bundled_facts(relation: str) -> list[dict]:
    return [json.loads(line) for line in (BUNDLED_DIR / "triples" / f"{relation}.jsonl").read_text().splitlines()]


def shot_facts(relation: str, shots: list[Shot], fill_style: str = "mask") -> set[str]:
    """uuids of the facts that are these shots: their first usable template, filled, and object."""
    dm = ParaRel(fill_style=fill_style)
    patterns = (BUNDLED_DIR / "patterns" / f"{relation}.jsonl").read_text().splitlines()
    first = next(t for t in (json.loads(line)["pattern"] for line in patterns) if dm.usable(t))
    solved = {(s.query, s.tail, s.answer) for s in shots}
    found = {f["uuid"] for f in bundled_facts(relation) if (*dm.fill(first, f["sub_label"]), f["obj_label"]) in solved}
    assert len(found) == len(shots)
    return found


def relation_of(record_or_id) -> str:
    return (record_or_id if isinstance(record_or_id, str) else record_or_id.id).split("/")[0]


# -- the bundled data ------------------------------------------------------------------------------------


def test_all_30_relations_are_bundled_with_their_licence():
    assert len(RELATIONS) == 30
    assert RELATIONS == sorted(p.stem for p in (BUNDLED_DIR / "triples").glob("P*.jsonl"))
    assert set(DEMO_RELATIONS) <= set(RELATIONS)
    assert (BUNDLED_DIR / "LICENSE").read_text().startswith("MIT License")
    assert sum(len(bundled_facts(r)) for r in RELATIONS) == 22530


def test_bundled_files_match_the_sha256_in_provenance():
    provenance = (BUNDLED_DIR / "PROVENANCE.md").read_text()
    listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", provenance, re.M))
    files = sorted(str(p.relative_to(BUNDLED_DIR)) for p in BUNDLED_DIR.rglob("*") if p.is_file())
    assert sorted(listed) == [f for f in files if f != "PROVENANCE.md"]
    for name, digest in listed.items():
        assert hashlib.sha256((BUNDLED_DIR / name).read_bytes()).hexdigest() == digest, name


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
    rs = records(num_paraphrases=2, num_shots=4)
    assert {r.meta["relation"] for r in rs} == set(RELATIONS) - {"P1001"}  # P1001 has one template
    for relation in set(RELATIONS) - {"P1001"}:
        group = [r for r in rs if r.meta["relation"] == relation]
        assert len(group) == len(bundled_facts(relation)) - 4
        shots = group[0].shots
        assert len(shots) == 4 and all(r.shots == shots for r in group)
        evaluated = {r.id.split("/", 1)[1] for r in group}
        assert not shot_facts(relation, shots) & evaluated


def test_few_shot_facts_depend_on_the_seed_only():
    def shots(seed):
        return {r.meta["relation"]: r.shots for r in records(num_paraphrases=1, seed=seed)}

    first, again, other = shots(0), shots(0), shots(1)
    assert first == again
    assert all(first[rel] != other[rel] for rel in RELATIONS)


def test_limit_takes_a_round_robin_mix(tiny, tiny_model_path):
    dm = ParaRel(
        num_paraphrases=1, limit=len(RELATIONS) + 2, fill_style="mask", relations=RELATIONS[1:] + RELATIONS[:1]
    )
    dm.connect(tiny[1], tiny_model_path)
    dm.setup("test")
    relations = [e.id.split("/")[0] for e in dm.examples]
    assert relations == RELATIONS[1:] + RELATIONS[:1] + RELATIONS[1:3]


def test_default_order_puts_the_demo_facts_first():
    """relations: null: the demo relations' first SHOT_POOL facts round-robin, then every relation's
    other facts round-robin (a relation that runs out drops out)."""
    rs = records(num_paraphrases=2, num_shots=4)  # every relation but P1001 (one template)
    demo = sorted(DEMO_RELATIONS)
    head = len(demo) * (SHOT_POOL - 4)
    assert [relation_of(r) for r in rs[:head]] == demo * (SHOT_POOL - 4)
    used = [r for r in RELATIONS if r != "P1001"]
    assert [relation_of(r) for r in rs[head : head + 2 * len(used)]] == used * 2
    assert len(rs) == len({r.id for r in rs}) == sum(len(bundled_facts(r)) - 4 for r in used)


def test_relations_subset():
    rs = records(num_paraphrases=3, relations=["P20", "P19"])
    assert {r.meta["relation"] for r in rs} == {"P19", "P20"}
    assert [r.meta["relation"] for r in rs[:2]] == ["P20", "P19"]


def test_unknown_relation_lists_the_available_ones():
    with pytest.raises(DataError, match=r"P999.*available: " + ", ".join(RELATIONS)):
        records(relations=["P19", "P999"])


# -- short relations -----------------------------------------------------------------------------------


def test_short_relation_is_skipped_with_a_warning(caplog):
    # Of the demo relations, P937 has 5 templates, the others more.
    with caplog.at_level(logging.WARNING, logger="selfens.data.pararel"):
        rs = records(num_paraphrases=6, relations=list(DEMO_RELATIONS))
    assert {r.meta["relation"] for r in rs} == set(DEMO_RELATIONS) - {"P937"}
    assert all(len(r.paraphrases) == 6 for r in rs)
    assert caplog.messages == [
        f"ParaRel: skipped 1 of {len(DEMO_RELATIONS)} relations with fewer than num_paraphrases=6 templates usable "
        "with fill_style 'mask': P937"
    ]


def test_short_relation_error():
    with pytest.raises(
        DataError, match=r"relation P937 has 5 templates usable with fill_style 'mask', fewer than num_paraphrases=6"
    ):
        ParaRel(
            num_paraphrases=6, fill_style="mask", on_short_relation="error", relations=list(DEMO_RELATIONS)
        ).load_records()


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


# -- the demo's facts: exactly those evaluated before all 30 relations were bundled ----------------------
# Recorded with the code and data of before issue 18 (10 relations x 50 facts bundled): the first 100
# records of the demo configs (num_paraphrases 5, num_shots 4, seed 0, limit 100). Each relation's
# uuids (first 8 characters) in order; the records go round-robin over the relations in this order.

DEMO_UUIDS = {
    "P1376": "d2ee773c 5780c031 cfb630e1 8f020e0a 372d1155 d60102b9 db41bfb6 b916b6f7 3e5000c2 a95c84a7",
    "P159": "5794fa25 7b891725 273ecc13 133a3320 3ef546a5 acda4df2 ec75e362 e1a5d7eb 2c51388c 846dadeb",
    "P176": "be9b2bab d91a4b06 bde21428 34bb3488 d57642cd c15eceb7 f26cf89c 25fa1b7f d8815308 43b9e386",
    "P178": "ba8e1625 7d1609b7 92c7c0d2 9d755cae 08f30a43 4bda402c d5b49a92 333113a3 7678beaa 17ac476e",
    "P19": "f1c384b5 10ca87c8 25f31bd5 a37673f6 0aa5c330 89df5d2b 60c62e35 5317219c 25c39d6b c1952c1d",
    "P20": "fe1f3b66 acd351e4 f4239996 9d772456 246a9fe2 76b3b3a2 2bde7d8a b683ca8a 5999b77d a324d925",
    "P449": "f8657a40 bcee9631 c456e168 7c9589d6 02d75cd5 14a97a55 fcbdc3a5 6a51fdef 5a3026e6 91a0b52a",
    "P495": "548031ed ed9d3a75 7b270a03 146c4bdf 22fa7562 76263425 064838ca e2e7508f 256b53f6 1607a780",
    "P740": "8560fa58 439a0393 5c58a060 b972535c 91c408ca 2a8195b6 3c8e3fcf cb2a90f2 cabbb574 f5ccabd5",
    "P937": "5ce2f280 83096c21 7f0236c3 ebbd9a38 39c7a915 557ffa59 8ec7b8ed 2d80226e 5cd81177 fd36ede0",
}
DEMO_IDS_SHA256 = "15b716887940b1e0f1e730e5bac96c375a1aa2dd628cff00f58d4c7b823670dd"  # json of the 100 full ids
# sha256 of the 100 records' [id, paraphrases, answers, shots], as the data module's data_hash
DEMO_RECORDS_SHA256 = {
    "completion": "dfe909d00e8f642d4db117e95b84cf0fd495916fe2206e5665619539236ca77a",
    "mask": "209630c01c554cd60b1265362aa8eecc19bb30d0003426146f0b3a87500bfc64",
}
# The demo configs with the embedded model (raw prompts, completion style): what the run identity hashes.
DEMO_HASHES = {
    "data_hash": "dfe909d00e8f642d4db117e95b84cf0fd495916fe2206e5665619539236ca77a",
    "examples_hash": "7ba04bb9517235c345f4a801fe127d64a274cae28345af7f71cec12ff8ec4c9b",
    "paraphrases_hash": "c66e76d98ec25160f24eba7fddf8d35b0b9c9cbf83b95777c04847eee9e7353c",
}


def records_sha256(rs) -> str:
    digest = hashlib.sha256()
    for r in rs:
        shots = [[s.query, s.answer, s.tail] for s in r.shots]
        digest.update(json.dumps([r.id, r.paraphrases, r.answers, shots]).encode())
    return digest.hexdigest()


@pytest.mark.parametrize("fill_style", ["completion", "mask"])
def test_demo_facts_answers_and_shots_are_unchanged(fill_style):
    rs = ParaRel(num_paraphrases=5, num_shots=4, seed=0, fill_style=fill_style).load_records()[:100]
    ids = [r.id for r in rs]
    relations = list(DEMO_UUIDS)
    expected = [f"{relations[i % 10]}/{DEMO_UUIDS[relations[i % 10]].split()[i // 10]}" for i in range(100)]
    assert [i[: i.index("/") + 9] for i in ids] == expected
    assert hashlib.sha256(json.dumps(ids).encode()).hexdigest() == DEMO_IDS_SHA256
    assert records_sha256(rs) == DEMO_RECORDS_SHA256[fill_style]


@pytest.mark.slow
def test_demo_config_hashes_with_the_embedded_model():
    from selfens.model.registry import EMBEDDED, load_tokenizer

    dm = ParaRel(num_paraphrases=5, num_shots=4, limit=100, batch_size=8)  # as configs/pararel/*.yaml
    dm.connect(load_tokenizer(EMBEDDED), EMBEDDED)
    dm.setup("test")
    assert dm.resolved_settings() == {"prompt_style": "raw", "fill_style": "completion"}
    assert {k: getattr(dm, k) for k in DEMO_HASHES} == DEMO_HASHES
    assert dm.evaluation_identity()["examples"] == DEMO_HASHES["examples_hash"]


# -- which facts qualify at N ------------------------------------------------------------------------------

QUALIFYING_N10_COMPLETION = {"P138": 457, "P178": 584, "P495": 901, "P740": 839}


def test_facts_qualifying_at_n10_are_counted_and_logged(caplog):
    dm = ParaRel(num_paraphrases=10, fill_style="completion")
    counts = dm.qualifying()
    assert list(counts) == RELATIONS
    assert {r: n for r, n in counts.items() if n} == QUALIFYING_N10_COMPLETION
    with caplog.at_level(logging.INFO, logger="selfens.data.pararel"):
        rs = dm.load_records()
    assert dm.qualified == counts and len(rs) == sum(counts.values()) == 2781
    assert (
        "ParaRel: 2781 facts of 4 of 30 relations qualify at num_paraphrases=10 with fill_style 'completion' "
        "(P138: 457, P178: 584, P495: 901, P740: 839)" in caplog.messages
    )


@pytest.mark.parametrize(
    "fill_style, n, total",
    [
        ("completion", 1, 22410),
        ("completion", 2, 20426),
        ("completion", 5, 10324),
        ("completion", 10, 2781),
        ("mask", 1, 22410),
        ("mask", 2, 21750),
        ("mask", 5, 16693),
        ("mask", 10, 7916),
    ],
)
def test_qualifying_totals(fill_style, n, total):
    """The totals docs/design.md gives (num_shots 4: 4 few-shot facts per relation are not evaluated)."""
    assert sum(ParaRel(num_paraphrases=n, fill_style=fill_style).qualifying().values()) == total


def test_qualifying_ignores_on_short_relation_and_counts_few_shot_facts_out():
    counts = ParaRel(num_paraphrases=6, fill_style="mask", on_short_relation="error", num_shots=2).qualifying()
    assert counts["P937"] == 0 and counts["P19"] == len(bundled_facts("P19")) - 2


# -- the stratified sample -----------------------------------------------------------------------------------


def sample_ids(**kwargs) -> list[str]:
    kwargs = {"num_paraphrases": 5, "fill_style": "completion", "sample": 100, **kwargs}
    return [r.id for r in ParaRel(**kwargs).load_records()]


def test_sample_is_stratified_over_relations():
    rs = ParaRel(num_paraphrases=1, fill_style="mask", sample=6000).load_records()
    counts = collections.Counter(r.meta["relation"] for r in rs)
    assert len(rs) == len({r.id for r in rs}) == 6000
    assert all(r.meta["relation"] == relation_of(r) for r in rs)
    assert set(counts) == set(RELATIONS)
    assert counts["P1376"] == 179 - 4  # fewer facts than an equal share: all it has
    assert counts["P463"] == 203 - 4
    others = [n for r, n in counts.items() if r not in ("P1376", "P463")]
    assert max(others) - min(others) <= 1 and sum(others) == 6000 - 175 - 199


def test_sample_takes_only_qualifying_facts():
    rs = ParaRel(num_paraphrases=10, fill_style="completion", sample=1000).load_records()
    assert collections.Counter(r.meta["relation"] for r in rs) == dict.fromkeys(QUALIFYING_N10_COMPLETION, 250)
    assert all(len(r.paraphrases) == 10 for r in rs)
    shots = {r.meta["relation"]: r.shots for r in rs}
    for relation, facts in shots.items():  # few-shot facts are never sampled
        assert not {f"{relation}/{u}" for u in shot_facts(relation, facts, "completion")} & {r.id for r in rs}


def test_sample_goes_round_robin_so_limit_keeps_the_mix(tiny, tiny_model_path):
    rs = ParaRel(num_paraphrases=5, fill_style="completion", sample=100).load_records()
    relations = [relation_of(r) for r in rs]
    used = sorted(set(relations))
    assert len(used) == 14 and relations[: 7 * len(used)] == used * 7
    dm = ParaRel(num_paraphrases=5, fill_style="completion", sample=100, limit=20)
    dm.connect(tiny[1], tiny_model_path)
    dm.setup("test")
    assert [e.id for e in dm.examples] == [r.id for r in rs[:20]]  # limit applies after sampling


def test_sample_is_deterministic_and_depends_on_sample_seed():
    first = sample_ids()
    assert sample_ids() == first
    other = sample_ids(sample_seed=1)
    assert set(other) != set(first) and len(other) == len(first)
    assert set(map(relation_of, other)) == set(map(relation_of, first))


def test_sample_does_not_depend_on_the_order_of_relations():
    relations = ["P20", "P19", "P740", "P937"]
    assert set(sample_ids(relations=relations, sample=42)) == set(sample_ids(relations=sorted(relations), sample=42))


def test_a_larger_sample_keeps_the_facts_of_a_smaller_one():
    assert set(sample_ids(sample=300)) < set(sample_ids(sample=600))


def test_sample_does_not_depend_on_batch_size(tiny, tiny_model_path):
    def examples(batch_size):
        dm = ParaRel(num_paraphrases=2, fill_style="mask", sample=45, batch_size=batch_size)
        dm.connect(tiny[1], tiny_model_path)
        dm.setup("test")
        return [e.id for e in dm.examples], dm.data_hash

    assert examples(1) == examples(8) == examples(45)


def test_sample_larger_than_the_qualifying_facts_takes_them_all_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="selfens.data.pararel"):
        ids = sample_ids(relations=["P1376", "P463"], sample=1000, num_paraphrases=3, fill_style="mask")
    assert len(ids) == len(set(ids)) == 175 + 199
    assert caplog.messages == [
        "ParaRel: sample=1000 is more than the 374 facts that qualify at num_paraphrases=3 with fill_style "
        "'mask': evaluating all of them"
    ]


@pytest.mark.parametrize("sample", [0, -5, True, 2.5])
def test_bad_sample_is_a_config_error(sample):
    with pytest.raises(
        ConfigError, match=r"^sample must be a whole number of facts, at least 1 \(or null for all\), got"
    ):
        ParaRel(sample=sample)


def test_bad_sample_seed_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^sample_seed must be an integer, got 'x'$"):
        ParaRel(sample=10, sample_seed="x")


def test_stratified_shares():
    import random

    rng = random.Random(0)
    assert stratified_shares({"a": 3, "b": 10, "c": 10}, 15, rng) == {"a": 3, "b": 6, "c": 6}
    assert stratified_shares({"a": 3, "b": 10, "c": 0}, 13, rng) == {"a": 3, "b": 10, "c": 0}
    assert stratified_shares({"a": 2, "b": 4, "c": 9}, 12, rng) == {"a": 2, "b": 4, "c": 6}
    for _ in range(200):
        sizes = {g: rng.randrange(0, 30) for g in "abcdefg"}
        total = rng.randrange(0, sum(sizes.values()) + 1)
        shares = stratified_shares(sizes, total, rng)
        assert sum(shares.values()) == total and all(0 <= shares[g] <= sizes[g] for g in sizes)
        # No group gives more than 1 above a group that could have given more.
        could = [shares[g] for g in sizes if shares[g] < sizes[g]]
        assert not could or max(shares.values()) <= min(could) + 1


def test_settings_name_the_sample_only_when_there_is_one():
    plain = ParaRel(num_paraphrases=5, fill_style="completion", prompt_style="raw").settings()
    assert "sample" not in plain and "sample_seed" not in plain
    sampled = ParaRel(num_paraphrases=5, fill_style="completion", prompt_style="raw", sample=10, sample_seed=3)
    assert sampled.settings() == {**plain, "sample": 10, "sample_seed": 3}


# -- the development split ----------------------------------------------------------------------------


def test_the_dev_split_is_drawn_apart_from_the_test_sample():
    test = sample_ids(sample=300)
    dev = sample_ids(sample=300, split="dev", dev_sample=300)
    assert len(dev) == len(set(dev)) == 300 and not set(dev) & set(test)
    per_relation = collections.Counter(map(relation_of, dev)), collections.Counter(map(relation_of, test))
    assert set(per_relation[0]) == set(per_relation[1])  # stratified alike: the remainder lands elsewhere
    assert all(abs(per_relation[0][r] - per_relation[1][r]) <= 1 for r in per_relation[1])
    assert sample_ids(sample=300, split="dev", dev_sample=300) == dev  # deterministic
    assert set(sample_ids(sample=300, split="dev", dev_sample=300, dev_seed=2)) != set(dev)
    # a larger test sample takes facts the dev split had: they leave it
    assert not set(sample_ids(sample=600, split="dev", dev_sample=300)) & set(sample_ids(sample=600))


def test_the_dev_split_takes_what_is_left_with_a_warning(caplog):
    kwargs = {"relations": ["P1376", "P463"], "num_paraphrases": 3, "fill_style": "mask", "sample": 300}
    with caplog.at_level(logging.WARNING, logger="selfens.data.pararel"):
        dev = sample_ids(**kwargs, split="dev", dev_sample=1000)
    assert len(dev) == 374 - 300 and not set(dev) & set(sample_ids(**kwargs))
    assert (
        "dev_sample=1000 is more than the 74 facts that qualify" in caplog.text
        and "outside the test sample" in caplog.text
    )


@pytest.mark.parametrize("settings", [{"dev_sample": 100}, {"sample": 100}])
def test_a_dev_split_needs_a_test_sample_and_its_own_size(settings):
    with pytest.raises(ConfigError, match=r"a development split needs `sample: N` .* and `dev_sample: M`"):
        ParaRel(num_paraphrases=5, fill_style="completion", **settings).dev_split()
    with pytest.raises(ConfigError, match=r"needs `sample: N`"):
        ParaRel(num_paraphrases=5, fill_style="completion", split="dev", **settings).load_records()


def test_bad_split_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^split must be test or dev"):
        ParaRel(split="train")
