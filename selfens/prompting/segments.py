"""The token pieces of one example: what every method reads, as single prompts or packed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Segments:
    """Token ids of one example, cut from its paraphrases' whole prompts (see `encoding.py`).

    The single prompt of paraphrase k is ``prefix + blocks[k] + suffix``, where the shared prefix
    is ``instruction + concat(shots)``.
    """

    instruction: list[int]  # chat-template opening + instruction (shared)
    shots: list[list[int]]  # few-shot examples (shared), may be empty
    blocks: list[list[int]]  # one per paraphrase, N >= 1
    suffix: list[int]  # shared text after the query, may be empty

    @property
    def prefix(self) -> list[int]:
        """The shared part before the paraphrase: instruction and few-shot examples."""
        return self.instruction + [t for shot in self.shots for t in shot]

    def prompt(self, k: int) -> list[int]:
        """Token ids of the single prompt of paraphrase k."""
        return self.prefix + self.blocks[k] + self.suffix
