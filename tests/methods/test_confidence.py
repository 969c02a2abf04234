"""Per-paraphrase confidences of LogitFusion and their on-disk cache (tiny random Llama, no Trainer)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
from types import SimpleNamespace

import pytest
import torch

from selfens.data import ParaRel
from selfens.data.batch import ParaphraseBatch, collate
from selfens.methods import LogitFusion
from selfens.methods.confidence import (
    Confidence,
    ConfidenceCache,
    ConfidenceSettings,
    agreement,
    mean_token_prob,
    per_prompt_sampler,
)
from selfens.run.progress import Progress

N = 3
SAMPLES = 4


@pytest.fixture(scope="module")
def dm(tiny_model_path) -> ParaRel:
    from selfens.model.registry import load_tokenizer

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
    sampled = []
    sample = Confidence._samples

    def spy(self, prompt, keys, *counted):
        sampled.extend(keys)
        return sample(self, prompt, keys, *counted)

    monkeypatch.setattr(Confidence, "_samples", spy)
    out1 = first.decode(batch)
    assert len(sampled) == len(set(sampled)) == len(batch.ids) * N  # every prompt sampled once (they all differ)
    lines = cache_lines(first)
    assert first.confidence.cache.path.parent == tmp_path
    assert len(lines) == len(batch.ids) * N
    assert all({"key", "confidence", "greedy", "measure"} <= set(line) for line in lines)
    assert {line["measure"] for line in lines} == {"sampling"}

    # A second module on the same folder reads every value: the sampling path must not run.
    monkeypatch.setattr(Confidence, "_samples", _refuse)
    monkeypatch.setattr("selfens.methods.confidence.per_prompt_sampler", _refuse)
    monkeypatch.setattr("selfens.decoding.sampling.sampler", _refuse)
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
    from selfens.decoding.prompt import Prompt

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
    # Top_k so that samples sometimes agree with the greedy answer. The values depend on the cache
    # key, so on the tiny model's folder, which differs between processes: where a temperature
    # gives every prompt the same value (the check would be vacuous), the next is tried.
    for temperature in (0.3, 0.6, 1.0, 1.5, 2.0):
        kwargs = dict(temperature=temperature, top_k=5)
        a = module(tiny_model_path, tmp_path / f"a{temperature}", **kwargs).confidences(batch)
        if len(set(a.flatten().tolist())) > 1:
            break
    b = module(tiny_model_path, tmp_path / "b", **kwargs).confidences(batch)
    assert torch.equal(a, b)
    assert bool(((a >= 0) & (a <= 1)).all())
    assert torch.equal(a * SAMPLES, (a * SAMPLES).round()), "an agreement is a share of K samples"
    assert len(set(a.flatten().tolist())) > 1, f"all agreements equal ({a.tolist()}): the check is vacuous"
    # The value of a prompt does not depend on the batch it came in.
    one = collate(dm.examples[1:2], pad_id=dm.tokenizer.pad_token_id)
    c = module(tiny_model_path, tmp_path / "c", **kwargs).confidences(one)
    assert torch.equal(c[0], a[1])


def test_per_prompt_sampler_draws_as_each_prompt_alone():
    """A step of several prompts' alive copies draws, for each prompt, what `sampler` draws for that
    prompt alone from the same generator: step after step, as copies stop at different times."""
    from selfens.decoding.sampling import sampler

    copies, vocab, seeds = 3, 40, [11, 22, 33]
    alive_per_step = [[0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 2, 3, 4, 5, 8], [2, 4, 8], [8]]
    logits = [
        torch.randn(len(alive), vocab, generator=torch.Generator().manual_seed(s))
        for s, alive in enumerate(alive_per_step)
    ]
    for top_k, top_p in [(0, 1.0), (5, 1.0), (0, 0.8)]:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        batched = per_prompt_sampler(0.7, top_k, top_p, gens, copies)
        alone = {p: sampler(0.7, top_k, top_p, torch.Generator().manual_seed(s)) for p, s in enumerate(seeds)}
        for step_logits, alive in zip(logits, alive_per_step):
            examples = torch.tensor(alive)
            got = batched(step_logits, examples)
            want = torch.cat(
                [alone[p](step_logits[examples // copies == p]) for p in sorted({b // copies for b in alive})]
            )
            assert torch.equal(got, want), (top_k, top_p, alive)
    with pytest.raises(ValueError, match="in order"):
        per_prompt_sampler(1.0, 0, 1.0, gens, copies)(logits[0][:2], torch.tensor([4, 0]))


def one_at_a_time(m: LogitFusion, prompt) -> tuple[list[float], list[list[list[int]]]]:
    """Today's algorithm, for reference: each prompt decoded alone, greedy then K samples drawn with
    `decode.sampler` from a generator seeded from its cache key -> (values, the samples' tokens)."""
    from selfens.decoding.sampling import sampler

    s, cache = m.confidence_settings(), m.confidence.cache
    shared = prompt.prefix.input_ids[0].tolist() if prompt.prefix is not None else []
    values, tokens = [], []
    for row in range(prompt.input_ids.shape[0]):
        alone = prompt.select([row])
        key = cache.key(s, shared + alone.input_ids[0].tolist())
        generator = torch.Generator(device=alone.input_ids.device).manual_seed(int(key[:15], 16) + s.seed)
        answer = m.text(m.generate(alone).tokens[0])
        choose = sampler(s.temperature, s.top_k, s.top_p, generator)
        sampled = m.generate(alone, choose=choose, max_new_tokens=s.max_new_tokens, copies=s.num_samples)
        values.append(agreement([m.text(t) for t in sampled.tokens], answer, m.lemmatizer))
        tokens.append(sampled.tokens)
    return values, tokens


def same_relation(tiny_model_path) -> ParaphraseBatch:
    """2 facts of one relation: their prompts share a prefix."""
    from selfens.model.registry import load_tokenizer

    dm = ParaRel(num_paraphrases=N, num_shots=2, limit=40, prompt_style="raw", fill_style="completion")
    dm.connect(load_tokenizer(tiny_model_path), tiny_model_path)
    dm.setup("test")
    same = [e for e in dm.examples if e.segments.prefix == dm.examples[0].segments.prefix][:2]
    return collate(same, pad_id=dm.tokenizer.pad_token_id)


SAMPLED = dict(temperature=0.3, top_k=5)  # samples that sometimes agree with the greedy answer


@pytest.mark.parametrize("prefix", [False, True], ids=["padded", "shared-prefix"])
def test_batched_samples_equal_each_prompt_alone(tiny_model_path, small, tmp_path, prefix):
    """Prompts of different lengths (left padding) sampled K at a time in chunks of 2 prompts (10 rows
    of K = 4: the chunk boundary falls between neighbours), or one prompt (3 rows < K): the samples and
    values are exactly those of today's one-prompt-at-a-time algorithm."""
    batch = same_relation(tiny_model_path) if prefix else small
    reference = module(tiny_model_path, tmp_path / "ref", **SAMPLED)
    prompt = reference.single_prompts(batch)
    assert (prompt.prefix is not None) == prefix
    assert not bool(prompt.valid.all()), "the prompts must differ in length for padding to be tested"
    want_values, want_tokens = one_at_a_time(reference, prompt)
    # The check is the samples themselves, token for token (below), and the values they give. The
    # tiny model's values are few and often equal (its tokenizer is trained anew each session), so
    # what must vary for the check to mean anything is the samples: across copies and prompts.
    drawn = [tuple(t) for per_prompt in want_tokens for t in per_prompt]
    assert len(set(drawn)) > len(want_tokens), (
        f"the samples hardly vary ({len(set(drawn))} distinct): the check is vacuous"
    )

    for max_rows in (10, 3):
        m = module(tiny_model_path, tmp_path / str(max_rows), **SAMPLED)
        m.confidence.max_rows = max_rows
        values, _ = m.confidence(prompt)
        assert values.tolist() == torch.tensor(want_values, dtype=torch.float32).tolist(), max_rows
        keys = [m.confidence.cache.key(m.confidence_settings(), one) for one in all_prompts(prompt)]
        assert [line["key"] for line in cache_lines(m)] == keys  # each written once, in order
        # The samples themselves, chunk by chunk as `_compute` draws them.
        per_chunk = max(1, max_rows // SAMPLES)
        for start in range(0, len(keys), per_chunk):
            rows = list(range(start, min(start + per_chunk, len(keys))))
            got = m.confidence._samples([prompt.select(rows)], [keys[r] for r in rows]).tokens
            assert got == [t for r in rows for t in want_tokens[r]], (max_rows, rows)


def all_prompts(prompt) -> list[list[int]]:
    shared = prompt.prefix.input_ids[0].tolist() if prompt.prefix is not None else []
    return [shared + row[mask].tolist() for row, mask in zip(prompt.input_ids, prompt.valid)]


def test_values_do_not_depend_on_chunk_size_or_batch_mates(tiny_model_path, dm, batch, tmp_path):
    def values(examples, max_rows: int, name: str) -> torch.Tensor:
        m = module(tiny_model_path, tmp_path / name, **SAMPLED)
        m.confidence.max_rows = max_rows
        return m.confidences(collate(examples, pad_id=dm.tokenizer.pad_token_id))

    whole = values(dm.examples, 512, "whole")  # 12 prompts in one chunk
    assert len(set(whole.flatten().tolist())) > 1, f"all values equal ({whole.tolist()}): the check is vacuous"
    for max_rows in (1, 7, SAMPLES * 5):
        assert torch.equal(values(dm.examples, max_rows, f"rows{max_rows}"), whole), max_rows
    # Other batch mates, in another order.
    reordered = values([dm.examples[3], dm.examples[1]], 512, "mates")
    assert torch.equal(reordered, whole[[3, 1]])


def test_max_rows_must_be_positive(tiny_model_path, tmp_path):
    m = module(tiny_model_path, tmp_path)
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        Confidence(m.confidence_settings(), m.confidence.cache, m.generate, m.text, m.lemmatizer, max_rows=0)


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
    from selfens.model.registry import load_tokenizer

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


# -- progress --------------------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines_of(progress: Progress) -> list[str]:
    """What `progress` wrote: plain lines, or a terminal's redraws of its line."""
    text = progress.stream.getvalue()
    return [line for line in re.split(r"\r\033\[K|\n", text) if line]


def sample_progress(prompts: int, samples: int, **kwargs) -> Progress:
    """`selfens confidence`'s progress: prompts and their samples, paced by the samples."""
    return Progress("confidence", {"prompts": prompts, "samples": samples}, pace="samples", **kwargs)


def test_progress_counts_prompts_and_samples_with_an_estimate_once_a_decode_is_done(tiny_model_path, small, tmp_path):
    m = module(tiny_model_path, tmp_path)
    total = len(small.ids) * N
    progress = sample_progress(total, total * SAMPLES, every=0.0, stream=io.StringIO())
    m.confidence(m.single_prompts(small), progress)  # one decode of the samples (max_rows 512)
    shown = lines_of(progress)
    counts = [
        tuple(map(int, re.search(r"prompts (\d+) of \d+, samples (\d+) of \d+", line).groups())) for line in shown
    ]
    assert counts[0] == (0, 0)  # the cached ones of the batch (none), said before the first is sampled
    assert counts == sorted(counts) and counts[-1] == (total, total * SAMPLES)
    assert [p for p, _ in counts[-total:]] == list(range(1, total + 1))  # each prompt, once its samples are done
    # Samples finished while others decode are not in the pace: the estimate comes once the decode is done.
    assert all(line.endswith("~? left") for line, (_, s) in zip(shown, counts) if s < total * SAMPLES)
    assert all(re.search(r"~\d+m\d\ds left$", line) for line, (_, s) in zip(shown, counts) if s == total * SAMPLES)

    # Read again, every value is cached: counted as done, not in the pace of the estimate.
    again = sample_progress(total, total * SAMPLES, every=0.0, stream=io.StringIO())
    m.confidence(m.single_prompts(small), again)
    (line,) = lines_of(again)
    assert re.fullmatch(
        rf"confidence: prompts {total} of {total}, samples {total * SAMPLES} of {total * SAMPLES}, "
        rf"\d+m\d\ds elapsed, ~\? left",
        line,
    )


def test_samples_are_counted_while_their_decode_runs(tiny_model_path, small, tmp_path):
    """A chunk of samples decodes for minutes: its samples are counted as they finish, so progress is
    shown before the decode is done; the values are the ones computed without progress."""
    m = module(tiny_model_path, tmp_path / "counted")
    m.decode_rows = 2 * SAMPLES  # 2 prompts' copies at a time: samples finish at several steps of one decode
    total = len(small.ids) * N
    sampling, generate = False, m.confidence.generate

    def watched(prompts, **kwargs):
        nonlocal sampling
        sampling = "choose" in kwargs
        try:
            return generate(prompts, **kwargs)
        finally:
            sampling = False

    reports = []  # (samples done, whether their decode was running) at each report

    class Recorded(Progress):
        def show(self, force: bool = False, end: str = "") -> None:
            reports.append((self.done["samples"], sampling))

    m.confidence.generate = watched
    progress = Recorded("confidence", {"prompts": total, "samples": 10**6}, pace="samples")  # room for an overcount
    values, _ = m.confidence(m.single_prompts(small), progress)
    during = [done for done, running in reports if running]
    assert during and during[0] > 0 and during == sorted(during)  # the first report with samples done: mid-decode
    assert during[-1] < total * SAMPLES and reports[-1][0] == total * SAMPLES  # each counted once
    plain, _ = module(tiny_model_path, tmp_path / "plain").confidence(m.single_prompts(small))
    assert torch.equal(values, plain)


def test_progress_on_a_terminal_is_one_line_redrawn_at_most_every_few_seconds(monkeypatch):
    clock = iter([0.0, 0.0, 1.0, 2.5, 3.0, 3.5])  # start, then each advance and close
    monkeypatch.setattr("selfens.run.progress.time", SimpleNamespace(monotonic=lambda: next(clock)))
    progress = Progress("job", {"questions": 4}, tty_every=2.0, every=0.0, stream=Terminal())
    for _ in range(4):
        progress.advance(questions=1)
    progress.close()
    text = progress.stream.getvalue()
    assert "\n" not in text[:-1] and text.endswith("\n")  # one line, rewritten in place
    assert lines_of(progress) == [
        "job: questions 1 of 4, 0m00s elapsed, ~0m00s left",  # the first at once
        "job: questions 3 of 4, 0m02s elapsed, ~0m00s left",  # the second 2.5 s later; 2 at 1.0 s was not shown
        "job: questions 4 of 4, 0m03s elapsed, ~0m00s left",  # the last, always
    ]


def test_confidence_command_counts_prompts_instead_of_batches(tiny_model_path, tmp_path, capsys, monkeypatch):
    from tests.helpers import ROOT, selfens

    monkeypatch.setattr("selfens.run.progress.EVERY", 0.0)
    capsys.readouterr()
    selfens(
        "confidence",
        "--config",
        ROOT / "configs" / "pararel" / "weighted_avg.yaml",
        *("--model.init_args.model", tiny_model_path, "--data.init_args.limit", 2),
        *("--model.init_args.num_samples", SAMPLES, "--model.init_args.confidence_dir", tmp_path / "confidence"),
        *("--trainer.logger.init_args.save_dir", tmp_path / "logs"),
    )
    said = capsys.readouterr()
    counts = [re.search(r"^confidence: prompts (\d+) of (\d+)", line) for line in said.err.splitlines()]
    counts = [(int(m[1]), int(m[2])) for m in counts if m]
    total = counts[0][1]
    assert total == 2 * 5  # 2 facts, N = 5 (the config's)
    done = [d for d, _ in counts]  # a line a batch (its cached prompts, none here), one a prompt, the close
    assert done == sorted(done) and set(done) == set(range(total + 1)) and done[-1] == total
    closing = [line for line in said.err.splitlines() if line.startswith("confidence: ")][-1]
    assert f", samples {total * SAMPLES} of {total * SAMPLES}, " in closing  # K = num_samples a prompt
    assert "Predicting" not in said.err + said.out  # Lightning's bar of batches is off


def test_prefix_groups_are_computed_together(tiny_model_path, dm, batch, tmp_path, monkeypatch):
    """A batch of 4 relations (4 prefix groups): their missing confidences take one greedy decode and
    one sampling decode together, not one of each per group, and every value is the one its group
    gets alone."""
    m = module(tiny_model_path, tmp_path / "together", **SAMPLED)
    groups = m.prefix_groups(batch)
    assert len(groups) > 1, "the batch must mix prefixes for this check"
    alone = module(tiny_model_path, tmp_path / "alone", **SAMPLED)
    want = torch.zeros(len(batch.ids), N)
    for group in groups:
        want[group] = alone.confidences(collate([dm.examples[b] for b in group], pad_id=dm.tokenizer.pad_token_id))
    calls = []
    generate = m.confidence.generate

    def counted(prompts, **kwargs):
        calls.append(len(prompts))
        return generate(prompts, **kwargs)

    monkeypatch.setattr(m.confidence, "generate", counted)
    assert m.confidences(batch).tolist() == want.tolist()
    assert calls == [len(groups), len(groups)]  # the greedy answers, then the samples (one chunk)


def test_confidence_pass_reads_each_prefix_once(tiny_model_path, batch, tmp_path):
    """`selfens confidence`'s step on a batch of mixed prefixes gives `confidences`' rows, and reads
    each prefix once (the prompts it decodes share their group's prefix, as a weighted run's do)."""
    from selfens.methods.confidence_pass import ConfidencePass

    reference = module(tiny_model_path, tmp_path / "reference", **SAMPLED)
    settings = dict(fusion="weighted_avg", num_samples=SAMPLES, sample_max_new_tokens=4, max_new_tokens=4, **SAMPLED)
    job = ConfidencePass(model=tiny_model_path, stop_strings=[], confidence_dir=str(tmp_path / "job"), **settings)
    job.configure_model()
    seen, read = [], []
    generate = job.confidence.generate

    def spy(prompts, **kwargs):
        seen.extend(prompts)
        out = generate(prompts, **kwargs)
        read.append(out.cost.prefill_tokens)
        return out

    job.confidence.generate = spy
    rows = job.predict_step(batch, 0)
    assert [r["confidences"] for r in rows] == reference.confidences(batch).tolist()
    assert seen and all(p.prefix is not None for p in seen)
    assert len({p.prefix.key for p in seen}) == len(reference.prefix_groups(batch))
    # Each prompt is read once: the K samples take the greedy pass's prefills (their chunk holds them whole).
    groups = [reference.single_prompts(batch, examples=g) for g in reference.prefix_groups(batch)]
    assert len(read) == 2 and sum(read) == sum(p.prefix.input_ids.shape[1] + int(p.valid.sum()) for p in groups)


@pytest.mark.parametrize("measure", ["token_prob", "sampling"])
def test_fused_decode_reads_the_confidence_prefills(tiny_model_path, batch, tmp_path, monkeypatch, measure):
    """A weighted method's fused decode takes the prefills of its greedy confidence pass (the same
    prompts): it runs no prompt tokens of its own, and decodes the same tokens and weights as running
    them again."""
    decoded = []
    generate = LogitFusion.generate

    def spy(self, prompts, **kwargs):
        out = generate(self, prompts, **kwargs)
        decoded.append(out)
        return out

    monkeypatch.setattr(LogitFusion, "generate", spy)
    kept = module(tiny_model_path, tmp_path / "kept", confidence=measure).decode(batch)
    fused_kept = decoded[-1]
    monkeypatch.setattr(LogitFusion, "prefills_kept", lambda self: contextlib.nullcontext())
    again = module(tiny_model_path, tmp_path / "again", confidence=measure).decode(batch)
    fused_again = decoded[-1]
    assert fused_kept.tokens == fused_again.tokens and kept.predictions == again.predictions
    assert kept.extra == again.extra  # the same weights
    assert fused_again.cost.prefill_tokens > 0 and kept.cost.prefill_tokens == 0
    assert kept.cost.forward_calls < again.cost.forward_calls
    # The K samples read the prompts again too: from the greedy pass's prefills where a chunk holds whole prompts.
    fewer = kept.confidence_cost.prefill_tokens < again.confidence_cost.prefill_tokens
    assert (
        fewer
        if measure == "sampling"
        else kept.confidence_cost == dataclasses.replace(again.confidence_cost, seconds=kept.confidence_cost.seconds)
    )
