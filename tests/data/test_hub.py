"""The hub: whether it can be reached (one quick connect), and datasets loaded from its cache offline."""

import json
import shutil
from pathlib import Path

import pytest

from selfens.data import DataError
from selfens.data import hub as data_hub
from selfens.data.hub import load_hub_dataset
from selfens.model import hub
from selfens.model.hub import hub_reachable


@pytest.mark.parametrize("name", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"])
def test_offline_environment_is_unreachable_without_connecting(monkeypatch, name):
    monkeypatch.setattr(hub.socket, "create_connection", lambda *a, **k: pytest.fail("connected"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv(name, "yes")
    assert not hub_reachable()


@pytest.mark.parametrize("answers", [True, False])
def test_reachable_is_one_connect(monkeypatch, answers):
    calls = []

    class Connection:
        def close(self):
            pass

    def connect(address, timeout):
        calls.append((address, timeout))
        if not answers:
            raise OSError("unreachable")
        return Connection()

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub.socket, "create_connection", connect)
    assert hub_reachable(timeout=0.5) is answers
    assert len(calls) == 1 and calls[0][1] == 0.5


ROWS = [{"question": f"q{i}?", "answer": str(i)} for i in range(3)]


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """A datasets cache holding `someone/tiny` as a hub download leaves it; `datasets` itself online
    (as when imported without HF_HUB_OFFLINE), the hub client offline (tests never reach the hub)."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    built = Path(datasets.load_dataset("json", data_files=str(source), split="train").cache_files[0]["filename"])
    folder = tmp_path / "cache" / "someone___tiny" / "default" / "0.0.0" / "0"
    folder.mkdir(parents=True)
    info = json.loads((built.parent / "dataset_info.json").read_text())
    (folder / "dataset_info.json").write_text(json.dumps({**info, "config_name": "default", "dataset_name": "tiny"}))
    shutil.copy(built, folder / "tiny-train.arrow")
    return folder


def test_offline_load_reads_the_cache_in_offline_mode_and_restores_it(datasets_cache, monkeypatch):
    import datasets

    modes = []
    load = datasets.load_dataset
    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: modes.append(datasets.config.HF_HUB_OFFLINE) or load(*a, **k)
    )
    assert load_hub_dataset("someone/tiny", "train", "do this").to_list() == ROWS
    assert modes == [True]
    assert datasets.config.HF_HUB_OFFLINE is False


def test_not_cached_offline_says_what_to_do_and_restores_the_mode(datasets_cache):
    import datasets

    with pytest.raises(DataError, match=r"someone/other \(split 'train'\) is not in the datasets cache.*; do this"):
        load_hub_dataset("someone/other", "train", "do this")
    assert datasets.config.HF_HUB_OFFLINE is False


def test_offline_mode_is_restored_after_an_error(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with pytest.raises(KeyError), data_hub._datasets_offline():
        assert datasets.config.HF_HUB_OFFLINE is True
        raise KeyError
    assert datasets.config.HF_HUB_OFFLINE is False
