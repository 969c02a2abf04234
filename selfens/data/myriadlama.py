"""MyriadLAMA (Zhao, Yoshinaga & Oba 2024): knowledge facts, each with many manual and generated templates.

The data (hub: `iszhaoxin/MyriadLAMA`) has one row per (fact, template) and millions of rows. Facts
are chosen on the Arrow columns; only the rows of the chosen facts become Python objects.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Literal, Optional

from selfens.data.blanks import FillInTheBlank, FillStyle
from selfens.data.hub import load_hub_dataset
from selfens.data.records import DataError, Record, require
from selfens.errors import ConfigError
from selfens.prompts import Shot

log = logging.getLogger(__name__)

HUB_ID = "iszhaoxin/MyriadLAMA"
FIELDS = ("uuid", "rel_uri", "sub_ent", "obj_aliases", "template", "is_manual")
_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".arrow": "arrow"}
_SAVED = ("dataset_info.json", "state.json", "dataset_dict.json")  # what `save_to_disk` writes
_HUB_LIKE = re.compile(r"[\w.-]+/[\w.-]+")
# Completion style: the template must end in [Y], up to spaces and dots (as ParaRel's `_templates`).
_ENDS_IN_Y = r"\[Y\][\s.]*$"


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
        on_short_fact: Literal["skip", "error"] = "skip",
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
        self.skipped_facts: list[str] = []

    # -- records -----------------------------------------------------------------------------------
    def load_records(self) -> list[Record]:
        dataset = _check_schema(self._dataset(), self.path)
        table = dataset.select_columns(["uuid", "rel_uri", "template"]).with_format("arrow")[:]
        usable = self._usable(table)
        facts = _facts(table, self.path)
        tested, shot_facts = self._choose(facts, _facts(table.select(["uuid", "rel_uri"]).filter(usable), self.path))
        rows = self._rows(dataset, table, usable, tested + [u for us in shot_facts.values() for u in us])
        shots = {relation: [self._shot(rows[u]) for u in us] for relation, us in shot_facts.items()}
        records, skipped = [], []
        for uuid in tested:
            phrasings = self._phrasings(uuid, rows.get(uuid, []))
            if len(phrasings) < self.num_paraphrases:
                message = (
                    f"fact {uuid} has {len(phrasings)} distinct phrasings usable with fill_style "
                    f"{self.fill_style!r}, fewer than num_paraphrases={self.num_paraphrases}"
                )
                if self.on_short_fact == "error":
                    raise DataError(f"{self.path}: {message}; lower num_paraphrases or set on_short_fact: skip")
                skipped.append(uuid)
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
        if skipped:
            log.warning(
                "MyriadLAMA: skipped %d of %d sampled facts with fewer than num_paraphrases=%d usable phrasings",
                len(skipped),
                len(tested),
                self.num_paraphrases,
            )
        self.skipped_facts = skipped
        return records

    def _usable(self, table):
        """Per row: whether its template can be shown in this fill style (an Arrow boolean mask)."""
        import pyarrow.compute as pc

        template = table["template"]
        has_x = pc.match_substring(template, "[X]")
        if self.fill_style == "mask":
            return pc.and_(has_x, pc.match_substring(template, "[Y]"))
        return pc.and_(has_x, pc.match_substring_regex(template, _ENDS_IN_Y))

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
        for index, item in zip(indices, _to_python(dataset, indices)):
            grouped.setdefault(item["uuid"], []).append((index, _checked(item, f"{self.path}: row {index}")))
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

    # -- reading -----------------------------------------------------------------------------------
    def _dataset(self):
        """The `datasets.Dataset` at `path`: a local file or folder, or a hub id."""
        local = Path(self.path).expanduser()
        if local.exists():
            return self._read_local(local)
        if self.path.startswith((".", "/", "~")) or local.suffix in _BUILDERS or not _HUB_LIKE.fullmatch(self.path):
            raise DataError(
                f"MyriadLAMA data not found: {self.path} (expected a parquet or jsonl file, a folder of them, a "
                f"folder written by save_to_disk, or the hub id {HUB_ID})"
            )
        return self._from_hub()

    def _read_local(self, local: Path):
        """A data file, a folder of them (`datasets` names the splits by file name), or a save_to_disk folder."""
        import datasets
        from datasets.data_files import EmptyDatasetError
        from datasets.exceptions import DatasetGenerationError

        if local.is_file() and local.suffix not in _BUILDERS:
            raise DataError(
                f"MyriadLAMA file {local}: unsupported type {local.suffix!r} (use parquet or jsonl, a folder of "
                f"them, or a folder written by save_to_disk)"
            )
        if local.is_file() and not local.stat().st_size:
            raise DataError(f"MyriadLAMA file {local} is empty")
        try:
            if local.is_file():
                return datasets.load_dataset(_BUILDERS[local.suffix], data_files=str(local), split="train")
            if any((local / name).exists() for name in _SAVED):
                loaded = datasets.load_from_disk(str(local))
            else:
                return datasets.load_dataset(str(local), split=self.split)
        except DatasetGenerationError as error:
            raise DataError(f"MyriadLAMA data {local}: cannot be read: {error.__cause__ or error}") from None
        except EmptyDatasetError:
            raise DataError(
                f"MyriadLAMA folder {local} has no parquet or jsonl files (nor is it a folder written by save_to_disk)"
            ) from None
        except ValueError as error:  # e.g. an unknown split
            raise DataError(f"MyriadLAMA data {local}: {error}") from None
        if isinstance(loaded, datasets.DatasetDict):
            if self.split not in loaded:
                raise DataError(f"MyriadLAMA folder {local} has no split {self.split!r} (splits: {', '.join(loaded)})")
            loaded = loaded[self.split]
        return loaded

    def _from_hub(self):
        return load_hub_dataset(
            self.path,
            self.split,
            f"where there is a network, run `hf download {self.path} --repo-type dataset --local-dir DIR` "
            f"and pass path: DIR",
        )


def _check_schema(dataset, path: str):
    """`dataset`, once it has every field and the Arrow-side ones are strings."""
    missing = [name for name in FIELDS if name not in dataset.column_names]
    if missing:
        raise DataError(
            f"MyriadLAMA data {path}: missing field(s) {', '.join(map(repr, missing))} "
            f"(fields present: {sorted(dataset.column_names)}; needed: {', '.join(FIELDS)})"
        )
    if not dataset.num_rows:
        raise DataError(f"MyriadLAMA data {path} has no rows")
    import pyarrow as pa

    schema = dataset.data.schema
    for name in ("uuid", "rel_uri", "template"):  # compared and matched as Arrow strings
        kind = schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise DataError(f"MyriadLAMA data {path}: field {name!r} should be str, got {kind}")
    return dataset


def _facts(table, path: str):
    """(uuid, rel_uri) of each fact in `table`, sorted by uuid; a uuid with two relations is an error."""
    import pyarrow.compute as pc

    for name in ("uuid", "rel_uri"):
        if table[name].null_count:
            row = pc.indices_nonzero(pc.is_null(table[name]))[0].as_py()
            raise DataError(f"MyriadLAMA data {path}: row {row}: field {name!r} is null")
    facts = table.select(["uuid", "rel_uri"]).group_by(["uuid", "rel_uri"]).aggregate([])
    facts = facts.sort_by([("uuid", "ascending"), ("rel_uri", "ascending")])
    if pc.count_distinct(facts["uuid"]).as_py() != facts.num_rows:
        uuids = facts["uuid"]
        twice = next(u for u, v in zip(uuids[:-1].to_pylist(), uuids[1:].to_pylist()) if u == v)
        relations = facts.filter(pc.equal(uuids, twice))["rel_uri"].to_pylist()
        raise DataError(f"MyriadLAMA data {path}: fact {twice} has rows of several relations: {', '.join(relations)}")
    return facts


def _to_python(dataset, indices: list[int]) -> list[dict]:
    """The rows at `indices`, decoded by `datasets`: the only rows that become Python objects."""
    return dataset.select_columns(list(FIELDS)).select(indices).to_list()


def _checked(item: dict, where: str) -> dict:
    """A row whose fields have the expected types; `obj_aliases` as a list (a lone string is tolerated)."""
    for name, kind in (("uuid", str), ("rel_uri", str), ("sub_ent", str), ("template", str), ("is_manual", bool)):
        require(item, name, kind, where)
    aliases = item["obj_aliases"]
    if isinstance(aliases, str):
        aliases = [aliases]
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise DataError(f"{where}: field 'obj_aliases' should be a list of str (or a str), got {aliases!r}")
    return {**item, "obj_aliases": aliases}


def _aliases(rows: list[tuple[int, dict]]) -> list[str]:
    """Every accepted answer of a fact, once each, in order; blank ones dropped."""
    found = [a.strip() for _, row in rows for a in row["obj_aliases"] if a.strip()]
    return list(dict.fromkeys(found))
