"""JSONL rows streamed per process and merged at the end, and atomic writes: the one way a run,
`selfens paraphrase` and the confidence cache keep what they computed across a crash.

A writer appends finished rows to its own file (one per process) as it goes; a reader takes every
complete line and drops one cut short by a crash (that row is computed again). Lines are split at
"\\n" only: str.splitlines() would also cut at U+2028 or U+0085, which JSON leaves raw and a model
may write.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def dumps_rows(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def append_rows(path: Path, rows: list[dict]) -> None:
    """Add rows to a file in one write (lines of several processes appending to one file stay whole)."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(dumps_rows(rows))


def end_cut_line(path: Path) -> None:
    """End a line cut short by a kill before appending to a file again, so that the cut line is
    dropped alone, not together with the next row."""
    path = Path(path)
    if path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
        with path.open("a", encoding="utf-8") as f:
            f.write("\n")


def read_lines(path: Path, skipped: Optional[list[str]] = None) -> list[dict]:
    """The complete JSON lines of a file (none if it does not exist). Each other non-blank line
    (cut short by a crash, or malformed) is left out and, if `skipped` is given, added to it as
    `file:line`, so that the caller can say so."""
    path = Path(path)
    if not path.exists():
        return []
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError:
            if line.strip() and skipped is not None:
                skipped.append(f"{path}:{number}")
    return items


def rows_by_index(files: list[Path], skipped: Optional[list[str]] = None) -> list[dict]:
    """The rows of JSONL files (later files win), one per `index`, in index order (`skipped`: as
    for `read_lines`)."""
    rows = {row["index"]: row for path in files for row in read_lines(path, skipped)}
    return [rows[i] for i in sorted(rows)]


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a crash never leaves it half-written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_rows(path: Path, rows: list[dict]) -> None:
    write_atomic(path, dumps_rows(rows))
