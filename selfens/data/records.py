"""Records, and reading them from files with errors that say where the input is wrong."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from selfens.errors import SelfensError
from selfens.prompting.formats import Shot


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
    where: Optional[str] = field(default=None, compare=False)  # where it was read (`file:line`), once checked

    def check(self, where: str) -> None:
        """Check the record read at `where` (`file:line`, or the item), and keep `where` for errors
        found later, e.g. a repeated id."""
        self.where = where
        for k, text in enumerate(self.paraphrases):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: record {self.id!r} has an empty paraphrase at index {k}")
        if not self.paraphrases:
            raise DataError(f"{where}: record {self.id!r} has no paraphrases")
        if not self.answers or not all(isinstance(a, str) and a.strip() for a in self.answers):
            raise DataError(f"{where}: record {self.id!r} needs a non-empty list of non-empty answers")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a malformed line names its file and number.

    Lines end at "\\n" only, as in run files (`selfens.run.files`): a lone carriage return, which
    JSON reads as a space, does not cut a line. A UTF-8 byte order mark is skipped, so that columns
    count from the first character an editor shows."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            line = utf8(raw.removeprefix(BOM) if number == 1 else raw, path, number)
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: malformed JSON ({error.msg}, column {error.colno})") from None
            if not isinstance(item, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(item).__name__}")
            yield number, item


def read_json(path: Path) -> Any:
    """The JSON value in a file; malformed JSON or text that is not UTF-8 names its line and column."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    raw = path.read_bytes()
    try:
        return json.loads(utf8(raw.removeprefix(BOM), path))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno}: malformed JSON ({error.msg}, column {error.colno})") from None


def read_json_array(path: Path) -> list[dict]:
    items = read_json(path)
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON array of objects")
    return items


BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, which some editors write at the start of a file


def utf8(raw: bytes, path: Path, first_line: int = 1) -> str:
    """`raw` (the text of `path` from line `first_line` on) decoded; bytes that are not UTF-8 are an
    error naming the line and column of the first."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + raw.count(b"\n", 0, error.start)
        start = raw.rfind(b"\n", 0, error.start) + 1
        column = len(raw[start : error.start].decode("utf-8")) + 1
        raise DataError(
            f"{path}:{line}: not UTF-8 (byte 0x{raw[error.start]:02x} at column {column}); data files must be "
            f"UTF-8 text: save the file as UTF-8"
        ) from None


def require(item: dict, key: str, kind: type, where: str):
    """item[key], which must exist and be of `kind`."""
    if key not in item:
        raise DataError(f"{where}: missing field {key!r} (fields present: {sorted(item)})")
    value = item[key]
    if not isinstance(value, kind):
        raise DataError(f"{where}: field {key!r} should be {kind.__name__}, got {type(value).__name__}: {value!r}")
    return value
