"""What TensorBoard shows of finished runs (`selfens.run.tensorboard`), read back as TensorBoard reads
it: the HParams table through the HParams plugin's own request handlers, the scalars and text with
its EventAccumulator.

Three runs through the CLI on the tiny random Llama (a model folder with a long path): origin at
N = 5 with 4 shots and with 2 shots (they differ only in the shots), and avg at N = 3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfens.run.tensorboard import SHOWN, hparam_values, log_run, results_table, trial_id
from tests.helpers import ROOT, quiet, selfens

PARAREL = ROOT / "configs" / "pararel"
RUNS = {  # trial ID -> (config, N, shots)
    "demo/version_0": ("origin", 5, 4),
    "demo/version_1": ("origin", 5, 2),
    "demo/version_2": ("avg", 3, 4),
}
# TensorBoard's HParams dashboard ticks the first five hparams of the experiment, after a stable
# sort that puts those flagged `differs` first (tf-hparams-query-pane: `_computeHParams`); the
# experiment it is handed is sorted by (not differs, name) (backend_context: hparams_limit).
TICKED = 5
TRIAL_ID_CHARS = 16  # what the Trial ID column (10em wide) shows before it cuts a name off


@pytest.fixture(scope="module")
def logdir(tiny_model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("tensorboard")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        for config, n, shots in RUNS.values():
            selfens(
                "test",
                "--config",
                PARAREL / f"{config}.yaml",
                "--model.init_args.model",
                tiny_model_path,
                "--data.init_args.limit",
                3,
                "--data.init_args.num_paraphrases",
                n,
                "--data.init_args.num_shots",
                shots,
                "--trainer.logger.init_args.save_dir",
                root,
                "--trainer.logger.init_args.name",
                "demo",
                *quiet(),
            )
    return root


def results_of(logdir: Path) -> dict[str, dict]:
    """Trial ID -> results.json of each run."""
    folders = sorted((logdir / "demo").glob("version_*"))
    return {f"demo/{f.name.split('-', 1)[0]}": json.loads((f / "results.json").read_text()) for f in folders}


def accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    return acc


def hparams_dashboard(logdir: Path):
    """The experiment and the session groups (rows) the HParams dashboard is sent for `logdir`."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    backend = backend_context.Context(
        base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer, data_provider=provider)
    )
    request = context.RequestContext()
    # The dashboard's own requests: every hparam (hparamsLimit 1000), every status, 100 rows.
    experiment = get_experiment.Handler(request, backend, "", api_pb2.GetExperimentRequest(hparams_limit=1000)).run()
    rows = api_pb2.ListSessionGroupsRequest(
        allowed_statuses=[
            api_pb2.STATUS_UNKNOWN,
            api_pb2.STATUS_SUCCESS,
            api_pb2.STATUS_FAILURE,
            api_pb2.STATUS_RUNNING,
        ],
        slice_size=100,
    )
    return experiment, list_session_groups.Handler(request, backend, "", rows).run().session_groups


def ticked(experiment) -> list[str]:
    infos = sorted(experiment.hparam_infos, key=lambda h: not h.differs)  # stable, as the dashboard's
    return [h.name for h in infos][:TICKED]


def value(v):
    return v.string_value if v.HasField("string_value") else v.number_value


def test_scalars_also_at_step_n(logdir):
    for trial, results in results_of(logdir).items():
        folder = next((logdir / "demo").glob(f"{trial.split('/')[1]}-*"))
        acc = accumulator(folder)
        n = RUNS[trial][1]
        for m in ("em", "f1", "lemma"):
            (at_n,) = acc.Scalars(f"test_by_N/{m}")
            assert (at_n.step, at_n.value) == (n, pytest.approx(results["metrics"][f"test/{m}"]))
            assert {s.step for s in acc.Scalars(f"test/{m}")} == {0}, "the common tags stay at step 0"
        (cost,) = acc.Scalars("cost_by_N/prefill_tokens")
        assert (cost.step, cost.value) == (n, results["total_cost"]["prefill_tokens"])
        assert acc.Scalars("cost/prefill_tokens")[-1].step == 0
        assert "cost/confidence_seconds" in acc.Tags()["scalars"]
        assert "cost_by_N/confidence_seconds" not in acc.Tags()["scalars"], "no chart of work origin/avg do not do"
        # The diagnostics, at step N, equal to results.json's.
        (ece,) = acc.Scalars("calibration/ece")
        assert (ece.step, ece.value) == (n, pytest.approx(results["diagnostics"]["calibration"]["ece"]["value"]))
        sensitivity = results["diagnostics"].get("sensitivity", {})
        assert {t for t in acc.Tags()["scalars"] if t.startswith("sensitivity/")} == {
            f"sensitivity/{name}" for name, stat in sensitivity.items() if stat["value"] is not None
        }


def test_hparams_table_ticks_what_tells_runs_apart(logdir, tiny_model_path):
    experiment, groups = hparams_dashboard(logdir)
    shown = ticked(experiment)
    assert sorted(shown) == sorted(SHOWN)
    assert shown[:2] == ["N", "dataset"], "TensorBoard orders the ticked columns by name"
    declared = {h.name for h in experiment.hparam_infos}
    assert {"method", "N", "model", "prompt_style", "shots", "dataset"} <= declared, declared
    assert [m.name.tag for m in experiment.metric_infos][:3] == ["test/em", "test/f1", "test/lemma"]

    results = results_of(logdir)
    assert sorted(g.name for g in groups) == sorted(RUNS) == sorted(results), "one row per run, by its short name"
    assert all(len(g.name) <= TRIAL_ID_CHARS for g in groups)
    rows = {g.name: {k: value(v) for k, v in g.hparams.items()} for g in groups}
    # The two origin runs differ only in their shots; the ticked columns tell all three apart.
    assert len({tuple(row[k] for k in shown) for row in rows.values()}) == len(RUNS)
    for trial, row in rows.items():
        config, n, shots = RUNS[trial]
        assert row["model"] == Path(tiny_model_path).name != tiny_model_path
        assert row["label"] == results[trial]["label"] == config and row["N"] == n and row["shots"] == shots
        assert (
            row["prompt"].startswith(f"{shots}-shot ") and results[trial]["settings"]["prompt_style"] in row["prompt"]
        )
    (avg,) = [g for g in groups if g.name == "demo/version_2"]
    em = [v.value for v in avg.metric_values if v.name.tag == "test/em"]
    assert em == [pytest.approx(results["demo/version_2"]["metrics"]["test/em"])]


def test_results_text_is_one_row_with_the_same_columns(logdir):
    tables = {}
    for trial, results in results_of(logdir).items():
        folder = next((logdir / "demo").glob(f"{trial.split('/')[1]}-*"))
        (text,) = accumulator(folder).Tensors("test/results/text_summary")
        tables[trial] = text.tensor_proto.string_val[0].decode().splitlines()
        header, _, row = tables[trial]
        cells = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | ")))
        assert cells["label"] == results["label"] and cells["N"] == str(RUNS[trial][1])
        assert cells["model"] == Path(results["model"]).name and cells["examples"] == "3"
        ci = results["uncertainty"]["metrics"]["test/em"]["ci95"]
        assert cells["em"] == f"{results['metrics']['test/em']:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]"
        assert cells["prefill tok"] == f"{results['total_cost']['prefill_tokens']:,.0f}"
    assert len({tuple(t[:2]) for t in tables.values()}) == 1, "every run has the same columns"


def predicted() -> dict:
    """A results.json of a predict run (no metrics), of a method with settings."""
    settings = {"method": "attention", "model": "/some/where/models/tiny", "dataset": "ParaRel", "N": 4, "shots": 0}
    method_settings = {"layout": "shared_prefix", "positions": "sequential"}
    return {
        "stage": "predict",
        "label": "attention-x",
        "method_settings": method_settings,
        "settings": {**settings, "prompt_style": "chat", "fill_style": "mask", **method_settings, "confidence": None},
        "num_examples": 2,
        "total_cost": {"prefill_tokens": 120.0, "decode_seconds": 0.25, "confidence_seconds": 0.0},
    }


def test_a_predict_run_logs_its_cost_by_n_and_no_metrics(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    folder = tmp_path / "demo" / "version_4-attention-x"
    with SummaryWriter(str(folder)) as writer:
        log_run(writer, predicted(), folder)
    acc = accumulator(folder)
    assert {"cost_by_N/prefill_tokens", "cost_by_N/decode_seconds"} == {
        t for t in acc.Tags()["scalars"] if "_by_N/" in t
    }
    assert acc.Scalars("cost_by_N/prefill_tokens")[0].step == 4
    (text,) = acc.Tensors("predict/results/text_summary")
    header = text.tensor_proto.string_val[0].decode().splitlines()[0]
    assert header == "| label | N | model | prompt | dataset | examples | prefill tok | decode s |"


def test_hparam_values_are_short():
    row = hparam_values(predicted())
    assert row["model"] == "tiny" and row["label"] == "attention-x"
    assert row["prompt"] == "0-shot chat mask", "the shots and prompt settings; not the method's settings"
    assert "confidence" not in row, "a setting that does not apply is left out"
    assert trial_id(Path("/x/demo/version_4-attention-x"), "attention-x") == "demo/version_4"
    assert trial_id(Path("/study/tiny/avg-N5"), "avg") == "tiny/avg-N5", "a study's cell keeps its name"
    assert results_table({**predicted(), "label": "a|b"}).splitlines()[2].startswith("| a\\|b | 4 |")
