"""The base DataModule: records -> rendered prompts -> segments -> collated batches."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, replace
from functools import partial
from typing import Literal, Optional, Union

import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from selfens.data.batch import Example, collate
from selfens.data.long_prompts import FitReport, LongPromptPolicy, PromptLimit, fit
from selfens.data.prompt_builder import PromptBuilder
from selfens.data.records import DataError, Record
from selfens.errors import ConfigError
from selfens.model.registry import model_spec
from selfens.prompting.formats import CuePlace, PromptFormat
from selfens.prompting.segments import Segments

log = logging.getLogger(__name__)


Split = Literal["test", "dev"]


def check_split(split: str) -> str:
    if split not in ("test", "dev"):
        raise ConfigError(f"split must be test or dev (the facts fitted methods learn on), got {split!r}")
    return split


def init_args(hparams) -> dict:
    """A data module's own settings (its saved hyperparameters less Lightning's `_class_path`, ...)."""
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


class ParaphraseDataModule(L.LightningDataModule):
    """Yields `ParaphraseBatch`es of records with `num_paraphrases` phrasings each.

    Subclasses implement `load_records` (and name their prompt format). The tokenizer and the
    model's prompt defaults are only known once the method module exists: `connect` takes them
    (the selfens CLI calls it before running; so must any other caller).
    """

    def __init__(
        self,
        num_paraphrases: int = 5,
        num_shots: int = 4,
        limit: Optional[int] = None,
        batch_size: Union[int, Literal["auto"]] = 8,
        prompt_style: Optional[Literal["chat", "raw"]] = None,
        cue_in: CuePlace = "block",
        seed: int = 0,
        num_workers: int = 0,
        max_prompt_tokens: Optional[int] = None,
        long_prompts: LongPromptPolicy = "drop_shots",
    ):
        """
        Args:
            num_paraphrases: phrasings per question (N); index 0 is the original wording.
            num_shots: few-shot examples in the shared prefix.
            limit: evaluate only the first `limit` records (None: all).
            batch_size: examples per batch (each has N paraphrases); "auto": from the memory budget once
                the model is loaded (`selfens.decoding.budget`; 8 where nothing sets it, e.g. `selfens paraphrase`).
            prompt_style: "chat" (the tokenizer's chat template) or "raw" text; None: the model's default.
            cue_in: where the answer cue ("\\nA:") goes: in each paraphrase "block", or once in the shared "suffix".
            seed: seed for choosing few-shot examples.
            num_workers: DataLoader workers.
            max_prompt_tokens: the most prompt tokens a row may read; None: the model's context window
                less the method's max_new_tokens (for attention fusion, the packed sequence counts).
            long_prompts: a longer prompt "drop_shots" (few-shot examples from the end, until it fits;
                skipped if it never does), "skip" (the example, recorded), or "error". The question
                itself is never cut.
        """
        super().__init__()
        self.save_hyperparameters(logger=False)  # the writer logs the settings that tell runs apart
        if num_paraphrases < 1:
            raise ConfigError(f"num_paraphrases must be at least 1, got {num_paraphrases}")
        if limit is not None and limit < 1:
            raise ConfigError(f"limit must be at least 1 (or null for all), got {limit}")
        self.batch_size_auto = batch_size == "auto"
        if not self.batch_size_auto and (isinstance(batch_size, bool) or not isinstance(batch_size, int)):
            raise ConfigError(f"batch_size must be a whole number of examples per batch or auto, got {batch_size!r}")
        if not self.batch_size_auto and batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1 (examples per batch), got {batch_size}")
        self.num_paraphrases, self.num_shots, self.limit = num_paraphrases, num_shots, limit
        self.batch_size = 8 if self.batch_size_auto else batch_size  # the loader's; auto: until resolved
        self.prompt_style, self.cue_in = prompt_style, cue_in
        self.seed, self.num_workers = seed, num_workers
        self.max_prompt_tokens, self.long_prompts = max_prompt_tokens, long_prompts
        if max_prompt_tokens is not None and max_prompt_tokens < 1:
            raise ConfigError(f"max_prompt_tokens must be at least 1 (or null: the model's), got {max_prompt_tokens}")
        self.prompt_limit: Optional[PromptLimit] = None
        self.fit_report: Optional[FitReport] = None  # what long_prompts changed, once encoded
        self.tokenizer = None
        self.model_name: Optional[str] = None
        self.examples: Optional[list[Example]] = None
        self.data_hash: Optional[str] = None  # of what is evaluated, once encoded
        self.examples_hash: Optional[str] = None  # of the same without the paraphrases beyond the first
        self.paraphrases_hash: Optional[str] = None  # of every example's paraphrases
        self.resumed = None  # a `selfens.run.resume.Resume`: its finished examples are not decoded again

    def resolve_batch_size(self, size: int) -> None:
        """Set the batch size that `batch_size: auto` stands for (`EnsembleModule.size_decode`, once the
        model is loaded)."""
        if size < 1:
            raise ValueError(f"a resolved batch_size must be at least 1, got {size}")
        self.batch_size = size

    # -- what subclasses provide -------------------------------------------------------------------
    def dev_split(self) -> ParaphraseDataModule:
        """This data's development split, never overlapping it: what fitted methods learn from."""
        raise ConfigError(
            f"{type(self).__name__} has no development split here: fitted methods need ParaRel (dev_sample) "
            f"or your own JSONL (dev_path)"
        )

    def prompt_format(self) -> PromptFormat:
        raise NotImplementedError

    def load_records(self) -> list[Record]:
        """All records to evaluate, in order, each with `num_paraphrases` paraphrases."""
        raise NotImplementedError

    # -- wiring ------------------------------------------------------------------------------------
    def connect(self, tokenizer, model_name: str, prompt_limit: Optional[PromptLimit] = None) -> None:
        """Take the tokenizer and model name, known only once the method module exists, and how long
        a prompt the method can read (None: no limit known)."""
        self.tokenizer, self.model_name, self.prompt_limit = tokenizer, model_name, prompt_limit

    def resume(self, resume) -> None:
        """Leave out the examples that `resume` (a `selfens.run.resume.Resume`) has finished (that it
        is the same run is checked by the caller: `selfens.run.identity`)."""
        self.resumed = resume

    @property
    def chat(self) -> bool:
        style = self.prompt_style
        return model_spec(self.model_name).chat if style is None else style == "chat"

    @property
    def fill_style(self) -> str:
        """Rendering of fill-in-the-blank data for this model (its registry default)."""
        return model_spec(self.model_name).fill_style

    def resolved_settings(self) -> dict[str, str]:
        """The prompt settings in use, where the config may leave them to the model's default."""
        return {"prompt_style": "chat" if self.chat else "raw"}

    def settings(self) -> dict:
        """What sets this data apart from other data in a run's settings."""
        return {
            "dataset": type(self).__name__,
            "N": self.num_paraphrases,
            "shots": self.num_shots,
            **self.resolved_settings(),
        }

    def evaluation_identity(self) -> dict:
        """This module's share of what a run evaluates (`selfens.run.identity`): the examples (ids,
        original wording, answers, few-shot examples) and how they are prompted. Set up only."""
        return {
            "dataset": type(self).__name__,
            "examples": self.examples_hash,
            "shots": self.num_shots,
            "seed": self.seed,
            "prompt_style": self.resolved_settings()["prompt_style"],
            "cue_in": self.cue_in,
        }

    def method_identity(self) -> dict:
        """This module's share of the method part of a run's identity: N and the paraphrases fused."""
        return {"N": self.num_paraphrases, "paraphrases": self.paraphrases_hash}

    def record(self) -> dict:
        """What results.json says about the evaluated data (once set up)."""
        return {
            "dataset": type(self).__name__,
            "data_hash": self.data_hash,
            "sources": self.sources(),
            "long_prompts": asdict(self.fit_report) if self.fit_report else None,
            "config": {**dict(self.hparams), **self.resolved_settings()},
        }

    def warnings(self) -> list[str]:
        """What a reader of the numbers must know about the data (e.g. shortened prompts)."""
        return self.fit_report.warnings() if self.fit_report else []

    def sources(self) -> dict:
        """Files the records came from beyond the dataset itself (e.g. a paraphrase file, with its
        hash), for results.json."""
        return {}

    def setup(self, stage: str) -> None:
        if self.examples is not None:
            return
        if self.tokenizer is None:
            raise RuntimeError(
                f"{type(self).__name__} has no tokenizer: call connect(tokenizer, model_name) before setup"
            )
        self.examples = self.encode(self.load_records())
        log.info("%s: %d examples, %d paraphrases each", type(self).__name__, len(self.examples), self.num_paraphrases)

    def encode(self, records: list[Record]) -> list[Example]:
        """Render and tokenize every record up front, so bad input fails before any decoding; a
        prompt too long for the model is handled by `long_prompts`."""
        if self.limit is not None:
            records = records[: self.limit]
        if not records:
            raise DataError(f"{type(self).__name__}: no records to evaluate")
        check_unique_ids(records, type(self).__name__)
        builder = self.prompt_builder()

        def segments(record: Record) -> Segments:
            return builder.encode(record.paraphrases, record.shots, record.id)

        limit = self._limit()
        if limit is not None:
            self.fit_report = FitReport(limit.budget, limit.why, self.long_prompts)
        examples, kept = [], []
        for record in records:
            if limit is None:
                found = segments(record)
            else:
                record, found = fit(record, segments, limit, self.long_prompts, self.fit_report)
            if found is not None:
                group = record.meta.get("group", record.meta.get("relation"))
                examples.append(Example(len(examples), record.id, record.paraphrases, record.answers, found, group))
                kept.append(record)
        if self.fit_report is not None:
            for warning in self.fit_report.warnings():
                log.warning("%s: %s", type(self).__name__, warning)
        if not examples:
            raise DataError(f"{type(self).__name__}: every example's prompt is too long ({limit.why}); lower num_shots")
        self.data_hash = _hash(kept)
        self.examples_hash = _hash([replace(r, paraphrases=r.paraphrases[:1]) for r in kept])
        self.paraphrases_hash = _sha256([r.paraphrases for r in kept])
        return examples

    def _limit(self) -> Optional[PromptLimit]:
        """The method's limit, with this module's max_prompt_tokens in place of its budget if set."""
        limit = self.prompt_limit
        if self.max_prompt_tokens is None:
            return limit
        length = limit.length if limit is not None else longest_prompt
        return PromptLimit(self.max_prompt_tokens, length, f"max_prompt_tokens {self.max_prompt_tokens}")

    def prompt_builder(self) -> PromptBuilder:
        """How this data's prompts are rendered and tokenized for the connected model."""
        return PromptBuilder(
            self.tokenizer, self.prompt_format(), chat=self.chat, model_name=self.model_name, cue_in=self.cue_in
        )

    # -- loaders -----------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        trainer = self.trainer
        done = self.resumed.done if self.resumed is not None else set()
        batches = prefix_batches([e for e in self.examples if e.index not in done], self.batch_size)
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            # Whole batches go to processes. Lightning's default test sampler pads ranks with
            # duplicates; this one does not, so each example is decoded and counted exactly once.
            sampler = UnrepeatedDistributedSampler(
                batches, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return DataLoader(
            batches,
            batch_size=None,  # each item is a batch already
            sampler=sampler,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=partial(collate, pad_id=self.tokenizer.pad_token_id),
        )

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()

    def val_dataloader(self) -> DataLoader:
        return self._loader()


def prefix_batches(examples: list[Example], batch_size: int) -> list[list[Example]]:
    """Full batches of `batch_size` examples (the last one short), the examples ordered by prompt
    prefix (first seen first) and, within a prefix, by length (less padding): a batch may mix
    prefixes, and methods read each of its prefixes once. Deterministic."""
    groups: dict[tuple[int, ...], list[Example]] = {}
    for example in examples:
        groups.setdefault(tuple(example.segments.prefix), []).append(example)
    ordered = [
        e for group in groups.values() for e in sorted(group, key=lambda e: (sum(map(len, e.segments.blocks)), e.index))
    ]
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def longest_prompt(segments: Segments) -> int:
    """Tokens of an example's longest single prompt."""
    return max(len(segments.prompt(k)) for k in range(len(segments.blocks)))


def check_unique_ids(records: list[Record], source: str) -> None:
    """Every example is scored and resumed by its id: two records with one id is an error, naming
    where each was read (`file:line`, as `Record.check` kept it)."""
    first: dict[str, tuple[int, Record]] = {}
    for i, record in enumerate(records):
        if record.id in first:
            k, other = first[record.id]
            both = (
                f"{other.where} and {record.where}" if other.where and record.where else f"records {k + 1} and {i + 1}"
            )
            raise DataError(
                f"{source}: example id {record.id!r} is used twice ({both}); ids must be unique (every example is "
                f"scored, and resumed, by its id): give each its own id"
            )
        first[record.id] = i, record


def _hash(records: list[Record]) -> str:
    """sha256 of what is evaluated: ids, paraphrases, answers and shots."""
    digest = hashlib.sha256()
    for r in records:
        shots = [[s.query, s.answer, s.tail] for s in r.shots]
        digest.update(json.dumps([r.id, r.paraphrases, r.answers, shots]).encode())
    return digest.hexdigest()


def _sha256(value) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()
