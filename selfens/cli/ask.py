"""`selfens ask --config CONFIG`: ask the model questions at a terminal, in several phrasings, and
see each phrasing's own answer and every method's fused answer.

One question a line on stdin (a question, or a `[MASK]` sentence for fill-in-the-blank data), with
your own phrasings after ` || `:

    echo "who wrote hamlet? || hamlet was written by whom?" | selfens ask --config configs/webquestions/avg.yaml
    echo "The capital of Germany is [MASK]. || Germany's capital is [MASK]." | selfens ask --config configs/pararel/avg.yaml

A `[MASK]` sentence is shown in the config's fill style, as the dataset shows its templates: as
typed (`mask`), or cut before `[MASK]` for the model to complete (`completion`, which needs `[MASK]`
at the end). A line that cannot be shown so is said on stderr, and the next line is read.

A line with one phrasing is paraphrased by `--paraphraser CONFIG` (a `selfens paraphrase` config)
when given. The prompt (format, few-shot examples, style) and the model come from CONFIG; the
methods (`--methods`, default avg,max,attention) all use that one loaded model.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from selfens.decoding.fusion import FUSIONS
from selfens.errors import ConfigError, SelfensError

if TYPE_CHECKING:
    from selfens.data.base import ParaphraseDataModule

SEPARATOR = " || "
MASK = "[MASK]"  # the blank a typed fill-in-the-blank sentence has where its template has [Y]


class InputError(SelfensError, ValueError):
    """A typed line that the config cannot show: said for that line; the next is read."""


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="selfens ask", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="a method config: its model, data (prompt format, shots)")
    parser.add_argument(
        "--methods", default="avg,max,attention", help=f"comma-separated: {', '.join(FUSIONS)}, attention"
    )
    parser.add_argument(
        "--paraphraser", default=None, help="a `selfens paraphrase` config, for lines with one phrasing"
    )
    args, overrides = parser.parse_known_args(argv)
    asker = Asker(args.config, overrides, args.methods.split(","), args.paraphraser)
    print(
        f"selfens ask: {asker.model_name} ready; type {expected_input(asker.data)} "
        f"(phrasings separated by '{SEPARATOR}'), Ctrl-D to end",
        file=sys.stderr,
        flush=True,
    )
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            print(asker.answer(line.strip(), f"ask-{number}"), flush=True)
        except SelfensError as error:  # e.g. an InputError: this line only
            print(f"selfens ask: line {number}: {error}", file=sys.stderr, flush=True)


class Asker:
    """The config's model and prompt, a PerPrompt module for each phrasing's own answer, and a module
    for each chosen method, all sharing one loaded model."""

    def __init__(self, config: str, overrides: list[str], methods: list[str], paraphraser: str | None = None):
        # Lightning and the model code load here, after the options are read: --help is quick.
        from selfens.cli.lightning import build, connect
        from selfens.methods import AttentionFusion, LogitFusion, PerPrompt

        unknown = [m for m in methods if m not in FUSIONS and m != "attention"]
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}: choose among {', '.join(FUSIONS)}, attention")
        # One phrasing a record is enough to read the prompt settings and the few-shot examples.
        run = build(["--config", config, *overrides, "--data.init_args.num_paraphrases", "1"], run=False)
        base, data = run.model, run.datamodule
        connect(data, base)
        self.data, self.model_name = data, base.model_name
        self.shots = data.load_records()[0].shots
        self.builder = data.prompt_builder()
        base.configure_model()
        lm = base.language_model  # one loaded model for every module
        common = {k: base.hparams[k] for k in ("dtype", "max_new_tokens", "stop_strings", "lemmatizer")}
        self.alone = PerPrompt(model=lm, **common)
        self.methods = {}
        for name in methods:
            if name == "attention":
                suffix = self.builder.encode(["x"], self.shots, "probe").suffix
                first = AttentionFusion.first_token_for(suffix)
                self.methods[name] = AttentionFusion(model=lm, first_token=first, backend="dense", **common)
            else:
                self.methods[name] = LogitFusion(model=lm, fusion=name, **common)
        for module in [self.alone, *self.methods.values()]:
            module.configure_model()  # what a method builds with its model (e.g. confidences)
        self.paraphraser = _paraphraser(paraphraser, lm) if paraphraser else None

    def phrasings(self, line: str) -> list[str]:
        """The line's phrasings (and a paraphraser's, for a line of one), as the config's data shows them."""
        given = [p.strip() for p in line.split(SEPARATOR) if p.strip()]
        if len(given) == 1 and self.paraphraser is not None:
            given += self.paraphraser.paraphrase(given, [[]])[0]["paraphrases"]
        return [shown(self.data, p) for p in given]

    def answer(self, line: str, qid: str) -> str:
        from selfens.data.batch import Example, collate  # (the package imports Lightning)

        phrasings = self.phrasings(line)
        segments = self.builder.encode(phrasings, self.shots, qid)
        batch = collate([Example(0, qid, phrasings, [""], segments)], self.builder.tokenizer.pad_token_id)
        own = self.alone.decode(batch).per_paraphrase[0]
        width = max(len(p) for p in phrasings)
        lines = [f"question {qid}: {len(phrasings)} phrasing(s)"]
        lines += [f"  {k + 1}. {p.ljust(width)}  -> {a}" for k, (p, a) in enumerate(zip(phrasings, own))]
        for name, module in self.methods.items():
            lines.append(f"  {name + ':':<14}{module.decode(batch).predictions[0]}")
        return "\n".join(lines)


def expected_input(data: ParaphraseDataModule) -> str:
    """What a typed phrasing must be for `data`, in words."""
    from selfens.data.blanks import FillInTheBlank

    if not isinstance(data, FillInTheBlank):
        return "a question"
    if data.fill_style == "mask":
        return f"a sentence with one {MASK}"
    return f"a sentence ending in {MASK} (fill_style completion: the model continues the text before it)"


def shown(data: ParaphraseDataModule, phrasing: str) -> str:
    """A typed phrasing as `data` shows one. Fill-in-the-blank data fills a `[MASK]` sentence as a
    template with `FillInTheBlank.fill`, as it fills its own; other data takes the phrasing as typed.

    >>> from selfens.data import ParaRel
    >>> shown(ParaRel(fill_style="completion"), "The capital of Germany is [MASK].")
    'The capital of Germany is'
    """
    from selfens.data.blanks import FillInTheBlank, completes_at_end

    if not isinstance(data, FillInTheBlank):
        return phrasing
    template = phrasing.replace(MASK, "[Y]")
    if phrasing.count(MASK) != 1:
        raise InputError(
            f"{phrasing!r} has {phrasing.count(MASK)} {MASK}: {type(data).__name__} (fill_style "
            f"{data.fill_style}) expects {expected_input(data)}, e.g. 'The capital of Germany is {MASK}.'"
        )
    if data.fill_style == "completion" and not completes_at_end(template):
        raise InputError(
            f"{phrasing!r}: fill_style completion shows the sentence up to {MASK} for the model to continue, so "
            f"{MASK} must end it (e.g. 'The capital of Germany is {MASK}.'); or add --data.init_args.fill_style mask"
        )
    return data.fill(template, subject="")[0]


def _paraphraser(config: str, lm):
    """The Paraphraser of a `selfens paraphrase` config; it shares the evaluated model when it is the same."""
    from selfens.cli.lightning import build_job
    from selfens.paraphrase.module import Paraphraser

    job = build_job(Paraphraser, ["--config", config]).model
    if job.model_name == lm.name:
        settings = {k: v for k, v in job.hparams.items() if not k.startswith("_")}
        job = Paraphraser(**{**settings, "model": lm})
    job.configure_model()
    return job
