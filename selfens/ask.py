"""`selfens ask --config CONFIG`: ask the model questions at a terminal, in several phrasings, and
see each phrasing's own answer and every method's fused answer.

One question a line on stdin (a question, or a `[MASK]` sentence for fill-in-the-blank data), with
your own phrasings after ` || `:

    echo "who wrote hamlet? || hamlet was written by whom?" | selfens ask --config configs/webquestions/avg.yaml

A line with one phrasing is paraphrased by `--paraphraser CONFIG` (a `selfens paraphrase` config)
when given. The prompt (format, few-shot examples, style) and the model come from CONFIG; the
methods (`--methods`, default avg,max,attention) all use that one loaded model.
"""

from __future__ import annotations

import argparse
import sys

from selfens.data.batch import Example, collate
from selfens.data.encoding import encode_example
from selfens.errors import ConfigError
from selfens.fusion import FUSIONS
from selfens.prompts import render

SEPARATOR = " || "


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
    for number, line in enumerate(sys.stdin, start=1):
        if line.strip():
            print(asker.answer(line.strip(), f"ask-{number}"), flush=True)


class Asker:
    """The config's model and prompt, a PerPrompt module for each phrasing's own answer, and a module
    for each chosen method, all sharing one loaded model."""

    def __init__(self, config: str, overrides: list[str], methods: list[str], paraphraser: str | None = None):
        from selfens.cli import cli
        from selfens.methods import AttentionFusion, LogitFusion, PerPrompt

        unknown = [m for m in methods if m not in FUSIONS and m != "attention"]
        if unknown:
            raise ConfigError(f"unknown method(s) {unknown}: choose among {', '.join(FUSIONS)}, attention")
        # One phrasing a record is enough to read the prompt settings and the few-shot examples.
        run = cli(["--config", config, *overrides, "--data.init_args.num_paraphrases", "1"], run=False)
        base, self.data = run.model, run.datamodule
        self.data.connect(base.tokenizer, base.model_name)
        self.shots = self.data.load_records()[0].shots
        self.format = self.data.prompt_format()
        self.chat = self.data._chat_renderer() if self.data.chat else None
        common = {k: base.hparams[k] for k in ("model", "dtype", "max_new_tokens", "stop_strings", "lemmatizer")}
        base.configure_model()
        self.tokenizer, lm = base.tokenizer, base.lm
        self.alone = PerPrompt(**common)
        self.methods = {}
        for name in methods:
            if name == "attention":
                first = "block_ends" if not self._parts("x")[-1][1] else "suffix"  # block_ends needs no suffix
                self.methods[name] = AttentionFusion(first_token=first, backend="dense", **common)
            else:
                self.methods[name] = LogitFusion(fusion=name, **common)
        for module in [self.alone, *self.methods.values()]:
            module.lm = lm  # one model for all
            module.configure_model()  # what else a method builds with its model (e.g. confidences)
        self.paraphraser = _paraphraser(paraphraser, base, lm) if paraphraser else None

    def _parts(self, query: str):
        return render(self.format, query, self.shots, cue_in=self.data.cue_in, chat=self.chat)

    def phrasings(self, line: str) -> list[str]:
        given = [p.strip() for p in line.split(SEPARATOR) if p.strip()]
        if len(given) == 1 and self.paraphraser is not None:
            given += self.paraphraser.paraphrase(given, [[]])[0]["paraphrases"]
        return given

    def answer(self, line: str, qid: str) -> str:
        phrasings = self.phrasings(line)
        prompts = [self._parts(p) for p in phrasings]
        segments = encode_example(self.tokenizer, prompts, add_special_tokens=self.chat is None, example_id=qid)
        batch = collate([Example(0, qid, phrasings, [""], segments)], self.tokenizer.pad_token_id)
        own = self.alone.decode(batch).per_paraphrase[0]
        width = max(len(p) for p in phrasings)
        lines = [f"question {qid}: {len(phrasings)} phrasing(s)"]
        lines += [f"  {k + 1}. {p.ljust(width)}  -> {a}" for k, (p, a) in enumerate(zip(phrasings, own))]
        for name, module in self.methods.items():
            lines.append(f"  {name + ':':<14}{module.decode(batch).predictions[0]}")
        return "\n".join(lines)


def _paraphraser(config: str, base, lm):
    """The Paraphraser of a `selfens paraphrase` config; it shares the evaluated model when it is the same."""
    from selfens.cli import SelfensParser
    from selfens.data.base import ParaphraseDataModule
    from selfens.paraphrase.command import ParaphraseCLI
    from selfens.paraphrase.module import Paraphraser

    run = ParaphraseCLI(
        Paraphraser,
        ParaphraseDataModule,
        subclass_mode_data=True,
        parser_class=SelfensParser,
        save_config_callback=None,
        args=["--config", config],
        run=False,
    )
    job = run.model
    if job.model_name == base.model_name:
        job.lm = lm
    job.configure_model()
    return job
