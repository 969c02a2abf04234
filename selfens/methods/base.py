"""The base LightningModule of every ensemble method: one decode path for predict, validate and test.

A method is a subclass that says how it decodes a batch (`decode`), under which views its answers
are scored, and which of its settings set a run apart (`method_settings`, `label`): the run record,
the report and TensorBoard read those, so a new method needs no list edited elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import lightning as L
import torch

from selfens.data.base import longest_prompt
from selfens.data.batch import ParaphraseBatch
from selfens.data.long_prompts import PromptLimit
from selfens.decoding import budget
from selfens.decoding.caches import PrefillMemo, PrefixCache
from selfens.decoding.forcing import Forced
from selfens.decoding.loop import Stop
from selfens.decoding.prompt import Prompt, left_pad
from selfens.decoding.result import DecodeCost, Decoded, decode_order, placed
from selfens.errors import ConfigError
from selfens.methods.rows import prediction_rows
from selfens.metrics import load_lemmatizer
from selfens.metrics.views import METRICS, Scores, ViewScores, common_name, metric_name, score
from selfens.model.language_model import LanguageModel, as_language_model
from selfens.model.registry import EMBEDDED, context_window, resolve_dtype
from selfens.prompting.segments import Segments
from selfens.run.cost import RunCost
from selfens.run.resume import Resume


@dataclass
class Output:
    """What a method's decode returns for a batch of B examples."""

    predictions: list[str]  # [B] the method's answer
    per_paraphrase: Optional[list[list[str]]] = None  # [B][N] each paraphrase's own answer, if any
    extra: list[dict] = field(default_factory=list)  # [B] method-specific fields for predictions.jsonl
    cost: DecodeCost = field(default_factory=DecodeCost)
    confidence_cost: DecodeCost = field(default_factory=DecodeCost)  # weighted methods' confidences
    # [B] (sum of the answer tokens' log-probabilities, their count) under the distribution that chose
    # them; per_paraphrase_logprobs: [B][N] each paraphrase's own answer's
    logprobs: Optional[list[tuple[float, int]]] = None
    per_paraphrase_logprobs: Optional[list[list[tuple[float, int]]]] = None


class EnsembleModule(L.LightningModule):
    """Decodes multi-paraphrase batches; subclasses define `decode` and the views they score."""

    method: str = "base"
    predict_stage: str = "predict"  # what results.json calls a predict run

    def __init__(
        self,
        model: Union[str, LanguageModel] = EMBEDDED,
        dtype: str = "auto",
        max_new_tokens: int = 16,
        stop_strings: list[str] = ["\n"],  # noqa: B006 (shown by LightningCLI; never mutated)
        lemmatizer: str = "blank_en",
        attn_implementation: str = "sdpa",
        reuse_prefix: bool = True,
        prefix_cache_size: int = 32,
        bootstrap_resamples: int = 1000,
        device_map: Optional[str] = None,
    ):
        """
        Args:
            model: a registry name (see `selfens.model.registry.MODELS`), a local model folder, or a loaded
                `selfens.model.language_model.LanguageModel` that several methods share.
            dtype: "auto" (bf16 on CUDA, fp32 on CPU), "float32", "bfloat16" or "float16".
            max_new_tokens: longest answer, in tokens.
            stop_strings: an answer ends at the first of these (after leading whitespace); EOS always ends it.
            lemmatizer: spaCy pipeline for lemma match: "blank_en" (offline lookup tables) or an installed one.
            attn_implementation: transformers attention backend: "sdpa" (eager for a model without it),
                "eager" or "flex_attention" (CUDA only); the masks are built in the form each honours.
            reuse_prefix: prefill the prompt prefix (instruction and few-shot examples) that a batch's
                rows share once, and keep the KV of recent prefixes for later batches; False: every row
                reads its whole prompt (to compare).
            prefix_cache_size: how many recent prefixes' KV are kept.
            device_map: "auto" (or "balanced", ...): shard the model over the GPUs of this one process
                with accelerate, for a model bigger than one GPU; not with DDP (one process per GPU).
            bootstrap_resamples: resamples of the examples behind the 95% confidence intervals in
                results.json (seeded; 0: standard errors only).
        """
        super().__init__()
        self.language_model = as_language_model(model)
        # Not logged by Lightning as they are: the run record logs the settings that tell runs apart.
        self.save_hyperparameters(logger=False, ignore=["model"])
        self.hparams["model"] = self.model_name = self.language_model.name
        resolve_dtype(dtype, torch.device("cpu"))  # an unknown dtype fails here, before anything loads
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self.tokenizer = self.language_model.tokenizer
        # Per run, not shared with the model: what a run reads at prefill must not depend on what ran before it.
        self.prefix_cache = PrefixCache(prefix_cache_size if reuse_prefix else 0)
        self.prefill_memo: Optional[PrefillMemo] = None  # set while prompts may be decoded twice (`prefills_kept`)
        self.lemmatizer = load_lemmatizer(lemmatizer)
        self.scores: Optional[Scores] = None  # built in setup, once N is known
        self.run_cost = RunCost()  # this process, this run
        self.resumed: Optional[Resume] = None
        self.stop_rule: Optional[Stop] = None  # in place of the stop strings, e.g. for a test
        self.text_rule: Optional[Callable[[list[int]], str]] = None  # in place of `text`'s cut (lm-eval's)
        self.forced: Optional[Forced] = None  # the tokens to score instead of decoding (`selfens.decoding.forcing`)
        self.run_device: Optional[torch.device] = None  # where to run without a Trainer (None: the CPU)

    # -- what subclasses provide -------------------------------------------------------------------
    extra_scores: tuple[str, ...] = ()  # per-example row fields averaged into `<stage>/<name>`

    def method_settings(self) -> dict:
        """The settings of this method that set a run apart from another of the same method (e.g.
        the fusion rule, the layout); what does not apply is left out."""
        return {}

    def label(self) -> str:
        """The method and its key settings in a few characters: the run folder's name and TensorBoard's run list."""
        return self.method

    def views(self, num_paraphrases: int) -> list[str]:
        """The views this method is scored under."""
        return [self.method]

    @property
    def main_view(self) -> str:
        """The view of the method's own answer: logged again under the common tags `<stage>/em` ..., so
        that every method shares one chart."""
        return self.method

    def view_scores(self, prediction: str, per_paraphrase: Optional[list[str]], answers: list[str]) -> ViewScores:
        """Scores of one example under every view."""
        return {self.method: score(prediction, answers, self.lemmatizer)}

    def decode(self, batch: ParaphraseBatch) -> Output:
        raise NotImplementedError

    decode_rows: Optional[int] = None
    """The most rows decoded at once (None: no limit); set from the memory budget in `configure_model`."""

    def rows_per_example(self, num_paraphrases: int) -> int:
        """Rows an example decodes in (all N single prompts)."""
        return num_paraphrases

    def prompt_length(self, segments: Segments) -> int:
        """Tokens of the longest row this method reads at prefill for an example (all N single prompts)."""
        return longest_prompt(segments)

    def prompt_limit(self) -> Optional[PromptLimit]:
        """How long a prompt fits: the model's context window less the answer's max_new_tokens."""
        window = context_window(self.model_name)
        if window is None:
            return None
        new = self.hparams.max_new_tokens
        return PromptLimit(window - new, self.prompt_length, f"context window {window} - max_new_tokens {new}")

    def build_scores(self, num_paraphrases: int) -> Scores:
        return Scores(self.views(num_paraphrases), self.extra_scores)

    # -- the run -----------------------------------------------------------------------------------
    def evaluation_identity(self) -> dict:
        """This module's share of what a run evaluates (`selfens.run.identity`): the model and how
        answers are decoded. Loaded model only."""
        hp = self.hparams
        return {
            "model": self.model_name,
            "model_fingerprint": self.language_model.fingerprint(),
            "dtype": self.language_model.dtype,
            "max_new_tokens": hp.max_new_tokens,
            "stop_strings": list(hp.stop_strings),
        }

    def method_identity(self) -> dict:
        """This module's share of the method part of a run's identity: the method and its settings."""
        return {"method": self.method, **self.method_settings()}

    def resume(self, resume: Resume) -> None:
        """Keep the finished examples of an interrupted run; only the others are decoded (the run
        checks it is the same run, `selfens.run.identity`, before it decodes anything)."""
        self.resumed = resume

    @property
    def resumed_rows(self) -> list[dict]:
        return self.resumed.rows if self.resumed is not None else []

    def warnings(self, rows: list[dict]) -> list[str]:
        """What a reader of this run's numbers must know about how the method ran (every fallback),
        given every row of the run."""
        if self.implementation == "sdpa" and self.language_model.without_sdpa:
            return [f"{self.model_name} has no SDPA attention: it ran with eager attention (the same answers, slower)"]
        return []

    def record(self) -> dict:
        """What results.json says about this method."""
        return {
            "method": self.method,
            "label": self.label(),
            "main_view": self.main_view,
            "method_settings": self.method_settings(),
            "model": self.model_name,
        }

    def setup(self, stage: str) -> None:
        # Every rank builds the same metric states up front, even one that gets no batch.
        if self.scores is None:
            self.scores = self.build_scores(self.trainer.datamodule.num_paraphrases)

    def score_resumed(self, stage: str) -> None:
        """Score the kept rows from their saved answers, exactly as new ones are (once the run they
        come from is known to be this same run)."""
        for row in self.resumed_rows:
            row.pop("scores", None)
            if stage != "predict":
                row["scores"] = self.view_scores(row["prediction"], row.get("per_paraphrase"), row["answers"])

    # -- model -------------------------------------------------------------------------------------
    @property
    def hf_model(self):
        """The transformers model (None until configure_model)."""
        return self.language_model.hf_model

    @property
    def eos_ids(self) -> list[int]:
        return self.language_model.eos_ids

    def target_device(self) -> torch.device:
        """Where the model will run: the strategy's device, or without a Trainer `run_device` (the CPU)."""
        if self._trainer is not None:
            return self.trainer.strategy.root_device
        return self.run_device or torch.device("cpu")

    def attention_implementation(self) -> str:
        """The transformers attention backend this method runs the model with."""
        return self.hparams.attn_implementation

    def configure_model(self) -> None:
        device_map = self.hparams.device_map
        if device_map is not None and self._trainer is not None and self.trainer.world_size > 1:
            raise ConfigError(
                f"model.device_map: {device_map} shards one model over the GPUs of one process; it cannot be "
                f"combined with DDP ({self.trainer.world_size} processes). Use trainer.devices: 1 with device_map, "
                f"or drop device_map to run a whole copy of the model per GPU."
            )
        self.implementation = self.attention_implementation()
        trainer = self._trainer
        processes, barrier = (
            (trainer.num_devices, trainer.strategy.barrier) if trainer is not None else (1, lambda: None)
        )
        self.language_model.load(
            self.hparams.dtype, self.implementation, device_map, self.target_device(), processes, barrier
        )
        self.size_decode()  # decode_rows, and the data's batch size if auto

    def size_decode(self) -> None:
        """Set `decode_rows` from the memory budget and, for `batch_size: auto`, the data module's batch
        size. Without a Trainer, or a data module that is set up, nothing changes. Every process must
        batch alike (the sampler hands out whole batches by index): all take the fewest rows any holds."""
        data = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if data is None or getattr(data, "examples", None) is None:
            return
        done = data.resumed.done if data.resumed is not None else set()
        left = [e for e in data.examples if e.index not in done]
        tokens = max((self.prompt_length(e.segments) for e in left), default=1) + self.hparams.max_new_tokens
        device = self.target_device()
        memory = budget.memory_budget(self.hf_model, device)
        if device.type != "cuda":  # the processes on one machine share its memory
            memory //= self.trainer.num_devices
        rows = budget.decode_rows(self.hf_model, tokens, device, memory)
        rows = int(self.trainer.strategy.reduce(torch.tensor(rows, device=device), reduce_op="min"))
        self.decode_rows = rows
        if data.batch_size_auto:
            examples = self.rows_per_example(data.num_paraphrases)
            data.resolve_batch_size(budget.auto_batch_size(examples, rows, len(left), self.trainer.world_size))

    # -- shared decoding helpers -------------------------------------------------------------------
    def generate(self, prompts: Prompt | list[Prompt], **kwargs) -> Decoded:
        """Decode with this method's answer length, stop strings, prefix cache and rows in flight."""
        kwargs.setdefault("max_new_tokens", self.hparams.max_new_tokens)
        kwargs.setdefault("max_rows", self.decode_rows)
        self.language_model.use_implementation(self.implementation)  # the model may be shared
        return self.language_model.generate(
            prompts,
            stop_strings=self.hparams.stop_strings,
            prefix_cache=self.prefix_cache,
            prefill_memo=self.prefill_memo,
            **{"stop": self.stop_rule, **kwargs},
        )

    def prefix_groups(self, batch: ParaphraseBatch) -> list[list[int]]:
        """The batch's examples by prompt prefix, first seen first: each group becomes one prompt
        whose prefix is read once (with `reuse_prefix`; else one group)."""
        if not self.hparams.reuse_prefix:
            return [list(range(len(batch.ids)))]
        groups: dict[tuple[int, ...], list[int]] = {}
        for b, segments in enumerate(batch.segments):
            groups.setdefault(tuple(segments.prefix), []).append(b)
        return list(groups.values())

    def generate_by_prefix(self, batch: ParaphraseBatch, build, **kwargs) -> Decoded:
        """Decode the batch as one prompt per prefix group, `build(examples) -> Prompt`, all in one
        decode; the answers come back in batch order. `fuse`s that read per-example weights get them
        in decode order: see `decode_order`."""
        groups = self.prefix_groups(batch)
        prompts, order = [build(g) for g in groups], decode_order(groups)
        # The rules below name units in batch order (an example's fused rows are one unit, its single
        # prompts N), the decode names them in its own.
        units = sum(p.input_ids.shape[0] for p in prompts) // kwargs.get("rows_per_example", 1) // len(order)
        place = placed(order, units)
        if self.stop_rule is not None:
            rule = self.stop_rule
            kwargs["stop"] = lambda i, tokens: rule(place[i], tokens)
        if self.forced is not None:
            kwargs.update(self.forced.rules(place, units))
        return self.generate(prompts, **kwargs).reordered(order)

    def text(self, tokens: list[int]) -> str:
        """The answer text of generated tokens: cut at the first stop string, stripped (or as `text_rule` says)."""
        if self.text_rule is not None:
            return self.text_rule(tokens)
        return self.language_model.text(tokens, self.hparams.stop_strings)

    def single_prompts(
        self,
        batch: ParaphraseBatch,
        paraphrases: Optional[list[int]] = None,
        examples: Optional[list[int]] = None,
        each: Optional[list[int]] = None,
    ) -> Prompt:
        """The single prompts of the chosen paraphrases (default: all; `each`: example b's one
        paraphrase each[b]) of the chosen examples (default: all) as rows, example-major. When every
        chosen example has the same prefix, it is read once (`reuse_prefix`)."""
        chosen = range(batch.num_paraphrases) if paraphrases is None else paraphrases
        of = (lambda b: chosen) if each is None else (lambda b: [each[b]])  # noqa: E731
        rows = [
            (batch.segments[b], k) for b in (range(len(batch.ids)) if examples is None else examples) for k in of(b)
        ]
        prefix = rows[0][0].prefix
        if self.hparams.reuse_prefix and prefix and all(s.prefix == prefix for s, _ in rows):
            rests = [s.blocks[k] + s.suffix for s, k in rows]
            return Prompt.with_prefix(prefix, rests, self.tokenizer.pad_token_id).to(self.device)
        if examples is None and each is None:
            return Prompt.left_padded(*batch.rows(paraphrases)).to(self.device)
        ids, valid = left_pad([s.prompt(k) for s, k in rows], self.tokenizer.pad_token_id)
        return Prompt.left_padded(ids, valid).to(self.device)

    # -- Lightning steps ---------------------------------------------------------------------------
    def _step(self, batch: ParaphraseBatch, score_it: bool) -> list[dict]:
        out = self.decode(batch)
        self.add_cost(out.cost, out.confidence_cost)
        rows = self.rows(batch, out, score_it)
        if score_it:
            self.scores.update(rows)
        return rows

    def add_cost(self, answer: DecodeCost, confidence: Optional[DecodeCost] = None) -> None:
        self.run_cost = self.run_cost + RunCost.of(answer, confidence)

    def rows(self, batch: ParaphraseBatch, out: Output, scored: bool) -> list[dict]:
        """One predictions.jsonl row per example."""
        return prediction_rows(batch, out, self.method, self.view_scores if scored else None)

    def predict_step(self, batch: ParaphraseBatch, batch_idx: int) -> list[dict]:
        return self._step(batch, score_it=False)

    def test_step(self, batch: ParaphraseBatch, batch_idx: int) -> list[dict]:
        return self._step(batch, score_it=True)

    def validation_step(self, batch: ParaphraseBatch, batch_idx: int) -> list[dict]:
        return self._step(batch, score_it=True)

    def _replay_resumed(self) -> None:
        """Count the resumed examples in the metrics, once (on rank 0)."""
        if self.resumed_rows and self.trainer.is_global_zero:
            self.scores.update(self.resumed_rows)

    def _log_scores(self, stage: str) -> None:
        # compute() syncs the summed states across processes, so every rank logs the global value.
        values = self.scores.compute(stage)
        common = {common_name(stage, m): values[metric_name(stage, self.main_view, m)] for m in METRICS}
        self.log_dict({**values, **common}, sync_dist=False)
        self.scores.reset()

    def on_test_epoch_start(self) -> None:
        self._replay_resumed()

    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:
            self._replay_resumed()

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def cost_summary(self) -> RunCost:
        """This run's cost summed over all processes (a collective call: every rank must make it)."""
        # float64: token counts stay exact far beyond float32's 2**24.
        local = torch.tensor(self.run_cost.values(), dtype=torch.float64, device=self.device)
        return RunCost(*self.trainer.strategy.reduce(local, reduce_op="sum").tolist())
