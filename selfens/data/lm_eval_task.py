"""An lm-evaluation-harness task's test questions, as a source for `selfens paraphrase`.

Each document of the task's evaluation split (in lm-eval's order: its position is lm-eval's
`doc_id`) becomes a record `<task>/<doc_id>` whose one phrasing is the text of the document's
`field` (the test question, as the task renders it) and whose answer is the task's target (for
multiple choice, the gold choice). Nothing is decoded to collect them. The paraphrase file
`selfens paraphrase` writes from these records is what `selfens lm-eval --paraphrases` reads.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from typing import Optional, Union

from selfens.data.base import ParaphraseDataModule
from selfens.data.records import DataError, Record
from selfens.errors import ConfigError
from selfens.prompting.formats import FORMATS, PromptFormat

BUNDLED_TASKS = files("selfens") / "resources" / "lm_eval_tasks"
INSTALL = 'lm-eval tasks need lm-evaluation-harness: pip install -e ".[lm-eval]" (or make install-lm-eval)'


def task_manager(include_path: Optional[list[str]] = None):
    """lm-eval's task index with the bundled tasks (and the user's folders) in it; built once per
    process for the same folders (indexing lm-eval's thousands of task files takes seconds)."""
    try:
        import lm_eval.tasks  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL) from None
    return _task_manager(tuple(include_path or ()))


@lru_cache(maxsize=4)
def _task_manager(include_path: tuple[str, ...]):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(BUNDLED_TASKS), *include_path])


def load_tasks(names: list[str], include_path: Optional[list[str]] = None) -> dict:
    """name -> lm-eval task object; an unknown name is one line that says where tasks come from."""
    manager = task_manager(include_path)
    unknown = [t for t in names if t not in manager.all_tasks]
    if unknown:
        raise ConfigError(
            f"unknown lm-eval task(s) {', '.join(unknown)}; bundled: selfens_capitals, selfens_capitals_mc "
            f"(a task of your own: its YAML in a folder given as include_path)"
        )
    return manager.load(names)["tasks"]


class LmEvalTask(ParaphraseDataModule):
    """The test questions of lm-eval tasks, one phrasing each (`selfens paraphrase` adds the others)."""

    def __init__(
        self,
        tasks: Union[str, list[str]],
        field: Optional[str] = None,
        include_path: Optional[list[str]] = None,
        limit: Optional[int] = None,
        num_paraphrases: int = 1,
        num_shots: int = 0,
        **kwargs,
    ):
        """
        Args:
            tasks: lm-eval task names (bundled: selfens_capitals, selfens_capitals_mc).
            field: the document field that holds the test question; None: the one field the task's
                doc_to_text template names (an error if it names none or several).
            include_path: folders of task YAMLs of your own.
            limit: the first `limit` documents of each task (as `selfens lm-eval --limit`); None: all.
            num_paraphrases, num_shots: 1 and 0 (the task's question as it is).
            **kwargs: see ParaphraseDataModule.
        """
        super().__init__(num_paraphrases=num_paraphrases, num_shots=num_shots, **kwargs)
        self.tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        if limit is not None and limit < 1:
            raise ConfigError(f"limit must be at least 1 (or null for all), got {limit}")
        self.field, self.include_path, self.task_limit = field, include_path, limit

    def prompt_format(self) -> PromptFormat:
        return FORMATS["qa"]

    def load_records(self) -> list[Record]:
        records = []
        for name, task in load_tasks(self.tasks, self.include_path).items():
            field = self.field or question_field(name, task)
            docs = list(task.eval_docs)
            for doc_id, doc in enumerate(docs[: self.task_limit]):
                where = f"task {name}, document {doc_id}"
                span = doc.get(field)
                if not isinstance(span, str) or not span.strip():
                    raise DataError(f"{where}: field {field!r} is missing or empty (fields: {sorted(doc)}); set field:")
                if span not in str(task.doc_to_text(doc)):
                    raise DataError(
                        f"{where}: the text of field {field!r} is not in the question the task renders "
                        f"({task.doc_to_text(doc)!r}): name the field it shows with field:"
                    )
                record = Record(f"{name}/{doc_id}", [span], target_texts(task, doc))
                record.check(where)
                records.append(record)
        return records


def question_field(name: str, task) -> str:
    """The one document field the task's doc_to_text template shows."""
    template = task.config.doc_to_text
    fields = sorted(set(re.findall(r"\{\{\s*([A-Za-z_]\w*)", template))) if isinstance(template, str) else []
    if len(fields) != 1:
        raise ConfigError(
            f"task {name}: say which document field holds the question to rephrase (data field:); its "
            f"doc_to_text {'names ' + ', '.join(fields) if fields else 'is not a template of one field'}"
        )
    return fields[0]


def target_texts(task, doc) -> list[str]:
    """The document's gold answers as text (a multiple-choice task's gold choice)."""
    target = task.doc_to_target(doc)
    if task.OUTPUT_TYPE == "multiple_choice":
        choices = task.doc_to_choice(doc)
        golds = target if isinstance(target, list) else [target]
        return [str(choices[int(g)] if not isinstance(g, str) or g.isdigit() else g) for g in golds]
    return [str(t) for t in target] if isinstance(target, list) else [str(target)]
