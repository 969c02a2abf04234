"""What a finished run shows in TensorBoard, so that runs compare at a glance.

A run is one evaluation: each metric has one value, logged at step 0 (`test/em`), so every run is a
dot at the same x. Beside those a run logs, from its results.json:

- its headline metrics and what it spent again at step N (`test_by_N/em`, `cost_by_N/prefill_tokens`):
  runs at other N stand apart along x;
- one HParams row with short values: the model's registry name or its folder's last part, and, as
  trial ID, `<logger name>/version_<k>` (the report's name of the run). The HParams dashboard ticks
  only the first five hparams of the experiment, those flagged `differs` first, then by name: `SHOWN`
  are those five, flagged so. Together they hold every setting that tells runs apart (`label`: the
  method and its settings; `prompt`: the prompt settings and shots); each setting also has a column
  of its own, unticked, to filter and sort by;
- `<stage>/results`: a one-row table of those settings and the headline numbers (metrics with their
  95% interval), with the same columns in every run, so that the Text dashboard reads as one table
  (its cards come by tag, then run: before every run's `<stage>/samples`).
"""

from __future__ import annotations

import time
from dataclasses import fields
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

from selfens.metrics.views import common_names
from selfens.run.cost import RunCost

# The five hparams TensorBoard ticks, in reading order (TensorBoard orders them by name).
SHOWN = ("label", "N", "model", "prompt", "dataset")
TABLE_COSTS = ("prefill_tokens", "decode_seconds")  # the cost columns of the results table
_NOT_PROMPT = ("method", "model", "dataset", "N", "shots")  # the settings that are not how a question is put


def summary_writer(logger):
    """The SummaryWriter of a TensorBoard logger; None for another logger, or none."""
    return logger.experiment if isinstance(logger, TensorBoardLogger) else None


def log_run(writer, results: dict, folder: Path) -> None:
    """Log a finished run (`results`: its results.json; `folder`: its run folder) with `writer`."""
    headline = headline_numbers(results)
    for tag, value in headline.items():
        writer.add_scalar(tag, value, global_step=0)  # the values of the HParams metric columns
        if value or not tag.startswith("cost/"):  # work the method does not do (confidence) gets no chart
            writer.add_scalar(by_n(tag), value, global_step=results["settings"]["N"])
    for tag, value in diagnostic_numbers(results).items():
        writer.add_scalar(tag, value, global_step=results["settings"]["N"])
    file_writer = writer._get_file_writer()  # raw summaries, as Lightning's log_hyperparams writes them
    for summary in hparams_summaries(hparam_values(results), list(headline), trial_id(folder, results["label"])):
        file_writer.add_summary(summary)
    writer.add_text(f"{results['stage']}/results", results_table(results))


def trial_id(folder: Path, label: str) -> str:
    """`<logger name>/version_<k>` for a run folder `version_<k>-<label>`, else `<parent>/<folder>`
    (a study's `<model>/<cell>`). TensorBoard shows one row per trial ID: two runs of one trial ID
    under one logdir (two save_dirs with the same logger name) would share a row."""
    return f"{folder.parent.name}/{folder.name.removesuffix(f'-{label}')}"


def headline_numbers(results: dict) -> dict[str, float]:
    """The common metrics (`test/em` ...: every method's own answer) and the total cost (`cost/...`)."""
    common = {name: results["metrics"][name] for name in metrics_of(results)}
    return {**common, **{f"cost/{k}": v for k, v in results["total_cost"].items()}}


def diagnostic_numbers(results: dict) -> dict[str, float]:
    """The run's diagnostics where defined, at step N: `sensitivity/consistency`, `calibration/ece`, ..."""
    found = results.get("diagnostics") or {}
    return {
        f"{part}/{name}": stat["value"]
        for part, stats in found.items()
        for name, stat in stats.items()
        if isinstance(stat, dict) and stat.get("value") is not None
    }


def by_n(tag: str) -> str:
    """The tag of a headline number logged at step N: `test/em` -> `test_by_N/em`."""
    group, _, name = tag.partition("/")
    return f"{group}_by_N/{name}"


def short_model(model: str) -> str:
    """A model's registry name, or the last part of its folder's path."""
    return Path(model).name


def hparam_values(results: dict) -> dict:
    """The run's HParams row: its settings, with the model's short name, and the `label` and `prompt`.

    >>> row = hparam_values({"label": "avg", "method_settings": {"fusion": "avg"}, "settings": {"method": "avg",
    ...     "model": "/tmp/x/tiny", "dataset": "ParaRel", "N": 5, "shots": 4, "prompt_style": "raw", "fusion": "avg"}})
    >>> row["model"], row["prompt"]
    ('tiny', '4-shot raw')
    """
    settings = {k: _scalar(v) for k, v in results["settings"].items() if v is not None}
    method_settings = results["method_settings"]
    prompt = [str(v) for k, v in settings.items() if k not in _NOT_PROMPT and k not in method_settings]
    shots = [f"{settings['shots']}-shot"] if "shots" in settings else []  # first: a cut-off cell keeps it
    return {
        **settings,
        "model": short_model(settings["model"]),
        "label": results["label"],
        "prompt": " ".join(shots + prompt),
    }


def hparams_summaries(values: dict, metric_tags: list[str], trial: str) -> list[Summary]:
    """The HParams plugin's three summaries of a run: the experiment (its columns: `SHOWN` first and
    flagged `differs`, so that they are the ones ticked, then the other hparams; the metrics), the
    run's values under its trial ID, and its end."""
    names = [*sorted(SHOWN), *sorted(set(values) - set(SHOWN))]
    experiment = api_pb2.Experiment(
        hparam_infos=[
            api_pb2.HParamInfo(name=k, type=_data_type(values[k]), differs=k in SHOWN) for k in names if k in values
        ],
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in metric_tags],
    )
    start = plugin_data_pb2.SessionStartInfo(group_name=trial, start_time_secs=time.time())
    for k, v in values.items():
        _set_value(start.hparams[k], v)
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time())
    return [
        _summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
        _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
        _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
    ]


def results_table(results: dict) -> str:
    """A one-row markdown table: the `SHOWN` settings, the examples, the common metrics (with their
    95% interval where the run has one) and the `TABLE_COSTS`."""
    values = hparam_values(results)
    metrics = results.get("metrics") or {}
    intervals = (results.get("uncertainty") or {}).get("metrics", {})
    labels = {f.name: f.metadata["label"] for f in fields(RunCost)}
    cells = {
        **{k: values[k] for k in SHOWN},
        "examples": results["num_examples"],
        **{name.rpartition("/")[2]: _metric(metrics[name], intervals.get(name)) for name in metrics_of(results)},
        **{labels[k]: _cost(k, results["total_cost"][k]) for k in TABLE_COSTS},
    }
    cells = {k: str(v).replace("|", "\\|") for k, v in cells.items()}
    rows = [" | ".join(cells), " | ".join("---" for _ in cells), " | ".join(cells.values())]
    return "\n".join(f"| {row} |" for row in rows)


def metrics_of(results: dict) -> list[str]:
    """The common metric names the run has (none for a predict run)."""
    return [name for name in common_names(results["stage"]) if name in (results.get("metrics") or {})]


def _metric(value: float, interval: dict | None) -> str:
    ci = interval.get("ci95") if interval else None
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.3f}"


def _cost(name: str, value: float) -> str:
    return f"{value:.1f}" if name.endswith("seconds") else f"{value:,.0f}"


def _scalar(value):
    """A value an hparam can hold (a string, number or bool); another as its text."""
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _data_type(value) -> int:
    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    return api_pb2.DATA_TYPE_FLOAT64 if isinstance(value, (int, float)) else api_pb2.DATA_TYPE_STRING


def _set_value(slot, value) -> None:
    if isinstance(value, bool):
        slot.bool_value = value
    elif isinstance(value, (int, float)):
        slot.number_value = value
    else:
        slot.string_value = value


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    content = metadata.create_summary_metadata(data)
    return Summary(value=[Summary.Value(tag=tag, metadata=content, tensor=metadata.NULL_TENSOR)])
