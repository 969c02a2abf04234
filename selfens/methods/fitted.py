"""Methods fitted on a development split (`selfens fit`; the rules: `selfens.methods.fitting`):
`BestPhrasing` asks each fact in its group's best phrasing alone; `FittedFusion` fuses the logits
of the N phrasings with fitted weights. Both decode as their unfitted counterparts do (`origin`,
`weighted_avg`): the fit changes which phrasing or how much of each, never the passes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional

import torch

from selfens.data.base import ParaphraseDataModule
from selfens.data.batch import ParaphraseBatch
from selfens.decoding.result import DecodeCost
from selfens.errors import ConfigError
from selfens.methods.base import Output
from selfens.methods.baselines import Origin
from selfens.methods.fitting import ALL, Fit, Rule, check, key, load, weights
from selfens.methods.logit import LogitFusion
from selfens.model.registry import cache_dir

REMEDY = "fit it with `selfens fit --config <this config>` (the same model, decoding, data and N)"


def dev_data(data: ParaphraseDataModule, module) -> ParaphraseDataModule:
    """The development split of `data`, connected to `module`'s tokenizer and set up: what names its
    fit (no prompt limit: the name must not depend on which method reads the fit)."""
    dev = data.dev_split()
    dev.connect(module.tokenizer, module.model_name, None)
    dev.setup("test")
    return dev


def fit_path(module, data: ParaphraseDataModule, given: Optional[str]) -> Path:
    """Where the fit of `module`'s model and decoding on `data`'s dev split lives: `given`, or a file
    named by what it was fitted on, under `$SELFENS_CACHE/fitted/<model>/` (model loaded)."""
    if given is not None:
        return Path(given)
    dev = dev_data(data, module).evaluation_identity()
    folder = cache_dir() / "fitted" / re.sub(r"[^A-Za-z0-9_.-]+", "_", module.model_name)
    return folder / f"{key(module.evaluation_identity(), dev, data.num_paraphrases)}.json"


class UsesFit:
    """What both fitted methods share: the fit, found and checked once the model is loaded, its
    identity in the run's, and each example's weights by its group."""

    fit: Optional[Fit] = None
    fit_file: Optional[Path] = None

    def load_fit(self, data: Optional[ParaphraseDataModule] = None, needed: bool = True) -> None:
        """Find, read and check the fit for `data` (default: the trainer's); with `needed` false a
        missing fit is left unread (e.g. a study asking what a finished cell's identity was)."""
        data, hp = data or self.trainer.datamodule, self.hparams
        path = fit_path(self, data, hp.fitted)
        if not needed and not path.exists():
            return
        self.fit, self.fit_file = load(path, REMEDY), path
        check(self.fit, path, self.evaluation_identity(), data.num_paraphrases, [e.id for e in data.examples], REMEDY)

    def record(self) -> dict:
        """results.json's method record, with the fit: its file and the weights used per group ("*": a
        group the dev split lacks, or every example with per_group false)."""
        if self.fit is None:
            return super().record()
        groups = [g for g in self.fit.facts if g != ALL] if self.hparams.per_group else []
        used = {g: self.weights_of(g) for g in [ALL, *groups]}
        fitted = {"file": str(self.fit_file), "dev": self.fit.dev, "dev_facts": self.fit.facts[ALL], "weights": used}
        return {**super().record(), "fitted": fitted}

    def fit_settings(self) -> dict:
        hp = self.hparams
        return {"rule": self.rule, "shrinkage": hp.shrinkage, "per_group": hp.per_group}

    def fit_identity(self) -> dict:
        """Which fit: its file's content (the dev split's identity is in it), as the run's identity holds it."""
        return {"fit": self.fit.sha256() if self.fit is not None else None, "dev": self.fit.dev if self.fit else None}

    def weights_of(self, group: Optional[str]) -> list[float]:
        """The rule's weights for a group (None, or one the dev split lacks: the overall ones)."""
        return weights(self.fit.accuracy(group, self.hparams.shrinkage), self.rule, self.hparams.get("margin", 0.0))

    def group_weights(self, batch: ParaphraseBatch) -> torch.Tensor:
        """[B, N] each example's weights: its group's (or the overall ones, with per_group false)."""
        groups = batch.groups if self.hparams.per_group and batch.groups else [None] * len(batch.ids)
        return torch.tensor([self.weights_of(g) for g in groups])

    def configure_model(self) -> None:
        super().configure_model()
        self.load_fit()

    def method_identity(self) -> dict:
        return {**super().method_identity(), **self.fit_identity()}


def _check_settings(shrinkage: float, margin: float) -> None:
    if shrinkage < 0:
        raise ConfigError(f"shrinkage must be 0 or more (pseudo-facts pulling a group toward all), got {shrinkage}")
    if not 0 <= margin <= 1:
        raise ConfigError(f"margin must be an accuracy difference in [0, 1], got {margin}")


class BestPhrasing(UsesFit, Origin):
    """Each fact asked alone in the phrasing with the highest dev accuracy in its group (LPAQA's top-1
    prompt): one row per example, as `origin`."""

    method = "best_phrasing"
    rule: Rule = "best"

    def __init__(self, fitted: Optional[str] = None, shrinkage: float = 10.0, per_group: bool = True, **kwargs):
        """
        Args:
            fitted: the fitted-weights file; None: the one `selfens fit` wrote for this model, data and N.
            shrinkage: pseudo-facts that pull a group's accuracies toward the overall ones (and those
                toward equal): a small group needs a clear lead to choose its own phrasing.
            per_group: choose per group (ParaRel's relation); False: one phrasing for all.
            **kwargs: see EnsembleModule.
        """
        _check_settings(shrinkage, 0.0)
        super().__init__(**kwargs)

    def method_settings(self) -> dict:
        return self.fit_settings()

    def prompt_length(self, segments) -> int:
        return max(len(segments.prompt(k)) for k in range(len(segments.blocks)))

    def decode(self, batch: ParaphraseBatch) -> Output:
        chosen = self.group_weights(batch).argmax(1).tolist()
        decoded = self.generate_by_prefix(batch, lambda examples: self.single_prompts(batch, None, examples, chosen))
        extra = [{"phrasing": k + 1} for k in chosen]
        return Output(
            [self.text(t) for t in decoded.tokens], extra=extra, cost=decoded.cost, logprobs=decoded.logprobs()
        )


class FittedFusion(UsesFit, LogitFusion):
    """Logit fusion (`weighted_avg`) of the N phrasings with weights fitted on the dev split: each
    phrasing's dev accuracy in the example's group (`weighted`), or equal weights on the phrasings
    within `margin` of the best and none on the others (`filtered`)."""

    def __init__(
        self,
        rule: Literal["weighted", "filtered"] = "weighted",
        fitted: Optional[str] = None,
        shrinkage: float = 10.0,
        per_group: bool = True,
        margin: float = 0.05,
        **kwargs,
    ):
        """
        Args:
            rule: "weighted" (weights proportional to dev accuracy) or "filtered" (the phrasings
                within `margin` of the best, equally).
            fitted: the fitted-weights file; None: the one `selfens fit` wrote for this model, data and N.
            shrinkage: pseudo-facts that pull a group's accuracies toward the overall ones (and those
                toward equal weights), so that a small group does not decide on a few facts.
            per_group: weights per group (ParaRel's relation); False: one set for all.
            margin: `filtered`: how far below the best dev accuracy a phrasing may be and still be fused.
            **kwargs: see LogitFusion's EnsembleModule settings (its confidence settings do not apply).
        """
        if rule not in ("weighted", "filtered"):
            raise ConfigError(f"rule must be weighted or filtered (best_phrasing is BestPhrasing), got {rule!r}")
        _check_settings(shrinkage, margin)
        kwargs.pop("fusion", None)  # always weighted_avg: the fit's weights, not a choice of rule
        super().__init__(fusion="weighted_avg", **kwargs)
        self.rule = rule
        self.method = f"fitted_{rule}"

    @property
    def uses_confidence(self) -> bool:
        return False

    def method_settings(self) -> dict:
        margin = {"margin": self.hparams.margin} if self.rule == "filtered" else {}
        return {**self.fit_settings(), **margin}

    def paraphrase_weights(self, batch: ParaphraseBatch, cost: Optional[DecodeCost] = None):
        return self.group_weights(batch), None
