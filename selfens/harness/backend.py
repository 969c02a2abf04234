"""selfens as an lm-evaluation-harness model (`lm_eval.api.model.LM`): any lm-eval task, decoded by
any selfens method over N phrasings of each request's test question.

- `generate_until`: each request becomes one example whose N phrasings share the task's few-shot
  prefix and suffix (`selfens.harness.phrasings`), decoded by the method's own `decode` (its
  batching, prefix reuse, fusion or packing), ending where the request's `until` strings say and
  after its `max_gen_toks`; the answer is cut as lm-eval's `hf` backend cuts it.
- `loglikelihood`: the continuation is forced through the same decode (`selfens.decoding.forcing`),
  so each method scores it under the distribution it decodes from: the model's for `origin`, the
  fused one for a logit rule, the packed sequence's for attention. `per_prompt` scores it under each
  phrasing alone and returns their mean.
- `loglikelihood_rolling`: refused; a whole document has no phrasings.

A request whose document has no phrasings in the file (or whose context does not hold the
phrased span) runs with its context alone, which every method decodes as `origin` does; the run
files count such documents (`selfens.harness.records`).
"""

from __future__ import annotations

import math
import os
import sys
from collections import defaultdict
from typing import Optional

import lm_eval.models  # noqa: F401  (lm-eval's own backends first: its registry fills itself only while empty)
import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from selfens.data.batch import Example, collate
from selfens.decoding import budget
from selfens.decoding.forcing import Forced
from selfens.decoding.fusion import FUSIONS
from selfens.errors import ConfigError, SelfensError
from selfens.harness.phrasings import PhrasingFile, phrased_parts, request_segments
from selfens.methods import AttentionFusion, EnsembleModule, LogitFusion, Origin, PerPrompt
from selfens.model.language_model import as_language_model
from selfens.model.registry import EMBEDDED, context_window
from selfens.run.cost import RunCost

METHODS = ("origin", "per_prompt", *FUSIONS, "attention")


class HarnessError(SelfensError):
    """A request or a setting the lm-eval backend cannot run as asked."""


@register_model("selfens")
class SelfensLM(LM):
    """`lm_eval --model selfens --model_args method=avg,num_paraphrases=5,paraphrases=FILE` (after
    `import selfens.harness`), or `selfens lm-eval`."""

    def __init__(
        self,
        model: str = EMBEDDED,
        method: str = "avg",
        num_paraphrases: int = 5,
        paraphrases: Optional[str] = None,
        batch_size: int | str | None = 8,
        dtype: str = "auto",
        device: Optional[str] = None,
        add_bos_token: Optional[bool] = None,
        max_gen_toks: int = 256,
        **settings,
    ):
        """
        Args:
            model: a selfens registry name or a local model folder.
            method: origin, per_prompt, a logit fusion rule (avg, max, weighted_avg, weighted_max) or attention.
            num_paraphrases: N, the phrasings of a request read at most (the original wording first).
            paraphrases: the phrasing file (`selfens paraphrase` with the lm-eval source); None: every
                request runs with its context alone.
            batch_size: requests decoded together ("auto" or None: 8).
            dtype: as for every selfens method.
            device: e.g. "cuda:0" or "cpu"; None: the first GPU if there is one, else the CPU.
            add_bos_token: tokenize contexts with the tokenizer's special tokens (None: its default, as
                lm-eval's `hf` backend does).
            max_gen_toks: a generation's length where the task does not set one (lm-eval's default).
            **settings: the method's own settings (e.g. layout, confidence, num_samples).
        """
        super().__init__()
        settings.pop("max_batch_size", None)  # lm-eval's, for its own backends
        if method not in METHODS:
            raise ConfigError(
                f"lm-eval backend: method {method!r} is not one it runs; choose among {', '.join(METHODS)} "
                f"(fitted rules need a fit on a development split, which lm-eval tasks do not give here)"
            )
        if int(num_paraphrases) < 1:
            raise ConfigError(f"num_paraphrases must be at least 1, got {num_paraphrases}")
        # origin reads the original wording alone, whatever the file holds
        self.method, self.num_paraphrases = method, 1 if method == "origin" else int(num_paraphrases)
        self.phrasing_file = PhrasingFile.read(paraphrases) if paraphrases else None
        self.batch = 8 if batch_size in (None, "auto") or str(batch_size).startswith("auto") else int(batch_size)
        self.add_special_tokens = True if add_bos_token is None else bool(add_bos_token)
        self.max_gen_toks = int(max_gen_toks)
        self.language_model = as_language_model(model)
        self.tokenizer = self.language_model.tokenizer
        self.settings = {"dtype": dtype, **settings}
        self.run_device = run_device(device)
        self.modules: dict[str, EnsembleModule] = {}
        self.memory: Optional[int] = None  # bytes decoding may take, measured once the weights are in
        # What the run files keep beside the answers, (task, doc_id) -> {(request kind, idx): value}:
        # per_prompt's each phrasing's own answer or [log-likelihood, greedy]; a generation's
        # (log-probability of its tokens, their count).
        self.per_phrasing: dict[tuple, dict] = {}
        self.answer_logprobs: dict[tuple, dict] = {}
        self.window = context_window(self.language_model.name)
        self.costs: dict[str, RunCost] = {}

    # -- the methods -------------------------------------------------------------------------------
    def module(self, first_token: str = "suffix") -> EnsembleModule:
        """The method's module (attention: one per first-token mode), built and loaded once."""
        key = first_token if self.method == "attention" else self.method
        if key not in self.modules:
            common = {"model": self.language_model, **self.settings}
            if self.method == "origin":
                module = Origin(**common)
            elif self.method == "per_prompt":
                module = PerPrompt(**common)
            elif self.method == "attention":
                module = AttentionFusion(first_token=first_token, **common)
            else:
                module = LogitFusion(fusion=self.method, **common)
            module.run_device = self.run_device
            module.to(self.run_device)
            module.configure_model()
            module.eval()
            self.modules[key] = module
            if self.memory is None:  # (the modules share one loaded model)
                self.memory = budget.memory_budget(module.hf_model, module.hf_model.device)
        return self.modules[key]

    def first_token(self, segments) -> str:
        return AttentionFusion.first_token_for(segments.suffix) if self.method == "attention" else "suffix"

    # -- lm-eval's interface -----------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return self.language_model.name.replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        tasks = sorted({r.task_name for r in requests if r.task_name})
        raise HarnessError(
            f"task {', '.join(tasks) or '(unnamed)'} asks for loglikelihood_rolling (perplexity of whole documents): "
            f"a document has no phrasings to fuse; run it with lm-eval's own backends"
        )

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        results: list[Optional[str]] = [None] * len(requests)
        work = defaultdict(list)  # (task, N, first token, until, max tokens) -> [(request index, example)]
        shared = shared_starts(requests, [r.args[0] for r in requests])
        for i, request in enumerate(requests):
            context, options = request.args
            until, max_tokens = self.generation_settings(request, options)
            example = self.example(i, request, context, shared[request.task_name])
            key = (request.task_name, len(example.segments.blocks), self.first_token(example.segments))
            work[(*key, tuple(until), max_tokens)].append((i, example))
        for (task, _, first, until, max_tokens), items in work.items():
            module = self.module(first)
            module.hparams.max_new_tokens = max_tokens
            module.stop_rule = lambda _, tokens, until=until: any(u in self.decoded(tokens) for u in until)
            module.text_rule = lambda tokens, until=until: cut_at(self.decoded(tokens), until)
            for chunk in chunks(items, self.batch):
                self.fit_rows(module, chunk, max_tokens, requests)
                out = module.decode(collate([e for _, e in chunk], self.tokenizer.pad_token_id))
                self.add_cost(task, out)
                for b, (i, _) in enumerate(chunk):
                    results[i] = out.predictions[b]
                    if out.per_paraphrase is not None:
                        keep(self.per_phrasing, requests[i], "generate_until", out.per_paraphrase[b])
                    if out.logprobs is not None:
                        keep(self.answer_logprobs, requests[i], "generate_until", out.logprobs[b])
                    self.cache_hook.add_partial("generate_until", requests[i].args, results[i])
        return results

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        results: list[Optional[tuple[float, bool]]] = [None] * len(requests)
        work = defaultdict(list)  # (task, N, first token) -> [(request index, example, continuation tokens)]
        shared = shared_starts(requests, [r.args[0].rstrip() for r in requests])
        for i, request in enumerate(requests):
            context, continuation = request.args
            if not context:
                raise HarnessError(
                    f"task {request.task_name}, document {request.doc_id}: a loglikelihood request without context "
                    f"has no question to phrase; run this task with lm-eval's own backends"
                )
            spaces = len(context) - len(context.rstrip())  # as lm-eval's `hf` backend splits a pair
            if spaces:
                context, continuation = context[:-spaces], context[-spaces:] + continuation
            whole = self.encode(context + continuation)
            tokens = whole[len(self.encode(context)) :]
            if not tokens:
                results[i] = (0.0, True)
                continue
            example = self.example(i, request, context, shared[request.task_name])
            key = (request.task_name, len(example.segments.blocks), self.first_token(example.segments))
            work[key].append((i, example, tokens))
        for (task, _, first), items in work.items():
            module = self.module(first)
            module.stop_rule = module.text_rule = None
            for chunk in chunks(items, self.batch):
                module.hparams.max_new_tokens = max(len(t) for _, _, t in chunk)
                self.fit_rows(module, [(i, e) for i, e, _ in chunk], module.hparams.max_new_tokens, requests)
                module.forced = Forced([t for _, _, t in chunk])
                try:
                    out = module.decode(collate([e for _, e, _ in chunk], self.tokenizer.pad_token_id))
                finally:
                    forced, module.forced = module.forced, None
                self.add_cost(task, out)
                for b, (i, _, _) in enumerate(chunk):
                    greedy = forced.greedy_units(b)
                    if out.per_paraphrase_logprobs is not None:  # per_prompt: each phrasing alone, their mean
                        each = [s for s, _ in out.per_paraphrase_logprobs[b]]
                        keep(self.per_phrasing, requests[i], "loglikelihood", [[s, g] for s, g in zip(each, greedy)])
                        results[i] = (math.fsum(each) / len(each), all(greedy))
                    else:
                        results[i] = (out.logprobs[b][0], all(greedy))
                    self.cache_hook.add_partial("loglikelihood", requests[i].args, results[i])
        return results

    def add_cost(self, task: str, out) -> None:
        self.costs[task] = self.costs.get(task, RunCost()) + RunCost.of(out.cost, out.confidence_cost)

    def cost_of(self, task: str) -> RunCost:
        """What this process spent on the task's requests (none for those answered from lm-eval's cache)."""
        return self.costs.get(task, RunCost())

    # -- requests ----------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=self.add_special_tokens)["input_ids"]

    def decoded(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def example(self, i: int, request, context: str, shared: str) -> Example:
        """The request as one selfens example: its phrasings, or the context alone when it has none
        (read after `shared`, the start its task's contexts have in common, as after a prefix)."""
        task, doc = request.task_name, request.doc_id
        phrasings = self.phrasing_file.get(task, doc) if self.phrasing_file is not None else None
        parts = phrased_parts(context, phrasings, self.num_paraphrases)
        texts = parts[1] if parts is not None else [context]
        if parts is None and shared and len(context) > len(shared):
            parts = (shared, [context[len(shared) :]], "")
        segments = request_segments(self.tokenizer, context, parts, self.add_special_tokens)
        return Example(index=i, id=f"{task}/{doc}", paraphrases=texts, answers=[], segments=segments)

    def generation_settings(self, request, options: dict) -> tuple[list[str], int]:
        """The request's stop strings (with the EOS text, as lm-eval's `hf` backend) and its length."""
        options = dict(options or {})
        if options.get("do_sample") and float(options.get("temperature", 1.0)) > 0:
            raise HarnessError(
                f"task {request.task_name} asks to sample (do_sample: true); selfens decodes greedily: "
                f"set the task's generation_kwargs do_sample: false (or temperature: 0)"
            )
        until = options.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        eos = self.tokenizer.eos_token
        if eos and eos not in until:
            until.append(eos)
        return until, int(options.get("max_gen_toks", self.max_gen_toks))

    def fit_rows(self, module: EnsembleModule, chunk, new_tokens: int, requests) -> None:
        """Check that every row fits the model's context window with its new tokens (selfens does not
        cut a prompt; lm-eval's `hf` backend would drop its start), and size the decode's rows from
        the memory measured once the weights were in."""
        lengths = [module.prompt_length(example.segments) + new_tokens for _, example in chunk]
        for (i, _), need in zip(chunk, lengths):
            if self.window is not None and need > self.window:
                r = requests[i]
                raise HarnessError(
                    f"task {r.task_name}, document {r.doc_id}: the prompt and its {new_tokens} new tokens need "
                    f"{need} positions, more than {self.language_model.name}'s {self.window}; use fewer few-shot "
                    f"examples (--num_fewshot) or a shorter max_gen_toks"
                )
        model = module.hf_model
        module.decode_rows = budget.decode_rows(model, max(lengths), model.device, self.memory)


def shared_starts(requests, contexts: list[str]) -> dict[str, str]:
    """Per task, the text all its requests' contexts start with (instructions, fixed few-shot examples):
    read once as a prefix where a request has no phrasings to cut it at."""
    by_task: dict[str, list[str]] = defaultdict(list)
    for request, context in zip(requests, contexts):
        by_task[request.task_name].append(context)
    return {task: os.path.commonprefix(found) if len(found) > 1 else "" for task, found in by_task.items()}


def run_device(name: Optional[str]) -> torch.device:
    """The device asked for; None: the first GPU if there is one. A GPU asked for where there is none
    (lm-eval's command line asks for cuda by default) falls back to the CPU, as lm-eval's `hf` does."""
    if name is None or (name.startswith("cuda") and not torch.cuda.is_available()):
        if name is not None:
            print(f"selfens: device {name} is not available here; running on the CPU", file=sys.stderr)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def keep(store: dict, request, kind: str, value) -> None:
    store.setdefault((request.task_name, request.doc_id), {})[(kind, request.idx)] = value


def cut_at(text: str, until: tuple[str, ...] | list[str]) -> str:
    """The text before the first of the stop strings (as lm-eval's `hf` backend cuts a generation)."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


def chunks(items: list, size: int) -> list[list]:
    return [items[k : k + size] for k in range(0, len(items), size)]
