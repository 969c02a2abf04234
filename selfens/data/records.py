"""Records, and reading them from files with errors that say where the input is wrong."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from selfens.errors import SelfensError
from selfens.prompts import Shot


class DataError(SelfensError, ValueError):
    """Bad input data: the message names the file, the line or item, and the field."""


@dataclass
class Record:
    """One question in several phrasings. paraphrases[0] is the original wording ("origin")."""

    id: str
    paraphrases: list[str]
    answers: list[str]
    shots: list[Shot] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        for k, text in enumerate(self.paraphrases):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: record {self.id!r} has an empty paraphrase at index {k}")
        if not self.paraphrases:
            raise DataError(f"{where}: record {self.id!r} has no paraphrases")
        if not self.answers or not all(isinstance(a, str) and a.strip() for a in self.answers):
            raise DataError(f"{where}: record {self.id!r} needs a non-empty list of non-empty answers")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a malformed line names its file and number."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: malformed JSON ({error.msg}, column {error.colno})") from None
            if not isinstance(item, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(item).__name__}")
            yield number, item


def read_json_array(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: malformed JSON ({error.msg}, column {error.colno})") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON array of objects")
    return items


def require(item: dict, key: str, kind: type, where: str):
    """item[key], which must exist and be of `kind`."""
    if key not in item:
        raise DataError(f"{where}: missing field {key!r} (fields present: {sorted(item)})")
    value = item[key]
    if not isinstance(value, kind):
        raise DataError(f"{where}: field {key!r} should be {kind.__name__}, got {type(value).__name__}: {value!r}")
    return value
