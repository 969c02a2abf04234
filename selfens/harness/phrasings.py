"""Phrasings of lm-eval requests: a paraphrase file keyed by task and document, and each request's
context with its test question swapped for each phrasing.

A row of the file is a row of any selfens paraphrase file (`selfens.data.paraphrase_files`) whose id
is `<task>/<doc_id>` and whose `original` is the span of the task's rendering that was rephrased
(the test question). The few-shot examples and instructions around it are left as the task renders
them, so every phrasing of a request shares its prefix and suffix, read once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from selfens.data.encoding import PromptCutError, encode_example
from selfens.data.paraphrase_files import file_hash, read_paraphrase_file
from selfens.data.records import DataError
from selfens.prompting.segments import Segments


@dataclass(frozen=True)
class Phrasings:
    """One document's: the span as the task renders it, and its new phrasings."""

    original: str
    paraphrases: list[str]


@dataclass(frozen=True)
class PhrasingFile:
    path: Path
    rows: dict[tuple[str, int], Phrasings]  # (task, doc_id) -> phrasings
    sha256: str

    @classmethod
    def read(cls, path: str | Path) -> PhrasingFile:
        path = Path(path)
        if not path.exists():  # (the other datasets' message names their own config)
            raise DataError(
                f"phrasing file not found: {path}; write it with `selfens paraphrase --config "
                f"configs/paraphrase/lm_eval.yaml --data.init_args.tasks '[TASK]' --model.output {path}`, or hand "
                f"in your own (one JSON object a line: id <task>/<doc_id>, original, paraphrases)"
            )
        rows = {}
        for qid, row in read_paraphrase_file(path).items():
            where = f"{path}:{row['line']}"
            task, _, doc = qid.rpartition("/")
            if not task or not doc.isdigit():
                raise DataError(
                    f"{where}: id {qid!r} is not <task>/<doc_id>; write lm-eval phrasings with "
                    f"`selfens paraphrase --config configs/paraphrase/lm_eval.yaml`"
                )
            original = row.get("original")
            if not isinstance(original, str) or not original.strip():
                raise DataError(f"{where}: field 'original' (the rephrased span of the task's prompt) is missing")
            rows[(task, int(doc))] = Phrasings(original, list(row["paraphrases"]))
        return cls(path, rows, file_hash(path))

    @property
    def tasks(self) -> list[str]:
        return sorted({task for task, _ in self.rows})

    def check_tasks(self, tasks: list[str]) -> None:
        """A file that holds none of these tasks' documents is another task's: refused by name."""
        if self.rows and not set(tasks) & set(self.tasks):
            raise DataError(
                f"{self.path} holds phrasings of task(s) {', '.join(self.tasks)}, not of {', '.join(tasks)}: "
                f"write this task's with `selfens paraphrase --config configs/paraphrase/lm_eval.yaml "
                f"--data.init_args.task {tasks[0]}`"
            )

    def get(self, task: str, doc_id: int) -> Optional[Phrasings]:
        return self.rows.get((task, doc_id))


def phrased_parts(context: str, phrasings: Optional[Phrasings], count: int) -> Optional[tuple[str, list[str], str]]:
    """(prefix, the first `count` phrasings with the original first, suffix) of a context, or None when
    there are no phrasings or the context does not hold the original span (then it runs as origin).
    The span is looked for from the end: the test question comes after the few-shot examples."""
    if phrasings is None:
        return None
    at = context.rfind(phrasings.original)
    if at < 0:
        return None
    texts = [phrasings.original, *phrasings.paraphrases][:count]
    return context[:at], texts, context[at + len(phrasings.original) :]


def request_segments(
    tokenizer, context: str, parts: Optional[tuple[str, list[str], str]], add_special_tokens: bool
) -> Segments:
    """The request's token pieces: the shared prefix and suffix read once, one block per phrasing.

    Phrasing 0 is the context as it is, tokenized whole (as lm-eval's `hf` backend reads it). A
    token that would span the edge of the span is avoided by moving the prefix's trailing spaces
    into the blocks; if the pieces still do not fall on token boundaries, each phrasing reads its
    whole context (nothing shared, the same answers)."""
    if parts is not None:
        prefix, texts, suffix = parts
        stripped = prefix.rstrip(" ")
        for head, lead in ((prefix, ""), (stripped, prefix[len(stripped) :])):
            prompts = [[("instruction", head), ("block", lead + t), ("suffix", suffix)] for t in texts]
            try:
                return encode_example(tokenizer, prompts, add_special_tokens=add_special_tokens, example_id="request")
            except PromptCutError:
                continue
        contexts = [prefix + t + suffix for t in texts]
    else:
        contexts = [context]
    blocks = [tokenizer(c, add_special_tokens=add_special_tokens)["input_ids"] for c in contexts]
    return Segments(instruction=[], shots=[], blocks=blocks, suffix=[])
