"""Logit-level fusion: the N paraphrases decode in lockstep; each step fuses their next-token logits."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Optional

import torch

from selfens.data.batch import ParaphraseBatch
from selfens.decoding import budget
from selfens.decoding.caches import PrefillMemo
from selfens.decoding.fusion import FUSIONS, FusionName, bind
from selfens.decoding.result import DecodeCost, decode_order
from selfens.methods.base import EnsembleModule, Output
from selfens.methods.confidence import Confidence, ConfidenceCache, ConfidenceSettings, Measure
from selfens.model.registry import cache_dir
from selfens.run.progress import Progress


class LogitFusion(EnsembleModule):
    """`avg`, `max`, `weighted_avg` or `weighted_max` over the N paraphrases of each example.

    The B*N single prompts decode as one batch with a KV cache; at each step the fused token is
    appended to all N rows of its example. Weighted rules weight paraphrases by confidence.
    """

    def __init__(
        self,
        fusion: FusionName = "avg",
        confidence: Measure = "sampling",
        num_samples: int = 100,
        sample_max_new_tokens: int = 20,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        compute_confidence: bool = True,
        confidence_dir: Optional[str] = None,
        **kwargs,
    ):
        """
        Args:
            fusion: the fusion rule (see `selfens.decoding.fusion`).
            confidence: for weighted rules: "sampling" (share of sampled answers agreeing with the
                greedy one, the seed's measure) or "token_prob" (mean probability of the greedy answer's tokens).
            num_samples: K sampled answers per prompt (the seed used 100).
            sample_max_new_tokens: longest sampled answer (the seed used 20).
            temperature: sampling temperature; None: the model's generation config (else 1.0).
            top_k: sampling top-k; None: the model's generation config (else 50).
            top_p: sampling nucleus; None: the model's generation config (else 1.0).
            compute_confidence: compute missing confidences during the run; False: fail and say how.
            confidence_dir: the confidence cache; None: `$SELFENS_CACHE/confidence`.
            **kwargs: see EnsembleModule.
        """
        super().__init__(**kwargs)
        self.fusion_rule = FUSIONS[fusion]
        self.method = fusion
        self.confidence: Optional[Confidence] = None  # weighted rules: made with the model, in configure_model

    @property
    def uses_confidence(self) -> bool:
        """Whether the weights are confidences (drawn with the model, cached); a fitted rule's are not."""
        return self.fusion_rule.needs_weights

    def method_settings(self) -> dict:
        weighted = {"confidence": self.hparams.confidence} if self.fusion_rule.needs_weights else {}
        return {"fusion": self.method, **weighted}

    def method_identity(self) -> dict:
        if not self.uses_confidence:
            return super().method_identity()
        # How confidences are drawn changes the weights, so the answers; the answer's own settings
        # are the evaluation's.
        drawn = self.confidence_settings().for_key()
        for answer_setting in ("answer_max_new_tokens", "stop_strings"):
            del drawn[answer_setting]
        return {**super().method_identity(), "confidence_settings": drawn}

    def warnings(self, rows: list[dict]) -> list[str]:
        said = super().warnings(rows)
        zero = sum(1 for r in rows if r.get("all_zero"))
        if zero:
            fallback = {"weighted_avg": "equal weights (as avg)", "weighted_max": "the first paraphrase's logits"}
            said.append(
                f"{zero} of {len(rows)} examples had {'confidence' if self.uses_confidence else 'fitted weight'} 0 "
                f"for every paraphrase: {self.method} fused "
                f"them with {fallback.get(self.hparams.fusion, 'equal weights (as avg)')}"
            )
        if self.confidence is not None and self.confidence.cache.skipped:
            skipped = self.confidence.cache.skipped
            said.append(
                f"confidence cache: {len(skipped)} unreadable line(s) skipped ({', '.join(skipped)}); those "
                f"confidences were computed again"
            )
        return said

    # -- confidence --------------------------------------------------------------------------------
    def configure_model(self) -> None:
        super().configure_model()
        if self.uses_confidence and self.confidence is None:
            hp = self.hparams
            self.confidence = Confidence(
                self.confidence_settings(),
                ConfidenceCache(Path(hp.confidence_dir or cache_dir() / "confidence"), self.model_name),
                generate=self.generate,
                text=self.text,
                lemmatizer=self.lemmatizer,
                compute_missing=hp.compute_confidence,
            )

    def confidence_settings(self) -> ConfidenceSettings:
        config, hp = self.hf_model.generation_config, self.hparams
        pick = lambda ours, theirs, default: ours if ours is not None else (theirs if theirs is not None else default)
        return ConfidenceSettings(
            measure=hp.confidence,
            answer_max_new_tokens=hp.max_new_tokens,
            stop_strings=tuple(hp.stop_strings),
            num_samples=hp.num_samples,
            max_new_tokens=hp.sample_max_new_tokens,
            temperature=float(pick(hp.temperature, config.temperature, 1.0)),
            top_k=int(pick(hp.top_k, config.top_k, 50)),
            top_p=float(pick(hp.top_p, config.top_p, 1.0)),
            seed=0,
        )

    def confidences(
        self, batch: ParaphraseBatch, cost: Optional[DecodeCost] = None, progress: Optional[Progress] = None
    ) -> torch.Tensor:
        """Confidence of each paraphrase prompt, [B, N]; what computing missing ones costs is added to
        `cost`, and each prompt is counted in `progress` as it is done."""
        return self._confidences(batch, cost, progress)[0]

    def paraphrase_weights(
        self, batch: ParaphraseBatch, cost: Optional[DecodeCost] = None
    ) -> tuple[torch.Tensor, Optional[list[list[Optional[str]]]]]:
        """A weighted rule's weights, [B, N], and the answers they weigh, [B][N] (None: not recorded):
        here the confidences and the greedy answer each was computed for (for their calibration)."""
        return self._confidences(batch, cost)

    def _confidences(
        self, batch: ParaphraseBatch, cost: Optional[DecodeCost] = None, progress: Optional[Progress] = None
    ) -> tuple[torch.Tensor, list[list[Optional[str]]]]:
        """`confidences`, and the greedy answer each was computed for, [B][N]."""
        groups = self.prefix_groups(batch)  # a prefix is read once; all groups' missing values computed together
        prompts = [self.single_prompts(batch, examples=examples) for examples in groups]
        flat, spent = self.confidence(prompts, progress)
        if cost is not None:
            cost.add(spent)
        order, n = decode_order(groups), batch.num_paraphrases  # rows example-major, groups in order
        values = torch.zeros(len(batch.ids), n)
        values[order] = flat.view(-1, n)
        found = self.confidence.greedy_answers(prompts)
        answers: list[list[Optional[str]]] = [[] for _ in batch.ids]
        for place, example in enumerate(order):
            answers[example] = found[place * n : (place + 1) * n]
        return values, answers

    # -- decoding ----------------------------------------------------------------------------------
    @contextmanager
    def prefills_kept(self):
        """Within: a prompt prefilled once is not run again (`PrefillMemo`, as many rows as the
        memory budget leaves room for); after, the KV is let go."""
        self.prefill_memo = PrefillMemo(budget.memo_rows(self.decode_rows, self.device))
        try:
            yield
        finally:
            self.prefill_memo = None

    def decode(self, batch: ParaphraseBatch) -> Output:
        confidence_cost = DecodeCost()
        weighted = self.fusion_rule.needs_weights
        # Computing missing confidences decodes each single prompt greedily: the fused decode then
        # reads the same prompts, so their prefills are kept for it (this batch only).
        with self.prefills_kept() if weighted else nullcontext():
            weights, weighed = self.paraphrase_weights(batch, confidence_cost) if weighted else (None, None)  # [B, N]
            # The fuse reads an example's weights by its place in the decode (examples by prefix).
            in_decode_order = None if weights is None else weights[decode_order(self.prefix_groups(batch))]
            decoded = self.generate_by_prefix(
                batch,
                lambda examples: self.single_prompts(batch, examples=examples),  # rows example-major
                rows_per_example=batch.num_paraphrases,
                fuse=bind(self.fusion_rule.fn, None if weights is None else in_decode_order.to(self.device)),
            )
        extra = []
        if weights is not None:  # every weight 0: the rule has nothing to go by (see `warnings`)
            extra = [  # the phrasings' own answers, whose confidences the weights are: their calibration
                {
                    "weights": [round(w, 4) for w in row],
                    **({"weight_answers": weighed[b]} if weighed is not None else {}),
                    **({} if any(row) else {"all_zero": True}),
                }
                for b, row in enumerate(weights.tolist())
            ]
        return Output(
            [self.text(t) for t in decoded.tokens],
            extra=extra,
            cost=decoded.cost,
            confidence_cost=confidence_cost,
            logprobs=decoded.logprobs(),
        )
