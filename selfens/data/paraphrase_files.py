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
from collections import Counter
from itertools import combinations
from pathlib import Path

from selfens.data.records import DataError, read_jsonl, require
from selfens.paraphrase.filters import REASONS, words

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


def diversity(rows: list[dict]) -> dict[str, float]:
    """How different the kept paraphrases are: from their original (word-set Jaccard overlap, 1 =
    the same words), from each other, and distinct word n-grams over all of them."""
    to_original, between, grams = [], [], {1: Counter(), 2: Counter()}
    for row in rows:
        original = set(words(row["original"]))
        for text in row["paraphrases"]:
            to_original.append(_jaccard(set(words(text)), original))
            tokens = words(text)
            for n in grams:
                grams[n].update(zip(*(tokens[i:] for i in range(n))))
        between += [_jaccard(set(words(a)), set(words(b))) for a, b in combinations(row["paraphrases"], 2)]
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None
    distinct = {f"distinct_{n}": round(len(c) / sum(c.values()), 4) if c else None for n, c in grams.items()}
    return {"overlap_with_original": mean(to_original), "overlap_between_paraphrases": mean(between), **distinct}


def summary(rows: list[dict], num_paraphrases: int) -> dict:
    """Counts over a finished file: kept, missing and rejected paraphrases (by reason), diversity."""
    kept = sum(len(r["paraphrases"]) for r in rows)
    rejected = Counter(x["reason"] for r in rows for x in r.get("rejected", []))
    return {
        "questions": len(rows),
        "paraphrases_asked": num_paraphrases * len(rows),
        "paraphrases_kept": kept,
        "questions_complete": sum(len(r["paraphrases"]) >= num_paraphrases for r in rows),
        "samples_drawn": kept + sum(rejected.values()),
        "rejected": {reason: rejected.get(reason, 0) for reason in REASONS},
        "diversity": diversity(rows),
    }


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0
