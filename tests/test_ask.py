"""`selfens ask`: questions piped on stdin, each phrasing's own answer and every method's fused one."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from tests.test_cli import selfens, selfens_fails

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "webquestions" / "avg.yaml"
LINES = (
    "who wrote hamlet? || hamlet was written by whom? || which writer wrote hamlet?\nwhat is the capital of france?\n"
)


def ask(monkeypatch, capsys, text: str, *args) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    capsys.readouterr()
    selfens("ask", "--config", CONFIG, *args)
    return capsys.readouterr().out


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


def test_ask_with_the_tiny_model(tiny_model_path, monkeypatch, capsys):
    out = ask(monkeypatch, capsys, LINES, "--model.init_args.model", tiny_model_path, "--methods", "avg,max,attention")
    check_output(out, ["avg", "max", "attention"])


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
    )
    assert "question ask-1: 6 phrasing(s)" in out  # the original and the config's 5 paraphrases


def test_unknown_method(tiny_model_path, capsys):
    error = selfens_fails(
        capsys, "ask", "--config", CONFIG, "--model.init_args.model", tiny_model_path, "--methods", "mean"
    )
    assert "unknown method(s) ['mean']" in error


@pytest.mark.slow
def test_the_piped_example_with_the_embedded_model(monkeypatch, capsys):
    """The README's example: three phrasings of one question, each answered, and fused three ways."""
    lines = check_output(ask(monkeypatch, capsys, LINES), ["avg", "max", "attention"])
    answers = [line.split("->")[1].strip() for line in lines[1:4]] + [line.split(":", 1)[1] for line in lines[4:7]]
    assert all("Shakespeare" in a for a in answers), answers
