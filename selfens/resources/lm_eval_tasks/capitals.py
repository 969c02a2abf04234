"""The bundled tasks' documents: ParaRel's "capital of" facts (P1376, bundled with selfens under
resources/pararel), read from the package so that the tasks run offline.

Each fact becomes a question with its answer and four choices: the answer and three other objects
of the relation, drawn with the fact's position as the seed (the same choices on every machine).
The first `SHOTS` facts are the few-shot split; the rest the test split.

`capitals_phrasings.jsonl` holds four phrasings of each test question, written from the templates
below (as ParaRel's own phrasings are), for both tasks: `python capitals.py` writes it again.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TRIPLES = Path(__file__).resolve().parents[1] / "pararel" / "triples" / "P1376.jsonl"
SHOTS = 4
CHOICES = 4
QUESTION = "Which country or region is {city} the capital of?"
TEMPLATES = [
    "{city} is the capital of which country or region?",
    "Of which country or region is {city} the capital?",
    "{city} is the capital city of which country or region?",
    "Which country or region has {city} as its capital?",
]
TASKS = ["selfens_capitals", "selfens_capitals_mc"]


def documents() -> list[dict]:
    facts = [json.loads(line) for line in TRIPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    objects = sorted({f["obj_label"] for f in facts})
    docs = []
    for i, fact in enumerate(facts):
        others = random.Random(i).sample([o for o in objects if o != fact["obj_label"]], CHOICES - 1)
        choices = others + [fact["obj_label"]]
        random.Random(i).shuffle(choices)
        docs.append(
            {
                "id": fact["uuid"],
                "question": QUESTION.format(city=fact["sub_label"]),
                "city": fact["sub_label"],
                "answer": fact["obj_label"],
                "choices": choices,
                "label": choices.index(fact["obj_label"]),
            }
        )
    return docs


def load(**kwargs):
    """lm-eval's `custom_dataset`: the splits as `datasets.Dataset`s (no download, no cache files)."""
    import datasets

    docs = documents()
    return {"train": datasets.Dataset.from_list(docs[:SHOTS]), "test": datasets.Dataset.from_list(docs[SHOTS:])}


PHRASINGS = Path(__file__).with_name("capitals_phrasings.jsonl")


def write_phrasings(path: Path = PHRASINGS) -> None:
    """The phrasing file of both tasks' test questions (ids `<task>/<doc_id>`), from TEMPLATES."""
    rows = [
        {"id": f"{task}/{i}", "original": d["question"], "paraphrases": [t.format(city=d["city"]) for t in TEMPLATES]}
        for task in TASKS
        for i, d in enumerate(documents()[SHOTS:])
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    write_phrasings()
