"""MyriadLAMA: facts from rows, the fact sample and few-shot facts, template choice, file kinds, bad input."""

import json
import logging
import random
import time
from pathlib import Path

import pytest

from selfens.data import DataError, MyriadLAMA
from selfens.data import myriadlama as module
from selfens.errors import ConfigError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "myriadlama" / "facts.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]
FACTS: dict[str, list[dict]] = {}
for _row in ROWS:
    FACTS.setdefault(_row["uuid"], []).append(_row)
RELATIONS = sorted({r["rel_uri"] for r in ROWS})


def fact(relation: str, subject: str) -> str:
    """The uuid of a fixture fact, by its relation and the subject of its first row."""
    return next(u for u, rows in FACTS.items() if rows[0]["rel_uri"] == relation and rows[0]["sub_ent"] == subject)


def mask_query(row: dict) -> str:
    return row["template"].replace("[X]", row["sub_ent"]).replace("[Y]", "[MASK]")


# Which fact a few-shot query (mask style) shows.
SHOT_FACT = {mask_query(r): r["uuid"] for r in ROWS}
CANADA, GERMANY, CURIE = fact("P36", "Canada"), fact("P36", "Germany"), fact("P19", "Marie Curie")


@pytest.fixture(scope="session")
def datasets_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("datasets_cache")


@pytest.fixture(autouse=True)
def _own_datasets_cache(monkeypatch, datasets_cache):
    # `datasets` converts files into Arrow under its cache: keep the tests' copies out of the user's.
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(datasets_cache))


def records(**kwargs):
    kwargs = {"path": str(FIXTURE), "fill_style": "mask", "num_paraphrases": 4, "num_shots": 2, **kwargs}
    return MyriadLAMA(**kwargs).load_records()


def by_id(rs):
    return {r.id: r for r in rs}


def shot_facts(rs) -> set[str]:
    return {SHOT_FACT[s.query] for r in rs for s in r.shots}


# -- records: grouping, answers, rendering -------------------------------------------------------------


def test_one_record_per_fact():
    rs = records(num_facts=None, num_shots=0)
    assert sorted(r.id for r in rs) == sorted(FACTS)
    for r in rs:
        rows = FACTS[r.id]
        assert r.meta == {"relation": rows[0]["rel_uri"], "subject": rows[0]["sub_ent"]}
        assert r.answers == rows[0]["obj_aliases"]
        assert len(r.paraphrases) == 4 and len(set(r.paraphrases)) == 4


def test_rows_of_a_fact_need_not_be_adjacent():
    # Marie Curie's last template is the last line of the file.
    assert ROWS[-1]["uuid"] == CURIE and ROWS[-2]["uuid"] != CURIE
    curie = by_id(records(num_facts=None, num_shots=0, num_paraphrases=6))[CURIE]
    assert sorted(curie.paraphrases) == sorted(mask_query(r) for r in FACTS[CURIE])


def test_every_alias_is_an_answer():
    rs = by_id(records(num_facts=None, num_shots=0))
    assert rs[fact("P19", "Frida Kahlo")].answers == ["Coyoacán", "Coyoacan", "Mexico City"]
    assert rs[fact("P37", "Kenya")].answers == ["Swahili", "Kiswahili", "English"]
    assert rs[fact("P36", "France")].answers == ["Paris"]


@pytest.mark.parametrize("mixed", [False, True])
def test_aliases_as_a_single_string(tmp_path, mixed):
    rows = [dict(r, obj_aliases=r["obj_aliases"][0]) for r in ROWS]
    if mixed:  # strings and lists in one column: `datasets` reads it as JSON values
        rows[0] = ROWS[0]
    path = write_jsonl(tmp_path / "facts.jsonl", rows)
    rs = by_id(records(path=str(path), num_facts=None, num_shots=0))
    assert rs[fact("P19", "Frida Kahlo")].answers == ["Coyoacán"]
    assert rs[fact("P36", "France")].answers == ["Paris"]


def test_manual_templates_first_in_file_order():
    for r in records(num_facts=None, num_shots=0, num_paraphrases=5, on_short_fact="skip"):
        manual = [mask_query(row) for row in FACTS[r.id] if row["is_manual"]]
        assert r.paraphrases[: len(manual)] == manual
        automatic = {mask_query(row) for row in FACTS[r.id] if not row["is_manual"]}
        assert set(r.paraphrases[len(manual) :]) <= automatic


def test_rows_subject_fills_each_template():
    # Einstein's third automatic template names him "Einstein".
    einstein = by_id(records(num_facts=None, num_shots=0, num_paraphrases=6))[fact("P19", "Albert Einstein")]
    assert "Einstein came into the world in [MASK]." in einstein.paraphrases
    assert einstein.meta["subject"] == "Albert Einstein"


def test_identical_sentences_count_once():
    # Germany repeats its first manual template as an automatic one: 7 rows, 6 sentences.
    assert len(FACTS[GERMANY]) == 7
    germany = by_id(records(num_facts=None, num_shots=0, num_paraphrases=6))[GERMANY]
    assert len(set(germany.paraphrases)) == 6
    assert GERMANY not in by_id(records(num_facts=None, num_shots=0, num_paraphrases=7))


def test_completion_cuts_before_y_and_keeps_templates_ending_in_y():
    japan = fact("P36", "Japan")  # "[Y] is the capital of [X]." does not end in [Y]
    r = by_id(records(num_facts=None, num_shots=0, num_paraphrases=6, fill_style="completion"))[japan]
    assert r.paraphrases[:2] == ["The capital of Japan is", "Japan's capital is"]
    assert all(not p.endswith(".") and "[MASK]" not in p and "[Y]" not in p for p in r.paraphrases)
    assert "Japan is the capital of" not in " ".join(r.paraphrases)
    mask = by_id(records(num_facts=None, num_shots=0, num_paraphrases=6))[japan]
    assert "[MASK] is the capital of Japan." in mask.paraphrases


def test_completion_shots_are_completed_sentences():
    rs = records(num_shots=3, fill_style="completion", num_paraphrases=5)
    for r in rs:
        answers = {row["sub_ent"]: row["obj_aliases"][0] for rows in FACTS.values() for row in rows}
        for shot in r.shots:
            assert shot.tail == "." and shot.answer in answers.values()
            assert "[MASK]" not in shot.query and not shot.query.endswith(".")


# -- which facts: the sample and the few-shot facts ----------------------------------------------------


def test_sample_of_facts_is_seeded_and_in_the_order_drawn():
    first = [r.id for r in records(num_facts=8, num_shots=0)]
    assert len(first) == 8 and first == [r.id for r in records(num_facts=8, num_shots=0)]
    order = random.Random(42).sample(range(len(FACTS)), 8)
    assert first == [sorted(FACTS)[i] for i in order]  # drawn from the facts sorted by uuid
    assert [r.id for r in records(num_facts=8, num_shots=0, sample_seed=7)] != first


def test_sample_does_not_depend_on_the_order_of_rows(tmp_path):
    shuffled = random.Random(3).sample(ROWS, len(ROWS))
    path = write_jsonl(tmp_path / "shuffled.jsonl", shuffled)
    assert [r.id for r in records(path=str(path), num_facts=8)] == [r.id for r in records(num_facts=8)]


def test_few_shot_facts_are_never_evaluated_and_of_the_same_relation():
    rs = records(num_facts=9, num_shots=2)
    evaluated = {r.id for r in rs}
    assert not shot_facts(rs) & evaluated
    for relation in RELATIONS:
        group = [r for r in rs if r.meta["relation"] == relation]
        assert group and all(r.shots == group[0].shots for r in group)  # one prefix per relation
        assert len(group[0].shots) == 2
        assert {FACTS[SHOT_FACT[s.query]][0]["rel_uri"] for s in group[0].shots} == {relation}


def test_few_shot_facts_depend_on_seed_not_on_the_sample():
    def shots(**kwargs):
        return {r.meta["relation"]: r.shots for r in records(num_facts=9, **kwargs)}

    first = shots(seed=0)
    assert first == shots(seed=0)
    assert any(first[rel] != other for rel, other in shots(seed=1).items())
    # The seed picks shots only: the evaluated facts and their phrasings stay.
    assert [(r.id, r.paraphrases) for r in records(num_facts=9, seed=0)] == [
        (r.id, r.paraphrases) for r in records(num_facts=9, seed=1)
    ]


def test_shot_uses_the_first_manual_template():
    rs = records(num_facts=9, num_shots=2)
    for shot in rs[0].shots:
        rows = FACTS[SHOT_FACT[shot.query]]
        assert shot.query == mask_query(next(r for r in rows if r["is_manual"]))
        assert shot.answer == rows[0]["obj_aliases"][0]


@pytest.mark.parametrize("num_facts", [None, 24, 1000])
def test_all_facts_but_the_shots(num_facts, caplog):
    with caplog.at_level(logging.WARNING, logger="selfens.data.myriadlama"):
        rs = records(num_facts=num_facts, num_shots=2, on_short_fact="skip")
    shots = shot_facts(rs)
    assert len(shots) == 2 * len(RELATIONS)
    assert {r.id for r in rs} == set(FACTS) - shots
    warned = any("evaluating all but the few-shot facts" in m for m in caplog.messages)
    assert warned == (num_facts is not None)


def test_too_few_spare_facts_for_the_shots(caplog):
    with caplog.at_level(logging.WARNING, logger="selfens.data.myriadlama"):
        rs = records(num_facts=20, num_shots=3)  # 4 facts left over, in 3 relations
    spare = len(FACTS) - 20
    assert sum(len(r.shots) for r in {r.meta["relation"]: r for r in rs}.values()) <= spare
    assert any("fewer spare facts than num_shots=3" in m for m in caplog.messages)


def test_limit_keeps_the_first_of_the_sample(tiny, tiny_model_path):
    dm = MyriadLAMA(path=str(FIXTURE), fill_style="mask", num_paraphrases=4, num_shots=1, num_facts=12, limit=5)
    dm.connect(tiny[1], tiny_model_path)
    dm.setup("test")
    full = records(num_facts=12, num_shots=1)
    assert [e.id for e in dm.examples] == [r.id for r in full[:5]]


# -- template choice -----------------------------------------------------------------------------------


def test_automatic_templates_are_drawn_per_fact_with_the_sample_seed():
    def phrasings(**kwargs):
        return {r.id: r.paraphrases for r in records(num_facts=None, num_shots=0, **kwargs)}

    first = phrasings(sample_seed=42)
    assert first == phrasings(sample_seed=42)
    other = phrasings(sample_seed=1)
    assert any(first[u] != other[u] for u in first)
    for uuid, paraphrases in first.items():
        manual = sum(r["is_manual"] for r in FACTS[uuid])
        assert other[uuid][:manual] == paraphrases[:manual]  # manual templates do not move


def test_more_paraphrases_extend_the_list():
    four = by_id(records(num_facts=None, num_shots=0, num_paraphrases=4))
    for r in records(num_facts=None, num_shots=0, num_paraphrases=5):
        assert r.paraphrases[:4] == four[r.id].paraphrases


# -- short facts ---------------------------------------------------------------------------------------


def test_short_fact_is_skipped_with_a_warning(caplog):
    # Canada has 4 templates.
    with caplog.at_level(logging.WARNING, logger="selfens.data.myriadlama"):
        rs = records(num_facts=None, num_shots=0, num_paraphrases=5)
    assert {r.id for r in rs} == set(FACTS) - {CANADA}
    assert caplog.messages == [
        "MyriadLAMA: skipped 1 of 24 sampled facts with fewer than num_paraphrases=5 distinct phrasings usable "
        f"with fill_style 'mask': {CANADA}"
    ]


def test_short_fact_error():
    with pytest.raises(
        DataError,
        match=rf"{FIXTURE}: fact {CANADA} has 4 distinct phrasings usable with fill_style 'mask', "
        r"fewer than num_paraphrases=5; lower num_paraphrases or set on_short_fact: skip",
    ):
        records(num_facts=None, num_shots=0, num_paraphrases=5, on_short_fact="error")


def test_completion_counts_only_usable_templates():
    # Germany: 6 sentences, 5 of them end in [Y].
    assert GERMANY in by_id(records(num_facts=None, num_shots=0, num_paraphrases=6))
    assert GERMANY not in by_id(records(num_facts=None, num_shots=0, num_paraphrases=6, fill_style="completion"))


# -- files ---------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def fixture_dataset():
    import datasets

    return datasets.load_dataset("json", data_files=str(FIXTURE), split="train")


def as_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "facts.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


def as_parquet_of_large_strings(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(ROWS)
    large = [pa.field(f.name, pa.large_string() if f.type == pa.string() else f.type) for f in table.schema]
    path = tmp_path / "facts.parquet"
    pq.write_table(table.cast(pa.schema(large)), path)
    return path


def as_parquet_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "data"
    folder.mkdir()
    half = len(ROWS) // 2
    pq.write_table(pa.Table.from_pylist(ROWS[:half]), folder / "train-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS[half:]), folder / "train-00001-of-00002.parquet")
    return tmp_path


def as_saved_dataset(tmp_path):
    fixture_dataset().save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


def as_saved_dict(tmp_path):
    import datasets

    datasets.DatasetDict({"train": fixture_dataset()}).save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


@pytest.mark.parametrize(
    "write", [as_parquet, as_parquet_of_large_strings, as_parquet_folder, as_saved_dataset, as_saved_dict]
)
def test_every_kind_of_file_gives_the_same_records(tmp_path, write):
    expected = records(num_facts=10, num_shots=2)
    assert records(path=str(write(tmp_path)), num_facts=10, num_shots=2) == expected


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match=r"no split 'test' \(splits: train\)"):
        records(path=str(as_saved_dict(tmp_path)), split="test")


# -- large data: only the chosen facts become Python objects -------------------------------------------


def test_only_the_chosen_facts_are_read_into_python(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    facts, per_fact = 5000, 20  # 100,000 rows
    index = pa.array([i // per_fact for i in range(facts * per_fact)])
    table = pa.table(
        {
            "uuid": pa.array([f"fact-{i:05d}" for i in range(facts)]).take(index),
            "rel_uri": pa.array([f"P{i % 10}" for i in range(facts)]).take(index),
            "sub_ent": pa.array([f"Subject {i}" for i in range(facts)]).take(index),
            "obj_aliases": pa.array([[f"Object {i}"] for i in range(facts)]).take(index),
            "template": pa.array([f"[X] has property {i % per_fact} [Y]." for i in range(facts * per_fact)]),
            "is_manual": pa.array([i % per_fact < 2 for i in range(facts * per_fact)]),
        }
    )
    pq.write_table(table, tmp_path / "big.parquet")
    read = []
    read_rows = module.read_rows
    monkeypatch.setattr(
        module, "read_rows", lambda dataset, indices, path: read.extend(indices) or read_rows(dataset, indices, path)
    )

    start = time.perf_counter()
    rs = records(path=str(tmp_path / "big.parquet"), num_facts=7, num_shots=2, num_paraphrases=5)
    assert time.perf_counter() - start < 10
    assert len(rs) == 7
    chosen = {r.id for r in rs} | {f"fact-{int(s.query.split()[1]):05d}" for r in rs for s in r.shots}
    assert len(read) == len(chosen) * per_fact  # the rows of the evaluated and few-shot facts, nothing else
    assert {f"fact-{i // per_fact:05d}" for i in read} == chosen


# -- errors --------------------------------------------------------------------------------------------


def test_missing_local_path(tmp_path):
    missing = tmp_path / "nowhere" / "facts.jsonl"
    with pytest.raises(DataError, match=rf"MyriadLAMA data not found: {missing} \(expected a parquet or jsonl file"):
        records(path=str(missing))


def test_hub_id_offline_says_what_to_do():
    # HF_HUB_OFFLINE=1 in every test: the hub id cannot be loaded.
    with pytest.raises(DataError, match=r"hub cannot be reached.*hf download iszhaoxin/MyriadLAMA") as error:
        records(path="iszhaoxin/MyriadLAMA")
    assert "\n" not in str(error.value)


def test_missing_field_names_the_file_and_the_field(tmp_path):
    path = write_jsonl(tmp_path / "facts.jsonl", [{k: v for k, v in r.items() if k != "is_manual"} for r in ROWS])
    with pytest.raises(DataError, match=rf"{path}: missing field\(s\) 'is_manual' \(fields present: "):
        records(path=str(path))


def test_missing_fields_are_all_named(tmp_path):
    path = write_jsonl(tmp_path / "facts.jsonl", [{"uuid": r["uuid"], "template": r["template"]} for r in ROWS])
    with pytest.raises(DataError, match=r"missing field\(s\) 'rel_uri', 'sub_ent', 'obj_aliases', 'is_manual'"):
        records(path=str(path))


def test_wrong_field_type(tmp_path):
    path = write_jsonl(tmp_path / "facts.jsonl", [dict(r, uuid=i // 6) for i, r in enumerate(ROWS)])
    with pytest.raises(DataError, match=rf"{path}: field 'uuid' should be str, got int64"):
        records(path=str(path))


def test_wrong_value_names_its_row(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[3]["is_manual"] = None
    path = write_jsonl(tmp_path / "facts.jsonl", rows)
    with pytest.raises(DataError, match=rf"{path}: row 3: field 'is_manual' should be bool, got NoneType"):
        records(path=str(path), num_facts=None, num_shots=0)


def test_fact_in_two_relations(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[1]["rel_uri"] = "P999"
    path = write_jsonl(tmp_path / "facts.jsonl", rows)
    with pytest.raises(DataError, match=rf"fact {rows[0]['uuid']} has rows of several relations: P36, P999"):
        records(path=str(path))


def test_malformed_jsonl(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text(FIXTURE.read_text(encoding="utf-8")[:-20], encoding="utf-8")
    with pytest.raises(DataError, match=rf"MyriadLAMA data {path}: cannot be read"):
        records(path=str(path))


@pytest.mark.parametrize("name", ["facts.jsonl", "facts.parquet"])
def test_empty_file(tmp_path, name):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(ROWS).slice(0, 0), path)
    else:
        path.write_text("")
    with pytest.raises(DataError, match=rf"MyriadLAMA (file|data) {path}"):
        records(path=str(path))


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "facts.csv"
    path.write_text("uuid\n")
    with pytest.raises(DataError, match=r"unsupported type '.csv'"):
        records(path=str(path))


def test_folder_without_data(tmp_path):
    with pytest.raises(DataError, match=rf"MyriadLAMA folder {tmp_path} has no parquet or jsonl files"):
        records(path=str(tmp_path))


def test_num_facts_must_be_positive():
    with pytest.raises(ConfigError, match="num_facts must be at least 1"):
        MyriadLAMA(path=str(FIXTURE), num_facts=0)


# -- with a model: settings, encoding and batches ------------------------------------------------------


def test_fill_style_defaults_to_the_models():
    dm = MyriadLAMA(path=str(FIXTURE))
    dm.connect(None, "smollm2_135m_it")  # the registry says raw completion prompts; nothing loads
    assert dm.resolved_settings() == {"prompt_style": "raw", "fill_style": "completion"}
    dm = MyriadLAMA(path=str(FIXTURE), fill_style="mask")
    dm.connect(None, "smollm2_135m_it")
    assert dm.resolved_settings()["fill_style"] == "mask"


def test_encodes_and_batches_by_relation(tiny, tiny_model_path):
    dm = MyriadLAMA(path=str(FIXTURE), num_paraphrases=3, num_shots=2, num_facts=12, batch_size=3)
    dm.connect(tiny[1], tiny_model_path)
    dm.setup("test")
    assert dm.fill_style == "mask"  # the tiny model has a chat template
    assert len(dm.examples) == 12
    assert [e.index for e in dm.examples] == list(range(12))
    assert all(len(e.paraphrases) == 3 and "[MASK]" in e.paraphrases[0] for e in dm.examples)
    relation = {r.id: r.meta["relation"] for r in records(num_facts=12, num_paraphrases=3)}
    batches = list(dm.test_dataloader())
    assert sum(len(b.ids) for b in batches) == 12
    order = [relation[i] for b in batches for i in b.ids]  # batches are full and may mix relations,
    runs = [r for k, r in enumerate(order) if k == 0 or r != order[k - 1]]
    assert len(runs) == len(set(order))  # but a relation's facts (one prefix) come together
