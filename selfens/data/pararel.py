"""ParaRel (Elazar et al., TACL 2021): knowledge triples with human-written paraphrased templates."""

from __future__ import annotations

import logging
import random
from importlib import resources
from pathlib import Path
from typing import Optional

from selfens.data.blanks import FillInTheBlank, FillStyle, OnShort
from selfens.data.records import DataError, Record, read_jsonl, require
from selfens.prompts import Shot

log = logging.getLogger(__name__)

BUNDLED = resources.files("selfens") / "resources" / "pararel"


class ParaRel(FillInTheBlank):
    """A fact is one record; its paraphrases are its relation's first N templates.

    Templates fill `[X]` with the subject. The `mask` style shows the object as `[MASK]`;
    the `completion` style cuts the template before `[Y]` (only templates ending in `[Y]` qualify).
    Few-shot facts of each relation are drawn with `seed` and never evaluated.
    """

    def __init__(
        self,
        data_dir: Optional[str] = None,
        relations: Optional[list[str]] = None,
        fill_style: Optional[FillStyle] = None,
        on_short_relation: OnShort = "skip",
        **kwargs,
    ):
        """
        Args:
            data_dir: folder with `patterns/P*.jsonl` and `triples/P*.jsonl`; None: the bundled sample.
            relations: relation ids to use (e.g. [P19, P20]); None: every relation in `data_dir`.
            fill_style: "mask" or "completion"; None: the model's default.
            on_short_relation: a relation with fewer usable templates than num_paraphrases is
                skipped (with a logged count) or an error.
            **kwargs: see ParaphraseDataModule.
        """
        super().__init__(fill_style=fill_style, **kwargs)
        self.data_dir = Path(data_dir) if data_dir is not None else Path(str(BUNDLED))
        self.relations, self.on_short_relation = relations, on_short_relation

    def load_records(self) -> list[Record]:
        relations = self._relation_ids()
        short = self.too_few("relation", "templates", str(self.data_dir), "on_short_relation", self.on_short_relation)
        per_relation = []
        for relation in relations:
            templates = self._templates(relation)
            if short.enough(relation, len(templates)):
                per_relation.append(self._records(relation, templates[: self.num_paraphrases]))
        short.warn(log, len(relations), "relations")
        # Round-robin over relations, so that `limit` takes a mix of relations.
        return [r for group in _interleave(per_relation) for r in group]

    def _relation_ids(self) -> list[str]:
        folder = self.data_dir / "patterns"
        if not folder.is_dir():
            raise DataError(
                f"ParaRel data_dir {self.data_dir} has no patterns/ folder (expected patterns/P*.jsonl and triples/P*.jsonl)"
            )
        found = sorted(p.stem for p in folder.glob("P*.jsonl"))
        if self.relations is None:
            return found
        missing = [r for r in self.relations if r not in found]
        if missing:
            raise DataError(f"relations {missing} not found in {folder} (available: {', '.join(found)})")
        return list(self.relations)

    def _templates(self, relation: str) -> list[str]:
        path = self.data_dir / "patterns" / f"{relation}.jsonl"
        templates = []
        for number, item in read_jsonl(path):
            where = f"{path}:{number}"
            pattern = require(item, "pattern", str, where)
            if "[X]" not in pattern or "[Y]" not in pattern:
                raise DataError(f"{where}: field 'pattern' needs both [X] and [Y]: {pattern!r}")
            if self.usable(pattern):
                templates.append(pattern)
        return templates

    def _records(self, relation: str, templates: list[str]) -> list[Record]:
        path = self.data_dir / "triples" / f"{relation}.jsonl"
        facts, lines = [], []
        for number, item in read_jsonl(path):
            where = f"{path}:{number}"
            lines.append(number)
            facts.append(
                (
                    require(item, "uuid", str, where),
                    require(item, "sub_label", str, where),
                    require(item, "obj_label", str, where),
                )
            )
        shot_facts = set(
            random.Random(f"{self.seed}-{relation}").sample(range(len(facts)), min(self.num_shots, len(facts)))
        )
        shots = []
        for i in sorted(shot_facts):
            query, tail = self.fill(templates[0], facts[i][1])
            shots.append(Shot(query, facts[i][2], tail))
        records = []
        for i, (uuid, subject, obj) in enumerate(facts):
            if i in shot_facts:
                continue
            record = Record(
                id=f"{relation}/{uuid}",
                paraphrases=[self.fill(t, subject)[0] for t in templates],
                answers=[obj],
                shots=shots,
                meta={"relation": relation, "subject": subject},
            )
            record.check(f"{path}:{lines[i]}")
            records.append(record)
        return records


def _interleave(groups: list[list[Record]]):
    """Rows of one record per group: [[g0[0], g1[0], ...], [g0[1], ...], ...]."""
    for i in range(max((len(g) for g in groups), default=0)):
        yield [g[i] for g in groups if i < len(g)]
