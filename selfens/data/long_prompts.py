"""Prompts longer than the model can read: drop few-shot examples from the end until the prompt
fits, or skip the example with its reason; never cut the question itself."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Literal, Optional

from selfens.data.records import DataError, Record
from selfens.prompting.segments import Segments

LongPromptPolicy = Literal["drop_shots", "skip", "error"]


@dataclass(frozen=True)
class PromptLimit:
    """How many tokens a method may read at prefill, and how many it reads for an example."""

    budget: int
    length: Callable[[Segments], int]  # the tokens of the method's longest row for this example
    why: str  # where the budget comes from, for messages


@dataclass
class FitReport:
    """What the policy changed, for results.json."""

    budget: int
    why: str
    policy: str
    shortened: int = 0  # examples that lost few-shot examples
    shots_dropped: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"id", "tokens"}

    def warnings(self) -> list[str]:
        said = []
        if self.shortened:
            said.append(
                f"{self.shortened} example(s) lost {self.shots_dropped} few-shot example(s) in all to fit "
                f"{self.budget} prompt tokens ({self.why})"
            )
        if self.skipped:
            said.append(
                f"{len(self.skipped)} example(s) skipped: longer than {self.budget} prompt tokens ({self.why}) "
                f"even without few-shot examples, e.g. {self.skipped[0]['id']!r} ({self.skipped[0]['tokens']} tokens)"
            )
        return said


def fit(
    record: Record,
    encode: Callable[[Record], Segments],
    limit: PromptLimit,
    policy: LongPromptPolicy,
    report: FitReport,
) -> tuple[Record, Optional[Segments]]:
    """The record (with fewer shots, if the policy drops them) and its segments; None: skipped."""
    shots = list(record.shots)
    while True:
        candidate = replace(record, shots=shots)
        segments = encode(candidate)
        tokens = limit.length(segments)
        if tokens <= limit.budget:
            if len(shots) < len(record.shots):
                report.shortened += 1
                report.shots_dropped += len(record.shots) - len(shots)
            return candidate, segments
        if policy == "error":
            raise DataError(
                f"example {record.id!r}: its prompt is {tokens} tokens, more than the {limit.budget} this model "
                f"can read ({limit.why}); set data long_prompts: drop_shots (or skip), lower num_shots, or "
                f"raise max_prompt_tokens"
            )
        if policy == "drop_shots" and shots:
            shots = shots[:-1]
            continue
        report.skipped.append({"id": record.id, "tokens": tokens})
        return record, None
