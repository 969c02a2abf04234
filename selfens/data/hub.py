"""Loading a dataset from the Hugging Face hub through `datasets`: from its cache when offline, and a
clear error at once (not minutes of retries) when it is neither cached nor reachable."""

from __future__ import annotations

from unittest import mock

from selfens.data.records import DataError


def load_hub_dataset(repo_id: str, split: str, instead: str):
    """`datasets.load_dataset(repo_id, split=split)`; `instead` tells the user what to do offline."""
    import datasets

    from selfens.models import _hub_reachable

    if _hub_reachable():
        return datasets.load_dataset(repo_id, split=split)
    try:  # offline: the datasets cache only
        with mock.patch.object(datasets.config, "HF_HUB_OFFLINE", True):
            return datasets.load_dataset(repo_id, split=split)
    except Exception as error:  # datasets raises several kinds for "not cached"
        raise DataError(
            f"{repo_id} (split {split!r}) is not in the datasets cache and the hub cannot be reached "
            f"(no network, or HF_HUB_OFFLINE is set); {instead}"
        ) from error
