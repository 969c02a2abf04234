"""The progress line shared by `selfens confidence`, `selfens paraphrase` and the study."""

from __future__ import annotations

import io
from types import SimpleNamespace

from selfens.run.progress import Progress


def test_units_counted_while_others_go_on_join_the_pace_at_the_next_advance(monkeypatch):
    clock = iter([0.0, 10.0, 20.0, 40.0])  # start, then each count and advance
    monkeypatch.setattr("selfens.run.progress.time", SimpleNamespace(monotonic=lambda: next(clock)))
    stream = io.StringIO()
    progress = Progress("job", {"prompts": 2, "samples": 40}, pace="samples", every=0.0, stream=stream)
    progress.count(samples=2)  # the first samples of a decode that goes on: no pace from them
    progress.count(samples=8)
    progress.advance(samples=10)  # the decode is done: 20 samples in 40 s
    assert stream.getvalue().splitlines() == [
        "job: prompts 0 of 2, samples 2 of 40, 0m10s elapsed, ~? left",
        "job: prompts 0 of 2, samples 10 of 40, 0m20s elapsed, ~? left",
        "job: prompts 0 of 2, samples 20 of 40, 0m40s elapsed, ~0m40s left",
    ]
