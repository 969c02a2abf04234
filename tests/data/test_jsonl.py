"""JsonlQuestions: a user's own {"id", "paraphrases", "answers"} lines."""

import json
from pathlib import Path

import pytest

from selfens.data import DataError, JsonlQuestions

LINES = [
    {
        "id": "a",
        "paraphrases": ["where is tokyo?", "tokyo is in which country?", "in what country is tokyo?"],
        "answers": ["Japan"],
    },
    {
        "id": "b",
        "paraphrases": ["what is the capital of france?", "france's capital is?"],
        "answers": ["Paris", "paris"],
    },
]


def write(path: Path, lines) -> Path:
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines), encoding="utf-8")
    return path


def test_reads_id_paraphrases_answers(tmp_path):
    path = write(tmp_path / "q.jsonl", LINES)
    records = JsonlQuestions(str(path), num_paraphrases=2).load_records()
    assert [r.id for r in records] == ["a", "b"]
    assert records[0].paraphrases == ["where is tokyo?", "tokyo is in which country?"]  # the first N of 3
    assert records[1].paraphrases == LINES[1]["paraphrases"]
    assert records[1].answers == ["Paris", "paris"]
    assert all(r.shots == [] for r in records)


def test_missing_id_is_the_line_number(tmp_path):
    path = write(tmp_path / "q.jsonl", ["", {"paraphrases": ["where is tokyo?"], "answers": ["Japan"]}])
    assert JsonlQuestions(str(path), num_paraphrases=1).load_records()[0].id == "2"


def test_examples_and_batch(tmp_path, tiny, tiny_model_path):
    _, tokenizer = tiny
    path = write(tmp_path / "q.jsonl", LINES)
    dm = JsonlQuestions(str(path), num_paraphrases=2, prompt_style="raw", batch_size=2)
    dm.connect(tokenizer, tiny_model_path)
    dm.setup("test")
    assert [e.id for e in dm.examples] == ["a", "b"]
    assert tokenizer.decode(dm.examples[0].segments.blocks[1]) == "Q: tokyo is in which country?\nA:"
    batch = next(iter(dm.test_dataloader()))
    assert batch.input_ids.shape[:2] == (2, 2)
    assert sorted(batch.index.tolist()) == [0, 1]  # shortest first within a prefix


def test_shots_are_not_supported():
    with pytest.raises(ValueError, match="num_shots: 0"):
        JsonlQuestions("q.jsonl", num_shots=2)


# -- bad input -----------------------------------------------------------------------------------------


def load_error(path: Path, match: str, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as error:
        JsonlQuestions(str(path), **{"num_paraphrases": 2, **kwargs}).load_records()
    return str(error.value)


def test_missing_file(tmp_path):
    load_error(tmp_path / "nope.jsonl", r"data file not found: .*nope\.jsonl")


def test_malformed_line(tmp_path):
    path = write(tmp_path / "q.jsonl", [LINES[0], '{"id": "b", "paraphrases": ["x", "y"]'])
    load_error(path, rf"{path}:2: malformed JSON")


def test_missing_field(tmp_path):
    path = write(tmp_path / "q.jsonl", [LINES[0], {"id": "b", "paraphrases": ["x", "y"]}])
    load_error(path, rf"{path}:2: missing field 'answers'")


def test_empty_paraphrase(tmp_path):
    path = write(tmp_path / "q.jsonl", [{"id": "e", "paraphrases": ["", "x"], "answers": ["y"]}])
    load_error(path, rf"{path}:1: record 'e' has an empty paraphrase at index 0")


def test_paraphrase_not_a_string(tmp_path):
    path = write(tmp_path / "q.jsonl", [{"id": "e", "paraphrases": ["x", 3], "answers": ["y"]}])
    load_error(path, rf"{path}:1: record 'e' has an empty paraphrase at index 1")


def test_empty_answers(tmp_path):
    path = write(tmp_path / "q.jsonl", [LINES[0], {"id": "e", "paraphrases": ["x", "y"], "answers": []}])
    load_error(path, rf"{path}:2: record 'e' needs a non-empty list of non-empty answers")


def test_too_few_paraphrases(tmp_path):
    path = write(tmp_path / "q.jsonl", LINES)
    load_error(path, rf"{path}:2: 2 paraphrases, fewer than num_paraphrases=3", num_paraphrases=3)


def test_errors_come_at_setup_before_decoding(tmp_path, tiny, tiny_model_path):
    path = write(tmp_path / "q.jsonl", [LINES[0], {"id": "e", "paraphrases": ["x", "y"], "answers": []}])
    dm = JsonlQuestions(str(path), num_paraphrases=2)
    dm.connect(tiny[1], tiny_model_path)
    with pytest.raises(DataError, match=rf"{path}:2"):
        dm.setup("test")
    assert dm.examples is None
