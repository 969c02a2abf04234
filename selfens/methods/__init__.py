from selfens.methods.attention import AttentionFusion
from selfens.methods.base import EnsembleModule, Output
from selfens.methods.baselines import Origin, PerPrompt
from selfens.methods.fitted import BestPhrasing, FittedFusion
from selfens.methods.logit import LogitFusion

__all__ = [
    "AttentionFusion",
    "BestPhrasing",
    "EnsembleModule",
    "FittedFusion",
    "LogitFusion",
    "Origin",
    "Output",
    "PerPrompt",
]
