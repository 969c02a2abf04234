"""Mask pictures (selfens/attention/draw.py) and the `selfens mask` command."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import torch

from selfens.attention import dense_mask, pack, packed_mask_mod
from selfens.attention.draw import extend_with_generated, mask_figure, mask_text
from selfens.errors import ConfigError
from selfens.prompting.segments import Segments
from tests.helpers import ROOT

EXAMPLE = Segments(instruction=[1, 2], shots=[[3], [4, 5]], blocks=[[6, 7], [8]], suffix=[9])
SHORT = Segments(instruction=[1], shots=[], blocks=[[6], [8]], suffix=[])


def grid(text: str) -> dict[tuple[str, str], str]:
    """The segment-level cells of mask_text: {(row code, column code): symbol}."""
    lines = text.splitlines()
    columns = lines[1].split()
    cells = {}
    for line in lines[2:]:
        if "(" not in line or ")" not in line:
            break
        row = line[line.index("(") + 1 : line.index(")")]
        symbols = line[line.index(")") + 1 :].split()
        assert len(symbols) == len(columns), line
        cells.update({(row, col): s for col, s in zip(columns, symbols)})
    return cells


@pytest.mark.parametrize("layout", ["seed", "shared_prefix", "isolated_fewshot"])
def test_extend_with_generated(layout):
    packed = pack([SHORT, EXAMPLE], layout, pad_id=0)  # SHORT is left-padded
    full = dense_mask(packed_mask_mod(packed), 2, packed.valid.shape[1])[:, 0]
    for example in range(2):
        valid = packed.valid[example]
        real = int(valid.sum())
        mask, labels = extend_with_generated(packed, example, num_generated=3)

        assert mask.shape == (real + 3, real + 3) and mask.dtype == torch.bool
        assert torch.equal(mask[:real, :real], full[example][valid][:, valid])  # padding stripped, rule kept
        assert not mask[:real, real:].any()  # real tokens never see generated ones
        assert mask[real:, :real].all()  # generated tokens see every real token
        assert torch.equal(mask[real:, real:], torch.ones(3, 3, dtype=torch.bool).tril())
        assert labels[-1] == ("generated", real, real + 3)
        assert labels[0][1] == 0 and labels[-2][2] == real  # shifted past the padding, contiguous
        assert [name for name, _, _ in labels[:-1]] == [name for name, _, _ in packed.labels[example]]


def test_extend_without_generated():
    packed = pack([EXAMPLE], "shared_prefix", pad_id=0)
    mask, labels = extend_with_generated(packed, 0, num_generated=0)
    assert mask.shape == (9, 9) and "generated" not in [n for n, _, _ in labels]


def test_mask_text_shared_prefix():
    ex = Segments(instruction=[1, 2], shots=[[3]], blocks=[[4, 5], [6, 7, 8]], suffix=[9, 10])
    text = mask_text(*extend_with_generated(pack([ex], "shared_prefix", pad_id=0), 0, 2))
    cells = grid(text)
    assert cells[("p1", "p2")] == "·" and cells[("p2", "p1")] == "·"  # the blocks are isolated
    assert cells[("suf", "pre")] == "█" and cells[("suf", "p1")] == "█" and cells[("suf", "p2")] == "█"
    assert cells[("p1", "pre")] == "█" and cells[("pre", "p1")] == "·"
    assert all(cells[(c, c)] == "◣" for c in ("pre", "p1", "p2", "suf", "gen"))
    assert all(cells[("gen", c)] == "█" for c in ("pre", "p1", "p2", "suf"))
    assert "paraphrase 1" in text and "generated" in text and "sees none" in text  # row names, legend
    assert "token level" in text  # L <= 80
    assert "token level" not in mask_text(*extend_with_generated(pack([ex], "shared_prefix", 0), 0), token_level=False)


def test_mask_figure_saves_png(tmp_path):
    mask, labels = extend_with_generated(pack([EXAMPLE], "isolated_fewshot", pad_id=0), 0)
    fig = mask_figure(mask, labels, "isolated_fewshot")
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    out = tmp_path / "mask.png"
    fig.savefig(out)
    assert out.exists() and out.stat().st_size > 1024


# -- `selfens mask` --------------------------------------------------------------------------------


@pytest.fixture
def clean_process(monkeypatch):
    """LightningCLI warns when it sees pytest's argv; seed_everything leaves PL_GLOBAL_SEED behind."""
    monkeypatch.setattr(sys, "argv", ["selfens"])
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def mask_args(model: str, index: int, out: Path) -> list[str]:
    """`selfens mask` of the attention config on 2 facts, for example `index`, drawn into `out`."""
    config = str(ROOT / "configs/pararel/attention.yaml")
    return [
        "--config",
        config,
        "--model.init_args.model",
        model,
        "--data.init_args.limit",
        "2",
        "--index",
        str(index),
        "--out",
        str(out),
    ]


def test_mask_command(tiny_model_path, tmp_path, capsys, clean_process):
    from selfens.cli.mask import main

    out = tmp_path / "sub" / "m.png"
    main(mask_args(tiny_model_path, 1, out))
    assert out.exists() and out.stat().st_size > 1024
    printed = capsys.readouterr().out
    cells = grid(printed[printed.index("attention mask") :])
    assert cells[("p1", "p2")] == "·" and cells[("gen", "p5")] == "█"
    assert "layout: shared_prefix" in printed and "positions: sequential" in printed
    assert "first_token: block_ends" in printed and str(out) in printed
    if ("suf", "suf") in cells:  # the tiny model has a chat template: its prompts end in a shared suffix
        assert "warning: this config would fail to decode: first_token: block_ends needs an empty suffix" in printed

    with pytest.raises(ConfigError, match=r"out of range.*2 example"):
        main(mask_args(tiny_model_path, 2, tmp_path / "x.png"))


def test_mask_command_needs_attention(tiny_model_path, tmp_path, clean_process, capsys):
    """One line, status 2, like every other command's expected failure."""
    from tests.helpers import selfens_fails

    config = str(ROOT / "configs/pararel/origin.yaml")
    args = ["mask", "--config", config, "--model.init_args.model", tiny_model_path, "--out", str(tmp_path / "m.png")]
    message = selfens_fails(capsys, *args)
    assert re.search(r"selfens\.methods\.baselines\.Origin.*needs selfens\.methods\.AttentionFusion", message)
    assert not (tmp_path / "m.png").exists()
