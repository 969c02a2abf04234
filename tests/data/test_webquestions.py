"""WebQuestions: the bundled split, few-shot pairs from the train file, and bad input."""

import json
from pathlib import Path

import pytest

from selfens.data import DataError, WebQuestions
from selfens.data.webquestions import BUNDLED
from selfens.errors import ConfigError
from selfens.prompting.formats import render

BUNDLED_DIR = Path(str(BUNDLED))


def questions(name: str) -> set[str]:
    return {item["qText"] for item in json.loads((BUNDLED_DIR / f"{name}.json").read_text())}


def write_split(root: Path, name: str, content) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def item(i: int, text: str = None, answers=("Paris",)) -> dict:
    return {"qId": f"q{i}", "qText": text or f"question number {i}?", "answers": list(answers)}


def test_more_than_one_paraphrase_needs_a_paraphrase_file():
    with pytest.raises(ConfigError, match=r"num_paraphrases=2 needs a paraphrase file: set paraphrases: FILE \(write"):
        WebQuestions(num_paraphrases=2)


def test_bundled_test_split():
    dm = WebQuestions()
    assert dm.limit is None and dm.num_paraphrases == 1
    records = dm.load_records()
    assert len(records) == 2032
    first = records[0]
    assert first.id == "wqs000000"
    assert first.paraphrases == ["what does jamaican people speak?"]
    assert first.answers == ["Jamaican Creole English Language", "Jamaican English"]
    assert len({r.id for r in records}) == 2032


def test_shots_come_from_the_train_file_and_are_fixed_by_the_seed():
    test_questions, train_questions = questions("test"), questions("trainmodel")
    records = WebQuestions().load_records()
    shots = records[0].shots
    assert len(shots) == 5
    assert all(r.shots == shots for r in records)
    for shot in shots:
        assert shot.query in train_questions and shot.query not in test_questions
        assert shot.answer and shot.tail == ""
    assert WebQuestions().load_records()[0].shots == shots
    assert WebQuestions(seed=1).load_records()[0].shots != shots
    assert len(WebQuestions(num_shots=2).load_records()[0].shots) == 2


def test_block_text(tiny, tiny_model_path):
    _, tokenizer = tiny
    dm = WebQuestions(limit=3, prompt_style="raw")
    dm.connect(tokenizer, tiny_model_path)
    dm.setup("test")
    assert len(dm.examples) == 3 and [e.index for e in dm.examples] == [0, 1, 2]
    example = dm.examples[0]
    assert tokenizer.decode(example.segments.blocks[0]) == "Q: what does jamaican people speak?\nA:"
    assert len(example.segments.shots) == 5
    shot = dm.load_records()[0].shots[0]
    assert tokenizer.decode(example.segments.shots[0]) == f"Q: {shot.query}\nA: {shot.answer}\n\n"
    parts = dict(render(dm.prompt_format(), "who is x?", [])[1:])
    assert parts == {"block": "Q: who is x?\nA:", "suffix": ""}


def test_custom_data_dir(tmp_path):
    write_split(tmp_path, "trainmodel", [item(i, f"train question {i}?") for i in range(3)])
    write_split(tmp_path, "test", [item(i) for i in range(4)])
    records = WebQuestions(data_dir=str(tmp_path)).load_records()
    assert [r.id for r in records] == ["q0", "q1", "q2", "q3"]
    assert len(records[0].shots) == 3  # fewer train questions than num_shots: all of them
    assert all(s.query.startswith("train question") for s in records[0].shots)


# -- bad input -----------------------------------------------------------------------------------------


def load_error(root: Path, match: str, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as error:
        WebQuestions(data_dir=str(root), **kwargs).load_records()
    return str(error.value)


def test_missing_data_dir(tmp_path):
    load_error(tmp_path / "nowhere", r"data file not found: .*nowhere/trainmodel\.json")


def test_missing_test_file(tmp_path):
    write_split(tmp_path, "trainmodel", [item(0)])
    load_error(tmp_path, r"data file not found: .*/dev\.json", split="dev")


def test_not_a_json_array(tmp_path):
    write_split(tmp_path, "trainmodel", [item(0)])
    path = write_split(tmp_path, "test", {"qId": "q0"})
    load_error(tmp_path, rf"{path}: expected a JSON array")


def test_malformed_json(tmp_path):
    write_split(tmp_path, "trainmodel", [item(0)])
    path = write_split(tmp_path, "test", '[\n{"qId": "q0",\n"qText": }\n]')
    load_error(tmp_path, rf"{path}:3: malformed JSON")


def test_item_missing_qtext(tmp_path):
    write_split(tmp_path, "trainmodel", [item(0)])
    path = write_split(tmp_path, "test", [item(0), {"qId": "q1", "answers": ["x"]}])
    load_error(tmp_path, rf"{path}: item 1: missing field 'qText'")


def test_item_not_an_object(tmp_path):
    write_split(tmp_path, "trainmodel", [item(0)])
    path = write_split(tmp_path, "test", [item(0), "what?"])
    load_error(tmp_path, rf"{path}: item 1: expected an object")


def test_empty_answers(tmp_path):
    write_split(tmp_path, "trainmodel", [item(0)])
    write_split(tmp_path, "test", [item(0), item(1, answers=[])])
    load_error(tmp_path, r"test\.json: item 1: record 'q1' needs a non-empty list of non-empty answers")


def test_train_question_without_answer(tmp_path):
    write_split(tmp_path, "trainmodel", [item(0), item(1, answers=[])])
    write_split(tmp_path, "test", [item(0)])
    load_error(tmp_path, r"trainmodel\.json: question 'q1' has no answer for a few-shot example")


# -- paraphrase files ----------------------------------------------------------------------------------


def write_paraphrases(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def own_paraphrases(n: int, count: int = 3) -> list[dict]:
    """Rows for the first n bundled questions, with `count` made-up paraphrases each."""
    records = WebQuestions(limit=n).load_records()[:n]
    return [
        {"id": r.id, "original": r.paraphrases[0], "paraphrases": [f"{r.paraphrases[0]} ({k})" for k in range(count)]}
        for r in records
    ]


def test_paraphrases_from_a_file(tmp_path):
    path = write_paraphrases(tmp_path / "p.jsonl", own_paraphrases(3))
    records = WebQuestions(paraphrases=str(path), num_paraphrases=3, limit=3).load_records()
    assert [r.id for r in records] == ["wqs000000", "wqs000001", "wqs000002"]
    first = records[0].paraphrases
    assert first == [
        "what does jamaican people speak?",
        "what does jamaican people speak? (0)",
        "what does jamaican people speak? (1)",
    ]
    # Only the questions evaluated need a row: the file covers the first 3, limit is 3.
    assert len(WebQuestions(paraphrases=str(path), num_paraphrases=4, limit=3).load_records()[2].paraphrases) == 4


def test_a_run_records_the_paraphrase_file(tmp_path):
    path = write_paraphrases(tmp_path / "p.jsonl", own_paraphrases(2))
    (tmp_path / "p.meta.json").write_text(json.dumps({"model": "m", "settings_hash": "abc"}))
    sources = WebQuestions(paraphrases=str(path), num_paraphrases=2).sources()
    assert sources["paraphrases"]["path"] == str(path) and sources["paraphrases"]["model"] == "m"
    assert len(sources["paraphrases"]["sha256"]) == 64
    assert WebQuestions().sources() == {}


def test_missing_paraphrase_file_names_the_command_that_writes_it(tmp_path):
    with pytest.raises(DataError, match=r"paraphrase file not found: .*nope\.jsonl; write it with `selfens paraphrase"):
        WebQuestions(paraphrases=str(tmp_path / "nope.jsonl"), num_paraphrases=2, limit=2).load_records()


def test_a_question_without_a_row(tmp_path):
    path = write_paraphrases(tmp_path / "p.jsonl", own_paraphrases(2))
    with pytest.raises(DataError, match=rf"{path}: no row for question 'wqs000002' .*selfens paraphrase"):
        WebQuestions(paraphrases=str(path), num_paraphrases=2, limit=3).load_records()


def test_too_few_paraphrases_names_the_line(tmp_path):
    rows = own_paraphrases(3)
    rows[1]["paraphrases"] = rows[1]["paraphrases"][:1]
    path = write_paraphrases(tmp_path / "p.jsonl", rows)
    with pytest.raises(
        DataError, match=rf"{path}:2: question 'wqs000001' has 1 paraphrases; num_paraphrases=3 needs 2"
    ):
        WebQuestions(paraphrases=str(path), num_paraphrases=3, limit=3).load_records()


def test_a_file_written_for_other_questions(tmp_path):
    rows = own_paraphrases(2)
    rows[1]["original"] = "who is the king of spain?"
    path = write_paraphrases(tmp_path / "p.jsonl", rows)
    with pytest.raises(DataError, match=rf"{path}:2: id 'wqs000001' is 'who is the king of spain\?' there but"):
        WebQuestions(paraphrases=str(path), num_paraphrases=2, limit=2).load_records()


@pytest.mark.parametrize(
    "line, match",
    [
        ('{"id": "wqs000000", "paraphrases": "x"}', r"field 'paraphrases' should be list"),
        ('{"id": "wqs000000", "paraphrases": ["", "b"]}', r"field 'paraphrases' must be a list of non-empty strings"),
        ('{"paraphrases": ["a"]}', r"missing field 'id'"),
        (
            '{"id": "wqs000000", "paraphrases": ["a"]}\n{"id": "wqs000000", "paraphrases": ["b"]}',
            r":2: id 'wqs000000' again \(first at line 1\)",
        ),
        ('{"id": "wqs000000", "paraphrases": ["a"]', r":1: malformed JSON"),
    ],
)
def test_bad_paraphrase_file(tmp_path, line, match):
    path = tmp_path / "p.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=match):
        WebQuestions(paraphrases=str(path), num_paraphrases=2, limit=1).load_records()


# -- the hub -------------------------------------------------------------------------------------------


def test_hub_source_reads_the_hub_schema(monkeypatch):
    """`source: hub` maps the hub's fields (question, answers, url) onto records; the download itself
    needs a network, so `load_hub_dataset` is replaced by the same rows as an in-memory Dataset."""
    import datasets

    from selfens.data import webquestions

    bundled = {name: json.loads((BUNDLED_DIR / f"{name}.json").read_text()) for name in ("test", "trainmodel")}
    asked = []

    def fake(repo_id, split, instead):
        asked.append((repo_id, split))
        items = bundled["test" if split == "test" else "trainmodel"]
        return datasets.Dataset.from_dict(
            {
                "url": ["u"] * len(items),
                "question": [i["qText"] for i in items],
                "answers": [i["answers"] for i in items],
            }
        )

    monkeypatch.setattr(webquestions, "load_hub_dataset", fake)
    hub = WebQuestions(source="hub").load_records()
    files = WebQuestions().load_records()
    assert asked == [("stanfordnlp/web_questions", "train"), ("stanfordnlp/web_questions", "test")]
    assert [(r.id, r.paraphrases, r.answers) for r in hub] == [(r.id, r.paraphrases, r.answers) for r in files]
    assert hub[0].shots == files[0].shots


def test_hub_source_offline_says_what_to_do():
    # HF_HUB_OFFLINE=1 in every test, and nothing cached: the few-shot split fails first.
    with pytest.raises(DataError, match=r"web_questions \(split 'train'\) is not in the datasets cache.*source: files"):
        WebQuestions(source="hub").load_records()
