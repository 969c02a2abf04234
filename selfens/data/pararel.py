"""ParaRel (Elazar et al., TACL 2021): knowledge triples with human-written paraphrased templates."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

from selfens.data.base import Split, check_split, init_args
from selfens.data.blanks import FillInTheBlank, FillStyle, OnShort
from selfens.data.records import DataError, Record, read_jsonl, require
from selfens.errors import ConfigError
from selfens.prompting.formats import Shot

log = logging.getLogger(__name__)

_RELATIONS_SHOWN = 10  # relations named, with their counts, when none has enough templates

BUNDLED = resources.files("selfens") / "resources" / "pararel"

# Each relation's facts are taken in the order of `random.Random(FACT_ORDER_SEED).shuffle` of its
# triples file: a fixed order (not `seed`), so that a relation's first facts are not the file's first.
FACT_ORDER_SEED = 0
# Few-shot facts are drawn (with `seed`) from a relation's first SHOT_POOL facts in that order, so they
# do not change with how many facts a relation has.
SHOT_POOL = 50
# The relations of the sample bundled before all 30 were (10 relations x their first SHOT_POOL
# facts). Without `sample`, these facts come first, so that `limit: 100` (the demo) and any
# `limit` up to their count evaluate exactly the facts, answers and few-shot examples they did.
DEMO_RELATIONS = ("P1376", "P159", "P176", "P178", "P19", "P20", "P449", "P495", "P740", "P937")


class ParaRel(FillInTheBlank):
    """A fact is one record; its paraphrases are its relation's first N templates.

    Templates fill `[X]` with the subject. The `mask` style shows the object as `[MASK]`;
    the `completion` style cuts the template before `[Y]` (only templates ending in `[Y]` qualify).
    A relation's facts are taken in a fixed shuffled order (`FACT_ORDER_SEED`); its few-shot facts
    are drawn with `seed` from the first `SHOT_POOL` of them and never evaluated.

    A fact qualifies at N when its relation has at least N usable templates in the fill style and
    it is not a few-shot fact (`qualifying()` counts them per relation). The records are either
    - every qualifying fact (`sample: null`), round-robin over relations; with `relations: null` the
      facts of the demo sample (`DEMO_RELATIONS`' first `SHOT_POOL` facts) come first, so `limit`
      keeps the demo's facts; or
    - a seeded sample of `sample` qualifying facts stratified over relations (`sample_seed`): an
      equal share per relation where its size allows, round-robin over relations, so that `limit`
      (applied after sampling) keeps the mix.
    """

    def __init__(
        self,
        data_dir: Optional[str] = None,
        relations: Optional[list[str]] = None,
        fill_style: Optional[FillStyle] = None,
        on_short_relation: OnShort = "skip",
        sample: Optional[int] = None,
        sample_seed: int = 0,
        split: Split = "test",
        dev_sample: Optional[int] = None,
        dev_seed: int = 1,
        **kwargs,
    ):
        """
        Args:
            data_dir: folder with `patterns/P*.jsonl` and `triples/P*.jsonl`; None: the bundled data
                (all 30 ParaRel relations).
            relations: relation ids to use (e.g. [P19, P20]); None: every relation in `data_dir`.
            fill_style: "mask" or "completion"; None: the model's default.
            on_short_relation: a relation with fewer usable templates than num_paraphrases is
                skipped (with a logged count) or an error.
            sample: evaluate a sample of this many qualifying facts, stratified over relations: an
                equal share each (a relation with fewer facts gives all it has; the rest is spread
                over the others). More than qualify: all of them, with a warning. `limit` applies
                after sampling. None: every qualifying fact.
            sample_seed: seed of the sample (not of the few-shot facts: that is `seed`).
            split: "test" (the sample above) or "dev": `dev_sample` facts drawn with `dev_seed`, in the
                same way, from the qualifying facts not in the test sample (fitted methods learn on it).
            dev_sample: the size of the development split; it needs `sample` (else every fact is a test fact).
            dev_seed: seed of the development sample.
            **kwargs: see ParaphraseDataModule.
        """
        super().__init__(fill_style=fill_style, **kwargs)
        if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
            raise ConfigError(f"sample must be a whole number of facts, at least 1 (or null for all), got {sample!r}")
        if isinstance(sample_seed, bool) or not isinstance(sample_seed, int):
            raise ConfigError(f"sample_seed must be an integer, got {sample_seed!r}")
        self.data_dir = Path(data_dir) if data_dir is not None else Path(str(BUNDLED))
        self.relations, self.on_short_relation = relations, on_short_relation
        self.sample, self.sample_seed = sample, sample_seed
        self.split, self.dev_sample, self.dev_seed = check_split(split), dev_sample, dev_seed
        if dev_sample is not None and (
            isinstance(dev_sample, bool) or not isinstance(dev_sample, int) or dev_sample < 1
        ):
            raise ConfigError(
                f"dev_sample must be a whole number of facts, at least 1 (or null: none), got {dev_sample!r}"
            )
        self.qualified: Optional[dict[str, int]] = None  # qualifying facts per relation, once loaded

    def settings(self) -> dict:
        """The base's, and the sample's size and seed when the facts are a sample (a dev split's too)."""
        sampled = {"sample": self.sample, "sample_seed": self.sample_seed} if self.sample is not None else {}
        dev = {"split": "dev", "dev_sample": self.dev_sample, "dev_seed": self.dev_seed} if self.split == "dev" else {}
        return {**super().settings(), **sampled, **dev}

    def dev_split(self) -> ParaRel:
        if self.dev_sample is None or self.sample is None:
            raise ConfigError(
                "ParaRel: a development split needs `sample: N` (the test facts) and `dev_sample: M` (facts drawn, "
                "with dev_seed, from the others), e.g. --data.init_args.sample 1000 --data.init_args.dev_sample 1000"
            )
        return ParaRel(**{**init_args(self.hparams), "split": "dev"})

    # -- records -----------------------------------------------------------------------------------
    def load_records(self) -> list[Record]:
        relations = self._relation_ids()
        short = self.too_few("relation", "templates", str(self.data_dir), "on_short_relation", self.on_short_relation)
        used: dict[str, _Relation] = {}
        counts = {}  # usable templates per relation
        for relation in relations:
            templates = self._templates(relation)
            counts[relation] = len(templates)
            if short.enough(relation, len(templates)):
                used[relation] = self._relation(relation, templates[: self.num_paraphrases])
        if not used:
            raise DataError(self._too_few_templates(counts))
        short.warn(log, len(relations), "relations")
        self.qualified = {relation: len(used[relation].evaluable) if relation in used else 0 for relation in relations}
        log.info(
            "ParaRel: %d facts of %d of %d relations qualify at num_paraphrases=%d with fill_style %r (%s)",
            sum(self.qualified.values()),
            len(used),
            len(relations),
            self.num_paraphrases,
            self.fill_style,
            ", ".join(f"{r}: {self.qualified[r]}" for r in used),
        )
        if self.split == "dev":
            self.dev_split()  # says what is missing
            test = set(self._sampled(used, self.sample, self.sample_seed))
            chosen = self._sampled(used, self.dev_sample, self.dev_seed, excluded=test)
        else:
            chosen = self._in_order(used) if self.sample is None else self._sampled(used, self.sample, self.sample_seed)
        # Only the facts evaluated become records (`limit` is applied again, to the same effect, by the base).
        return [self._record(used[relation], k) for relation, k in chosen[: self.limit]]

    def _too_few_templates(self, counts: dict[str, int]) -> str:
        """Why no relation qualifies at num_paraphrases, and the largest N that some relation allows."""
        most = max(counts.values(), default=0)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        shown = ", ".join(f"{r} {n}" for r, n in ranked[:_RELATIONS_SHOWN])
        if len(ranked) > _RELATIONS_SHOWN:
            shown += f" and {len(ranked) - _RELATIONS_SHOWN} more"
        remedy = (
            f"lower num_paraphrases to at most {most}"
            if most
            else "use the other fill_style, or other relations (`relations:`)"
        )
        return (
            f"ParaRel: no records to evaluate: no relation in {self.data_dir / 'patterns'} has "
            f"num_paraphrases={self.num_paraphrases} templates "
            f"usable with fill_style {self.fill_style!r}: {remedy} (usable templates per relation: {shown})"
        )

    def qualifying(self) -> dict[str, int]:
        """Facts per relation that can be evaluated at num_paraphrases in the fill style: all but the
        few-shot facts of a relation with enough usable templates, 0 for the others (whatever
        on_short_relation says). Every relation in use, in order. Needs no tokenizer when fill_style
        is set (else connect first)."""
        counts = {}
        for relation in self._relation_ids():
            if len(self._templates(relation)) < self.num_paraphrases:
                counts[relation] = 0
                continue
            facts = len(self._facts(relation))
            counts[relation] = facts - min(self.num_shots, SHOT_POOL, facts)
        return counts

    def _in_order(self, used: dict[str, _Relation]) -> list[tuple[str, int]]:
        """(relation, position) of every qualifying fact, round-robin over relations (so that `limit`
        takes a mix); with `relations: null`, the demo sample's facts first."""
        demo = [r for r in used if r in DEMO_RELATIONS] if self.relations is None else []
        first = [[(r, k) for k in used[r].evaluable if k < SHOT_POOL] for r in demo]
        rest = [[(r, k) for k in u.evaluable if r not in demo or k >= SHOT_POOL] for r, u in used.items()]
        return _round_robin(first) + _round_robin(rest)

    def _sampled(
        self, used: dict[str, _Relation], size: int, seed: int, excluded: frozenset | set = frozenset()
    ) -> list[tuple[str, int]]:
        """(relation, position) of `size` qualifying facts not `excluded` (e.g. the test sample, for the
        dev split), stratified over relations, round-robin over relations."""
        evaluable = {r: [k for k in u.evaluable if (r, k) not in excluded] for r, u in used.items()}
        qualified = {relation: len(facts) for relation, facts in evaluable.items()}
        total = sum(qualified.values())
        if size > total:
            log.warning(
                "ParaRel: %s=%d is more than the %d facts that qualify at num_paraphrases=%d with fill_style "
                "%r%s: evaluating all of them",
                "dev_sample" if excluded else "sample",
                size,
                total,
                self.num_paraphrases,
                self.fill_style,
                " outside the test sample" if excluded else "",
            )
        shares = stratified_shares(qualified, min(size, total), random.Random(f"{seed}-shares"))
        drawn = []
        for relation, u in used.items():
            # A permutation of all the relation's facts, few-shot ones dropped: a larger sample, or
            # other few-shot facts, keep the facts drawn so far.
            allowed = set(evaluable[relation])
            order = random.Random(f"{seed}-{relation}").sample(range(len(u.facts)), len(u.facts))
            drawn.append([(relation, k) for k in order if k in allowed][: shares[relation]])
        log.info(
            "ParaRel: a sample of %d facts (%s=%d%s): %s",
            sum(map(len, drawn)),
            "dev_seed" if excluded else "sample_seed",
            seed,
            ", outside the test sample" if excluded else "",
            ", ".join(f"{r}: {shares[r]}" for r in used),
        )
        return _round_robin(drawn)

    # -- files -------------------------------------------------------------------------------------
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

    def _facts(self, relation: str) -> list[tuple[int, str, str, str]]:
        """(line, uuid, subject, object) of each fact, in the relation's fixed shuffled order."""
        path = self.data_dir / "triples" / f"{relation}.jsonl"
        facts = []
        for number, item in read_jsonl(path):
            where = f"{path}:{number}"
            uuid = require(item, "uuid", str, where)
            facts.append((number, uuid, require(item, "sub_label", str, where), require(item, "obj_label", str, where)))
        random.Random(FACT_ORDER_SEED).shuffle(facts)
        return facts

    def _relation(self, relation: str, templates: list[str]) -> _Relation:
        """A relation's facts in order, its few-shot facts (drawn with `seed` from the first
        SHOT_POOL) as examples filled with the first template, and the positions of the others."""
        facts = self._facts(relation)
        pool = min(SHOT_POOL, len(facts))
        shot_facts = set(random.Random(f"{self.seed}-{relation}").sample(range(pool), min(self.num_shots, pool)))
        shots = []
        for k in sorted(shot_facts):
            _, _, subject, obj = facts[k]
            query, tail = self.fill(templates[0], subject)
            shots.append(Shot(query, obj, tail))
        evaluable = [k for k in range(len(facts)) if k not in shot_facts]
        return _Relation(relation, self.data_dir / "triples" / f"{relation}.jsonl", templates, facts, shots, evaluable)

    def _record(self, relation: _Relation, k: int) -> Record:
        line, uuid, subject, obj = relation.facts[k]
        record = Record(
            id=f"{relation.name}/{uuid}",
            paraphrases=[self.fill(t, subject)[0] for t in relation.templates],
            answers=[obj],
            shots=relation.shots,
            meta={"relation": relation.name, "subject": subject},
        )
        record.check(f"{relation.path}:{line}")
        return record


@dataclass
class _Relation:
    """A relation in use: its facts (line, uuid, subject, object) in order, its first N usable
    templates, its few-shot examples, and the positions of its facts that can be evaluated."""

    name: str
    path: Path
    templates: list[str]
    facts: list[tuple[int, str, str, str]]
    shots: list[Shot]
    evaluable: list[int]


def stratified_shares(sizes: dict[str, int], total: int, rng: random.Random) -> dict[str, int]:
    """How many of `total` items each group gives, as equal as the groups' `sizes` allow: a group
    smaller than its share gives all it has, and the rest is shared by the others; the shares of the
    groups that are not exhausted differ by at most 1, the extra ones going to groups drawn with
    `rng`. `total` must not exceed the sum of `sizes`."""
    shares = dict.fromkeys(sizes, 0)
    open_ = sorted(g for g, size in sizes.items() if size > 0)  # sorted: not the order of `sizes`
    left = total
    while open_:
        share = left // len(open_)
        small = [g for g in open_ if sizes[g] <= share]
        if not small:
            break
        for g in small:
            shares[g] = sizes[g]
            left -= sizes[g]
        open_ = [g for g in open_ if g not in small]
    if open_:
        share, extra = divmod(left, len(open_))
        lucky = set(rng.sample(open_, extra))
        for g in open_:
            shares[g] = share + (g in lucky)
    return shares


def _round_robin(groups: list[list]) -> list:
    """One record of each group in turn: g0[0], g1[0], ..., g0[1], g1[1], ...; a group that runs out
    drops out."""
    return [g[i] for i in range(max(map(len, groups), default=0)) for g in groups if i < len(g)]
