"""JsonlQuestions: a user's own {"id", "paraphrases", "answers"} lines."""

import json
import random
from pathlib import Path

import pytest

from selfens.data import DataError, JsonlQuestions
from selfens.errors import ConfigError

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


# -- few-shot examples from a shots file ---------------------------------------------------------------

SHOTS = [
    {"id": f"s{i}", "paraphrases": [f"what is shot question {i}?", f"shot question {i} is?"], "answers": [f"answer{i}"]}
    for i in range(6)
]


def with_shots(tmp_path, shots=SHOTS, **kwargs) -> JsonlQuestions:
    questions, file = write(tmp_path / "q.jsonl", LINES), write(tmp_path / "shots.jsonl", shots)
    return JsonlQuestions(str(questions), num_paraphrases=2, shots=str(file), **{"num_shots": 3, **kwargs})


def test_shots_from_a_file_are_in_the_prompt(tmp_path, tiny, tiny_model_path):
    _, tokenizer = tiny
    dm = with_shots(tmp_path, prompt_style="raw", seed=1)
    dm.connect(tokenizer, tiny_model_path)
    dm.setup("test")
    # Drawn as WebQuestions draws its train pairs: a seeded sample of the file's lines.
    drawn = random.Random(1).sample(SHOTS, 3)
    prefix = tokenizer.decode(dm.examples[0].segments.prefix)
    shown = "".join(f"Q: {s['paraphrases'][0]}\nA: {s['answers'][0]}\n\n" for s in drawn)
    assert prefix.endswith(shown), prefix
    assert all(tokenizer.decode(e.segments.prefix) == prefix for e in dm.examples)
    assert dm.settings()["shots"] == 3
    assert dm.sources()["shots"]["path"] == str(tmp_path / "shots.jsonl")


def test_seed_draws_other_shots_and_zero_shots_ignores_the_file(tmp_path):
    queries = [[s.query for s in with_shots(tmp_path, seed=seed).load_records()[0].shots] for seed in (0, 1)]
    assert queries[0] != queries[1]
    assert with_shots(tmp_path, num_shots=0).load_records()[0].shots == []
    assert with_shots(tmp_path, num_shots=0).sources() == {}


def test_num_shots_without_a_shots_file_is_one_line():
    with pytest.raises(ConfigError, match=r"num_shots=2 needs few-shot examples: set shots: FILE") as error:
        JsonlQuestions("q.jsonl", num_shots=2)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "shots, match",
    [
        (None, r"shots file not found: .*nope\.jsonl"),
        ([SHOTS[0], '{"id": "s1"'], r"shots\.jsonl:2: malformed JSON"),
        ([SHOTS[0], {"id": "s1", "paraphrases": ["x?"]}, *SHOTS[2:]], r"shots\.jsonl:2: missing field 'answers'"),
        ([{**s, "answers": [""]} for s in SHOTS], r"shots\.jsonl:\d: record 's\d' needs a non-empty list"),
        (SHOTS[:2], r"shots\.jsonl: 2 few-shot examples, fewer than num_shots=3; add lines or lower num_shots"),
        (
            [{**s, "paraphrases": ["Where is Tokyo?"]} for s in SHOTS],
            r"shots\.jsonl:\d: few-shot example 'Where is Tokyo\?' is also question 'a' \(.*q\.jsonl:1\)",
        ),
    ],
    ids=["missing", "malformed", "missing_field", "empty_answer", "too_few", "also_a_question"],
)
def test_bad_shots_file_is_one_line(tmp_path, shots, match):
    if shots is None:
        dm = JsonlQuestions(str(write(tmp_path / "q.jsonl", LINES)), shots=str(tmp_path / "nope.jsonl"), num_shots=3)
    else:
        dm = with_shots(tmp_path, shots=shots)
    with pytest.raises(DataError, match=match) as error:
        dm.load_records()
    assert "\n" not in str(error.value)


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


def test_shipped_config_without_shots_file_fails_in_one_line(tiny_model_path, tmp_path, capsys):
    from tests.helpers import selfens_fails

    config = Path(__file__).resolve().parents[2] / "configs" / "jsonl" / "origin.yaml"
    line = selfens_fails(
        capsys,
        *("test", "--config", config, "--model.init_args.model", tiny_model_path, "--data.init_args.shots", "null"),
        *("--trainer.logger.init_args.save_dir", tmp_path),
    )
    assert "num_shots=4 needs few-shot examples: set shots: FILE" in line
