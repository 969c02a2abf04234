"""`benchmarks/gpu_check.py` is for CUDA machines; here, on the CPU (fp32, eager FlexAttention), it
runs end to end, and a failure (injected with its test-only `--fail`, or a model that does not
load) fails that check or model alone: every other check still runs, the summary is written and
the exit status is 1."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections import Counter

import pytest
import torch

from tests.helpers import FAMILIES, ROOT, build_tiny_model

CHECKS = [
    "decode == generate",
    "attention N=1 == origin (flex)",
    "flex == dense (attention, N=5)",
    "batch == alone (origin)",
]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def check():
    """benchmarks/gpu_check.py, imported as a module."""
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_llama(check, tmp_path_factory) -> str:
    """The tiny Llama as the GPU check builds it (head_dim 16)."""
    return check.build_tiny(tmp_path_factory.mktemp("gpu_llama"), "llama")


def run(check, argv: list[str], out) -> tuple[int, dict]:
    """(exit status, summary) of the check on the CPU, 3 facts a check."""
    try:
        check.main(["--device", "cpu", "--limit", "3", "--out", str(out), *argv])
        status = 0
    except SystemExit as exit:
        status = exit.code
    return status, json.loads(out.read_text())


def by_model(summary: dict) -> dict[str, list[tuple[str, str]]]:
    rows = {}
    for r in summary["rows"]:
        rows.setdefault(r["model"], []).append((r["check"], r["status"]))
    return rows


def test_every_check_passes_on_the_cpu(check, tiny_llama, tmp_path, capsys):
    status, summary = run(check, ["--model", tiny_llama], tmp_path / "check.json")
    assert status == 0
    assert by_model(summary) == {tiny_llama: [(c, "PASS") for c in CHECKS]}
    assert all(r["agreement"] == 1.0 and r["error"] is None for r in summary["rows"]), summary["rows"]
    assert summary["complete"] and summary["counts"] == {"PASS": 4, "FAIL": 0, "SKIP": 0}
    meta = summary["meta"]
    assert meta["device"] == "cpu" and meta["dtype"] == "float32" and meta["flex_compiled"] is False
    assert "4 PASS, 0 FAIL, 0 SKIP of 4 checks" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failing_check_fails_alone(check, tmp_path, capsys):
    """--quick: two tiny models; one check of the first fails, the rest of both still run."""
    failing = "tiny llama: flex == dense (attention, N=5)"
    status, summary = run(check, ["--quick", "--fail", failing], tmp_path / "check.json")
    assert status == 1
    expected = [(c, "FAIL" if c == CHECKS[2] else "PASS") for c in CHECKS]
    assert by_model(summary) == {"tiny llama": expected, "tiny gemma2": [(c, "PASS") for c in CHECKS]}
    failed = next(r for r in summary["rows"] if r["status"] == "FAIL")
    assert failed["error"] == f"InjectedFailure: injected by --fail {failing!r}" and failed["agreement"] is None
    assert summary["complete"] and summary["counts"] == {"PASS": 7, "FAIL": 1, "SKIP": 0}
    assert summary["meta"]["injected_failure"] == failing
    printed = capsys.readouterr().out
    assert "7 PASS, 1 FAIL, 0 SKIP of 8 checks" in printed
    assert f"FAIL  {failing}: InjectedFailure" in printed


def test_a_model_that_does_not_load_fails_alone(check, tiny_llama, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    status, summary = run(check, ["--model", str(empty), "--model", tiny_llama], tmp_path / "check.json")
    assert status == 1
    assert by_model(summary) == {str(empty): [(c, "FAIL") for c in CHECKS], tiny_llama: [(c, "PASS") for c in CHECKS]}
    errors = {r["error"] for r in summary["rows"] if r["model"] == str(empty)}
    assert len(errors) == 1 and errors.pop().startswith("loading: ")  # the tokenizer's files are missing


def test_an_error_outside_the_checks_is_recorded(check, tmp_path, monkeypatch):
    """Whatever fails outside every check, the summary is written and says the run is incomplete."""

    def broken(folder, quick):
        raise RuntimeError("no models")

    monkeypatch.setattr(check, "default_models", broken)
    status, summary = run(check, ["--quick"], tmp_path / "check.json")
    assert status == 1 and not summary["complete"]
    assert summary["rows"] == [
        {
            "model": "-",
            "check": "the script itself",
            "status": "FAIL",
            "agreement": None,
            "error": "RuntimeError: no models",
        }
    ]


def test_decode_and_generate_stop_at_the_same_eos_ids(check, tiny_llama, tmp_path):
    """Both sides end at the model's EOS ids: here its generation config also names the token it
    writes most, so that answers do end early; they agree (not so when our side ran without EOS)."""
    from selfens.decoding.loop import decode
    from selfens.decoding.prompt import Prompt, left_pad
    from selfens.model.language_model import LanguageModel

    folder = shutil.copytree(tiny_llama, tmp_path / "model")
    lm = LanguageModel(str(folder)).load("float32")
    prompts = [e.segments.prompt(0) for e in check.data(str(folder), lm.tokenizer, 1, 3).examples]
    prompt = Prompt.left_padded(*left_pad(prompts, lm.tokenizer.pad_token_id))
    written = decode(lm.hf_model, prompt, max_new_tokens=8, eos_ids=[]).tokens
    common = Counter(t for row in written for t in row[1:]).most_common(1)[0][0]
    config = json.loads((folder / "generation_config.json").read_text())
    config["eos_token_id"] = [config["eos_token_id"], common]
    (folder / "generation_config.json").write_text(json.dumps(config))

    checks = check.model_checks(str(folder), torch.device("cpu"), "float32", 3)
    assert checks["decode == generate"]() == 1.0
    origin = LanguageModel(str(folder)).load("float32")
    assert common in origin.eos_ids
    ended = decode(origin.hf_model, prompt, max_new_tokens=8, eos_ids=origin.eos_ids).tokens
    assert any(len(row) < 8 for row in ended), ended  # some answer did end at an EOS


def test_a_model_too_small_for_compiled_flex_skips_its_flex_checks(check, tiny_llama, tmp_path, monkeypatch):
    """On CUDA a head_dim below 16 SKIPs the flex checks with the reason (here forced on the CPU):
    the other checks run, and a SKIP is no failure."""
    reason = "head_dim 8 < 16: compiled FlexAttention (Triton) cannot run it"
    monkeypatch.setattr(check, "flex_skip_reason", lambda path, device: reason)
    status, summary = run(check, ["--model", tiny_llama], tmp_path / "check.json")
    assert status == 0
    flex = {"attention N=1 == origin (flex)", "flex == dense (attention, N=5)"}
    assert by_model(summary) == {tiny_llama: [(c, "SKIP" if c in flex else "PASS") for c in CHECKS]}
    assert [r["error"] for r in summary["rows"] if r["status"] == "SKIP"] == [reason, reason]


def test_the_gpu_models_have_head_dim_16(check, tmp_path):
    """Compiled FlexAttention (CUDA) takes no head_dim below 16: the tests' tiny models (8) would have
    their flex checks skipped there, the GPU check's own (16) run them; on the CPU nothing is skipped."""
    from selfens.model.registry import model_config

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    for family in FAMILIES:
        path = check.build_tiny(tmp_path / family, family)
        assert check.head_dim(model_config(path)) == 16, family
        assert check.flex_skip_reason(path, cuda) is None
    small = str(build_tiny_model(tmp_path / "small"))
    assert check.flex_skip_reason(small, cuda) == "head_dim 8 < 16: compiled FlexAttention (Triton) cannot run it"
    assert check.flex_skip_reason(small, cpu) is None
