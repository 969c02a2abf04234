"""An interrupted run resumes: finished examples are kept and counted, only the rest are decoded."""

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import logger_name, quiet, read_jsonl, run_folder, selfens, selfens_fails

PER_PROMPT = Path("configs/pararel/per_prompt.yaml")


def _args(tiny_model_path, root, *extra, config: Path = PER_PROMPT) -> list:
    return [
        "test",
        "--config",
        config,
        "--model.init_args.model",
        tiny_model_path,
        "--data.init_args.limit",
        6,
        "--data.init_args.batch_size",
        2,
        "--trainer.logger.init_args.save_dir",
        root,
        *quiet(),
        *extra,
    ]


def _run(tiny_model_path, root, *extra):
    selfens(*_args(tiny_model_path, root, *extra))


AVG = Path("configs/pararel/avg.yaml")


def _interrupted(tiny_model_path, root, config: Path, after: int, *extra) -> Path:
    """A run of `config` killed by an error after `after` batches: the folder it leaves behind."""
    from selfens.methods.base import EnsembleModule

    decode, calls = EnsembleModule._step, []

    def failing(module, batch, score_it):
        if len(calls) == after:
            raise RuntimeError("the machine went away")
        calls.append(1)
        return decode(module, batch, score_it)

    with pytest.MonkeyPatch.context() as mp, pytest.raises(RuntimeError, match="went away"):
        mp.setattr(EnsembleModule, "_step", failing)
        selfens(*_args(tiny_model_path, root / "crash", *extra, config=config))
    return sorted((root / "crash" / logger_name(config)).glob("version_*"))[-1]


def test_resumed_run_equals_uninterrupted_run(tiny_model_path, tmp_path):
    _run(tiny_model_path, tmp_path)
    full = run_folder(tmp_path / logger_name(PER_PROMPT))
    rows = read_jsonl(full / "predictions.jsonl")
    crashed = _interrupted(tiny_model_path, tmp_path, PER_PROMPT, after=2)  # of 3 batches
    assert (crashed / "identity.json").exists() and not (crashed / "results.json").exists()
    kept = len(read_jsonl(crashed / "predictions.rank0.jsonl"))
    assert 0 < kept < 6
    # A crash may also cut the line being written: that example is decoded again.
    with (crashed / "predictions.rank0.jsonl").open("a") as f:
        f.write('{"index": 4, "id": "P1')

    _run(tiny_model_path, tmp_path, "--resume", crashed)
    resumed = run_folder(tmp_path / logger_name(PER_PROMPT), 1)
    results = json.loads((resumed / "results.json").read_text())
    assert results["resumed_examples"] == kept and results["resumed_from"] == str(crashed)
    (said,) = results["warnings"]  # the cut line is not dropped in silence
    assert said.startswith(f"resuming from {crashed}: 1 unreadable line(s) skipped ({crashed}/predictions.rank0.jsonl:")
    assert results["num_examples"] == 6
    assert results["metrics"] == json.loads((full / "results.json").read_text())["metrics"]
    assert results["identity"] == json.loads((full / "results.json").read_text())["identity"]
    new_rows = read_jsonl(resumed / "predictions.jsonl")
    assert [r["id"] for r in new_rows] == [r["id"] for r in rows]
    assert [r["per_paraphrase"] for r in new_rows] == [r["per_paraphrase"] for r in rows]
    # Only the unfinished examples were decoded, and the interrupted run's cost is carried over.
    full_cost = json.loads((full / "results.json").read_text())["cost"]
    assert results["cost"]["prefill_tokens"] < full_cost["prefill_tokens"]
    assert results["total_cost"]["prefill_tokens"] == full_cost["prefill_tokens"]


def test_a_resumed_run_that_is_interrupted_resumes_again(tiny_model_path, tmp_path):
    """Each interrupted run carries the rows and the cost of the one it resumed: nothing is lost."""
    _run(tiny_model_path, tmp_path)
    full = json.loads((run_folder(tmp_path / logger_name(PER_PROMPT)) / "results.json").read_text())
    first = _interrupted(tiny_model_path, tmp_path, PER_PROMPT, 1)  # 2 of 6 examples (batches of 2)
    second = _interrupted(tiny_model_path, tmp_path, PER_PROMPT, 1, "--resume", first)
    assert len(read_jsonl(second / "predictions.rank0.jsonl")) == 4
    _run(tiny_model_path, tmp_path, "--resume", second)
    results = json.loads((run_folder(tmp_path / logger_name(PER_PROMPT), 1) / "results.json").read_text())
    assert results["metrics"] == full["metrics"] and results["resumed_examples"] == 4
    for name in ("prefill_tokens", "forward_calls", "decode_steps"):
        assert results["total_cost"][name] == full["cost"][name]


@pytest.fixture(scope="module")
def interrupted_avg(tiny_model_path, tmp_path_factory) -> Path:
    return _interrupted(tiny_model_path, tmp_path_factory.mktemp("avg"), AVG, after=1)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory) -> str:
    from tests.helpers import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("other_llama"), seed=1))


@pytest.mark.parametrize(
    "change, named",
    [
        (["--model.init_args.model", "OTHER"], ["model: ", "model_fingerprint: "]),
        (["--data.init_args.num_paraphrases", 3], ["N: 5 vs 3", "paraphrases: "]),
        (["--model.init_args.fusion", "max"], ["method: 'avg' vs 'max'", "fusion: 'avg' vs 'max'"]),
        (["--data.init_args.prompt_style", "raw"], ["prompt_style: 'chat' vs 'raw'"]),
        (["--model.init_args.max_new_tokens", 4], ["max_new_tokens: 10 vs 4"]),
    ],
    ids=["model", "N", "fusion", "prompt_style", "max_new_tokens"],
)
def test_resume_of_another_run_is_refused_by_name(
    change, named, interrupted_avg, other_model, tiny_model_path, tmp_path, capsys
):
    change = [other_model if a == "OTHER" else a for a in change]
    args = _args(tiny_model_path, tmp_path, *change, "--resume", interrupted_avg, config=AVG)
    message = selfens_fails(capsys, *args)
    assert message.startswith(f"selfens: error: cannot resume from {interrupted_avg}: it is another run (")
    for field in named:
        assert field in message
    # Only what was changed is named (in the identity, then as the options given); and the refused
    # run left no folder behind.
    identity, options = message.split("; the options that differ: ")
    assert identity.count(" vs ") == len(named)
    changed = change[0].removeprefix("--").replace(".init_args", "")
    assert options.startswith(f"{changed}: ") and options.count(" vs ") == 1, options
    config = interrupted_avg / "config.yaml"
    assert options.endswith(f"(selfens test --config {config} --resume {interrupted_avg}), or start a new run")
    assert not (tmp_path / logger_name(AVG)).exists() or not any((tmp_path / logger_name(AVG)).iterdir())


def test_resume_from_another_method_is_refused(interrupted_avg, tiny_model_path, tmp_path, capsys):
    message = selfens_fails(capsys, *_args(tiny_model_path, tmp_path, "--resume", interrupted_avg))
    assert "method: 'avg' vs 'per_prompt'" in message and "fusion: 'avg' vs (none)" in message


def test_a_folder_without_an_identity_is_not_resumed(interrupted_avg, tiny_model_path, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(interrupted_avg, old)
    (old / "identity.json").unlink()  # as an older selfens left it
    message = selfens_fails(capsys, *_args(tiny_model_path, tmp_path, "--resume", old, config=AVG))
    assert "records no run identity" in message and "start a new run" in message


@pytest.mark.parametrize("made, said", [(True, "no predictions*.jsonl there"), (False, "no such folder")])
def test_resume_from_a_folder_without_predictions(made, said, tiny_model_path, tmp_path, capsys):
    if made:
        (tmp_path / "nothing").mkdir()
    message = selfens_fails(capsys, *_args(tiny_model_path, tmp_path, "--resume", tmp_path / "nothing"))
    assert message.startswith(f"selfens: error: cannot resume from {tmp_path / 'nothing'}: {said}")


def test_resume_with_another_limit_names_the_option(interrupted_avg, tiny_model_path, tmp_path, capsys):
    """The examples differ only as hashes; the config the folder ran with says why."""
    message = selfens_fails(
        capsys, *_args(tiny_model_path, tmp_path, "--data.init_args.limit", 3, "--resume", interrupted_avg, config=AVG)
    )
    assert "examples: " in message and "; the options that differ: data.limit: 6 vs 3." in message


def test_rows_with_unicode_line_separators_are_kept(tmp_path):
    """A model may write U+2028 or U+0085 into an answer; JSON keeps them raw, and str.splitlines()
    would cut such a row in two (and drop it): rows are split at newlines only."""
    from selfens.run.resume import finished_rows

    rows = [{"index": 0, "id": "a", "prediction": "x\u2028y\x85z"}, {"index": 1, "id": "b", "prediction": "w"}]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (tmp_path / "predictions.rank0.jsonl").write_text(text + '{"index": 2, "id": "c", "predic', encoding="utf-8")
    assert finished_rows(tmp_path) == rows  # the line cut short by a crash is dropped, nothing else


def test_resuming_a_finished_run_says_there_is_nothing_to_do(tiny_model_path, tmp_path, capsys):
    args = ["--model.init_args.model", tiny_model_path, "--data.init_args.limit", 3, *quiet()]
    selfens("test", "--config", PER_PROMPT, *args, "--trainer.logger.init_args.save_dir", tmp_path)
    done = run_folder(tmp_path / logger_name(PER_PROMPT))
    error = selfens_fails(
        capsys, "test", "--config", PER_PROMPT, *args, "--trainer.logger.init_args.save_dir", tmp_path, "--resume", done
    )
    assert f"nothing to resume: {done} has all 3 examples already; run without --resume" in error
