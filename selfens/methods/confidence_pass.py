"""The LightningModule behind `selfens confidence`: a weighted LogitFusion config's confidences alone."""

from __future__ import annotations

from typing import Optional

from selfens.data.batch import ParaphraseBatch
from selfens.decoding.result import DecodeCost
from selfens.methods.logit import LogitFusion
from selfens.run.progress import Progress


class ConfidencePass(LogitFusion):
    """The confidences of a weighted LogitFusion config alone: a row of N values per example."""

    predict_stage = "confidence"
    progress: Optional[Progress] = None  # the prompts (and samples) done of all, handed in by `selfens confidence`

    def predict_step(self, batch: ParaphraseBatch, batch_idx: int) -> list[dict]:
        # Each prompt (and sample) is counted as it is done (a batch can take minutes).
        cost = DecodeCost()
        with self.prefills_kept():  # the K samples read the prompts the greedy answers did
            values = self.confidences(batch, cost, self.progress).tolist()  # [B][N]
        self.add_cost(DecodeCost(), confidence=cost)
        return [
            {"index": int(i), "id": id_, "confidences": v} for i, id_, v in zip(batch.index.tolist(), batch.ids, values)
        ]
