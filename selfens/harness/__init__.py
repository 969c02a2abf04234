"""selfens on lm-evaluation-harness tasks (the optional extra `lm-eval`): importing this package
registers the `selfens` model with lm-eval."""

from selfens.harness.backend import SelfensLM

__all__ = ["SelfensLM"]
