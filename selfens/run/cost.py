"""What a run spent: one dataclass whose fields are the cost names of results.json, the report,
TensorBoard (`cost/<name>`) and the per-rank cost files. Everything else iterates over its fields."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selfens.decoding.result import DecodeCost


def _cost(label: str, doc: str):
    return field(default=0.0, metadata={"label": label, "doc": doc})


@dataclass
class RunCost:
    """Summed over batches and processes. Confidence work (weighted methods: greedy answers and K
    samples per prompt) is named apart from the decode of the answers themselves."""

    prefill_tokens: float = _cost("prefill tok", "real (non-padding) tokens run at prefill")
    prefill_padded_tokens: float = _cost("padded", "tokens run at prefill, padding included")
    forward_calls: float = _cost("forwards", "model forward calls, prefill and decode steps")
    decode_steps: float = _cost("steps", "decode steps after the prefill")
    decode_seconds: float = _cost("decode s", "wall seconds spent decoding the answers, prefill included")
    confidence_prefill_tokens: float = _cost("conf prefill tok", "prefill tokens of the confidence work")
    confidence_prefill_padded_tokens: float = _cost("conf padded", "padded prefill tokens of the confidence work")
    confidence_forward_calls: float = _cost("conf forwards", "forward calls of the confidence work")
    confidence_decode_steps: float = _cost("conf steps", "decode steps of the confidence work")
    confidence_seconds: float = _cost("conf s", "wall seconds of the confidence work")

    @classmethod
    def of(cls, answer: DecodeCost, confidence: DecodeCost | None = None) -> RunCost:
        """A batch's cost: its answers' decode and, apart, its confidence work."""
        # Imported here: the report reads costs without the decoder (torch, flex attention).
        from selfens.decoding.result import DecodeCost

        confidence = confidence or DecodeCost()
        return cls(
            answer.prefill_tokens,
            answer.prefill_padded_tokens,
            answer.forward_calls,
            answer.decode_steps,
            answer.seconds,
            confidence.prefill_tokens,
            confidence.prefill_padded_tokens,
            confidence.forward_calls,
            confidence.decode_steps,
            confidence.seconds,
        )

    @classmethod
    def from_dict(cls, values: dict) -> RunCost:
        """From a results.json or cost file; a name it does not hold counts 0."""
        return cls(**{name: float(values.get(name, 0.0)) for name in cost_names()})

    def __add__(self, other: RunCost) -> RunCost:
        return RunCost(*(getattr(self, n) + getattr(other, n) for n in cost_names()))

    def values(self) -> list[float]:
        return [getattr(self, n) for n in cost_names()]

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def cost_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(RunCost))


def cost_labels() -> dict[str, str]:
    """Short column labels of the cost names, for tables."""
    return {f.name: f.metadata["label"] for f in fields(RunCost)}
