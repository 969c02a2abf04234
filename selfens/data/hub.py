"""Loading a dataset from the Hugging Face hub through `datasets`: from its cache when offline, and a
clear error at once (not minutes of retries) when it is neither cached nor reachable."""

from __future__ import annotations

from contextlib import contextmanager

from selfens.data.records import DataError
from selfens.model.hub import hub_reachable


def load_hub_dataset(repo_id: str, split: str, instead: str):
    """`datasets.load_dataset(repo_id, split=split)`; `instead` tells the user what to do offline."""
    import datasets

    if hub_reachable():
        from datasets.exceptions import DatasetNotFoundError

        try:
            return datasets.load_dataset(repo_id, split=split)
        except DatasetNotFoundError:
            raise DataError(
                f"{repo_id} is no dataset on the Hugging Face hub (or one you may not read: `hf auth login`)"
            ) from None
    try:
        with _datasets_offline():
            return datasets.load_dataset(repo_id, split=split)
    except Exception as error:  # datasets raises several kinds for "not cached"
        raise DataError(
            f"{repo_id} (split {split!r}) is not in the datasets cache and the hub cannot be reached "
            f"(no network, or HF_HUB_OFFLINE is set); {instead}"
        ) from error


@contextmanager
def _datasets_offline():
    """`datasets` in offline mode for the duration: it reads its cache only, asking the hub nothing.

    `datasets` (5.2) has no public switch for this once imported: `HF_HUB_OFFLINE` in the environment
    is read at import into `datasets.config.HF_HUB_OFFLINE`, and `DownloadConfig.local_files_only` is
    read by nothing. That attribute, though, is read at call time (a hub id then falls back to the
    cached copy at once), so it is set here and restored afterwards, whatever happens.
    """
    import datasets.config

    before = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = before
