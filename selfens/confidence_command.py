"""`selfens confidence --config CONFIG`: compute and cache the confidences a weighted method needs.

Runs the config's data through the model without decoding the fused answers, filling the cache
(resumable: what is cached is skipped), so that later `selfens test` runs of weighted methods
sample nothing.
"""

from __future__ import annotations

from pathlib import Path

from selfens.errors import ConfigError
from selfens.fusion import WEIGHTED
from selfens.writer import announce


def main(argv: list[str]) -> None:
    from selfens.cli import cli
    from selfens.methods.logit import LogitFusion

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip() + "\n\nAll options of `selfens test` apply (config overrides such as --data.init_args.limit N).")
        return
    run = cli(argv, run=False)
    model = run.model
    if not isinstance(model, LogitFusion) or model.method not in WEIGHTED:
        raise ConfigError(
            f"selfens confidence needs a weighted method (LogitFusion with fusion weighted_avg or "
            f"weighted_max); this config has {type(model).__name__} ({model.method})."
        )
    model.confidence_only = True
    run.trainer.predict(model, datamodule=run.datamodule, return_predictions=False)
    folder = Path(run.trainer.log_dir or ".")
    if run.trainer.is_global_zero:
        announce(folder)
        print(f"confidences ({model.hparams.confidence}) cached in {model.confidence_cache.path}")
