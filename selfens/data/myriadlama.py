"""MyriadLAMA (Zhao, Yoshinaga & Oba 2024): knowledge facts, each with many manual and generated templates.

The data (hub: `iszhaoxin/MyriadLAMA`; read by `myriadlama_io`) has one row per (fact, template) and
millions of rows. Facts are chosen on the Arrow columns; only the rows of the chosen facts become
Python objects.
"""

from __future__ import annotations

import logging
import random
from typing import Optional

from selfens.data.blanks import FillInTheBlank, FillStyle, OnShort
from selfens.data.myriadlama_io import HUB_ID, arrow_columns, read_dataset, read_rows
from selfens.data.records import DataError, Record
from selfens.errors import ConfigError
from selfens.prompting.formats import Shot

log = logging.getLogger(__name__)


class MyriadLAMA(FillInTheBlank):
    """A fact is one record; its paraphrases are its own templates, manual ones first.

    The evaluated facts are a sample of `num_facts` drawn with `sample_seed` (the original: 1000,
    seed 42), in the order drawn, so `limit` keeps a smaller random sample. Each record's paraphrases
    are the fact's manual templates (file order), then automatic ones in an order drawn per fact
    with `sample_seed`; identical sentences count once. Few-shot facts are drawn with `seed` from
    the facts of the same relation that are not evaluated, so a relation's facts share one prefix.

    Templates fill `[X]` with the row's subject. The `mask` style shows the object as `[MASK]`;
    the `completion` style cuts the template before `[Y]` (only templates ending in `[Y]` qualify).
    Templates without both `[X]` and `[Y]` are never used.
    """

    def __init__(
        self,
        path: str = HUB_ID,
        split: str = "train",
        num_facts: Optional[int] = 1000,
        sample_seed: int = 42,
        fill_style: Optional[FillStyle] = None,
        on_short_fact: OnShort = "skip",
        **kwargs,
    ):
        """
        Args:
            path: a parquet or jsonl file, a folder of them, a folder written by `save_to_disk`,
                or a hub dataset id (needs a network, or a cached copy with HF_HUB_OFFLINE=1).
            split: the split of a folder or hub dataset (a single file is all one split).
            num_facts: facts evaluated, sampled with `sample_seed`; None, or more than the data has:
                every fact except the few-shot ones.
            sample_seed: seed of the fact sample and of each fact's choice of automatic templates.
            fill_style: "mask" or "completion"; None: the model's default.
            on_short_fact: a sampled fact with fewer usable phrasings than num_paraphrases is
                skipped (with a logged count) or an error.
            **kwargs: see ParaphraseDataModule (its `seed` draws the few-shot facts).
        """
        super().__init__(fill_style=fill_style, **kwargs)
        if num_facts is not None and num_facts < 1:
            raise ConfigError(f"num_facts must be at least 1 (or null for all facts), got {num_facts}")
        self.path, self.split, self.num_facts, self.sample_seed = path, split, num_facts, sample_seed
        self.on_short_fact = on_short_fact

    # -- records -----------------------------------------------------------------------------------
    def load_records(self) -> list[Record]:
        dataset = read_dataset(self.path, self.split)
        table = arrow_columns(dataset, self.path)
        usable = self._usable(table["template"])
        facts = _facts(table, self.path)
        tested, shot_facts = self._choose(facts, _facts(table.select(["uuid", "rel_uri"]).filter(usable), self.path))
        rows = self._rows(dataset, table, usable, tested + [u for us in shot_facts.values() for u in us])
        shots = {relation: [self._shot(rows[u]) for u in us] for relation, us in shot_facts.items()}
        short = self.too_few("fact", "distinct phrasings", self.path, "on_short_fact", self.on_short_fact)
        records = []
        for uuid in tested:
            phrasings = self._phrasings(uuid, rows.get(uuid, []))
            if not short.enough(uuid, len(phrasings)):
                continue
            (index, first), _ = phrasings[0]
            relation = first["rel_uri"]
            record = Record(
                id=uuid,
                paraphrases=[query for _, query in phrasings],
                answers=_aliases(rows[uuid]),
                shots=shots.get(relation, []),
                meta={"relation": relation, "subject": first["sub_ent"]},
            )
            record.check(f"{self.path}: row {index}")
            records.append(record)
        short.warn(log, len(tested), "sampled facts")
        return records

    def _usable(self, templates):
        """Per row: whether `usable` accepts its template (an Arrow boolean mask). The rule runs once per
        distinct template, not per row; a null template is not usable."""
        import pyarrow as pa
        import pyarrow.compute as pc

        distinct = pc.drop_null(pc.unique(templates))
        keep = distinct.filter(pa.array([self.usable(t) for t in distinct.to_pylist()], pa.bool_()))
        return pc.is_in(templates, value_set=keep)

    def _choose(self, facts, with_usable) -> tuple[list[str], dict[str, list[str]]]:
        """The evaluated facts, in order, and each relation's few-shot facts.

        Args:
            facts: (uuid, rel_uri) of every fact, sorted by uuid.
            with_usable: the same for the facts with at least one usable template (shot candidates).
        """
        import pyarrow.compute as pc

        count = facts.num_rows
        every = self.num_facts is None or self.num_facts >= count
        if every and self.num_facts is not None:
            log.warning(
                "MyriadLAMA: %s has %d facts, not more than num_facts=%d: evaluating all but the few-shot facts",
                self.path,
                count,
                self.num_facts,
            )
        # Sorted by uuid, the sample does not depend on the order of rows or files.
        order = random.Random(self.sample_seed).sample(range(count), count if every else self.num_facts)
        drawn = facts.take(order)
        if every:
            candidates = with_usable
        else:
            candidates = with_usable.filter(pc.invert(pc.is_in(with_usable["uuid"], value_set=drawn["uuid"])))
        shot_facts = self._draw_shots(candidates, sorted(pc.unique(drawn["rel_uri"]).to_pylist()))
        taken = {u for us in shot_facts.values() for u in us}
        return [u for u in drawn["uuid"].to_pylist() if u not in taken], shot_facts

    def _draw_shots(self, candidates, relations: list[str]) -> dict[str, list[str]]:
        """`num_shots` facts of each relation, drawn with `seed` from `candidates` (sorted by uuid)."""
        import pyarrow.compute as pc

        if not self.num_shots:
            return {}
        chosen, short = {}, []
        for relation in relations:
            pool = candidates.filter(pc.equal(candidates["rel_uri"], relation))["uuid"]
            k = min(self.num_shots, len(pool))
            if k < self.num_shots:
                short.append(f"{relation} ({k})")
            picked = sorted(random.Random(f"{self.seed}-{relation}").sample(range(len(pool)), k))
            chosen[relation] = pool.take(picked).to_pylist()
        if short:
            log.warning(
                "MyriadLAMA: fewer spare facts than num_shots=%d for few-shot examples, using what there is: %s",
                self.num_shots,
                ", ".join(short),
            )
        return chosen

    def _rows(self, dataset, table, usable, uuids: list[str]) -> dict[str, list[tuple[int, dict]]]:
        """(row index, row) of the usable rows of `uuids`, grouped by fact, in file order."""
        import pyarrow as pa
        import pyarrow.compute as pc

        wanted = pc.and_(pc.is_in(table["uuid"], value_set=pa.array(uuids, table["uuid"].type)), usable)
        indices = pc.indices_nonzero(wanted).to_pylist()
        grouped: dict[str, list[tuple[int, dict]]] = {}
        for index, item in zip(indices, read_rows(dataset, indices, self.path)):
            grouped.setdefault(item["uuid"], []).append((index, item))
        return grouped

    def _phrasings(self, uuid: str, rows: list[tuple[int, dict]]) -> list[tuple[tuple[int, dict], str]]:
        """Up to num_paraphrases ((row index, row), query) of a fact: manual ones first, then automatic."""
        manual, automatic, seen = [], [], set()
        for index, row in rows:
            query = self.fill(row["template"], row["sub_ent"])[0]
            if query not in seen:  # the same sentence from two rows (e.g. a repeated template)
                seen.add(query)
                (manual if row["is_manual"] else automatic).append(((index, row), query))
        # A permutation, not a sample of the missing count: a larger num_paraphrases extends the list.
        automatic = random.Random(f"{self.sample_seed}-{uuid}").sample(automatic, len(automatic))
        return (manual + automatic)[: self.num_paraphrases]

    def _shot(self, rows: list[tuple[int, dict]]) -> Shot:
        """A fact as a solved example: its first manual usable template, else its first usable one."""
        index, row = next(((i, r) for i, r in rows if r["is_manual"]), rows[0])
        answers = _aliases(rows)
        if not answers:
            raise DataError(f"{self.path}: row {index}: fact {row['uuid']} has no answer for a few-shot example")
        query, tail = self.fill(row["template"], row["sub_ent"])
        return Shot(query, answers[0], tail)


def _facts(table, path: str):
    """(uuid, rel_uri) of each fact in `table`, sorted by uuid; a uuid with two relations is an error."""
    import pyarrow.compute as pc

    facts = table.select(["uuid", "rel_uri"]).group_by(["uuid", "rel_uri"]).aggregate([])
    facts = facts.sort_by([("uuid", "ascending"), ("rel_uri", "ascending")])
    if pc.count_distinct(facts["uuid"]).as_py() != facts.num_rows:
        uuids = facts["uuid"]
        twice = next(u for u, v in zip(uuids[:-1].to_pylist(), uuids[1:].to_pylist()) if u == v)
        relations = facts.filter(pc.equal(uuids, twice))["rel_uri"].to_pylist()
        raise DataError(f"MyriadLAMA data {path}: fact {twice} has rows of several relations: {', '.join(relations)}")
    return facts


def _aliases(rows: list[tuple[int, dict]]) -> list[str]:
    """Every accepted answer of a fact, once each, in order; blank ones dropped."""
    found = [a.strip() for _, row in rows for a in row["obj_aliases"] if a.strip()]
    return list(dict.fromkeys(found))
