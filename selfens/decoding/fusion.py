"""Logit fusion rules: N paraphrases' next-token logits of an example -> one distribution.

Every rule maps logits [B, N, V] (and optional per-paraphrase weights [B, N]) to [B, V]; the
decoder takes the argmax over V. All arithmetic is in float32 whatever the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Optional

if TYPE_CHECKING:
    from torch import Tensor

# torch is imported inside the rules: `selfens ask --help` lists their names without loading it.
Fusion = Callable[..., "Tensor"]  # (logits [B, N, V], weights [B, N] | None) -> [B, V]


def _weights(logits: Tensor, weights: Optional[Tensor], name: str) -> Tensor:
    """Check that `weights` is given and is [B, N] for logits [B, N, V]; return it as float32."""
    import torch

    if weights is None:
        raise ValueError(f"fusion {name!r} needs per-paraphrase weights [B, N]; got None")
    if weights.shape != logits.shape[:2]:
        raise ValueError(
            f"fusion {name!r}: weights shape {tuple(weights.shape)} does not match logits "
            f"[B, N] = {tuple(logits.shape[:2])}"
        )
    return weights.to(device=logits.device, dtype=torch.float32)


def avg(logits: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Mean of the raw logits over the paraphrases: out[b, v] = 1/N * sum_n logits[b, n, v].

    `weights` is ignored.
    """
    return logits.float().mean(1)


def max_prob(logits: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Per token, the highest probability any paraphrase gives it, as a log:
    out[b, v] = log max_n softmax(logits[b, n])[v].

    The log keeps the argmax (the answer) and makes the fused distribution, softmax(out), the max
    probabilities normalised to sum to 1: the distribution the answer's probability is read from.
    `weights` is ignored. Registered as "max".
    """
    import torch

    return torch.softmax(logits.float(), -1).amax(1).log()  # the log of what the max rule always chose by


def weighted_avg(logits: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Weighted mean of the logits: out[b, v] = sum_n w[b, n] / sum_m w[b, m] * logits[b, n, v].

    Weights are normalised over the N paraphrases of each example. If an example's weights sum
    to 0 (every paraphrase had zero confidence), its weights carry no evidence for preferring
    any paraphrase, so it falls back to equal weights, i.e. `avg`. `weights` is required
    (ValueError if None).
    """
    import torch

    w = _weights(logits, weights, "weighted_avg")
    total = w.sum(1, keepdim=True)  # [B, 1]
    w = torch.where(total == 0, torch.ones_like(w), w)
    w = w / w.sum(1, keepdim=True)
    return (w.unsqueeze(-1) * logits.float()).sum(1)


def weighted_max(logits: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """The logits of the most confident paraphrase: out[b] = logits[b, argmax_n w[b, n]].

    Ties go to the lowest index (torch.argmax returns the first maximum). `weights` is required
    (ValueError if None).
    """
    import torch

    w = _weights(logits, weights, "weighted_max")
    best = w.argmax(1)  # [B]
    return logits.float()[torch.arange(logits.shape[0], device=logits.device), best]


@dataclass(frozen=True)
class FusionRule:
    fn: Fusion
    needs_weights: bool  # per-paraphrase confidences [B, N]


# The one list of fusion rules: method signatures, configs and tests read their names from here.
FUSIONS: dict[str, FusionRule] = {
    "avg": FusionRule(avg, needs_weights=False),
    "max": FusionRule(max_prob, needs_weights=False),
    "weighted_avg": FusionRule(weighted_avg, needs_weights=True),
    "weighted_max": FusionRule(weighted_max, needs_weights=True),
}
FusionName = Literal[tuple(FUSIONS)]  # type: ignore[valid-type]  # for signatures: LightningCLI checks the name


def get_fusion(name: str) -> Fusion:
    """The fusion rule registered as `name`."""
    try:
        return FUSIONS[name].fn
    except KeyError:
        raise ValueError(f"unknown fusion {name!r}; known: {', '.join(sorted(FUSIONS))}") from None


def bind(fn: Fusion, weights: Optional[Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """Fix the weights of `fn`, giving the decoder's fuse: (logits [A, N, V], examples [A]) -> [A, V].

    The decoder drops finished examples, so it names the examples still decoding; their weights
    are the rows of `weights` [B, N] it selects.
    """
    return lambda logits, examples: fn(logits, None if weights is None else weights[examples.to(weights.device)])
