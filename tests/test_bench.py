"""`benchmarks/bench_methods.py --quick` runs end to end on the tiny model (no timing assertions):
every method, reuse on and off, both seed loops, prefix reuse reading exactly the floor, and the
docs page rendered from the JSON (the GPU check's tests are in tests/test_gpu_check.py)."""

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
    bench, docs = script("bench_methods"), script("write_docs")
    out, page = tmp_path / "bench.json", tmp_path / "benchmarks.md"
    bench.main(["--quick", "--out", str(out), "--docs", str(page)])
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    rows = data["rows"]
    seeds = (bench.SEED_AS_WRITTEN, bench.SEED_SAME_STOP)
    expected = {(n, m, r) for n in (1, 2) for m in bench.METHODS for r in (True, False)} | {
        (2, s, False) for s in seeds
    }
    assert {(r["n"], r["method"], r["reuse_prefix"]) for r in rows} == expected
    for row in rows:
        assert row["method"] in printed
        assert 0.0 <= row["em"] <= 1.0 and row["wall_s"] > 0 and row["forward_calls"] > 0
        assert row["prefill_padded_tokens"] >= row["prefill_tokens"] >= row["floor_tokens"], row
        if row["reuse_prefix"] and row["method"] != "weighted_avg":  # confidences read the prompts once more
            assert row["prefill_tokens"] == row["floor_tokens"], row
        if not row["reuse_prefix"] and row["method"] not in seeds:
            assert row["agreement_with_reuse"] == 1.0, row  # the same answers with and without reuse
    written, same = (next(r for r in rows if r["method"] == s) for s in seeds)
    avg_off, avg_on = (
        next(r for r in rows if (r["n"], r["method"], r["reuse_prefix"]) == (2, "avg", x)) for x in (False, True)
    )
    assert written["prefill_tokens"] > 10 * avg_on["prefill_tokens"]  # 20 full re-reads against one
    assert written["forward_calls"] == bench.SEED_STEPS * written["examples"]  # one fact a forward, no stop
    # The same stop rule and batches as avg, no KV cache: avg's answers, forwards and row-steps, more tokens read.
    assert same["agreement"] == 1.0 and same["em"] == avg_off["em"]
    assert (same["forward_calls"], same["row_steps"], same["batches"]) == (
        avg_off["forward_calls"],
        avg_off["row_steps"],
        avg_off["batches"],
    )
    assert same["prefill_tokens"] > avg_off["prefill_tokens"] and same["peak_kv_bytes"] == 0
    # The page is written from the JSON: its table holds the JSON's figures, row for row.
    text = page.read_text()
    assert_table_from(text, rows)
    assert "not measured" not in text and "not recorded" not in text
    assert text == docs.render(data, str(out))
    # A JSON from before the same-stop row (the as-written row under its old name) still renders.
    legacy_rows = [
        {**r, "method": "avg, seed loop"} if r["method"] == bench.SEED_AS_WRITTEN else r
        for r in rows
        if r["method"] != bench.SEED_SAME_STOP
    ]
    legacy = docs.render({"meta": {"model": "m", "device": "cpu", "batch_size": 8}, "rows": legacy_rows})
    assert f"| 2 | {bench.SEED_SAME_STOP} | off | – | not measured in this run |" in legacy
    assert_table_from(legacy, [r for r in rows if r["method"] != bench.SEED_SAME_STOP], skip=bench.SEED_SAME_STOP)


# The docs table's numeric columns: title -> (JSON key, scale to the unit shown).
TABLE_COLUMNS = {
    "N": ("n", 1),
    "facts": ("examples", 1),
    "wall s": ("wall_s", 1),
    "× origin": ("wall_vs_origin", 1),
    "prefill": ("prefill_tokens", 1),
    "padded": ("prefill_padded_tokens", 1),
    "floor": ("floor_tokens", 1),
    "forwards": ("forward_calls", 1),
    "row-steps": ("row_steps", 1),
    "peak KV MB": ("peak_kv_bytes", 2**-20),
    "EM %": ("em", 100),
}


def markdown_table(text: str, first_title: str) -> list[dict]:
    """The rows of the markdown table whose header starts with `first_title`, as {title: cell}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_title} |"))
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    titles, rows = split(lines[start]), []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(titles, split(line))))
    return rows


def assert_table_from(text: str, rows: list[dict], skip: str | None = None) -> None:
    """Every number of the docs table is the JSON's, rounded as shown (to within half its last digit)."""
    table = [cells for cells in markdown_table(text, "N") if cells["method"] != skip]
    assert len(table) == len(rows)
    for cells, row in zip(table, rows):
        method = "avg, seed loop (as written)" if row["method"] == "avg, seed loop" else row["method"]
        assert (cells["method"], cells["reuse"]) == (method, "on" if row["reuse_prefix"] else "off")
        for title, (key, scale) in TABLE_COLUMNS.items():
            shown = cells[title].replace(",", "")
            decimals = len(shown.partition(".")[2])
            assert abs(float(shown) - row[key] * scale) <= 0.5 * 10**-decimals + 1e-9, (title, shown, row)
