"""The base LightningModule of every ensemble method: one decode path for predict, validate and test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import lightning as L
import torch

from selfens import decode as decoding
from selfens.attention.layers import check_implementation
from selfens.data.base import longest_prompt
from selfens.data.batch import ParaphraseBatch
from selfens.data.fit import PromptLimit
from selfens.data.segments import Segments
from selfens.decode import DecodeCost, PrefixCache, Prompt
from selfens.errors import ConfigError
from selfens.metrics import load_lemmatizer
from selfens.metrics.views import METRICS, Scores, ViewScores, score
from selfens.models import EMBEDDED, context_window, eos_token_ids, load_model, load_tokenizer, resolve, resolve_dtype
from selfens.resume import check_method, finished_cost, finished_rows

# The cost of a run, summed over batches and processes. Confidence work (weighted methods: greedy
# answers and K samples per prompt) is named apart from the decode of the answers themselves.
COSTS = (
    "prefill_tokens",
    "prefill_padded_tokens",
    "forward_calls",
    "decode_steps",
    "decode_seconds",
    "confidence_prefill_tokens",
    "confidence_prefill_padded_tokens",
    "confidence_forward_calls",
    "confidence_decode_steps",
    "confidence_seconds",
)


@dataclass
class Output:
    """What a method's decode returns for a batch of B examples."""

    predictions: list[str]  # [B] the method's answer
    per_paraphrase: Optional[list[list[str]]] = None  # [B][N] each paraphrase's own answer, if any
    extra: list[dict] = field(default_factory=list)  # [B] method-specific fields for predictions.jsonl
    cost: DecodeCost = field(default_factory=DecodeCost)
    confidence_cost: DecodeCost = field(default_factory=DecodeCost)  # weighted methods' confidences

    def cost_values(self) -> dict[str, float]:
        """This batch's cost under the names of COSTS."""
        values = {}
        for prefix, c in (("", self.cost), ("confidence_", self.confidence_cost)):
            values[f"{prefix}prefill_tokens"] = c.prefill_tokens  # real tokens run
            values[f"{prefix}prefill_padded_tokens"] = c.prefill_padded_tokens  # padding included
            values[f"{prefix}forward_calls"] = c.forward_calls
            values[f"{prefix}decode_steps"] = c.decode_steps
        values["decode_seconds"], values["confidence_seconds"] = self.cost.seconds, self.confidence_cost.seconds
        return {name: values[name] for name in COSTS}


class EnsembleModule(L.LightningModule):
    """Decodes multi-paraphrase batches; subclasses define `decode` and the views they score."""

    method: str = "base"
    predict_stage: str = "predict"  # what results.json calls a predict run

    def __init__(
        self,
        model: str = EMBEDDED,
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
            model: a registry name (see `selfens.models.MODELS`) or a local model folder.
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
        # Not logged by Lightning as they are: the writer logs the settings that tell runs apart.
        self.save_hyperparameters(logger=False)
        resolve(model)  # an unknown model or dtype fails here, before anything loads
        resolve_dtype(dtype, torch.device("cpu"))
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self.model_name = model
        self.tokenizer = load_tokenizer(model)
        self.lm = None
        self.prefix_cache = PrefixCache(prefix_cache_size if reuse_prefix else 0)
        self.lemmatizer = load_lemmatizer(lemmatizer)
        self.scores: Optional[Scores] = None  # built in setup, once N is known
        self.run_cost = dict.fromkeys(COSTS, 0.0)  # this process, this run
        self.resumed_from: Optional[str] = None
        self.resumed_rows: list[dict] = []
        self.carried_cost = dict.fromkeys(COSTS, 0.0)  # what the resumed run had spent

    # -- what subclasses provide -------------------------------------------------------------------
    extra_scores: tuple[str, ...] = ()  # per-example row fields averaged into `<stage>/<name>`

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

    def setup(self, stage: str) -> None:
        # Every rank builds the same metric states up front, even one that gets no batch.
        data = self.trainer.datamodule
        if self.scores is None:
            self.scores = self.build_scores(data.num_paraphrases)
        if self.resumed_rows:
            # Resumed rows are scored from their saved answers exactly as new ones are.
            for row in self.resumed_rows:
                row.pop("scores", None)
                if stage != "predict":
                    row["scores"] = self.view_scores(row["prediction"], row.get("per_paraphrase"), row["answers"])

    def resume_from(self, folder: str) -> None:
        """Keep the finished examples of an interrupted run in `folder`; decode only the others."""
        self.resumed_from, self.resumed_rows = str(folder), finished_rows(folder)
        check_method(self.resumed_rows, self.method, folder)
        self.carried_cost = finished_cost(folder, COSTS)

    def _replay_resumed(self) -> None:
        """Count the resumed examples in the metrics, once (on rank 0)."""
        if self.resumed_rows and self.trainer.is_global_zero:
            self.scores.update(self.resumed_rows)

    # -- model -------------------------------------------------------------------------------------
    def target_device(self) -> torch.device:
        """Where the model will run: the strategy's device, or the CPU without a Trainer."""
        return self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")

    def attention_implementation(self) -> str:
        """The transformers attention backend the model loads with."""
        return self.hparams.attn_implementation

    def configure_model(self) -> None:
        if self.lm is not None:
            return
        dtype = resolve_dtype(self.hparams.dtype, self.target_device())
        device_map = self.hparams.device_map
        if device_map is not None and self._trainer is not None and self.trainer.world_size > 1:
            raise ConfigError(
                f"model.device_map: {device_map} shards one model over the GPUs of one process; it cannot be "
                f"combined with DDP ({self.trainer.world_size} processes). Use trainer.devices: 1 with device_map, "
                f"or drop device_map to run a whole copy of the model per GPU."
            )
        implementation = self.attention_implementation()
        check_implementation(implementation, self.target_device())
        lm = load_model(self.model_name, dtype=dtype, attn_implementation=implementation, device_map=device_map)
        lm.requires_grad_(False)
        if device_map is None:
            self.lm = lm
        else:
            # Not a submodule: Lightning would move it, whole, onto one device.
            object.__setattr__(self, "lm", lm)

    @property
    def eos_ids(self) -> list[int]:
        return eos_token_ids(self.lm, self.tokenizer)

    # -- shared decoding helpers -------------------------------------------------------------------
    def generate(self, prompt: Prompt, **kwargs) -> decoding.Decoded:
        """`decoding.decode` with this module's model, EOS ids, length limit and stop strings."""
        kwargs.setdefault("max_new_tokens", self.hparams.max_new_tokens)
        return decoding.decode(
            self.lm,
            prompt.to(self.device),
            eos_ids=self.eos_ids,
            stop=self._stopped,
            prefix_cache=self.prefix_cache,
            **kwargs,
        )

    def single_prompts(self, batch: ParaphraseBatch, paraphrases: Optional[list[int]] = None) -> Prompt:
        """The single prompts of the chosen paraphrases (default: all) as rows, example-major. When
        every example of the batch has the same prefix, it is read once (`reuse_prefix`)."""
        chosen = range(batch.num_paraphrases) if paraphrases is None else paraphrases
        prefix = batch.segments[0].prefix
        if self.hparams.reuse_prefix and prefix and all(s.prefix == prefix for s in batch.segments):
            rests = [s.blocks[k] + s.suffix for s in batch.segments for k in chosen]
            return Prompt.with_prefix(prefix, rests, self.tokenizer.pad_token_id).to(self.device)
        return Prompt.left_padded(*batch.rows(paraphrases)).to(self.device)

    def _raw_text(self, tokens: list[int]) -> str:
        # Leading whitespace is not an answer: a stop string there does not end it.
        return self.tokenizer.decode(tokens, skip_special_tokens=True).lstrip()

    def _stopped(self, _example: int, tokens: list[int]) -> bool:
        text = self._raw_text(tokens)
        return any(s in text for s in self.hparams.stop_strings)

    def text(self, tokens: list[int]) -> str:
        """The answer text of generated tokens: cut at the first stop string, stripped."""
        text = self._raw_text(tokens)
        for s in self.hparams.stop_strings:
            text = text.split(s, 1)[0]
        return text.strip()

    # -- Lightning steps ---------------------------------------------------------------------------
    def _step(self, batch: ParaphraseBatch, score_it: bool) -> list[dict]:
        out = self.decode(batch)
        self.add_cost(out)
        rows = self.rows(batch, out, score_it)
        if score_it:
            self.scores.update(rows)
        return rows

    def add_cost(self, out: Output) -> None:
        for name, value in out.cost_values().items():
            self.run_cost[name] += value

    def rows(self, batch: ParaphraseBatch, out: Output, scored: bool) -> list[dict]:
        """One predictions.jsonl row per example."""
        rows = []
        for b in range(len(batch.ids)):
            row = {
                "index": int(batch.index[b]),
                "id": batch.ids[b],
                "method": self.method,
                "prediction": out.predictions[b],
                "answers": batch.answers[b],
                "paraphrases": batch.paraphrases[b],
            }
            if out.per_paraphrase is not None:
                row["per_paraphrase"] = out.per_paraphrase[b]
            if out.extra:
                row.update(out.extra[b])
            if scored:
                row["scores"] = self.view_scores(row["prediction"], row.get("per_paraphrase"), row["answers"])
            rows.append(row)
        return rows

    def predict_step(self, batch: ParaphraseBatch, batch_idx: int) -> list[dict]:
        return self._step(batch, score_it=False)

    def test_step(self, batch: ParaphraseBatch, batch_idx: int) -> list[dict]:
        return self._step(batch, score_it=True)

    def validation_step(self, batch: ParaphraseBatch, batch_idx: int) -> list[dict]:
        return self._step(batch, score_it=True)

    def _log_scores(self, stage: str) -> None:
        # compute() syncs the summed states across processes, so every rank logs the global value.
        values = self.scores.compute(stage)
        common = {f"{stage}/{m}": values[f"{stage}/{self.main_view}/{m}"] for m in METRICS}
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

    def cost_summary(self) -> dict[str, float]:
        """This run's cost summed over all processes (a collective call: every rank must make it)."""
        # float64: token counts stay exact far beyond float32's 2**24.
        local = torch.tensor([self.run_cost[c] for c in COSTS], dtype=torch.float64, device=self.device)
        total = self.trainer.strategy.reduce(local, reduce_op="sum")
        return dict(zip(COSTS, total.tolist()))

    def configure_callbacks(self):
        from selfens.writer import RunWriter

        return [RunWriter()]
