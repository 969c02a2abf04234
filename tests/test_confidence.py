"""Per-paraphrase confidences of LogitFusion and their on-disk cache (tiny random Llama, no Trainer)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from selfens.confidence import Confidence, ConfidenceCache, ConfidenceSettings, agreement, mean_token_prob
from selfens.data import ParaRel
from selfens.data.batch import ParaphraseBatch, collate
from selfens.methods import LogitFusion

N = 3
SAMPLES = 4


@pytest.fixture(scope="module")
def dm(tiny_model_path) -> ParaRel:
    from selfens.models import load_tokenizer

    dm = ParaRel(num_paraphrases=N, num_shots=2, limit=4, batch_size=4, prompt_style="raw", fill_style="completion")
    dm.connect(load_tokenizer(tiny_model_path), tiny_model_path)
    dm.setup("test")
    return dm


@pytest.fixture(scope="module")
def batch(dm) -> ParaphraseBatch:
    """4 facts of 4 relations."""
    return collate(dm.examples, pad_id=dm.tokenizer.pad_token_id)


@pytest.fixture(scope="module")
def small(dm) -> ParaphraseBatch:
    """2 examples: enough for the sampling tests, which sample K answers for every prompt."""
    return collate(dm.examples[:2], pad_id=dm.tokenizer.pad_token_id)


def module(path: str, folder, **kwargs) -> LogitFusion:
    kwargs.setdefault("fusion", "weighted_avg")
    kwargs.setdefault("confidence", "sampling")
    kwargs.setdefault("num_samples", SAMPLES)
    kwargs.setdefault("sample_max_new_tokens", 4)
    kwargs.setdefault("max_new_tokens", 4)
    m = LogitFusion(model=path, stop_strings=[], confidence_dir=str(folder), **kwargs)
    m.configure_model()
    return m


def cache_lines(m: LogitFusion) -> list[dict]:
    return [json.loads(line) for line in m.confidence.cache.path.read_text(encoding="utf-8").splitlines()]


def _refuse(*args, **kwargs):
    raise AssertionError("sampled although every confidence is cached")


# -- the cache -------------------------------------------------------------------------------------------


def test_cache_is_written_then_read_without_sampling(tiny_model_path, small, tmp_path, monkeypatch):
    batch = small
    first = module(tiny_model_path, tmp_path)
    calls = []
    sample = Confidence._samples

    def spy(self, *args, **kwargs):
        calls.append(1)
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(Confidence, "_samples", spy)
    out1 = first.decode(batch)
    assert len(calls) == len(batch.ids) * N  # every prompt sampled once (the prompts all differ)
    lines = cache_lines(first)
    assert first.confidence.cache.path.parent == tmp_path
    assert len(lines) == len(batch.ids) * N
    assert all({"key", "confidence", "greedy", "measure"} <= set(line) for line in lines)
    assert {line["measure"] for line in lines} == {"sampling"}

    # A second module on the same folder reads every value: the sampling path must not run.
    monkeypatch.setattr(Confidence, "_samples", _refuse)
    monkeypatch.setattr("selfens.confidence.sampler", _refuse)
    monkeypatch.setattr("selfens.decode.sampler", _refuse)
    second = module(tiny_model_path, tmp_path)
    out2 = second.decode(batch)
    assert out2.extra == out1.extra
    assert out2.predictions == out1.predictions
    assert torch.equal(second.confidences(batch), first.confidences(batch))
    assert len(cache_lines(second)) == len(lines)  # nothing appended

    # Reading only: compute_confidence=False succeeds on a full cache.
    third = module(tiny_model_path, tmp_path, compute_confidence=False)
    assert third.decode(batch).extra == out1.extra


def test_missing_confidence_without_compute_raises(tiny_model_path, batch, tmp_path):
    m = module(tiny_model_path, tmp_path / "empty", compute_confidence=False)
    with pytest.raises(RuntimeError, match="selfens confidence"):
        m.decode(batch)
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize(
    "change",
    [{"num_samples": SAMPLES * 2}, {"temperature": 0.5}, {"top_k": 5}, {"top_p": 0.9}, {"sample_max_new_tokens": 3}],
)
def test_other_sampling_settings_do_not_reuse_the_cache(tiny_model_path, batch, tmp_path, change):
    # Plant a value for every prompt under the default settings (no sampling needed) ...
    base = module(tiny_model_path, tmp_path, compute_confidence=False)
    settings, cache = base.confidence_settings(), base.confidence.cache
    ids, valid = batch.rows()
    for row, mask in zip(ids, valid):
        cache.put(cache.key(settings, row[mask].tolist()), 0.5)
    assert torch.equal(
        module(tiny_model_path, tmp_path, compute_confidence=False).confidences(batch), torch.full((4, N), 0.5)
    )
    # ... which a module with other sampling settings must not use.
    other = module(tiny_model_path, tmp_path, compute_confidence=False, **change)
    with pytest.raises(RuntimeError, match="selfens confidence"):
        other.confidences(batch)


def test_cache_keys(tiny_model_path, tmp_path):
    m = module(tiny_model_path, tmp_path, temperature=0.7, top_k=20, top_p=0.95)
    s = m.confidence_settings()
    assert s == ConfidenceSettings("sampling", 4, (), SAMPLES, 4, 0.7, 20, 0.95, 0)
    cache, prompt = m.confidence.cache, [5, 6, 7]
    key = cache.key(s, prompt)
    assert cache.key(s, prompt) == key
    for changed in (
        dataclasses.replace(s, num_samples=SAMPLES + 1),
        dataclasses.replace(s, temperature=1.0),
        dataclasses.replace(s, top_k=21),
        dataclasses.replace(s, top_p=1.0),
        dataclasses.replace(s, max_new_tokens=5),
        dataclasses.replace(s, seed=1),
        dataclasses.replace(s, measure="token_prob"),
    ):
        assert cache.key(changed, prompt) != key, changed
    assert cache.key(s, [5, 6, 8]) != key
    assert ConfidenceCache(tmp_path, "another/model").key(s, prompt) != key
    # token_prob ignores the sampling settings.
    tp = dataclasses.replace(s, measure="token_prob")
    assert cache.key(dataclasses.replace(tp, num_samples=99, temperature=0.1), prompt) == cache.key(tp, prompt)
    # Settings come from the model's generation config when not given (the tiny one sets none).
    d = module(tiny_model_path, tmp_path).confidence_settings()
    assert (d.temperature, d.top_k, d.top_p) == (1.0, 50, 1.0)


def test_cache_file_survives_a_truncated_line(tiny_model_path, tmp_path):
    cache = ConfidenceCache(tmp_path, tiny_model_path)
    cache.put("a", 0.5)
    with cache.path.open("a", encoding="utf-8") as f:
        f.write('{"key": "b", "confid')  # a crash mid-write
    reread = ConfidenceCache(tmp_path, tiny_model_path)
    assert reread.get("a") == 0.5 and reread.get("b") is None


# -- the measures ------------------------------------------------------------------------------------------


def test_token_prob_in_unit_interval(tiny_model_path, batch, tmp_path):
    m = module(tiny_model_path, tmp_path, confidence="token_prob", max_new_tokens=6)
    values = m.confidences(batch)
    assert values.shape == (len(batch.ids), N)
    assert bool(((values > 0) & (values <= 1)).all()), values
    # It is the mean probability of the greedy tokens of each prompt decoded alone.
    from selfens.decode import Prompt

    ids = batch.input_ids[1, 2][batch.valid[1, 2]][None]
    alone = m.generate(Prompt.left_padded(ids, torch.ones_like(ids, dtype=torch.bool)))
    assert values[1, 2].item() == pytest.approx(mean_token_prob(alone.token_probs[0]), abs=1e-5)
    assert {line["measure"] for line in cache_lines(m)} == {"token_prob"}


def test_mean_token_prob_and_agreement_edge_cases():
    assert mean_token_prob([]) == 0.0
    assert mean_token_prob([0.5, 1.0]) == 0.75
    assert agreement([], "Paris", lambda s: s.lower().split()) == 0.0
    lemmas = lambda s: s.lower().split()
    assert agreement(["Paris", "in Paris", "Rome", "paris"], "Paris", lemmas) == 0.75


def test_sampled_agreement_is_reproducible(tiny_model_path, dm, small, tmp_path):
    batch = small
    # Low temperature and top_k so that samples sometimes agree with the greedy answer.
    kwargs = dict(temperature=0.3, top_k=5)
    a = module(tiny_model_path, tmp_path / "a", **kwargs).confidences(batch)
    b = module(tiny_model_path, tmp_path / "b", **kwargs).confidences(batch)
    assert torch.equal(a, b)
    assert bool(((a >= 0) & (a <= 1)).all())
    assert torch.equal(a * SAMPLES, (a * SAMPLES).round()), "an agreement is a share of K samples"
    assert len(set(a.flatten().tolist())) > 1, f"all agreements equal ({a.tolist()}): the check is vacuous"
    # The value of a prompt does not depend on the batch it came in.
    one = collate(dm.examples[1:2], pad_id=dm.tokenizer.pad_token_id)
    c = module(tiny_model_path, tmp_path / "c", **kwargs).confidences(one)
    assert torch.equal(c[0], a[1])


@pytest.mark.parametrize("measure", ["token_prob", "sampling"])
def test_answer_settings_are_part_of_the_key(tiny_model_path, small, tmp_path, measure):
    # Both measures score the greedy answer, which depends on max_new_tokens and stop_strings: a value
    # computed with other answer settings must not be reused (it would be silently stale).
    module(tiny_model_path, tmp_path, confidence=measure, max_new_tokens=2).confidences(small)
    other = module(tiny_model_path, tmp_path, confidence=measure, max_new_tokens=6, compute_confidence=False)
    with pytest.raises(RuntimeError, match="selfens confidence"):
        other.confidences(small)


@pytest.mark.parametrize("measure", ["sampling", "token_prob"])
def test_reusing_the_prefix_gives_the_same_confidences(tiny_model_path, tmp_path, measure):
    """4 facts of one relation: their prompts share a prefix, read once for the greedy answers and
    the K samples alike; the values (and cache keys) are those of reading each prompt whole."""
    from selfens.models import load_tokenizer

    dm = ParaRel(num_paraphrases=N, num_shots=2, limit=40, prompt_style="raw", fill_style="completion")
    dm.connect(load_tokenizer(tiny_model_path), tiny_model_path)
    dm.setup("test")
    same = [e for e in dm.examples if e.segments.prefix == dm.examples[0].segments.prefix][:2]
    batch = collate(same, pad_id=dm.tokenizer.pad_token_id)
    reused = module(tiny_model_path, tmp_path / "a", confidence=measure)
    plain = module(tiny_model_path, tmp_path / "b", confidence=measure, reuse_prefix=False)
    assert reused.single_prompts(batch).prefix is not None
    a, b = reused.confidences(batch), plain.confidences(batch)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert [line["key"] for line in cache_lines(reused)] == [line["key"] for line in cache_lines(plain)]
