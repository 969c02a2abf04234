"""WebQuestions: the bundled split, few-shot pairs from the train file, and bad input."""

import json
from pathlib import Path

import pytest

from selfens.data import DataError, WebQuestions
from selfens.data.webquestions import BUNDLED
from selfens.prompts import render

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


def test_more_than_one_paraphrase_is_refused():
    with pytest.raises(ValueError, match="paraphrase generation is not available"):
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
