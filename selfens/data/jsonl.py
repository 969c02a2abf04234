"""A user's own questions: one JSON object a line, `{"id", "paraphrases", "answers"}`."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator, Literal, Optional

from selfens.data.base import ParaphraseDataModule, Split, check_split, init_args
from selfens.data.paraphrase_files import file_hash
from selfens.data.records import DataError, Record, read_jsonl, require
from selfens.errors import ConfigError
from selfens.prompting.formats import FORMATS, PromptFormat, Shot


class JsonlQuestions(ParaphraseDataModule):
    """Records from a JSONL file; each line's `paraphrases` (first = original) and `answers`.

    By default every line must have the same number of paraphrases, and all are used; with
    `num_paraphrases: N` each line's first N are used (fewer is an error). Few-shot examples come
    from a second file of the same format (`shots:`): `num_shots` of its lines, drawn with `seed`,
    each shown as its first paraphrase and first answer.
    """

    def __init__(
        self,
        path: str,
        format: Literal["qa", "mask", "completion"] = "qa",
        num_paraphrases: Optional[int] = None,
        shots: Optional[str] = None,
        num_shots: int = 0,
        split: Split = "test",
        dev_path: Optional[str] = None,
        **kwargs,
    ):
        """
        Args:
            path: the JSONL file.
            format: prompt format: "qa" (Q:/A:), "mask" ([MASK] sentences) or "completion".
            num_paraphrases: phrasings per question; None: as many as the file has (the same on every line).
            shots: a JSONL file of solved questions in the same format, the source of few-shot examples.
            num_shots: few-shot examples drawn from `shots` with `seed` (0: none; more needs `shots`).
            split: "test" (`path`) or "dev" (`dev_path`: the questions fitted methods learn on; no id
                may be in both files).
            dev_path: a second JSONL file in the same format, the development split.
            **kwargs: see ParaphraseDataModule.
        """
        if num_shots < 0:
            raise ConfigError(f"JsonlQuestions: num_shots must be 0 or more, got {num_shots}")
        if num_shots and shots is None:
            raise ConfigError(
                f"JsonlQuestions: num_shots={num_shots} needs few-shot examples: set shots: FILE (a JSONL file in "
                f"the questions' format), or num_shots: 0"
            )
        super().__init__(
            num_paraphrases=1 if num_paraphrases is None else num_paraphrases, num_shots=num_shots, **kwargs
        )
        self.split, self.dev_path = check_split(split), dev_path
        chosen = dev_path if self.split == "dev" else path
        if chosen is None:
            raise ConfigError("JsonlQuestions: split: dev needs dev_path: FILE (a second JSONL file of questions)")
        self.path, self.format, self.all_paraphrases = Path(chosen), format, num_paraphrases is None
        self.shots_path = Path(shots) if shots is not None else None

    def dev_split(self) -> JsonlQuestions:
        if self.dev_path is None:
            raise ConfigError(
                "JsonlQuestions: a development split needs dev_path: FILE (a second JSONL file of questions, "
                "none of them in path)"
            )
        return JsonlQuestions(**{**init_args(self.hparams), "split": "dev"})

    def prompt_format(self) -> PromptFormat:
        return FORMATS[self.format]

    def resolved_settings(self) -> dict:
        known = {"num_paraphrases": self.num_paraphrases} if self.examples is not None else {}
        return {**super().resolved_settings(), **known}

    def sources(self) -> dict:
        if not self.num_shots:
            return {}
        return {"shots": {"path": str(self.shots_path), "sha256": file_hash(self.shots_path)}}

    def load_records(self) -> list[Record]:
        shots = self._draw_shots()
        records, first = [], None  # first: (line, count) that every line must match
        for where, number, (qid, paraphrases, answers), group in read_questions(self.path):
            count = len(paraphrases)
            if self.all_paraphrases:
                first = first or (number, count)
                if count != first[1]:
                    raise DataError(
                        f"{where}: {count} paraphrases, but line {first[0]} has {first[1]}: every line "
                        f"needs the same number, or set num_paraphrases: N to use the first N of each line"
                    )
                self.num_paraphrases = first[1]
            elif count < self.num_paraphrases:
                raise DataError(f"{where}: {count} paraphrases, fewer than num_paraphrases={self.num_paraphrases}")
            record = Record(qid, paraphrases[: self.num_paraphrases], answers, [s for _, s in shots])
            if group is not None:
                record.meta["group"] = group
            record.check(where)
            _check_apart(record, where, shots)
            records.append(record)
        return records

    def _draw_shots(self) -> list[tuple[str, Shot]]:
        """(where, shot) of `num_shots` lines of the shots file, drawn with `seed` as WebQuestions draws
        its train pairs."""
        if not self.num_shots:
            return []
        if not self.shots_path.exists():
            raise DataError(f"shots file not found: {self.shots_path} (shots: names a JSONL file of solved questions)")
        pool = list(read_questions(self.shots_path))
        if len(pool) < self.num_shots:
            raise DataError(
                f"{self.shots_path}: {len(pool)} few-shot examples, fewer than num_shots={self.num_shots}; "
                f"add lines or lower num_shots"
            )
        shots = []
        for where, _, (qid, paraphrases, answers), _ in random.Random(self.seed).sample(pool, self.num_shots):
            Record(qid, paraphrases[:1], answers).check(where)  # a shot shows the first paraphrase and answer
            shots.append((where, Shot(paraphrases[0], answers[0])))
        return shots


def read_questions(path: Path) -> Iterator[tuple[str, int, tuple[str, list, list], Optional[str]]]:
    """(where, line number, (id, paraphrases, answers), group) of each line of a questions file; a
    line's optional `group` (e.g. a topic) gets results of its own in the report."""
    for number, item in read_jsonl(path):
        where = f"{path}:{number}"
        paraphrases, answers = require(item, "paraphrases", list, where), require(item, "answers", list, where)
        group = item.get("group")
        if group is not None and not isinstance(group, str):
            raise DataError(f"{where}: group must be a string (a name for the question's group), got {group!r}")
        yield where, number, (str(item.get("id", number)), paraphrases, answers), group


def _check_apart(record: Record, where: str, shots: list[tuple[str, Shot]]) -> None:
    """A question shown solved among its own few-shot examples would be scored on a given answer."""
    phrasings = {p.strip().casefold() for p in record.paraphrases}
    for shot_where, shot in shots:
        if shot.query.strip().casefold() in phrasings:
            raise DataError(
                f"{shot_where}: few-shot example {shot.query!r} is also question {record.id!r} ({where}): its "
                f"answer would be in its own prompt; remove it from one of the files"
            )
