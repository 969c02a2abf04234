"""`selfens.decoding.budget`: a row's KV bytes against a real cache, the decode rows a memory budget holds,
`batch_size: auto`'s bounds, and an auto run recording the sizes it chose in results.json."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from selfens.decoding import budget
from selfens.decoding.budget import auto_batch_size, decode_rows, kv_bytes_per_token, row_bytes
from selfens.errors import ConfigError
from tests.helpers import (
    PER_PROMPT,
    ROOT,
    build_tiny_model,
    logger_name,
    quiet,
    read_jsonl,
    run_folder,
    selfens,
    selfens_fails,
)

LIMIT = 6


def prefilled_kv_bytes(model, tokens: int) -> int:
    """Bytes of the KV cache after one row of `tokens` random tokens is prefilled."""
    from selfens.decoding.caches import cache_bytes
    from selfens.decoding.loop import prefill
    from selfens.decoding.prompt import Prompt

    vocab = budget.text_config(model.config).vocab_size
    ids = torch.randint(0, vocab, (1, tokens), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        _, cache = prefill(model, Prompt.left_padded(ids, torch.ones_like(ids, dtype=torch.bool)))
    return cache_bytes(cache)


# -- a row's bytes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family, overrides, dtype",
    [
        ("llama", {}, torch.float32),
        ("llama", {}, torch.bfloat16),
        ("llama", {"head_dim": 16}, torch.float32),  # head_dim != hidden_size / heads
        ("gemma3", {}, torch.float32),  # sliding layers keep every key too
        ("gemma3_vlm", {}, torch.float32),  # the decoder's config inside a multimodal one
    ],
)
def test_kv_bytes_per_token_is_what_a_prefill_caches(tmp_path, family, overrides, dtype):
    from selfens.model.registry import load_model

    model = load_model(str(build_tiny_model(tmp_path / family, family=family, **overrides)), dtype=dtype)
    tokens = 23
    assert prefilled_kv_bytes(model, tokens) == tokens * kv_bytes_per_token(model.config, model.dtype)


def test_kv_bytes_per_token_of_gemma3_270m():
    """The real Gemma 3 270M geometry (head_dim 256 != hidden 640 / 4 heads, one KV head, sliding
    layers), on a model made from its config with a small vocabulary and MLP (random weights)."""
    import transformers

    from selfens.model.registry import model_config

    try:
        config = model_config("gemma3_270m")
    except ConfigError:
        pytest.skip("the gemma extra is not installed")
    config.vocab_size, config.intermediate_size = 512, 64
    torch.manual_seed(0)
    model = transformers.Gemma3ForCausalLM(config).eval()
    assert config.head_dim != config.hidden_size // config.num_attention_heads
    assert prefilled_kv_bytes(model, 9) == 9 * kv_bytes_per_token(config, model.dtype)


# -- decode rows -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_path):
    from selfens.model.registry import load_model

    return load_model(tiny_model_path)


def test_decode_rows_is_the_budget_over_a_row(tiny_lm):
    gpu = torch.device("cuda")  # with a budget given, nothing asks the device; no knee off the CPU
    one = row_bytes(tiny_lm.config, tiny_lm.dtype, 100)
    assert decode_rows(tiny_lm, 100, gpu, budget_bytes=7 * one) == 7
    assert decode_rows(tiny_lm, 100, gpu, budget_bytes=7 * one - 1) == 6
    assert decode_rows(tiny_lm, 100, gpu, budget_bytes=0) == 1  # a row decodes, whatever the budget


def test_decode_rows_grows_with_the_budget_and_shrinks_with_the_tokens(tiny_lm):
    gpu = torch.device("cuda")
    budgets = [2**k for k in range(10, 34, 3)]
    by_budget = [decode_rows(tiny_lm, 200, gpu, budget_bytes=b) for b in budgets]
    assert by_budget == sorted(by_budget) and by_budget[-1] > by_budget[0]
    by_tokens = [decode_rows(tiny_lm, t, gpu, budget_bytes=2**28) for t in (1, 10, 100, 1000, 10000)]
    assert by_tokens == sorted(by_tokens, reverse=True) and by_tokens[0] > by_tokens[-1]


def test_decode_rows_on_the_cpu_stop_at_the_knee(tiny_lm):
    plenty = 1000 * budget.CPU_ROW_KNEE * row_bytes(tiny_lm.config, tiny_lm.dtype, 50)
    assert decode_rows(tiny_lm, 50, torch.device("cpu"), budget_bytes=plenty) == budget.CPU_ROW_KNEE
    assert 1 <= decode_rows(tiny_lm, 50, "cpu") <= budget.CPU_ROW_KNEE  # from this machine's memory
    with pytest.raises(ValueError, match="tokens_per_row must be at least 1, got 0"):
        decode_rows(tiny_lm, 0, "cpu")


def test_cpu_budget_is_a_capped_share_of_meminfo():
    assert budget.mem_available("MemTotal:  100 kB\nMemAvailable:   2048 kB\n") == 2048 * 1024
    assert budget.mem_available("MemTotal:  100 kB\n") is None
    found = budget.memory_budget(None, torch.device("cpu"))
    assert 0 < found <= budget.CPU_MEMORY_CAP
    assert found <= budget.CPU_MEMORY_FRACTION * budget.available_memory() * 1.5  # memory moves meanwhile


# -- batch_size: auto --------------------------------------------------------------------------------


@pytest.mark.parametrize("rows_per_example", [1, 3, 5])
@pytest.mark.parametrize("max_rows", [1, 7, 32])
@pytest.mark.parametrize("examples, world_size", [(0, 1), (1, 1), (6, 1), (1000, 1), (7, 2), (1000, 3), (2, 8)])
def test_auto_batch_size_bounds(rows_per_example, max_rows, examples, world_size):
    size = auto_batch_size(rows_per_example, max_rows, examples, world_size)
    share = math.ceil(examples / world_size)
    assert size >= 1
    assert size <= max(1, share), "every process gets work"
    # enough rows to fill the decode rows BATCH_FILLS times, unless the share is smaller
    assert size * rows_per_example >= min(budget.BATCH_FILLS * max_rows, share * rows_per_example)
    assert (size - 1) * rows_per_example < budget.BATCH_FILLS * max_rows, "no more examples than that takes"


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 8, 10, 1), "rows_per_example must be at least 1, got 0"),
        ((5, 0, 10, 1), "max_rows must be at least 1, got 0"),
        ((5, 8, 10, 0), "world_size must be at least 1, got 0"),
        ((5, 8, -1, 1), "examples must be at least 0, got -1"),
    ],
)
def test_auto_batch_size_refuses_bad_counts(args, message):
    with pytest.raises(ValueError, match=message):
        auto_batch_size(*args)


def test_batch_size_values():
    from selfens.data import ParaRel

    auto = ParaRel(batch_size="auto")
    assert auto.batch_size_auto and auto.batch_size == 8  # until resolved
    auto.resolve_batch_size(3)
    assert auto.batch_size == 3
    assert not ParaRel(batch_size=5).batch_size_auto
    for bad in ("big", 2.5, True):
        with pytest.raises(ConfigError, match=r"^batch_size must be a whole number of examples per batch or auto"):
            ParaRel(batch_size=bad)


def test_without_a_trainer_nothing_is_resolved(tiny_model_path):
    from selfens.methods import Origin

    module = Origin(model=tiny_model_path)
    module.configure_model()
    assert module.decode_rows is None


# -- through the CLI ---------------------------------------------------------------------------------


def test_auto_run_records_the_sizes_it_chose(tiny_model_path, tmp_path):
    save_dir = tmp_path / "auto"
    common = ["--model.init_args.model", tiny_model_path, "--data.init_args.limit", LIMIT, *quiet()]
    selfens("test", "--config", PER_PROMPT, *common, "--data.init_args.batch_size", "auto",
            "--trainer.logger.init_args.save_dir", save_dir)  # fmt: skip
    folder = run_folder(save_dir / logger_name(PER_PROMPT))
    results = json.loads((folder / "results.json").read_text())
    rows = results["decode_rows"]
    assert 1 <= rows <= budget.CPU_ROW_KNEE
    assert results["batch_size"] == auto_batch_size(5, rows, LIMIT, 1)
    assert results["config"]["data"]["batch_size"] == "auto"  # what was asked, beside what it became
    assert [r["index"] for r in read_jsonl(folder / "predictions.jsonl")] == list(range(LIMIT))


def test_a_fixed_batch_size_is_recorded_as_given(tiny_model_path, tmp_path):
    from tests.helpers import ORIGIN

    save_dir = tmp_path / "fixed"
    common = ["--model.init_args.model", tiny_model_path, "--data.init_args.limit", 3, *quiet()]
    selfens("test", "--config", ORIGIN, *common, "--data.init_args.batch_size", 2,
            "--trainer.logger.init_args.save_dir", save_dir)  # fmt: skip
    results = json.loads((run_folder(save_dir / logger_name(ORIGIN)) / "results.json").read_text())
    assert results["batch_size"] == 2 and 1 <= results["decode_rows"] <= budget.CPU_ROW_KNEE


def test_a_bad_batch_size_is_one_line_naming_it(tiny_model_path, tmp_path, capsys):
    common = ["--model.init_args.model", tiny_model_path, *quiet()]
    line = selfens_fails(capsys, "test", "--config", PER_PROMPT, *common, "--data.init_args.batch_size", "big")
    assert "batch_size" in line and "big" in line, line
    config = tmp_path / "big.yaml"
    config.write_text("data:\n  init_args:\n    batch_size: big\n")
    line = selfens_fails(capsys, "test", "--config", PER_PROMPT, "--config", config, *common)
    assert "batch_size" in line and "big" in line, line


@pytest.mark.slow
def test_auto_batches_alike_on_two_processes(tiny_model_path, tmp_path):
    """Every process must batch alike (the sampler hands out whole batches): 7 examples, each once."""
    from tests.helpers import run_distributed

    args = ["--config", PER_PROMPT, "--model.init_args.model", tiny_model_path, "--data.init_args.limit", 7,
            "--data.init_args.batch_size", "auto"]  # fmt: skip
    folder = run_distributed("test", args, tmp_path / "ddp", devices=2)
    results = json.loads((folder / "results.json").read_text())
    assert results["world_size"] == 2 and results["num_examples"] == 7
    assert results["batch_size"] == auto_batch_size(5, results["decode_rows"], 7, 2)
    assert [r["index"] for r in read_jsonl(folder / "predictions.jsonl")] == list(range(7))


# -- the knee's benchmark ------------------------------------------------------------------------------


def bench_rows():
    spec = importlib.util.spec_from_file_location("bench_rows", ROOT / "benchmarks" / "bench_rows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_knee_is_where_more_rows_stop_paying():
    knee = bench_rows().knee
    rows = [1, 8, 16, 32, 64]
    assert knee(rows, [10.0, 2.0, 1.0, 0.95, 0.5]) == 16  # 32 gains only 5% over 16
    assert knee(rows, [10.0, 2.0, 1.0, 0.5, 0.25]) == 64  # every step pays
    assert knee(rows, [10.0, 9.5, 1.0, 0.5, 0.25]) == 1
    with pytest.raises(ValueError):
        knee(rows, [1.0])


def test_bench_rows_runs(tiny_model_path, capsys):
    table = bench_rows().main(["--model", tiny_model_path, "--rows", "1", "4", "--keys", "12", "--steps", "1",
                               "--repeats", "1"])  # fmt: skip
    assert [t["rows"] for t in table] == [1, 4]
    assert all(t["ms_per_step"] > 0 and t["ms_per_row_step"] == t["ms_per_step"] / t["rows"] for t in table)
    assert "knee: R = " in capsys.readouterr().out


def test_a_prefill_memo_keeps_as_many_rows_as_decode_on_the_cpu_and_an_eighth_on_cuda():
    assert budget.memo_rows(128, "cpu") == 128
    assert budget.memo_rows(800, "cuda") == 100 and budget.memo_rows(7, torch.device("cuda", 0)) == 0
    assert budget.memo_rows(None, "cuda") is None  # no budget known (no Trainer): no limit
