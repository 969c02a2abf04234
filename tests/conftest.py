"""Shared fixtures: tiny random models (Llama by default; every family in FAMILIES) with a tokenizer
trained on the fly, saved as local model folders so that tests go through the same loading path as
real runs."""

from __future__ import annotations

import os

# Equality tests compare floats bit for bit: keep the BLAS thread count fixed even on a busy
# machine (dynamic adjustment changes reduction order). Set before torch is imported.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("OMP_DYNAMIC", "FALSE")


import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_llama")))


@pytest.fixture(scope="session")
def tiny(tiny_model_path):
    from selfens.model.registry import load_model, load_tokenizer

    return load_model(tiny_model_path), load_tokenizer(tiny_model_path)


@pytest.fixture(scope="session")
def smollm():
    """The embedded SmolLM2-135M-Instruct (converted once into the cache)."""
    from selfens.model.registry import EMBEDDED, load_model, load_tokenizer

    return load_model(EMBEDDED), load_tokenizer(EMBEDDED)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module: tiny models gain nothing from more, and on a busy 2-core
    machine they cost a lot (tests/methods/test_attention.py took 140 s with 2 threads, 38 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    # Tests must never reach a model hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
