"""A loaded language model: what methods, confidences, the paraphraser, `ask` and the benchmarks
share. Like lm-eval's `HFLM`, everything that decodes takes a model name or one of these, so that
several methods in one process run on one copy of the weights.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from selfens.attention.layers import check_architecture, check_implementation
from selfens.decoding.caches import PrefixCache
from selfens.decoding.loop import Stop, decode
from selfens.decoding.prompt import Prompt
from selfens.decoding.result import Decoded
from selfens.errors import ConfigError
from selfens.model.registry import (
    check_fits,
    eos_token_ids,
    load_model,
    load_tokenizer,
    model_config,
    model_spec,
    resolve_dtype,
)


class LanguageModel(nn.Module):
    """A model by name with its tokenizer; the weights load on the first `load()` (the tokenizer at
    once: data modules need it before a model is placed on its device).

    An `nn.Module`, so that Lightning moves the weights with the module that holds it; a model
    sharded by `device_map` stays where accelerate put it.
    """

    def __init__(self, name: str):
        super().__init__()
        model_spec(name)  # an unknown model fails here, before anything loads
        self.name = name
        self.tokenizer = load_tokenizer(name)
        self.hf_model: Optional[nn.Module] = None
        self.sharded = False
        self._eos_ids: list[int] = []
        self._no_sdpa = False
        self._fingerprint: Optional[str] = None

    @property
    def loaded(self) -> bool:
        return self.hf_model is not None

    def load(
        self,
        dtype: str = "auto",
        attn_implementation: str = "sdpa",
        device_map: Optional[str] = None,
        device: Optional[torch.device] = None,
        processes: int = 1,
        barrier: Callable[[], None] = lambda: None,
    ) -> LanguageModel:
        """Load the weights, once: a model already loaded is kept (see `use_implementation`). `processes`:
        how many processes on this machine load it into its memory (a CPU run's devices), for the check
        that refuses a model that would not fit before it loads; `barrier` (DDP's) makes every process
        check before any loads, so none counts the weights of another against it."""
        device = device if device is not None else torch.device("cpu")
        check_implementation(attn_implementation, device)
        if self.hf_model is not None:
            return self
        check_architecture(model_config(self.name))
        if device.type == "cpu":
            check_fits(self.name, resolve_dtype(dtype, device), processes)
        barrier()
        model = load_model(self.name, resolve_dtype(dtype, device), attn_implementation, device_map)
        self.hf_model = model.requires_grad_(False)
        self.sharded = device_map is not None
        self._eos_ids = eos_token_ids(model, self.tokenizer)
        # Loaded with eager where SDPA was asked: the model has none (e.g. Gemma 2, soft-capped scores).
        self._no_sdpa = attn_implementation == "sdpa" and model.config._attn_implementation != "sdpa"
        return self

    def use_implementation(self, implementation: str) -> None:
        """Run attention with `implementation` from now on: methods that share the model may need
        different ones (a packed FlexAttention mask, a dense one). A model without SDPA keeps eager."""
        self._require_loaded()
        current = self.hf_model.config._attn_implementation  # transformers has no public reader
        if implementation == current or (implementation == "sdpa" and self._no_sdpa):
            return
        try:
            self.hf_model.set_attn_implementation(implementation)
        except ValueError:  # transformers refuses an implementation the model does not support
            if implementation != "sdpa":
                raise
            self._no_sdpa = True

    @property
    def without_sdpa(self) -> bool:
        """Whether SDPA was asked for and the model runs eager instead (it has none)."""
        return self._no_sdpa

    def _apply(self, fn, recurse: bool = True):
        # Lightning places the module on its device; a sharded model is already spread over several.
        return self if self.sharded else super()._apply(fn, recurse)

    @property
    def eos_ids(self) -> list[int]:
        """Every token id that ends an answer."""
        self._require_loaded()
        return self._eos_ids

    def _require_loaded(self) -> None:
        if self.hf_model is None:
            raise RuntimeError(f"{self.name}: the weights are not loaded; call load() first")

    # -- answers -----------------------------------------------------------------------------------
    def raw_text(self, tokens: list[int]) -> str:
        # Leading whitespace is not an answer: a stop string there does not end it.
        return self.tokenizer.decode(tokens, skip_special_tokens=True).lstrip()

    def text(self, tokens: list[int], stop_strings: tuple[str, ...] | list[str]) -> str:
        """The answer text of generated tokens: cut at the first stop string, stripped."""
        text = self.raw_text(tokens)
        for s in stop_strings:
            text = text.split(s, 1)[0]
        return text.strip()

    def generate(
        self,
        prompts: Prompt | list[Prompt],
        *,
        max_new_tokens: int,
        stop_strings: tuple[str, ...] | list[str],
        prefix_cache: Optional[PrefixCache] = None,
        stop: Optional[Stop] = None,
        eos_ids: Optional[list[int]] = None,
        **kwargs,
    ) -> Decoded:
        """`selfens.decoding.loop.decode` on this model's device: ends at EOS (the model's, or `eos_ids`), at a
        stop string (or where `stop` says, in place of the stop strings) or after `max_new_tokens`."""
        self._require_loaded()

        def stopped(_example: int, tokens: list[int]) -> bool:
            text = self.raw_text(tokens)
            return any(s in text for s in stop_strings)

        return decode(
            self.hf_model,
            [p.to(self.device) for p in prompts] if isinstance(prompts, list) else prompts.to(self.device),
            max_new_tokens=max_new_tokens,
            eos_ids=self.eos_ids if eos_ids is None else eos_ids,
            stop=stop or stopped,
            prefix_cache=prefix_cache,
            **kwargs,
        )

    @property
    def device(self) -> torch.device:
        self._require_loaded()
        return self.hf_model.device

    @property
    def dtype(self) -> str:
        """The weights' dtype as loaded, e.g. "float32"."""
        self._require_loaded()
        return str(self.hf_model.dtype).removeprefix("torch.")

    def fingerprint(self) -> str:
        """sha256 of what the model is: its config, its tokenizer (vocabulary and chat template) and
        a strided sample of every weight. Two folders of one name with other weights differ; the
        sample is rounded to bfloat16, so the dtype a model is loaded in does not change it."""
        if self._fingerprint is None:
            self._require_loaded()
            digest = hashlib.sha256(
                json.dumps(_stable(self.hf_model.config.to_dict()), sort_keys=True, default=str).encode()
            )
            digest.update(json.dumps(sorted(self.tokenizer.get_vocab().items())).encode())
            digest.update(str(self.tokenizer.chat_template or "").encode())
            for name, weight in self.hf_model.named_parameters():
                values = weight.detach().flatten()
                sample = values[:: max(1, values.numel() // WEIGHT_SAMPLE)][:WEIGHT_SAMPLE]
                digest.update(f"{name}{tuple(weight.shape)}".encode())
                digest.update(sample.to(torch.bfloat16).view(torch.int16).cpu().numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint


WEIGHT_SAMPLE = 4096  # values per weight tensor in the fingerprint


def _stable(config: dict) -> dict:
    """A model config without what depends on how it was loaded (attention backend, dtype, path)."""
    loading = {"torch_dtype", "dtype", "transformers_version", "name_or_path"}
    return {
        k: _stable(v) if isinstance(v, dict) else v
        for k, v in config.items()
        if not str(k).startswith("_") and k not in loading
    }


_SHARED: dict[str, LanguageModel] = {}  # name -> the loaded model that runs built from configs share


@contextmanager
def shared(lm: LanguageModel) -> Iterator[LanguageModel]:
    """While open, every method built with `lm`'s name (e.g. from a config) gets `lm` itself: a study
    loads each model once for all of its runs."""
    _SHARED[lm.name] = lm
    try:
        yield lm
    finally:
        del _SHARED[lm.name]


def as_language_model(model: str | LanguageModel) -> LanguageModel:
    """A model name or a loaded model, as a `LanguageModel` (the shared one of that name, if any)."""
    if isinstance(model, LanguageModel):
        return model
    if not isinstance(model, str):
        raise ConfigError(f"model must be a model name or a selfens LanguageModel, got {type(model).__name__}")
    return _SHARED.get(model) or LanguageModel(model)
