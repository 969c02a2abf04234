"""`benchmarks/bench_methods.py --quick` runs end to end on the tiny model (no timing assertions):
every method, reuse on and off, both seed loops, prefix reuse reading exactly the floor, and the
docs page rendered from the JSON; at scale against a baseline tree (this one: the same answers);
`benchmarks/bench_demo.py`'s comparison on prepared runs, and the page's scale and demo sections
(the GPU check's tests are in tests/test_gpu_check.py)."""

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
        assert row["facts_per_s"] == row["examples"] / row["wall_s"]
        assert (
            row["decode_steps"] < row["forward_calls"]
            and row["rows_per_step"] == row["row_steps"] / row["decode_steps"]
        )
        if row["reuse_prefix"]:  # weighted_avg too: its fused decode takes the confidence pass's prefills
            assert row["prefill_tokens"] == row["floor_tokens"], row
        if not row["reuse_prefix"] and row["method"] not in seeds:
            assert row["agreement_with_reuse"] == 1.0, row  # the same answers with and without reuse
            on = next(r for r in rows if (r["n"], r["method"], r["reuse_prefix"]) == (row["n"], row["method"], True))
            assert row["answers_sha256"] == on["answers_sha256"]
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
    "facts/s": ("facts_per_s", 1),
    "prefill": ("prefill_tokens", 1),
    "padded": ("prefill_padded_tokens", 1),
    "floor": ("floor_tokens", 1),
    "forwards": ("forward_calls", 1),
    "row-steps": ("row_steps", 1),
    "rows/step": ("rows_per_step", 1),
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


def assert_table_from(text: str, rows: list[dict], skip: str | None = None, columns: dict = TABLE_COLUMNS) -> None:
    """Every number of the docs table is the JSON's, rounded as shown (to within half its last digit)."""
    table = [cells for cells in markdown_table(text, "N") if cells["method"] != skip]
    assert len(table) == len(rows)
    for cells, row in zip(table, rows):
        method = "avg, seed loop (as written)" if row["method"] == "avg, seed loop" else row["method"]
        assert (cells["method"], cells["reuse"]) == (method, "on" if row["reuse_prefix"] else "off")
        for title, (key, scale) in columns.items():
            assert_shown(cells[title], row[key] * scale, (title, row))


def assert_shown(shown: str, value: float, where) -> None:
    """A figure as the page shows it is `value`, to within half its last digit."""
    shown = shown.replace(",", "")
    decimals = len(shown.partition(".")[2])
    assert abs(float(shown) - value) <= 0.5 * 10**-decimals + 1e-9, (shown, value, where)


# The scale table's numeric columns (those of the table above it but the floor, plus the baseline's).
SCALE_COLUMNS = {
    **{t: c for t, c in TABLE_COLUMNS.items() if t != "floor"},
    "batch": ("batch_size", 1),
    "baseline wall s": ("baseline_wall_s", 1),
    "new / baseline": ("vs_baseline", 1),
}


@pytest.mark.slow
def test_quick_at_scale_against_a_baseline(tmp_path):
    """--facts on the tiny model, with this very tree as the baseline: every row's answers and EM are
    the baseline's, each side ran its own processes with the package PYTHONPATH names, and the page's
    scale section holds the JSON's figures."""
    bench, docs = script("bench_methods"), script("write_docs")
    out = tmp_path / "scale.json"
    bench.main(["--quick", "--facts", "8", "--methods", "origin", "avg", "--baseline", str(ROOT), "--out", str(out)])
    data = json.loads(out.read_text())
    meta, rows = data["meta"], data["rows"]
    assert {(r["n"], r["method"], r["reuse_prefix"]) for r in rows} == {(5, "origin", True), (5, "avg", True)}
    assert meta["data"]["5"]["facts"] == meta["data"]["5"]["asked"] == 8 == rows[0]["examples"]
    assert meta["data"]["5"]["relations_used"] > 1  # sampled over relations, not the first one's facts
    assert meta["complete"] and meta["differences"] == []
    assert meta["new"]["package"] == meta["baseline"]["package"] == str(ROOT / "selfens")
    for row in rows:
        base = next(r for r in meta["baseline"]["rows"] if r["method"] == row["method"])
        assert row["same_answers"] and row["answers_sha256"] == base["answers_sha256"] and row["em"] == base["em"]
        assert row["vs_baseline"] == row["wall_s"] / base["wall_s"]
    text = docs.render(quick_main(), "main.json", scale=(data, "scale.json"))
    section = text[text.index("## At scale") :]
    assert_table_from(section, rows, columns=SCALE_COLUMNS)
    assert "Every row gives the baseline's answers on every fact" in section


def quick_main() -> dict:
    """A main run's JSON with one row, enough for the page's main sections."""
    row = {"n": 1, "method": "origin", "reuse_prefix": True, "examples": 2, "floor_tokens": 4}
    row.update(wall_s=1.0, wall_vs_origin=1.0, prefill_tokens=4, prefill_padded_tokens=4, forward_calls=2)
    row.update(decode_steps=1, row_steps=2, peak_kv_bytes=0, em=0.5)
    return {"meta": {"model": "m", "device": "cpu", "batch_size": 8}, "rows": [row]}


def fake_run(folder: Path, predictions: list[dict], decode_seconds: float) -> Path:
    """A run folder as `selfens test` leaves it: results.json and predictions.jsonl."""
    folder.mkdir(parents=True)
    cost = {"decode_seconds": decode_seconds, "confidence_seconds": 0.0}
    results = {"cost": cost, "wall_time_s": 2 * decode_seconds, "num_examples": len(predictions)}
    results["metrics"] = {"test/em": sum(p["prediction"] == "Paris" for p in predictions) / len(predictions)}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    return folder


def test_demo_comparison(tmp_path, monkeypatch, capsys):
    """bench_demo on prepared runs: baseline then new per method, decode seconds summed from
    results.json, the ratio; the same predictions pass, a different per-paraphrase answer or a
    missing fact fails with exit 1, naming them; the page's demo section holds the JSON's figures."""
    demo, docs = script("bench_demo"), script("write_docs")
    same = [{"id": "a", "prediction": "Paris", "per_paraphrase": ["Paris", "Rome"]}, {"id": "b", "prediction": "x"}]
    runs = {}

    def prepared(tree, method, save_dir, name):
        runs[name] = tree
        changed = name == "new-avg"
        predictions = [{**same[0], "per_paraphrase": ["Paris", "Roma"]}] if changed else same
        return fake_run(save_dir / name, predictions, {"baseline": 4.0, "new": 2.0}[name.split("-")[0]])

    monkeypatch.setattr(demo, "run_demo_config", prepared)
    out = tmp_path / "demo.json"
    demo.main(["--baseline", str(ROOT), "--methods", "origin", "per_prompt", "--out", str(out)])
    assert list(runs) == ["baseline-origin", "new-origin", "baseline-per_prompt", "new-per_prompt"]
    data = json.loads(out.read_text())
    assert [r["ratio"] for r in data["rows"]] == [0.5, 0.5] and data["total"]["ratio"] == 0.5
    assert all(r["identical"] for r in data["rows"]) and "total" in capsys.readouterr().out
    section = docs.render(quick_main(), "main.json", demo=(data, "demo.json"))
    section = section[section.index("## The demo against a baseline") :]
    table = markdown_table(section, "method")
    assert [c["method"] for c in table] == ["origin", "per_prompt", "total"]
    for cells, row in zip(table, data["rows"]):
        assert_shown(cells["baseline decode s"], row["baseline"]["decode_s"], row)
        assert_shown(cells["new / baseline"], row["ratio"], row)
    assert "are the same on both sides" in section

    with pytest.raises(SystemExit) as exit_:
        demo.main(["--baseline", str(ROOT), "--methods", "avg"])
    assert exit_.value.code == 1
    assert "a: baseline" in capsys.readouterr().err
    assert demo.differences({"a": "1", "b": "2"}, {"a": "1"}) == ["b: only in the baseline run"]


def test_lm_eval_section_shows_the_json():
    """The page's lm-eval section: each paired run's seconds and ratio, the median, the answers."""
    docs = script("write_docs")
    runs = [
        {
            "run": i + 1,
            "order": order,
            "load_1min_before": 0.5,
            "selfens_s": ours,
            "lm_eval_s": theirs,
            "ratio": round(ours / theirs, 3),
        }
        | {"identical": 100, "facts": 100}
        for i, (order, ours, theirs) in enumerate(
            [(["selfens", "lm_eval"], 18.35, 28.3), (["lm_eval", "selfens"], 17.6, 27.8)]
        )
    ]
    data = {"date": "d", "config": "configs/pararel/origin.yaml", "facts": 100, "model_folder": "m", "dtype": "float32"}
    data |= {"batch_size": 8, "max_new_tokens": 10, "runs": runs, "median_selfens_s": 17.98, "median_lm_eval_s": 28.05}
    data |= {"median_ratio": 0.641, "all_identical": True, "versions": {"lm_eval_env": {"lm_eval": "0.4.13"}}}
    page = docs.render(quick_main(), "main.json", vs_lm_eval=(data, "vs.json"))
    section = page[page.index("## Against lm-evaluation-harness") :]
    table = markdown_table(section, "run")
    assert [c["first"] for c in table] == ["selfens", "lm_eval"]
    for cells, run in zip(table, runs):
        assert_shown(cells["selfens s"], run["selfens_s"], run)
        assert_shown(cells["lm-eval s"], run["lm_eval_s"], run)
        assert_shown(cells["selfens / lm-eval"], run["ratio"], run)
    assert "ratio 0.64" in section and "identical on every fact in every run" in section and "`vs.json`" in section


def test_confidence_comparison(tmp_path, monkeypatch, capsys):
    """bench_confidence on prepared runs: paired runs in alternating order, ratios of the whole
    command and of confidence_seconds, their medians; the same cached values pass, a different one
    fails with exit 1, naming it; the page's section holds the JSON's figures."""
    bench, docs = script("bench_confidence"), script("write_docs")
    order, values = [], {"k1": 0.5, "k2": 1.0}
    seconds = {"baseline": (20.0, 12.0), "new": (15.0, 4.0)}  # (wall, confidence)

    def prepared(tree, facts, folder):
        side = folder.name.split("-")[1]
        order.append(folder.name)
        run = int(folder.name.split("-")[0])
        wall, spent = seconds[side]
        figures = {"wall_s": wall + run, "confidence_s": spent, "prompts": 2, "forward_calls": 9, "decode_steps": 3}
        changed = side == "new" and facts == 99
        return {"figures": figures, "values": {**values, "k2": 0.95} if changed else values}

    monkeypatch.setattr(bench, "run_confidence", prepared)
    out = tmp_path / "confidence.json"
    bench.main(["--baseline", str(ROOT), "--runs", "3", "--out", str(out)])
    assert order == ["1-baseline", "1-new", "2-new", "2-baseline", "3-baseline", "3-new"]
    data = json.loads(out.read_text())
    assert [r["confidence_ratio"] for r in data["rows"]] == [4 / 12] * 3 and all(r["identical"] for r in data["rows"])
    assert data["median"]["wall_ratio"] == 17 / 22 and data["median"]["baseline_wall_s"] == 22.0
    assert "ratio 0.33" in capsys.readouterr().out
    page = docs.render(quick_main(), "main.json", confidence=(data, "c.json"))
    section = page[page.index("## `selfens confidence` against a baseline") :]
    table = markdown_table(section, "run")
    assert [c["first"] for c in table] == ["baseline", "new", "baseline"]
    for cells, row in zip(table, data["rows"]):
        assert_shown(cells["baseline s"], row["baseline"]["wall_s"], row)
        assert_shown(cells["new / baseline (confidence)"], row["confidence_ratio"], row)
    assert "the same on both sides for every prompt in every run" in section and "`c.json`" in section

    with pytest.raises(SystemExit) as exit_:
        bench.main(["--baseline", str(ROOT), "--runs", "1", "--facts", "99"])
    assert exit_.value.code == 1
    assert "k2: baseline 1.0 / new 0.95" in capsys.readouterr().err
