"""The benchmark scripts: `bench_methods.py --quick` end to end on the tiny model (no timing
assertions), alone and at scale against a baseline tree (this one); the A/B harness (`ab.py`) and
`bench_demo.py` / `bench_confidence.py` on prepared runs; the docs renderer (`write_docs.py`) on
the recorded JSONs: docs/benchmarks.md is up to date, its tables hold the JSONs' figures, and its
hand-written words quote only figures from them. The GPU check's tests are in test_gpu_check.py."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts import their siblings (ab, write_docs)


def script(name: str):
    """benchmarks/<name>.py, imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


docs, ab = script("write_docs"), script("ab")


# -- reading the rendered tables back ----------------------------------------------------------------
def markdown_table(text: str, first_title: str) -> list[dict]:
    """The rows of the first markdown table whose header starts with `first_title`, as {title: cell}."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_title} |"))
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    titles, rows = split(lines[start]), []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(titles, split(line))))
    return rows


def assert_shown(shown: str, value: float, where) -> None:
    """A figure as the page shows it is `value`, to within half its last digit."""
    shown = shown.replace(",", "")
    decimals = len(shown.partition(".")[2])
    assert abs(float(shown) - value) <= 0.5 * 10**-decimals + 1e-9, (shown, value, where)


# The methods table's numeric columns: title -> (JSON key, scale to the unit shown).
METHOD_COLUMNS = {
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
SCALE_COLUMNS = {
    **{t: c for t, c in METHOD_COLUMNS.items() if t != "floor"},
    "batch": ("batch_size", 1),
    "facts/s": ("facts_per_s", 1),
    "rows/step": ("rows_per_step", 1),
    "baseline wall s": ("baseline_wall_s", 1),
    "new / baseline": ("vs_baseline", 1),
}


def assert_table_from(text: str, rows: list[dict], columns: dict = METHOD_COLUMNS) -> None:
    """Every number of the text's first methods table is the JSON's, row for row, rounded as shown."""
    table = markdown_table(text, "N")[: len(rows)]
    assert len(table) == len(rows)
    for cells, row in zip(table, rows):
        assert cells["method"] == row["method"]
        for title, (key, scale) in columns.items():
            assert_shown(cells[title], row[key] * scale, (title, row))


def assert_reuse_and_seed_tables(text: str, rows: list[dict]) -> None:
    """The reuse table is each method's wall time off / on; the seed table's gains are the wall times'."""
    get = lambda n, m, reuse: next(r for r in rows if (r["n"], r["method"], r["reuse_prefix"]) == (n, m, reuse))
    section = text[text.index("### Prefix reuse") :]
    for cells in markdown_table(section, "method"):
        for title, shown in cells.items():
            if title != "method":
                n = int(title.removeprefix("N = "))
                assert_shown(
                    shown, get(n, cells["method"], False)["wall_s"] / get(n, cells["method"], True)["wall_s"], title
                )
    seeds = markdown_table(text[text.index("### The seed's") :], "row")
    n = next(r["n"] for r in rows if r["method"] in docs.SEEDS)
    steps = [*(r for r in rows if r["method"] in docs.SEEDS), get(n, "avg", False), get(n, "avg", True)]
    assert [c["row"].rpartition(", reuse")[0] for c in seeds] == [r["method"] for r in steps]
    for k, (cells, row) in enumerate(zip(seeds, steps)):
        assert_shown(cells["gain over the first row"], steps[0]["wall_s"] / row["wall_s"], k)
        if k:
            assert_shown(cells["gain over the row above"], steps[k - 1]["wall_s"] / row["wall_s"], k)


# -- bench_methods.py end to end -------------------------------------------------------------------
@pytest.mark.slow
def test_quick_benchmark(tmp_path, capsys):
    bench = script("bench_methods")
    out = tmp_path / "bench.json"
    bench.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    rows = data["rows"]
    seeds = (bench.SEED_AS_WRITTEN, bench.SEED_SAME_STOP)
    expected = {(n, m, r) for n in (1, 2) for m in bench.METHODS for r in (True, False)} | {
        (2, s, False) for s in seeds
    }
    assert {(r["n"], r["method"], r["reuse_prefix"]) for r in rows} == expected
    assert data["meta"]["complete"] and data["meta"]["package"] == str(ROOT / "selfens")
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
    # The renderer's tables hold the JSON's figures, row for row.
    text = docs.methods(data)
    assert_table_from(text, rows)
    assert_reuse_and_seed_tables(text, rows)


@pytest.mark.slow
def test_quick_at_scale_against_a_baseline(tmp_path):
    """--facts on the tiny model, with this very tree as the baseline: every row's answers and EM are
    the baseline's, each side ran its own processes with the package PYTHONPATH names, and the
    rendered scale table holds the JSON's figures."""
    bench = script("bench_methods")
    out = tmp_path / "scale.json"
    bench.main(["--quick", "--facts", "8", "--methods", "origin", "avg", "--baseline", str(ROOT), "--out", str(out)])
    data = json.loads(out.read_text())
    meta, rows = data["meta"], data["rows"]
    assert {(r["n"], r["method"], r["reuse_prefix"]) for r in rows} == {(5, "origin", True), (5, "avg", True)}
    assert meta["data"]["5"]["facts"] == meta["data"]["5"]["asked"] == 8 == rows[0]["examples"]
    assert meta["data"]["5"]["relations_used"] > 1  # sampled over relations, not the first one's facts
    assert meta["complete"] and meta["differences"] == []
    assert meta["new"]["package"] == meta["baseline"]["package"] == str(ROOT / "selfens")
    assert meta["new"]["path"] == meta["baseline"]["path"] == str(ROOT) and "commit" in meta["new"]
    for row in rows:
        base = next(r for r in meta["baseline"]["rows"] if r["method"] == row["method"])
        assert row["same_answers"] and row["answers_sha256"] == base["answers_sha256"] and row["em"] == base["em"]
        assert row["vs_baseline"] == row["wall_s"] / base["wall_s"]
    text = docs.scale(data)
    assert_table_from(text, rows, SCALE_COLUMNS)
    total = markdown_table(text, "N")[-1]
    assert total["method"] == "all" and total["same answers"] == "yes"
    assert_shown(
        total["new / baseline"], sum(r["wall_s"] for r in rows) / sum(r["baseline_wall_s"] for r in rows), total
    )


def test_a_differing_answer_against_the_baseline_is_named():
    """bench_methods' comparison with the baseline's rows: the same answers pass, another one is named."""
    bench = script("bench_methods")
    row = lambda wall: {"n": 5, "method": "avg", "reuse_prefix": True, "wall_s": wall, "em": 0.5}
    rows, base = [row(2.0)], [row(4.0)]
    answers = {"5|avg|on": {"a": ["Paris", None], "b": ["x", None]}}
    assert bench.compare(rows, base, answers, answers) == []
    assert rows[0]["same_answers"] and rows[0]["vs_baseline"] == 0.5 and rows[0]["baseline_wall_s"] == 4.0
    changed = {"5|avg|on": {"a": ["Rome", None], "b": ["x", None]}}
    found = bench.compare(rows, base, changed, answers)
    assert found == ["5|avg|on: a: baseline ['Paris', None] / new ['Rome', None]"]
    assert not rows[0]["same_answers"] and rows[0]["answers_differ"] == 1
    assert bench.compare([{**row(1.0), "n": 2}], base, {}, {}) == ["2|avg|on: not run by the baseline"]


# -- the A/B harness -------------------------------------------------------------------------------
def test_ab_compares_and_runs_with_the_tree_on_pythonpath(tmp_path):
    assert ab.differences({"a": 1, "b": 2}, {"a": 1, "c": 3}) == [
        "b: only in the baseline run",
        "c: only in the new run",
    ]
    row = ab.compared({"s": 4.0}, {"s": 1.0}, {"k": 1}, {"k": 2}, {"ratio": "s"})
    assert row["ratio"] == 0.25 and not row["identical"] and row["differences"] == ["k: baseline 1 / new 2"]
    rows = [{"baseline": {"s": b}, "new": {"s": n}, "r": n / b} for b, n in ((4.0, 2.0), (2.0, 2.0), (8.0, 2.0))]
    assert ab.medians(rows, ["s"], ["r"]) == {"baseline_s": 4.0, "new_s": 2.0, "r": 0.5}
    printer = [sys.executable, "-c", "import os; print(os.environ['PYTHONPATH'].split(os.pathsep)[0])"]
    assert ab.run(tmp_path, printer, tmp_path / "out.log") > 0
    assert (tmp_path / "out.log").read_text().strip() == str(tmp_path)
    with pytest.raises(SystemExit, match="exited 3; its output ends:\nboom"):
        ab.run(tmp_path, [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], tmp_path / "fail.log")
    with pytest.raises(SystemExit, match="no selfens"):
        ab.check_tree(tmp_path)
    meta = ab.Sitting("x.py", ["--a"], {"baseline": ROOT, "new": ROOT}).meta(new={"package": "p"}, facts=3)
    assert meta["command"] == "python benchmarks/x.py --a" and meta["facts"] == 3 and len(meta["load_average"]) == 2
    assert meta["new"]["package"] == "p" and meta["baseline"]["path"] == str(ROOT) and "commit" in meta["baseline"]


def fake_run(folder: Path, predictions: list[dict], decode_seconds: float) -> Path:
    """A run folder as `selfens test` leaves it: results.json and predictions.jsonl."""
    folder.mkdir(parents=True)
    results = {"cost": {"decode_seconds": decode_seconds, "confidence_seconds": 0.0}, "num_examples": len(predictions)}
    results |= {"wall_time_s": 2 * decode_seconds, "batch_size": 8}
    results["metrics"] = {"test/em": sum(p["prediction"] == "Paris" for p in predictions) / len(predictions)}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in predictions))
    return folder


def test_demo_comparison(tmp_path, monkeypatch, capsys):
    """bench_demo on prepared runs: baseline then new per method, decode seconds from results.json,
    the ratio; the same predictions pass, a different per-paraphrase answer fails with exit 1, naming
    it; the rendered table holds the JSON's figures."""
    demo = script("bench_demo")
    same = [{"id": "a", "prediction": "Paris", "per_paraphrase": ["Paris", "Rome"]}, {"id": "b", "prediction": "x"}]
    runs = {}

    def prepared(tree, method, save_dir, name):
        runs[name] = tree
        predictions = [{**same[0], "per_paraphrase": ["Paris", "Roma"]}] + same[1:] if name == "new-avg" else same
        return fake_run(save_dir / name, predictions, {"baseline": 4.0, "new": 2.0}[name.split("-")[0]])

    monkeypatch.setattr(demo, "run_demo_config", prepared)
    out = tmp_path / "demo.json"
    demo.main(["--baseline", str(ROOT), "--methods", "origin", "per_prompt", "--out", str(out)])
    assert list(runs) == ["baseline-origin", "new-origin", "baseline-per_prompt", "new-per_prompt"]
    data = json.loads(out.read_text())
    assert [r["ratio"] for r in data["rows"]] == [0.5, 0.5] and data["total"]["ratio"] == 0.5
    assert all(r["identical"] for r in data["rows"]) and "| all | – |" in capsys.readouterr().out
    assert data["meta"]["configs"] == ["configs/pararel/origin.yaml", "configs/pararel/per_prompt.yaml"]
    table = markdown_table(docs.demo(data), "method")
    assert [c["method"] for c in table] == ["origin", "per_prompt", "all"]
    for cells, row in zip(table, data["rows"]):
        assert_shown(cells["baseline decode s"], row["baseline"]["decode_s"], row)
        assert_shown(cells["new / baseline"], row["ratio"], row)
        assert cells["same predictions"] == "yes" and cells["new batch"] == "8"
    assert_shown(table[-1]["new / baseline"], 0.5, "total")

    with pytest.raises(SystemExit) as exit_:
        demo.main(["--baseline", str(ROOT), "--methods", "avg"])
    assert exit_.value.code == 1
    assert 'avg: a: baseline {"prediction": "Paris", "per_paraphrase": ["Paris", "Rome"]}' in capsys.readouterr().err


def test_confidence_comparison(tmp_path, monkeypatch, capsys):
    """bench_confidence on prepared runs: paired runs in alternating order, ratios of the whole
    command and of confidence_seconds, their medians; the same cached values pass, a different one
    fails with exit 1, naming it; the rendered table holds the JSON's figures."""
    bench = script("bench_confidence")
    order, values = [], {"k1": 0.5, "k2": 1.0}
    seconds = {"baseline": (20.0, 12.0), "new": (15.0, 4.0)}  # (wall, confidence)

    def prepared(tree, facts, folder):
        run, side = folder.name.split("-")
        order.append(folder.name)
        wall, spent = seconds[side]
        figures = {
            "wall_s": wall + int(run),
            "confidence_s": spent,
            "prompts": 2,
            "forward_calls": 9,
            "decode_steps": 3,
        }
        return {"figures": figures, "values": {**values, "k2": 0.95} if side == "new" and facts == 99 else values}

    monkeypatch.setattr(bench, "run_confidence", prepared)
    out = tmp_path / "confidence.json"
    bench.main(["--baseline", str(ROOT), "--runs", "3", "--out", str(out)])
    assert order == ["1-baseline", "1-new", "2-new", "2-baseline", "3-baseline", "3-new"]
    data = json.loads(out.read_text())
    assert [r["confidence_ratio"] for r in data["rows"]] == [4 / 12] * 3 and all(r["identical"] for r in data["rows"])
    assert data["median"]["wall_ratio"] == 17 / 22 and data["median"]["baseline_wall_s"] == 22.0
    assert "confidence_seconds 0.33" in capsys.readouterr().out
    table = markdown_table(docs.confidence(data), "run")
    assert [c["first"] for c in table] == ["baseline", "new", "baseline", "–"]
    for cells, row in zip(table, data["rows"]):
        assert_shown(cells["baseline s"], row["baseline"]["wall_s"], row)
        assert_shown(cells["new / baseline (confidence)"], row["confidence_ratio"], row)
    assert table[-1]["run"] == "median" and table[-1]["baseline s"] == "22.0"

    with pytest.raises(SystemExit) as exit_:
        bench.main(["--baseline", str(ROOT), "--runs", "1", "--facts", "99"])
    assert exit_.value.code == 1
    assert "k2: baseline 1.0 / new 0.95" in capsys.readouterr().err


def test_lm_eval_pairs_on_prepared_runs(tmp_path, monkeypatch):
    """vs_lm_eval's paired runs with both commands faked: the order alternates, lm-eval's answers are
    cut as selfens cuts its own, an answer cut at a leading stop string is named as such, a context
    that is not the prompt fails; the rendered table holds each run's figures and the medians."""
    vs = script("vs_lm_eval")
    facts = [vs.Fact("a", "Paris is in", ["France"]), vs.Fact("b", "Rome is in", ["Italy"])]
    setup = vs.Setup(facts, "model", "float32", max_new_tokens=4, stop_strings=["\n"], batch_size=8)
    lm_eval_says = {"a": " France\nmore", "b": " Italy"}
    started, contexts = [], {}

    def fake(command, log):
        side = "lm_eval" if command[0].endswith("lm_eval") else "selfens"
        started.append(side)
        if side == "selfens":
            out = Path(command[command.index("--trainer.logger.init_args.save_dir") + 1]) / "v0"
            out.mkdir(parents=True)
            (out / "predictions.jsonl").write_text(
                "".join(json.dumps({"id": i, "prediction": p}) + "\n" for i, p in (("a", "France"), ("b", "Italy")))
            )
            return vs.Timed(1.0, 2.0)
        out = Path(command[command.index("--output_path") + 1]) / "m"
        out.mkdir(parents=True)
        samples = [
            {
                "doc": {"id": f.id},
                "arguments": {"gen_args_0": {"arg_0": contexts.get(f.id, f.prompt)}},
                "filtered_resps": [lm_eval_says[f.id]],
            }
            for f in facts
        ]
        (out / f"samples_{vs.TASK}_x.jsonl").write_text("".join(json.dumps(x) + "\n" for x in samples))
        return vs.Timed(4.0, 5.0)

    monkeypatch.setattr(vs, "timed", fake)
    task = vs.write_task(setup, tmp_path)
    assert json.loads((task / f"{vs.TASK}.yaml").read_text())["generation_kwargs"]["until"] == ["\n"]
    rows = [vs.run_pair(k, tmp_path / "c.yaml", setup, Path("lm_eval"), tmp_path) for k in range(2)]
    assert started == ["selfens", "lm_eval", "lm_eval", "selfens"]
    assert [(r["ratio"], r["identical"], r["differences"]) for r in rows] == [(0.25, 2, []), (0.25, 2, [])]
    found = vs.differences(setup, {"a": "France", "b": "Italy"}, {"a": "", "b": "Italy"})
    assert [d["id"] for d in found] == ["a"] and "stop string" in found[0]["likely_cause"]
    contexts["b"] = "Rome lies in"
    with pytest.raises(SystemExit, match="lm-eval's context is not the prompt"):
        vs.run_pair(2, tmp_path / "c.yaml", setup, Path("lm_eval"), tmp_path)
    data = {"runs": rows, "facts": 2, **vs.summary(rows)}
    table = markdown_table(docs.lm_eval(data), "run")
    assert [(c["run"], c["first"], c["selfens / lm-eval"], c["identical answers"]) for c in table] == [
        ("1", "selfens", "0.25", "2 of 2"),
        ("2", "lm_eval", "0.25", "2 of 2"),
        ("median", "–", "0.25", "–"),
    ]


# -- the docs page -----------------------------------------------------------------------------------
def test_the_page_is_up_to_date(tmp_path, capsys):
    """docs/benchmarks.md's generated block is what the renderer makes of the recorded JSONs
    (else: python benchmarks/write_docs.py); --check fails on a stale copy and rewriting mends it."""
    text = docs.PAGE.read_text()
    assert docs.block(text) == docs.render()
    docs.main(["--check"])
    stale = tmp_path / "page.md"
    stale.write_text(text.replace("| 1 | origin | on | 100 | 9.4 |", "| 1 | origin | on | 100 | 9.5 |"))
    with pytest.raises(SystemExit, match="out of date"):
        docs.main(["--page", str(stale), "--check"])
    docs.main(["--page", str(stale)])
    assert stale.read_text() == text


def test_the_page_shows_the_recorded_figures():
    """The methods section holds results_cpu.json's figures; every section names its JSON."""
    block = docs.block(docs.PAGE.read_text())
    for path, heading, _, _ in docs.SECTIONS:
        assert f"## {heading}" in block and f"- raw output: `{path}`" in block
    rows = json.loads((ROOT / docs.SECTIONS[0][0]).read_text())["rows"]
    section = block[block.index("## " + docs.SECTIONS[0][1]) :]
    assert_table_from(section, rows)
    assert_reuse_and_seed_tables(section, rows)


def test_the_words_quote_only_figures_from_the_tables():
    """Every number in the hand-written part of the page stands in the generated block."""
    text = docs.PAGE.read_text()
    block = docs.block(text)
    words = text.replace(block, "")
    number = r"(?<![\w.,\-+])\d+(?:,\d{3})*(?:\.\d+)?(?![\w]|[.,]\d)"
    shown = set(re.findall(number, block.replace("|", " | ")))
    quoted = re.findall(number, words)
    assert quoted and [n for n in quoted if n not in shown] == []
