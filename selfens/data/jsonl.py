"""A user's own questions: one JSON object a line, `{"id", "paraphrases", "answers"}`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from selfens.data.base import ParaphraseDataModule
from selfens.data.records import DataError, Record, read_jsonl, require
from selfens.errors import ConfigError
from selfens.prompts import FORMATS, PromptFormat


class JsonlQuestions(ParaphraseDataModule):
    """Records from a JSONL file; each line's `paraphrases` (first = original) and `answers`.

    By default every line must have the same number of paraphrases, and all are used; with
    `num_paraphrases: N` each line's first N are used (fewer is an error).
    """

    def __init__(
        self,
        path: str,
        format: Literal["qa", "mask", "completion"] = "qa",
        num_paraphrases: Optional[int] = None,
        num_shots: int = 0,
        **kwargs,
    ):
        """
        Args:
            path: the JSONL file.
            format: prompt format: "qa" (Q:/A:), "mask" ([MASK] sentences) or "completion".
            num_paraphrases: phrasings per question; None: as many as the file has (the same on every line).
            num_shots: not supported for this dataset yet (must be 0).
            **kwargs: see ParaphraseDataModule.
        """
        if num_shots:
            raise ConfigError("JsonlQuestions has no few-shot source; set num_shots: 0")
        super().__init__(num_paraphrases=num_paraphrases or 1, num_shots=0, **kwargs)
        self.path, self.format, self.all_paraphrases = Path(path), format, num_paraphrases is None

    def prompt_format(self) -> PromptFormat:
        return FORMATS[self.format]

    def resolved_settings(self) -> dict:
        known = {"num_paraphrases": self.num_paraphrases} if self.examples is not None else {}
        return {**super().resolved_settings(), **known}

    def load_records(self) -> list[Record]:
        records, first = [], None  # first: (line, count) that every line must match
        for number, item in read_jsonl(self.path):
            where = f"{self.path}:{number}"
            paraphrases = require(item, "paraphrases", list, where)
            if self.all_paraphrases:
                first = first or (number, len(paraphrases))
                if len(paraphrases) != first[1]:
                    raise DataError(
                        f"{where}: {len(paraphrases)} paraphrases, but line {first[0]} has {first[1]}: every line "
                        f"needs the same number, or set num_paraphrases: N to use the first N of each line"
                    )
                self.num_paraphrases = first[1]
            elif len(paraphrases) < self.num_paraphrases:
                raise DataError(
                    f"{where}: {len(paraphrases)} paraphrases, fewer than num_paraphrases={self.num_paraphrases}"
                )
            record = Record(
                str(item.get("id", number)), paraphrases[: self.num_paraphrases], require(item, "answers", list, where)
            )
            record.check(where)
            records.append(record)
        return records
