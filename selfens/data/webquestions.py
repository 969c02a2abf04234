"""WebQuestions (Berant et al., EMNLP 2013): open questions with Freebase answers."""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path
from typing import Optional

from selfens.data.base import ParaphraseDataModule
from selfens.data.records import DataError, Record, read_json_array, require
from selfens.errors import ConfigError
from selfens.prompts import FORMATS, PromptFormat, Shot

BUNDLED = resources.files("selfens") / "resources" / "webquestions"


class WebQuestions(ParaphraseDataModule):
    """Questions of the test split; few-shot pairs from the train file, chosen with `seed`.

    Only the original wording exists until paraphrase generation lands, so num_paraphrases must be 1.
    """

    def __init__(
        self,
        data_dir: Optional[str] = None,
        split: str = "test",
        train_file: str = "trainmodel",
        num_shots: int = 5,
        num_paraphrases: int = 1,
        **kwargs,
    ):
        """
        Args:
            data_dir: folder with `<split>.json` and `<train_file>.json` (brmson layout); None: bundled.
            split: the file evaluated.
            train_file: the file few-shot examples come from (never the test split).
            num_shots: few-shot pairs (the seed used 5).
            num_paraphrases: phrasings per question; only 1 (the original) exists for now.
            **kwargs: see ParaphraseDataModule.
        """
        if num_paraphrases != 1:
            raise ConfigError(
                f"WebQuestions has only the original wording of each question (num_paraphrases={num_paraphrases} "
                f"asked); paraphrase generation is not available yet. Use num_paraphrases: 1 (method origin), "
                f"or ParaRel for human-written paraphrases."
            )
        super().__init__(num_paraphrases=num_paraphrases, num_shots=num_shots, **kwargs)
        self.data_dir = Path(data_dir) if data_dir is not None else Path(str(BUNDLED))
        self.split, self.train_file = split, train_file

    def prompt_format(self) -> PromptFormat:
        return FORMATS["qa"]

    def _read(self, name: str) -> list[tuple[str, str, list[str]]]:
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
        return rows

    def load_records(self) -> list[Record]:
        train = self._read(self.train_file)
        picked = random.Random(self.seed).sample(train, min(self.num_shots, len(train)))
        for qid, _, answers in picked:
            if not answers or not isinstance(answers[0], str) or not answers[0].strip():
                raise DataError(
                    f"{self.data_dir / self.train_file}.json: question {qid!r} has no answer for a few-shot example"
                )
        shots = [Shot(question, answers[0]) for _, question, answers in picked]
        records = []
        for i, (qid, question, answers) in enumerate(self._read(self.split)):
            record = Record(qid, [question], answers, shots)
            record.check(f"{self.data_dir / self.split}.json: item {i}")
            records.append(record)
        return records
