"""More expected failures and start-up messages (issue 20): data files that are not UTF-8, a byte
order mark, repeated ids, impossible settings, a refused resume, the folders a failed run leaves, and
what a run prints (or no longer prints) as it starts."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from selfens.data.records import BOM, DataError, read_json_array, read_jsonl
from selfens.errors import ConfigError
from tests.helpers import JSONL_QUESTIONS, ORIGIN, ROOT, jsonl_args, own_data, selfens_fails

# -- data files ----------------------------------------------------------------------------------------


def test_jsonl_that_is_not_utf8_names_line_and_column(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"id": "a"}\n\n{"id": "caf\xe9"}\n')
    with pytest.raises(DataError, match=rf"^{path}:3: not UTF-8 \(byte 0xe9 at column 12\).*save the file as UTF-8"):
        list(read_jsonl(path))


def test_json_array_that_is_not_utf8_names_line_and_column(tmp_path):
    """The column counts characters, as an editor does: "é" before the bad byte is one."""
    path = tmp_path / "test.json"
    path.write_bytes('[\n {"a": "é"},\n {"a": "é'.encode() + b'\xe9"}\n]\n')
    with pytest.raises(DataError, match=rf"^{path}:3: not UTF-8 \(byte 0xe9 at column 10\)"):
        read_json_array(path)


def test_a_byte_order_mark_is_no_error_and_columns_count_after_it(tmp_path):
    """Notepad's BOM made every error "column 1" (json's "Unexpected UTF-8 BOM"), wherever it was."""
    good = {"id": "a", "paraphrases": ["x" * 150], "answers": ["Japan"]}
    line = json.dumps({**good, "n": 1}).replace('"n": 1', '"n": nope')
    column = line.index("nope") + 1
    assert column > 200
    path = tmp_path / "q.jsonl"
    path.write_bytes(BOM + (json.dumps(good) + "\n" + line + "\n").encode())
    with pytest.raises(DataError, match=rf"^{path}:2: malformed JSON \(Expecting value, column {column}\)"):
        list(read_jsonl(path))
    path.write_bytes(BOM + (line + "\n").encode())
    with pytest.raises(DataError, match=rf"^{path}:1: malformed JSON \(Expecting value, column {column}\)"):
        list(read_jsonl(path))
    path.write_bytes(BOM + (json.dumps(good) + "\n").encode())
    assert [item for _, item in read_jsonl(path)] == [good]
    array = tmp_path / "test.json"
    array.write_bytes(BOM + ("[\n" + line + "\n]").encode())
    with pytest.raises(DataError, match=rf"^{array}:2: malformed JSON \(Expecting value, column {column}\)"):
        read_json_array(array)


def test_a_carriage_return_does_not_cut_a_line(tmp_path):
    """Lines end at "\\n" only (as in the run files): a lone "\\r", which JSON reads as a space, cut the
    line in two, and the error said "column 1"."""
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"id": "a",\r "answers": ["x"]}\n{"id": "b"}\n')
    assert [(n, item["id"]) for n, item in read_jsonl(path)] == [(1, "a"), (2, "b")]


MYRIADLAMA = ROOT / "tests" / "fixtures" / "myriadlama" / "facts.jsonl"


@pytest.mark.parametrize(
    "fault, expected",
    [
        ((b"France", b"Fr\xe9nce"), r":3: not UTF-8 \(byte 0xe9 at column \d+\)"),  # Arrow let it through
        ((b'"is_manual": false', b'"is_manual": fals'), r":3: malformed JSON \(Expecting value, column \d+\)"),
    ],
    ids=["not-utf8", "malformed"],
)
def test_myriadlama_json_faults_name_file_line_and_column(tmp_path, monkeypatch, fault, expected):
    import datasets

    from selfens.data.myriadlama_io import read_dataset

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    lines = MYRIADLAMA.read_bytes().split(b"\n")[:5]
    assert fault[0] in lines[2]
    lines[2] = lines[2].replace(*fault)
    path = tmp_path / "facts.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=rf"^MyriadLAMA data {path}: cannot be read: {path}{expected}"):
        read_dataset(str(path), "train")


def test_repeated_ids_name_the_file_and_lines(tmp_path):
    from selfens.data import JsonlQuestions
    from selfens.data.base import check_unique_ids

    lines = [{**JSONL_QUESTIONS[k % 2], "id": f"q{k}"} for k in range(5)] + [{**JSONL_QUESTIONS[0], "id": "q0"}]
    path = own_data(tmp_path, lines)
    records = JsonlQuestions(str(path)).load_records()
    with pytest.raises(DataError, match=rf"example id 'q0' is used twice \({path}:1 and {path}:6\); ids must be"):
        check_unique_ids(records, "JsonlQuestions")


# -- settings ------------------------------------------------------------------------------------------


def test_batch_size_zero_is_refused_at_once():
    from selfens.data import ParaRel

    with pytest.raises(ConfigError, match=r"batch_size must be at least 1 \(examples per batch\), got 0"):
        ParaRel(batch_size=0)


def test_too_many_paraphrases_for_pararel_says_the_largest_n(caplog):
    from selfens.data import ParaRel

    caplog.set_level(logging.INFO)
    with pytest.raises(DataError) as error:
        ParaRel(num_paraphrases=50, fill_style="mask").load_records()
    message = str(error.value)
    assert "has num_paraphrases=50 templates usable with fill_style 'mask'" in message
    assert (
        "lower num_paraphrases to at most 20" in message
        and "(usable templates per relation: P138 20, P407 18," in message
    )
    assert "\n" not in message
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "the error is the one line"
    with pytest.raises(DataError, match=r"at most 13 \(usable templates per relation: P19 13, P20 8\)"):
        ParaRel(num_paraphrases=14, fill_style="mask", relations=["P19", "P20"]).load_records()


# -- resume --------------------------------------------------------------------------------------------


def interrupted_run(folder: Path, tokenizer, model: str, **data_args) -> Path:
    """A run folder as an interrupted origin run on ParaRel leaves it: identity.json and the rows of
    every example (their predictions made up)."""
    from selfens.data import ParaRel
    from selfens.run.identity import RunIdentity

    data = ParaRel(**data_args)
    data.connect(tokenizer, model)
    data.setup("test")
    module = SimpleNamespace(evaluation_identity=lambda: {"model": model}, method_identity=lambda: {"method": "origin"})
    folder.mkdir(parents=True)
    RunIdentity.of(module, data).write(folder)
    rows = [{"index": e.index, "id": e.id, "prediction": "x", "answers": e.answers} for e in data.examples]
    (folder / "predictions.rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_resuming_with_another_num_paraphrases_is_refused_before_the_run(tiny, tiny_model_path, tmp_path, capsys):
    """Refused as soon as the data is set up: the message names N, and no folder is made. (It had
    all its examples, so this was "nothing to resume" before.)"""
    old = interrupted_run(tmp_path / "old", tiny[1], tiny_model_path, num_paraphrases=5, limit=3, fill_style="mask")
    save_dir = tmp_path / "logs"
    message = selfens_fails(
        capsys,
        "test",
        "--config",
        ORIGIN,
        "--model.init_args.model",
        tiny_model_path,
        "--data.init_args.limit",
        3,
        "--data.init_args.num_paraphrases",
        3,
        "--data.init_args.fill_style",
        "mask",
        "--resume",
        old,
        "--trainer.logger.init_args.save_dir",
        save_dir,
    )
    assert f"cannot resume from {old}: it is another run (" in message and "N: 5 vs 3" in message
    assert not save_dir.exists(), sorted(save_dir.rglob("*"))


def test_a_resumed_run_says_so_at_the_start(tmp_path, capsys):
    from selfens.run.identity import RunIdentity
    from selfens.run.resume import Resume
    from selfens.run.writer import RunWriter

    data = SimpleNamespace(
        evaluation_identity=lambda: {"dataset": "D"}, method_identity=lambda: {"N": 5}, examples=list(range(40))
    )
    module = SimpleNamespace(
        evaluation_identity=lambda: {"model": "m"},
        method_identity=lambda: {"method": "origin"},
        score_resumed=lambda stage: None,
    )
    old = tmp_path / "old"
    old.mkdir()
    RunIdentity.of(module, data).write(old)
    rows = [{"index": i, "id": f"q{i}", "prediction": "x", "answers": ["y"]} for i in range(12)]
    (old / "predictions.rank0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trainer = SimpleNamespace(log_dir=str(tmp_path / "new"), global_rank=0, is_global_zero=True, world_size=1)
    capsys.readouterr()
    RunWriter(data, Resume.load(old)).on_test_start(trainer, module)
    assert capsys.readouterr().out.splitlines() == [
        f"selfens: resuming {old}: 12 of 40 examples done; this run's folder {tmp_path / 'new'} will hold all 40 "
        f"(the folder resumed from stays as it is)"
    ]
    trainer.is_global_zero, trainer.global_rank = False, 1
    RunWriter(data, Resume.load(old)).on_test_start(trainer, module)
    assert capsys.readouterr().out == "", "rank 0 alone says it"


# -- folders of a failed run ---------------------------------------------------------------------------


def test_a_failed_run_removes_the_folders_it_created(tiny_model_path, tmp_path, capsys):
    """Data that is not UTF-8 fails once the run has made its folders: one line, and no
    lightning_logs/<name>/ (nor the save_dir it made) left behind."""
    path = own_data(tmp_path, [JSONL_QUESTIONS[0]])
    line = '{"id": "b", "paraphrases": ["é"], "answers": ["x"]}'
    path.write_bytes(path.read_bytes() + line.encode("latin-1") + b"\n")
    save_dir = tmp_path / "logs"
    save_dir.mkdir()
    (save_dir / "own.yaml").touch()  # jsonl_args writes its config there: save_dir is not the run's
    args = jsonl_args(path, tiny_model_path, save_dir)
    message = selfens_fails(capsys, *args)
    assert message.startswith(f"selfens: error: {path}:2: not UTF-8 (byte 0xe9 at column {line.index('é') + 1})")
    assert sorted(p.name for p in save_dir.iterdir()) == ["own.yaml"], "the name folder is removed, save_dir kept"


def test_on_exception_removes_only_the_empty_folders_it_created(tmp_path):
    from selfens.run.writer import RunWriter, new_folders

    kept = tmp_path / "kept"  # existed before the run, empty: not the run's to remove
    kept.mkdir()
    version = kept / "logs" / "name" / "version_0-origin"
    created = new_folders(version)
    assert created == [version, version.parent, version.parent.parent]
    version.mkdir(parents=True)
    (version / "config.yaml").write_text("")
    trainer = SimpleNamespace(is_global_zero=True, logger=SimpleNamespace(log_dir=str(version)))
    RunWriter(None, None, created).on_exception(trainer, None, RuntimeError())
    assert kept.is_dir() and not any(kept.iterdir())
    # Another run's folder beside it: the name folder is not empty, and stays.
    version.mkdir(parents=True)
    (version.parent / "version_1-avg").mkdir()
    RunWriter(None, None, created).on_exception(trainer, None, RuntimeError())
    assert sorted(p.name for p in version.parent.iterdir()) == ["version_1-avg"]


# -- what a run prints as it starts --------------------------------------------------------------------


@pytest.fixture(scope="module")
def started(tiny_model_path, tmp_path_factory):
    """A run built (not run) as `selfens mask` builds one from a command line, with one more CPU
    process than there are cores: what it warned, logged and printed."""
    from lightning_utilities.core import rank_zero

    from selfens.cli.lightning import build, cpu_cores

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    rank_zero.log.addHandler(handler)
    level = rank_zero.log.level
    rank_zero.log.setLevel(logging.INFO)
    saved_argv, saved_env, stderr = sys.argv, dict(os.environ), io.StringIO()
    sys.argv = ["selfens", "mask", "--config", str(ORIGIN)]
    devices = cpu_cores() + 1
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
            warnings.simplefilter("always")
            build(
                [
                    "--config",
                    str(ORIGIN),
                    "--model.init_args.model",
                    tiny_model_path,
                    "--trainer.devices",
                    str(devices),
                    "--trainer.logger.init_args.save_dir",
                    str(tmp_path_factory.mktemp("started")),
                ],
                run=False,
            )
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        rank_zero.log.removeHandler(handler)
        rank_zero.log.setLevel(level)
    logged = [r.getMessage() for r in records]
    return {
        "warnings": [str(w.message) for w in caught],
        "logged": logged,
        "stderr": stderr.getvalue(),
        "devices": devices,
    }


def test_commands_that_hand_in_their_arguments_get_no_lightning_warning(started):
    assert not [w for w in started["warnings"] if "args parameter is intended" in w], started["warnings"]


def test_no_litlogger_advert_and_no_banner(started):
    assert not [m for m in started["logged"] if "litlogger" in m or "litmodels" in m], started["logged"]
    assert not [m for m in started["logged"] if m.startswith(("GPU available: False", "TPU available: False"))]


@pytest.mark.parametrize(
    "message, shown",
    [
        ("Seed set to 0", False),
        ("[rank: 1] Seed set to 0", False),
        ("GPU available: False, used: False", False),
        ("TPU available: False, using: 0 TPU cores", False),
        ("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]", False),
        ("GPU available: True (cuda), used: True", True),  # where a GPU is, the line says so
        ("💡 Tip: another tip", True),
        ("`Trainer.fit` stopped: `max_epochs=1` reached.", True),
    ],
)
def test_the_banner_filter_passes_every_other_message(message, shown):
    import logging

    from selfens.cli.lightning import _not_banner

    assert _not_banner(logging.LogRecord("lightning", logging.INFO, __file__, 1, message, None, None)) == shown


def test_more_cpu_processes_than_cores_warn_in_one_line(started):
    from selfens.cli.lightning import cpu_cores

    devices, cores = started["devices"], cpu_cores()
    lines = [line for line in started["stderr"].splitlines() if line.startswith("selfens: warning:")]
    assert lines == [
        f"selfens: warning: trainer.devices {devices} runs {devices} CPU processes, but this machine has {cores} CPU "
        f"core(s) for them: they share the cores and the run is slower, not faster; use devices: {cores} or fewer"
    ]


def test_cores_are_checked_on_cpu_only():
    from lightning.pytorch.accelerators import CPUAccelerator

    from selfens.cli.lightning import cpu_oversubscribed

    assert cpu_oversubscribed(CPUAccelerator(), 2, 2) is None
    assert cpu_oversubscribed(CPUAccelerator(), 3, 2).startswith("trainer.devices 3 runs 3 CPU processes")
    assert cpu_oversubscribed(SimpleNamespace(), 8, 2) is None  # e.g. a GPU's
