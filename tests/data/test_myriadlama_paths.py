"""MyriadLAMA's `path` that does not exist: a local one (by its look, or because its folder is here) is
named as missing, not looked up on the hub; a hub id (`owner/name`) is still looked up there, offline
in the tests, and its error says that no such file or folder is here either."""

from __future__ import annotations

import pytest

from selfens.data import DataError, myriadlama_io
from selfens.data.myriadlama_io import HUB_ID, read_dataset

MISSING = (
    "MyriadLAMA data not found: {} (expected a parquet or jsonl file, a folder of them, a folder written by "
    "save_to_disk, or the hub id iszhaoxin/MyriadLAMA)"
)


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working folder with a data/ folder in it, and the hub loader that must not be called."""
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(myriadlama_io, "load_hub_dataset", lambda *a: pytest.fail(f"looked up on the hub: {a[0]}"))
    return tmp_path


@pytest.mark.parametrize(
    "path",
    [
        "data/myriadlama",  # data/ is here: a folder in it
        "data/sub/facts",
        "./myriadlama",
        "../myriadlama",
        "~/no-such-selfens-folder/facts",
        "/no/such/facts",
        "facts/myriadlama.jsonl",
        "myriadlama",
    ],
)
def test_a_local_path_that_does_not_exist(here, path):
    with pytest.raises(DataError) as error:
        read_dataset(path, "train")
    assert str(error.value) == MISSING.format(path)


def test_an_owner_name_path_whose_folder_is_not_here_either(tmp_path, monkeypatch):
    """`data/myriadlama` with no data/ folder here could be a hub id: offline, the error says both."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as error:
        read_dataset("data/myriadlama", "train")
    assert str(error.value) == (
        "MyriadLAMA data not found: data/myriadlama is no file or folder here; as a hub id, data/myriadlama "
        "(split 'train') is not in the datasets cache and the hub cannot be reached (no network, or "
        "HF_HUB_OFFLINE is set); where there is a network, run `hf download data/myriadlama --repo-type "
        "dataset --local-dir DIR` and pass path: DIR"
    )


def test_the_hub_id_is_looked_up_as_before(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    looked_up = []

    def hub(path, split, instead):
        looked_up.append(path)
        raise DataError(f"{path} is not cached")

    monkeypatch.setattr(myriadlama_io, "load_hub_dataset", hub)
    with pytest.raises(DataError, match=rf"^{HUB_ID} is not cached$"):
        read_dataset(HUB_ID, "train")
    assert looked_up == [HUB_ID]


def test_an_id_the_hub_does_not_have(tmp_path, monkeypatch):
    """With a network: one line, not datasets' DatasetNotFoundError (nothing is downloaded here)."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    from selfens.data import hub

    def load_dataset(path, split):
        raise DatasetNotFoundError(f"Dataset '{path}' doesn't exist on the Hub or cannot be accessed.")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(DataError) as error:
        read_dataset("someone/myriadlama", "train")
    assert str(error.value) == (
        "MyriadLAMA data not found: someone/myriadlama is no file or folder here; as a hub id, someone/myriadlama "
        "is no dataset on the Hugging Face hub (or one you may not read: `hf auth login`)"
    )
