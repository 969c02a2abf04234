from selfens.methods.base import EnsembleModule, Output
from selfens.methods.baselines import Origin, PerPrompt

__all__ = ["EnsembleModule", "Origin", "Output", "PerPrompt"]
