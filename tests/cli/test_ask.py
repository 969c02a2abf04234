"""`selfens ask`: questions piped on stdin, each phrasing's own answer and every method's fused one."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, selfens, selfens_fails

CONFIG = ROOT / "configs" / "webquestions" / "avg.yaml"
LINES = (
    "who wrote hamlet? || hamlet was written by whom? || which writer wrote hamlet?\nwhat is the capital of france?\n"
)


def ask(monkeypatch, capsys, text: str, *args, config: Path = CONFIG):
    """`selfens ask` on `text` as stdin: what it wrote (`.out`, `.err`)."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    capsys.readouterr()
    selfens("ask", "--config", config, *args)
    return capsys.readouterr()


def check_output(out: str, methods: list[str]) -> list[str]:
    """The answer lines of the first question (3 phrasings) and of the second (1), in order."""
    lines = out.strip().splitlines()
    first = lines.index("question ask-1: 3 phrasing(s)")
    second = lines.index("question ask-2: 1 phrasing(s)")
    assert [line.split(". ", 1)[1].split("  ->")[0].strip() for line in lines[first + 1 : first + 4]] == [
        "who wrote hamlet?",
        "hamlet was written by whom?",
        "which writer wrote hamlet?",
    ]
    assert [line.split(":")[0].strip() for line in lines[first + 4 : second]] == methods
    assert lines[second + 1].strip().startswith("1. what is the capital of france?")
    return lines


def phrasings_shown(out: str, qid: str) -> list[str]:
    """The phrasings listed under question `qid`, as the model was shown them."""
    lines = out.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(f"question {qid}: "))
    count = int(lines[first].split(": ")[1].split()[0])
    return [line.split(". ", 1)[1].split("  ->")[0].strip() for line in lines[first + 1 : first + 1 + count]]


def test_ask_with_the_tiny_model(tiny_model_path, monkeypatch, capsys):
    said = ask(monkeypatch, capsys, LINES, "--model.init_args.model", tiny_model_path, "--methods", "avg,max,attention")
    check_output(said.out, ["avg", "max", "attention"])
    # Once the model is loaded, one line on stderr says so, and what to type.
    ready = [line for line in said.err.splitlines() if line.startswith("selfens ask: ")]
    assert ready == [
        f"selfens ask: {tiny_model_path} ready; type a question (phrasings separated by ' || '), Ctrl-D to end"
    ]


PARAREL = ROOT / "configs" / "pararel" / "avg.yaml"
MASKED = (
    "The capital of Germany is [MASK]. || Germany's capital is [MASK].\n"
    "[MASK] is the capital of Germany.\n"
    "who wrote hamlet?\n"
    "Paris is the capital of [MASK].\n"
)


@pytest.mark.parametrize("style", ["completion", "mask"])
def test_a_mask_sentence_is_shown_in_the_configs_fill_style(style, tiny_model_path, monkeypatch, capsys):
    from selfens.data import ParaRel

    fill = ParaRel(fill_style=style).fill  # how the dataset shows a template: the rule ask must follow
    said = ask(
        monkeypatch,
        capsys,
        MASKED,
        *("--model.init_args.model", tiny_model_path, "--methods", "avg"),
        *("--data.init_args.fill_style", style),
        config=PARAREL,
    )
    assert phrasings_shown(said.out, "ask-1") == [
        fill("The capital of [X] is [Y].", "Germany")[0],
        fill("[X]'s capital is [Y].", "Germany")[0],
    ]
    assert phrasings_shown(said.out, "ask-4") == [fill("[X] is the capital of [Y].", "Paris")[0]]
    if style == "completion":
        assert phrasings_shown(said.out, "ask-1") == ["The capital of Germany is", "Germany's capital is"]
    else:
        assert phrasings_shown(said.out, "ask-2") == ["[MASK] is the capital of Germany."]
    # A line the style cannot show: one line on stderr for it, and the next line is answered.
    errors = [line for line in said.err.splitlines() if line.startswith("selfens ask: line ")]
    no_mask = f"selfens ask: line 3: 'who wrote hamlet?' has 0 [MASK]: ParaRel (fill_style {style}) expects a sentence "
    assert errors[-1].startswith(no_mask) and "ask-3" not in said.out
    if style == "completion":
        assert len(errors) == 2 and "ask-2" not in said.out
        assert errors[0].startswith("selfens ask: line 2: '[MASK] is the capital of Germany.': fill_style completion")
        assert "--data.init_args.fill_style mask" in errors[0]
    else:
        assert len(errors) == 1
    expects = "a sentence ending in [MASK]" if style == "completion" else "a sentence with one [MASK]"
    assert f"ready; type {expects}" in said.err


def test_ask_paraphrases_a_single_phrasing_with_a_paraphraser(tiny_model_path, monkeypatch, capsys, tmp_path):
    config = tmp_path / "paraphrase.yaml"
    source = (ROOT / "configs" / "paraphrase" / "webquestions.yaml").read_text()
    source = source.replace("model: smollm2_135m_it", f"model: {tiny_model_path}")
    config.write_text(source.replace("  max_tries: 5\n", "  max_tries: 5\n  checks: []\n"))  # keep all 5
    out = ask(
        monkeypatch,
        capsys,
        "what is the capital of france?\n",
        "--model.init_args.model",
        tiny_model_path,
        "--paraphraser",
        config,
        "--methods",
        "avg",
    ).out
    assert "question ask-1: 6 phrasing(s)" in out  # the original and the config's 5 paraphrases


def test_unknown_method(tiny_model_path, capsys):
    error = selfens_fails(
        capsys, "ask", "--config", CONFIG, "--model.init_args.model", tiny_model_path, "--methods", "mean"
    )
    assert "unknown method(s) ['mean']" in error


@pytest.mark.slow
def test_the_piped_example_with_the_embedded_model(monkeypatch, capsys):
    """The README's example: three phrasings of one question, each answered, and fused three ways."""
    lines = check_output(ask(monkeypatch, capsys, LINES).out, ["avg", "max", "attention"])
    answers = [line.split("->")[1].strip() for line in lines[1:4]] + [line.split(":", 1)[1] for line in lines[4:7]]
    assert all("Shakespeare" in a for a in answers), answers
