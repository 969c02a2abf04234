"""A user's own questions: one JSON object a line, `{"id", "paraphrases", "answers"}`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from selfens.data.base import ParaphraseDataModule
from selfens.data.records import DataError, Record, read_jsonl, require
from selfens.prompts import FORMATS, PromptFormat


class JsonlQuestions(ParaphraseDataModule):
    """Records from a JSONL file; each line's `paraphrases` (first = original) and `answers`.

    Lines with more paraphrases than num_paraphrases use the first ones; fewer is an error.
    """

    def __init__(self, path: str, format: Literal["qa", "mask", "completion"] = "qa", num_shots: int = 0, **kwargs):
        """
        Args:
            path: the JSONL file.
            format: prompt format: "qa" (Q:/A:), "mask" ([MASK] sentences) or "completion".
            num_shots: not supported for this dataset yet (must be 0).
            **kwargs: see ParaphraseDataModule.
        """
        if num_shots:
            raise ValueError("JsonlQuestions has no few-shot source; set num_shots: 0")
        super().__init__(num_shots=0, **kwargs)
        self.path, self.format = Path(path), format

    def prompt_format(self) -> PromptFormat:
        return FORMATS[self.format]

    def load_records(self) -> list[Record]:
        records = []
        for number, item in read_jsonl(self.path):
            where = f"{self.path}:{number}"
            paraphrases = require(item, "paraphrases", list, where)
            if len(paraphrases) < self.num_paraphrases:
                raise DataError(f"{where}: {len(paraphrases)} paraphrases, fewer than num_paraphrases={self.num_paraphrases}")
            record = Record(
                str(item.get("id", number)), paraphrases[: self.num_paraphrases], require(item, "answers", list, where)
            )
            record.check(where)
            records.append(record)
        return records
