"""WebQuestions (Berant et al., EMNLP 2013): open questions with Freebase answers."""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Literal, Optional

from selfens.data.base import ParaphraseDataModule
from selfens.data.hub import load_hub_dataset
from selfens.data.paraphrase_files import WRITE_IT, file_hash, meta_path, read_paraphrase_file
from selfens.data.records import DataError, Record, read_json, read_json_array, require
from selfens.errors import ConfigError
from selfens.prompting.formats import FORMATS, PromptFormat, Shot

BUNDLED = resources.files("selfens") / "resources" / "webquestions"
HUB_ID = "stanfordnlp/web_questions"


class WebQuestions(ParaphraseDataModule):
    """Questions of the test split; few-shot pairs from the train file, chosen with `seed`.

    The dataset has one wording per question; more come from a paraphrase file (`paraphrases:`,
    written by `selfens paraphrase` or by hand): paraphrase 0 is the original, 1.. the file's.
    """

    def __init__(
        self,
        data_dir: Optional[str] = None,
        source: Literal["files", "hub"] = "files",
        split: str = "test",
        train_file: str = "trainmodel",
        paraphrases: Optional[str] = None,
        num_shots: int = 5,
        num_paraphrases: int = 1,
        **kwargs,
    ):
        """
        Args:
            data_dir: folder with `<split>.json` and `<train_file>.json` (brmson layout); None: bundled.
            source: "files" (data_dir, or the bundled copy) or "hub": `stanfordnlp/web_questions` through
                `datasets` (cached after the first download; then split and train_file name hub splits).
            split: the questions evaluated.
            train_file: where few-shot examples come from (never the test split).
            paraphrases: a paraphrase file (JSONL: id, original, paraphrases); needed for num_paraphrases > 1.
            num_shots: few-shot pairs (the seed used 5).
            num_paraphrases: phrasings per question: the original and num_paraphrases - 1 from the file.
            **kwargs: see ParaphraseDataModule.
        """
        if num_paraphrases > 1 and paraphrases is None:
            raise ConfigError(
                f"WebQuestions has one wording per question; num_paraphrases={num_paraphrases} needs a paraphrase "
                f"file: set paraphrases: FILE ({WRITE_IT}), or use num_paraphrases: 1 (method origin)"
            )
        if source == "hub" and data_dir is not None:
            raise ConfigError("WebQuestions: give data_dir (source: files) or source: hub, not both")
        if source == "hub" and train_file == "trainmodel":
            train_file = "train"  # the hub's name of the train split
        super().__init__(num_paraphrases=num_paraphrases, num_shots=num_shots, **kwargs)
        self.data_dir = Path(data_dir) if data_dir is not None else Path(str(BUNDLED))
        self.source, self.split, self.train_file = source, split, train_file
        self.paraphrases = Path(paraphrases) if paraphrases is not None else None

    def prompt_format(self) -> PromptFormat:
        return FORMATS["qa"]

    def sources(self) -> dict:
        if self.paraphrases is None:
            return {}
        meta = meta_path(self.paraphrases)
        made = read_json(meta) if meta.exists() else {}
        return {
            "paraphrases": {
                "path": str(self.paraphrases),
                "sha256": file_hash(self.paraphrases),
                "model": made.get("model"),
                "settings_hash": made.get("settings_hash"),
            }
        }

    def _read(self, name: str) -> tuple[str, list[tuple[str, str, list[str]]]]:
        """(where, [(id, question, answers)]) of a split."""
        if self.source == "hub":
            return self._read_hub(name)
        path = self.data_dir / f"{name}.json"
        rows = []
        for i, item in enumerate(read_json_array(path)):
            where = f"{path}: item {i}"
            if not isinstance(item, dict):
                raise DataError(f"{where}: expected an object")
            rows.append(
                (
                    require(item, "qId", str, where),
                    require(item, "qText", str, where),
                    require(item, "answers", list, where),
                )
            )
        return str(path), rows

    def _read_hub(self, split: str) -> tuple[str, list[tuple[str, str, list[str]]]]:
        table = load_hub_dataset(HUB_ID, split, "use the bundled copy (source: files)")
        # The hub rows have no ids: the test split keeps the original order, numbered as the bundled copy.
        name = "wqs" if split == "test" else f"{split}-"
        questions, answers = table["question"], table["answers"]
        return f"{HUB_ID}[{split}]", [(f"{name}{i:06d}", q, a) for i, (q, a) in enumerate(zip(questions, answers))]

    def load_records(self) -> list[Record]:
        where, train = self._read(self.train_file)
        picked = random.Random(self.seed).sample(train, min(self.num_shots, len(train)))
        for qid, _, answers in picked:
            if not answers or not isinstance(answers[0], str) or not answers[0].strip():
                raise DataError(f"{where}: question {qid!r} has no answer for a few-shot example")
        shots = [Shot(question, answers[0]) for _, question, answers in picked]
        where, questions = self._read(self.split)
        questions = questions[: self.limit]  # a paraphrase file may cover only those evaluated
        extra = self._paraphrases(questions) if self.num_paraphrases > 1 else {}
        records = []
        for i, (qid, question, answers) in enumerate(questions):
            record = Record(qid, [question, *extra.get(qid, [])], answers, shots)
            record.check(f"{where}: item {i}")
            records.append(record)
        return records

    def _paraphrases(self, questions: list[tuple[str, str, list[str]]]) -> dict[str, list[str]]:
        """id -> the first num_paraphrases - 1 paraphrases of each question, from the file."""
        rows, need = read_paraphrase_file(self.paraphrases), self.num_paraphrases - 1
        found = {}
        for qid, question, _ in questions:
            row = rows.get(qid)
            if row is None:
                raise DataError(
                    f"{self.paraphrases}: no row for question {qid!r} ({question!r}); {WRITE_IT} for this split "
                    f"and limit (a re-run adds the missing questions)"
                )
            where = f"{self.paraphrases}:{row['line']}"
            if "original" in row and row["original"].strip() != question.strip():
                raise DataError(
                    f"{where}: id {qid!r} is {row['original']!r} there but {question!r} in the data: "
                    f"the file was written for other data"
                )
            if len(row["paraphrases"]) < need:
                raise DataError(
                    f"{where}: question {qid!r} has {len(row['paraphrases'])} paraphrases; num_paraphrases="
                    f"{self.num_paraphrases} needs {need} (and the original). Lower num_paraphrases, or write more "
                    f"(selfens paraphrase with a higher num_paraphrases or max_tries, into a new output)"
                )
            found[qid] = row["paraphrases"][:need]
        return found
