"""`benchmarks/bench_methods.py --quick` runs end to end on the tiny model (no timing assertions):
every method, reuse on and off, the seed's loop, and prefix reuse reading exactly the floor. And
the GPU check script's smoke test on the CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def script(name: str):
    """benchmarks/<name>.py, imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_benchmark(tmp_path, capsys):
    bench = script("bench_methods")
    out = tmp_path / "bench.json"
    bench.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    expected = {(n, m, r) for n in (1, 2) for m in bench.METHODS for r in (True, False)} | {
        (2, "avg, seed loop", False)
    }
    assert {(r["n"], r["method"], r["reuse_prefix"]) for r in rows} == expected
    for row in rows:
        assert row["method"] in printed
        assert 0.0 <= row["em"] <= 1.0 and row["wall_s"] > 0 and row["forward_calls"] > 0
        assert (
            row["prefill_padded_tokens"] >= row["prefill_tokens"] >= row["floor_tokens"]
            or row["method"] == "avg, seed loop"
        )
        if row["reuse_prefix"] and row["method"] != "weighted_avg":  # confidences read the prompts once more
            assert row["prefill_tokens"] == row["floor_tokens"], row
    seed = next(r for r in rows if r["method"] == "avg, seed loop")
    avg = next(r for r in rows if r["n"] == 2 and r["method"] == "avg" and r["reuse_prefix"])
    assert seed["prefill_tokens"] > 10 * avg["prefill_tokens"]  # 20 full re-reads against one


@pytest.mark.slow
def test_gpu_check_script_runs_on_the_cpu(tmp_path, capsys):
    """The GPU check is for CUDA machines; here its smoke test: every check runs and passes in fp32."""
    check = script("gpu_check")
    out = tmp_path / "gpu_check.json"
    check.main(["--device", "cpu", "--dtype", "float32", "--quick", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [r["check"] for r in rows] == [
        "decode == generate",
        "attention N=1 == origin (flex)",
        "flex == dense (attention, N=5)",
        "batch == alone (origin)",
    ]
    assert all(r["pass"] and r["agreement"] == 1.0 for r in rows), rows
    assert "4 of 4 checks pass" in capsys.readouterr().out
