"""Attention-level fusion: all N paraphrases in one packed sequence, one forward pass per step."""

from __future__ import annotations

from typing import Literal, Optional

from selfens.attention.backend import Backend, attn_implementation, default_backend, prefill_mask
from selfens.attention.packing import LAYOUTS, Layout, Packed, pack
from selfens.attention.positions import PositionMode, position_ids
from selfens.data.batch import ParaphraseBatch
from selfens.decoding.fusion import FUSIONS, FusionName, bind, get_fusion
from selfens.decoding.loop import first_row
from selfens.decoding.prompt import Prompt
from selfens.errors import ConfigError
from selfens.methods.base import EnsembleModule, Output
from selfens.prompting.segments import Segments


class AttentionFusion(EnsembleModule):
    """Packs each example's paraphrases into one row (see `selfens.attention.packing`), prefills once with
    a mask that isolates the blocks, then decodes one row per example with the KV cache; the
    suffix and generated tokens attend to every block.

    The first answer token must be fused too. `first_token: suffix` takes it at the end of a
    non-empty shared suffix, which sees every block; `first_token: block_ends` fuses the next-token
    logits at the end of each block (each seeing only its own paraphrase, all from the same
    prefill) with `first_fusion`. With the `seed` layout, `suffix` reproduces the seed: the first
    token comes from the end of the last segment, i.e. from paraphrase N alone.
    """

    method = "attention"

    def __init__(
        self,
        layout: Layout = "shared_prefix",
        positions: PositionMode = "sequential",
        first_token: Literal["suffix", "block_ends"] = "block_ends",
        first_fusion: FusionName = "avg",
        backend: Optional[Backend] = None,
        **kwargs,
    ):
        """
        Args:
            layout: "seed" ([prefix+block_k] segments), "shared_prefix" ([prefix][block_1..N][suffix])
                or "isolated_fewshot" (each shot isolated too).
            positions: "sequential" (0..L-1) or "parallel" (blocks restart after the shared prefix;
                later tokens continue after the longest block).
            first_token: how the first answer token is fused: "suffix" or "block_ends".
            first_fusion: the logit fusion rule for `block_ends`, one without weights (e.g. avg or max).
            backend: "dense" (a 4D mask: boolean for SDPA, additive floats for eager) or "flex"
                (FlexAttention BlockMask); None: flex on CUDA, dense elsewhere (and with eager).
            **kwargs: see EnsembleModule; attn_implementation: the dense backend's, "sdpa" (falls back
                to eager for a model without it) or "eager".
        """
        super().__init__(**kwargs)
        implementation = self.hparams.attn_implementation
        if implementation not in ("sdpa", "eager") or (implementation == "eager" and backend == "flex"):
            raise ConfigError(
                f"AttentionFusion runs its packed mask with attn_implementation sdpa or eager (backend: dense) or "
                f"FlexAttention (backend: flex, attn_implementation: sdpa); got attn_implementation: "
                f"{implementation} with backend: {backend}"
            )
        self.layout, self.positions, self.first_token = layout, positions, first_token
        if FUSIONS[first_fusion].needs_weights:
            unweighted = ", ".join(name for name, rule in FUSIONS.items() if not rule.needs_weights)
            raise ConfigError(
                f"first_fusion {first_fusion!r} needs confidences, which attention fusion has none of; use one of: {unweighted}"
            )
        self.first_fusion = get_fusion(first_fusion)
        self.backend = backend
        self._mask_logged = False

    def method_settings(self) -> dict:
        fused_first = {"first_fusion": self.hparams.first_fusion} if self.first_token == "block_ends" else {}
        return {"layout": self.layout, "positions": self.positions, "first_token": self.first_token, **fused_first}

    def label(self) -> str:
        return "-".join([self.method, self.layout, self.positions, self.first_token])

    def attention_implementation(self) -> str:
        # The backend decides: the packed mask must reach attention exactly as built.
        eager = self.hparams.attn_implementation == "eager"
        self.backend = self.backend or ("dense" if eager else default_backend(self.target_device()))
        return attn_implementation(self.backend, dense=self.hparams.attn_implementation)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        # A prompt that does not suit first_token fails here, at start-up, not after loading the model.
        self.check_prompts([e.segments for e in self.trainer.datamodule.examples])

    @staticmethod
    def first_token_for(suffix: list[int]) -> str:
        """The first-token mode a prompt with this shared suffix needs (see `check_prompts`)."""
        return "suffix" if suffix else "block_ends"

    def check_prompts(self, segments: list[Segments]) -> None:
        """The first-token mode needs a shared suffix (`suffix`) or none (`block_ends`)."""
        if not LAYOUTS[self.layout].shared_suffix:  # each segment ends with its own suffix: any prompt goes
            return
        if self.first_token == "suffix" and any(not s.suffix for s in segments):
            raise ConfigError(
                "first_token: suffix needs a non-empty shared suffix (its tokens see every block, so the first "
                "answer token is fused); this prompt has none. Use first_token: block_ends, or a prompt with a "
                "suffix (data cue_in: suffix, or prompt_style: chat)."
            )
        if self.first_token == "block_ends" and any(s.suffix for s in segments):
            raise ConfigError(
                "first_token: block_ends needs an empty suffix: the logits at a block's end must predict the "
                "answer, not the suffix. Use first_token: suffix, or data cue_in: block with prompt_style: raw."
            )

    def rows_per_example(self, num_paraphrases: int) -> int:
        return 1  # every paraphrase packed in one row

    def prompt_length(self, segments: Segments) -> int:
        """The packed sequence: every block in one row."""
        return pack([segments], self.layout, self.tokenizer.pad_token_id).input_ids.shape[-1]

    def pack(self, batch: ParaphraseBatch, examples: Optional[list[int]] = None) -> Packed:
        """The chosen examples (default: all) of the batch, packed."""
        segments = batch.segments if examples is None else [batch.segments[b] for b in examples]
        self.check_prompts(segments)
        return pack(segments, self.layout, self.tokenizer.pad_token_id, share_prefix=self.hparams.reuse_prefix)

    def prompt(self, packed: Packed) -> Prompt:
        """The packed prefill: its tokens, positions and mask, and with `block_ends` the N block ends
        whose logits choose the first token. A prefix shared by every row is read once."""
        positions = position_ids(packed, self.positions).to(self.device)  # per-token bookkeeping: cheaper on the CPU
        packed, p = packed.to(self.device), packed.shared
        prefix = None
        if p:
            head = packed.prefix()
            prefix = Prompt(
                head.input_ids, head.valid, positions[:1, :p], attention_mask=prefill_mask(head, self.backend)
            )
            prefix.key = (
                "packed",
                self.backend,
                *(tuple(t[0].tolist()) for t in (head.input_ids, head.level, head.segment, prefix.position_ids)),
            )
        return Prompt(
            input_ids=packed.input_ids[:, p:],
            valid=packed.valid[:, p:],
            position_ids=positions[:, p:],
            attention_mask=prefill_mask(packed, self.backend, first_query=p),
            logit_positions=packed.block_ends - p if self.first_token == "block_ends" else None,
            prefix=prefix,
        )

    def decode(self, batch: ParaphraseBatch) -> Output:
        if not self._mask_logged:
            self._log_mask(batch)
        decoded = self.generate_by_prefix(
            batch,
            lambda examples: self.prompt(self.pack(batch, examples)),
            fuse=first_row,
            fuse_first=bind(self.first_fusion, None) if self.first_token == "block_ends" else None,
        )
        return Output([self.text(t) for t in decoded.tokens], cost=decoded.cost, logprobs=decoded.logprobs())

    def _log_mask(self, batch: ParaphraseBatch) -> None:
        """Draw the first example's mask into TensorBoard, once per run."""
        self._mask_logged = True
        logger = self.logger if self._trainer is not None else None
        if logger is None or not self.trainer.is_global_zero or not hasattr(logger.experiment, "add_figure"):
            return
        from selfens.attention.draw import extend_with_generated, mask_figure

        mask, labels = extend_with_generated(pack(batch.segments[:1], self.layout, self.tokenizer.pad_token_id), 0)
        title = f"{self.layout}, {self.positions} positions, first token: {self.first_token}"
        logger.experiment.add_figure("attention_mask", mask_figure(mask, labels, title))
