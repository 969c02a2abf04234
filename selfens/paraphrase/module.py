"""The paraphrasing model as a LightningModule: `predict_step` samples, filters and re-samples the
paraphrases of a batch of questions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional, Union

import lightning as L
import torch

from selfens.data.batch import ParaphraseBatch
from selfens.data.prompt_builder import PromptBuilder
from selfens.decoding.caches import PrefixCache
from selfens.decoding.prompt import Prompt, left_pad
from selfens.decoding.sampling import seeded_sampler
from selfens.errors import ConfigError
from selfens.model.language_model import LanguageModel, as_language_model
from selfens.model.registry import EMBEDDED, model_spec, resolve_dtype
from selfens.paraphrase.filters import REASONS, Reason, rejection
from selfens.paraphrase.prompt import PARAPHRASE_FORMAT, worked_examples

if TYPE_CHECKING:
    from selfens.run.progress import Progress

RESEED = 1000  # try t of paraphrase k samples with seed + k + RESEED * t
FIRST_LINE = ("\n",)  # a paraphrase is the first line the model writes


class Paraphraser(L.LightningModule):
    """Writes `num_paraphrases` new phrasings of each question, as the original method did (worked
    examples, temperature 1.5, top-p 0.9, 30 tokens, first line, paraphrase k with seed k), and
    re-samples an output rejected by a filter up to `max_tries` times in all."""

    progress: Optional[Progress] = None  # the questions and paraphrases done of all, handed in by the command

    def __init__(
        self,
        output: str = "lightning_logs/paraphrases/webquestions-test.jsonl",
        model: Union[str, LanguageModel] = EMBEDDED,
        dtype: str = "auto",
        prompt_style: Optional[Literal["chat", "raw"]] = None,
        num_paraphrases: int = 5,
        temperature: float = 1.5,
        top_p: float = 0.9,
        top_k: int = 0,
        max_new_tokens: int = 30,
        seed: int = 0,
        max_tries: int = 5,
        checks: Optional[list[Reason]] = None,
        max_length_ratio: float = 2.0,
    ):
        """
        Args:
            output: the paraphrase file written (JSONL), with `<name>.meta.json` beside it.
            model: the paraphrasing model (a registry name, a local folder or a loaded `LanguageModel`),
                apart from the one evaluated.
            dtype: "auto" (bf16 on CUDA, fp32 on CPU), "float32", "bfloat16" or "float16".
            prompt_style: "chat" or "raw"; None: the model's default.
            num_paraphrases: new phrasings per question (the original is kept apart).
            temperature: sampling temperature (the original: 1.5).
            top_p: nucleus sampling mass (the original: 0.9).
            top_k: sample among the k most likely tokens only (0: no limit).
            max_new_tokens: longest paraphrase, in tokens (the original: 30); the first line is kept.
            seed: paraphrase k is sampled with seed + k (the original: seed k), try t with seed + k + 1000 t.
            max_tries: samples per paraphrase at most (1: keep the first, as the original, unless rejected);
                a paraphrase whose every try is rejected is left out (the question gets fewer).
            checks: the rejection reasons in force (None: all of empty, copy_of_original, copy_of_earlier,
                not_a_question, too_long, answer_leak).
            max_length_ratio: too_long: more than this times the original's words (and 5 more).
        """
        super().__init__()
        self.language_model = as_language_model(model)
        self.save_hyperparameters(ignore=["model"])
        self.hparams["model"] = self.model_name = self.language_model.name
        resolve_dtype(dtype, torch.device("cpu"))
        for name, value in (("num_paraphrases", num_paraphrases), ("max_tries", max_tries)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ConfigError(f"sampling needs temperature > 0 and 0 < top_p <= 1 (got {temperature}, {top_p})")
        self.checks = frozenset(checks if checks is not None else REASONS)
        self.tokenizer = self.language_model.tokenizer
        self.chat = model_spec(self.model_name).chat if prompt_style is None else prompt_style == "chat"
        self.prefix_cache = PrefixCache(num_paraphrases)  # one prefix per paraphrase slot

    def settings(self) -> dict:
        """What the paraphrases depend on (the output path aside)."""
        return {k: v for k, v in self.hparams.items() if k != "output"} | {
            "prompt_style": "chat" if self.chat else "raw"
        }

    def prompt_limit(self) -> None:
        """No limit on the questions' length: a paraphrase prompt is short."""
        return None

    def configure_model(self) -> None:
        device = self.trainer.strategy.root_device if self._trainer is not None else torch.device("cpu")
        self.language_model.load(self.hparams.dtype, device=device)

    def predict_step(self, batch: ParaphraseBatch, batch_idx: int) -> list[dict]:
        originals = [p[0] for p in batch.paraphrases]
        return [
            {"index": int(batch.index[b]), "id": batch.ids[b], "original": originals[b], **found}
            for b, found in enumerate(self.paraphrase(originals, batch.answers, self.progress))
        ]

    def paraphrase(
        self, originals: list[str], answers: list[list[str]], progress: Optional[Progress] = None
    ) -> list[dict]:
        """`{"paraphrases": [...], "rejected": [{"k", "try", "text", "reason"}]}` of each question.

        Try t samples slot k of every question still missing it, for k = 1.. in turn (one decode
        each: the time goes there, up to num_paraphrases x max_tries decodes a batch); after each,
        `progress` counts the paraphrases settled (kept, or rejected at the last try) and the
        questions with all theirs settled."""
        count, tries = self.hparams.num_paraphrases, self.hparams.max_tries
        kept: list[dict[int, str]] = [{} for _ in originals]  # question -> slot k -> text
        rejected: list[list[dict]] = [[] for _ in originals]
        pending = [set(range(1, count + 1)) for _ in originals]  # question -> slots still to sample
        for attempt in range(tries):
            for k in range(1, count + 1):
                rows = [b for b in range(len(originals)) if k in pending[b]]
                if not rows:
                    continue
                texts = self.sample([originals[b] for b in rows], k, attempt)
                settled = finished = 0
                for b, text in zip(rows, texts):  # slots in order, so "earlier" is well defined
                    reason = rejection(
                        text,
                        originals[b],
                        [kept[b][j] for j in sorted(kept[b])],
                        answers[b],
                        max_length_ratio=self.hparams.max_length_ratio,
                        checks=self.checks,
                    )
                    if reason is None:
                        kept[b][k] = text
                    else:
                        rejected[b].append({"k": k, "try": attempt, "text": text, "reason": reason})
                    if reason is None or attempt == tries - 1:
                        pending[b].discard(k)
                        settled += 1
                        finished += not pending[b]
                if progress is not None:
                    progress.advance(paraphrases=settled, questions=finished)
        return [
            {"paraphrases": [kept[b][k] for k in sorted(kept[b])], "rejected": rejected[b]}
            for b in range(len(originals))
        ]

    def sample(self, questions: list[str], k: int, attempt: int) -> list[str]:
        """One sampled paraphrase (its first line) of each question for slot k, with seed
        seed + k + RESEED * attempt; the prompts share their prefix (slot k's worked examples), read once."""
        builder = PromptBuilder(self.tokenizer, PARAPHRASE_FORMAT, chat=self.chat, model_name=self.model_name)
        shots = worked_examples(k)
        segments = [builder.encode([q.strip()], shots, f"paraphrase-{r}") for r, q in enumerate(questions)]
        prefix = segments[0].prefix
        prompt = Prompt.with_prefix(prefix, [s.blocks[0] + s.suffix for s in segments], self.tokenizer.pad_token_id)
        if any(s.prefix != prefix for s in segments):  # a prefix cut apart by an odd merge: no sharing
            prompt = Prompt.left_padded(*left_pad([s.prompt(0) for s in segments], self.tokenizer.pad_token_id))
        seed = self.hparams.seed + k + RESEED * attempt
        self.language_model.use_implementation("sdpa")  # the model may be shared with a method
        decoded = self.language_model.generate(
            prompt,
            max_new_tokens=self.hparams.max_new_tokens,
            stop_strings=FIRST_LINE,
            choose=seeded_sampler(
                self.hparams.temperature, self.hparams.top_k, self.hparams.top_p, [seed] * len(questions)
            ),
            prefix_cache=self.prefix_cache,
        )
        return [self.language_model.text(tokens, FIRST_LINE) for tokens in decoded.tokens]
