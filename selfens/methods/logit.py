"""Logit-level fusion: the N paraphrases decode in lockstep; each step fuses their next-token logits."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from selfens.confidence import ConfidenceCache, ConfidenceSettings, Measure, agreement, mean_token_prob
from selfens.data.batch import ParaphraseBatch
from selfens.errors import SelfensError
from selfens.decode import DecodeCost, Decoded, Prompt, sampler
from selfens.fusion import WEIGHTED, FusionName, bind, get_fusion
from selfens.methods.base import EnsembleModule, Output
from selfens.models import cache_dir


class MissingConfidence(SelfensError, RuntimeError):
    """A weighted method needs confidences that are not cached, and may not compute them."""


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
            fusion: the fusion rule (see `selfens.fusion`).
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
        self.fusion = get_fusion(fusion)
        self.method = fusion
        self.confidence_only = False  # set by `selfens confidence`

    # -- confidence --------------------------------------------------------------------------------
    def confidence_settings(self) -> ConfidenceSettings:
        config, hp = self.lm.generation_config, self.hparams
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

    @property
    def confidence_cache(self) -> ConfidenceCache:
        if getattr(self, "_cache", None) is None:
            folder = self.hparams.confidence_dir or cache_dir() / "confidence"
            self._cache = ConfidenceCache(Path(folder), self.model_name)
        return self._cache

    def confidences(self, batch: ParaphraseBatch, cost: Optional[DecodeCost] = None) -> torch.Tensor:
        """Confidence of each paraphrase prompt, [B, N]; computes (and caches) what is missing,
        adding what that costs to `cost`."""
        settings, cache = self.confidence_settings(), self.confidence_cache
        ids, valid = batch.rows()  # [B*N, L]
        prompts = [row[mask].tolist() for row, mask in zip(ids, valid)]
        keys = [cache.key(settings, p) for p in prompts]
        missing = [i for i, key in enumerate(keys) if cache.get(key) is None and key not in keys[:i]]
        if missing and not self.hparams.compute_confidence:
            raise MissingConfidence(
                f"{len(missing)} prompt(s) have no cached {settings.measure!r} confidence in {cache.path}. "
                f"Compute them first with `selfens confidence --config <this config>`, "
                f"or set model.init_args.compute_confidence: true."
            )
        if missing:
            spent = self._compute_confidences(ids[missing], valid[missing], [keys[i] for i in missing], settings)
            if cost is not None:
                cost.add(spent)
        values = torch.tensor([cache.get(k) for k in keys], dtype=torch.float32)
        return values.view(len(batch.ids), batch.num_paraphrases)

    def _compute_confidences(self, ids, valid, keys, settings: ConfidenceSettings) -> DecodeCost:
        greedy = self.generate(Prompt.left_padded(ids, valid))
        spent = greedy.cost
        answers = [self.text(t) for t in greedy.tokens]
        for row, key in enumerate(keys):
            if settings.measure == "token_prob":
                value = mean_token_prob(greedy.token_probs[row])
            else:
                sampled = self._samples(ids[row], valid[row], key, settings)
                spent.add(sampled.cost)
                value = agreement([self.text(t) for t in sampled.tokens], answers[row], self.lemmatizer)
            self.confidence_cache.put(key, value, greedy=answers[row], measure=settings.measure)
        return spent

    def _samples(self, ids, valid, key: str, settings: ConfidenceSettings) -> Decoded:
        """K sampled answers of one prompt; the generator is seeded from the cache key, so a value
        does not depend on batching or on which process computed it."""
        k = settings.num_samples
        generator = torch.Generator(device=ids.device).manual_seed(int(key[:15], 16) + settings.seed)
        return self.generate(
            Prompt.left_padded(ids[None, valid], valid[None, valid]),
            choose=sampler(settings.temperature, settings.top_k, settings.top_p, generator),
            max_new_tokens=settings.max_new_tokens,
            copies=k,
        )

    # -- decoding ----------------------------------------------------------------------------------
    def decode(self, batch: ParaphraseBatch) -> Output:
        confidence_cost = DecodeCost()
        weights = self.confidences(batch, confidence_cost) if self.method in WEIGHTED else None  # [B, N]
        ids, valid = batch.rows()  # [B*N, L], example-major
        decoded = self.generate(
            Prompt.left_padded(ids, valid),
            rows_per_example=batch.num_paraphrases,
            fuse=bind(self.fusion, None if weights is None else weights.to(ids.device)),
        )
        extra = [{"weights": [round(w, 4) for w in row]} for row in weights.tolist()] if weights is not None else []
        return Output([self.text(t) for t in decoded.tokens], extra=extra, cost=decoded.cost, confidence_cost=confidence_cost)

    def predict_step(self, batch: ParaphraseBatch, batch_idx: int) -> list[dict]:
        if not self.confidence_only:
            return super().predict_step(batch, batch_idx)
        cost = DecodeCost()
        weights = self.confidences(batch, cost).tolist()
        self.add_cost(Output([], confidence_cost=cost))
        return [{"index": int(i), "id": id_, "confidences": w} for i, id_, w in zip(batch.index.tolist(), batch.ids, weights)]
