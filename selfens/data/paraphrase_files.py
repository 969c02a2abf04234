"""Paraphrase files: one JSON object a line, and a sidecar that says how they were made.

    {"id": "wqs000000", "original": "what does jamaican people speak?",
     "paraphrases": ["which language do people in jamaica speak?", ...],
     "rejected": [{"k": 1, "try": 0, "text": "...", "reason": "copy_of_original"}, ...]}

`paraphrases` are the new phrasings only (the original is kept apart); `rejected` is optional.
Users may write such a file themselves. `selfens paraphrase` also writes `<name>.meta.json` beside
it: the generating model, the settings and their hash, and the rejection and diversity figures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from selfens.data.records import DataError, read_jsonl, require

WRITE_IT = "write it with `selfens paraphrase --config configs/paraphrase/webquestions.yaml`"


def meta_path(path: Path) -> Path:
    return path.with_name(path.stem + ".meta.json")


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def read_paraphrase_file(path: Path) -> dict[str, dict]:
    """id -> row of a paraphrase file; a missing file, a malformed row or a repeated id is an error."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"paraphrase file not found: {path}; {WRITE_IT} (setting its model.init_args.output), "
            f"or hand in your own (one JSON object a line: id, original, paraphrases)"
        )
    rows: dict[str, dict] = {}
    for number, item in read_jsonl(path):
        where = f"{path}:{number}"
        qid = require(item, "id", str, where)
        paraphrases = require(item, "paraphrases", list, where)
        if not all(isinstance(p, str) and p.strip() for p in paraphrases):
            raise DataError(f"{where}: field 'paraphrases' must be a list of non-empty strings")
        if qid in rows:
            raise DataError(f"{where}: id {qid!r} again (first at line {rows[qid]['line']})")
        rows[qid] = {**item, "line": number}
    return rows


def file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
