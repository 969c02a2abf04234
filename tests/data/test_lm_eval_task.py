"""The lm-eval source of `selfens paraphrase`: a task's test questions keyed <task>/<doc_id>, and the
file it writes, read back by the lm-eval backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfens.data import LmEvalTask
from selfens.errors import ConfigError
from selfens.harness.phrasings import PhrasingFile
from tests.helpers import selfens

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "paraphrase" / "lm_eval.yaml"


def test_records_are_the_tasks_questions_in_lm_evals_order():
    from selfens.data.lm_eval_task import load_tasks

    records = LmEvalTask(tasks=["selfens_capitals", "selfens_capitals_mc"], limit=3).load_records()
    docs = list(load_tasks(["selfens_capitals"])["selfens_capitals"].eval_docs)
    assert [r.id for r in records] == [
        f"{t}/{d}" for t in ("selfens_capitals", "selfens_capitals_mc") for d in range(3)
    ]
    for r in records:
        doc = docs[int(r.id.rsplit("/", 1)[1])]
        assert r.paraphrases == [doc["question"]] and r.answers == [doc["answer"]]  # mc: the gold choice's text


def test_a_task_whose_prompt_names_several_fields_needs_field(tmp_path):
    (tmp_path / "two_fields.yaml").write_text(
        "task: two_fields\n"
        "custom_dataset: !function data.load\n"
        "output_type: generate_until\n"
        "test_split: test\n"
        'doc_to_text: "{{topic}}: {{question}}\\nA:"\n'
        'doc_to_target: "{{answer}}"\n'
    )
    (tmp_path / "data.py").write_text(
        "import datasets\n"
        "def load(**kwargs):\n"
        "    return {'test': datasets.Dataset.from_list([{'topic': 'geo', 'question': 'Where is Rome?', 'answer': 'Italy'}])}\n"
    )
    data = LmEvalTask(tasks="two_fields", include_path=[str(tmp_path)])
    with pytest.raises(ConfigError, match="say which document field .* names question, topic"):
        data.load_records()
    data = LmEvalTask(tasks="two_fields", field="question", include_path=[str(tmp_path)])
    assert data.load_records()[0].paraphrases == ["Where is Rome?"]


@pytest.mark.slow
def test_selfens_paraphrase_writes_a_file_the_backend_reads(tiny_model_path, tmp_path, capsys):
    output = tmp_path / "capitals.jsonl"
    args = [
        "paraphrase", "--config", CONFIG, "--model.model", tiny_model_path, "--model.output", output,
        "--model.num_paraphrases", 2, "--model.max_tries", 1, "--data.init_args.tasks", "[selfens_capitals]",
        "--data.init_args.limit", 2, "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    selfens(*args)
    file = PhrasingFile.read(output)
    assert set(file.rows) == {("selfens_capitals", 0), ("selfens_capitals", 1)}
    assert file.get("selfens_capitals", 0).original.startswith("Which country or region is ")
    capsys.readouterr()
    selfens(*args)  # a re-run keeps what is written
    assert "resumed with 2 done" in capsys.readouterr().err
