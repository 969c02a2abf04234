"""LogitFusion on the tiny random Llama: agreement with `origin` where fusion must be a no-op, the
cached lockstep decoder against an uncached reference loop, the weighted rules, and output rows.

Modules are built without a Trainer (`configure_model` loads the model on the CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from selfens.data import ParaRel
from selfens.data.batch import ParaphraseBatch, collate
from selfens.decoding.fusion import FUSIONS, bind
from selfens.decoding.prompt import Prompt
from selfens.methods import LogitFusion, Origin, PerPrompt
from selfens.model.registry import load_tokenizer

ALL = sorted(FUSIONS)  # avg, max, weighted_avg, weighted_max
MAX_NEW = 6


# -- helpers -------------------------------------------------------------------------------------------


def pararel(path: str, n: int, limit: int = 4) -> ParaRel:
    dm = ParaRel(
        num_paraphrases=n, num_shots=2, limit=limit, batch_size=limit, prompt_style="raw", fill_style="completion"
    )
    dm.connect(load_tokenizer(path), path)
    dm.setup("test")
    return dm


def first_batch(dm: ParaRel, shared: bool = False) -> ParaphraseBatch:
    """4 examples: of 4 relations (different prompt prefixes), or of one (one prefix, read once)."""
    examples = dm.examples[:4]
    if shared:
        examples = [e for e in dm.examples if e.segments.prefix == dm.examples[0].segments.prefix][:4]
    assert len(examples) == 4 and len({tuple(e.segments.prefix) for e in examples}) == (1 if shared else 4)
    return collate(examples, pad_id=dm.tokenizer.pad_token_id)


def fusion_module(path: str, fusion: str, folder, **kwargs) -> LogitFusion:
    kwargs.setdefault("confidence", "token_prob")
    kwargs.setdefault("max_new_tokens", MAX_NEW)
    m = LogitFusion(model=path, fusion=fusion, stop_strings=[], confidence_dir=str(folder), **kwargs)
    m.configure_model()
    return m


def origin_module(path: str, **kwargs) -> Origin:
    kwargs.setdefault("max_new_tokens", MAX_NEW)
    m = Origin(model=path, stop_strings=[], **kwargs)
    m.configure_model()
    return m


def fused_tokens(m: LogitFusion, batch: ParaphraseBatch) -> list[list[int]]:
    """The token ids LogitFusion.decode generates (the same call, without the text step)."""
    weights = m.confidences(batch) if m.fusion_rule.needs_weights else None
    return m.generate(
        m.single_prompts(batch), rows_per_example=batch.num_paraphrases, fuse=bind(m.fusion_rule.fn, weights)
    ).tokens


def origin_tokens(m, batch: ParaphraseBatch) -> list[list[int]]:
    return m.generate(m.single_prompts(batch, [0])).tokens


def alone(m, prompt_ids: list[int], **kwargs) -> list[int]:
    """Greedy tokens of one prompt decoded by itself (no padding)."""
    ids = torch.tensor([prompt_ids])
    return m.generate(Prompt.left_padded(ids, torch.ones_like(ids, dtype=torch.bool)), **kwargs).tokens[0]


def single_prompt(batch: ParaphraseBatch, b: int, k: int) -> list[int]:
    return batch.input_ids[b, k][batch.valid[b, k]].tolist()


def repeated(dm: ParaRel, n: int, count: int = 4) -> ParaphraseBatch:
    """The first `count` examples of `dm` with paraphrase 0 repeated n times."""
    examples = [
        dataclasses.replace(
            e,
            paraphrases=[e.paraphrases[0]] * n,
            segments=dataclasses.replace(e.segments, blocks=[list(e.segments.blocks[0]) for _ in range(n)]),
        )
        for e in dm.examples[:count]
    ]
    return collate(examples, pad_id=dm.tokenizer.pad_token_id)


def disagreeing(dm: ParaRel, m) -> list:
    """The examples of `dm` whose paraphrases, decoded alone, give different answers: on the others
    (most, with a random model) every fusion rule trivially equals origin."""
    batch = collate(dm.examples, pad_id=dm.tokenizer.pad_token_id)
    n = batch.num_paraphrases
    answers = m.generate(Prompt.left_padded(*batch.rows())).tokens  # [B*N], example-major
    return [e for b, e in enumerate(dm.examples) if len({tuple(a) for a in answers[b * n : (b + 1) * n]}) > 1]


@pytest.fixture(scope="module")
def origin(tiny_model_path) -> Origin:
    return origin_module(tiny_model_path)


@pytest.fixture(scope="module")
def dm3(tiny_model_path) -> ParaRel:
    return pararel(tiny_model_path, 3, limit=12)


@pytest.fixture(scope="module")
def disagree3(dm3, origin) -> list:
    examples = disagreeing(dm3, origin)
    assert len(examples) >= 4, f"only {len(examples)} of {len(dm3.examples)} examples have disagreeing paraphrases"
    return examples


@pytest.fixture(scope="module")
def batch3(dm3, disagree3) -> ParaphraseBatch:
    """4 examples, 3 paraphrases each, whose paraphrases disagree."""
    return collate(disagree3[:4], pad_id=dm3.tokenizer.pad_token_id)


# -- fusion is a no-op -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ALL)
def test_identical_paraphrases_equal_origin(tiny_model_path, dm3, origin, fusion, tmp_path):
    batch = repeated(dm3, 3)
    assert batch.num_paraphrases == 3 and len(batch.ids) == 4
    assert all(len(set(p)) == 1 for p in batch.paraphrases)
    m = fusion_module(tiny_model_path, fusion, tmp_path)
    expected = origin_tokens(origin, batch)
    assert any(expected), "the origin answers are all empty: the comparison would be vacuous"
    assert fused_tokens(m, batch) == expected
    assert m.decode(batch).predictions == origin.decode(batch).predictions


@pytest.mark.parametrize("shared", [False, True], ids=["mixed", "shared"])
@pytest.mark.parametrize("fusion", ALL)
def test_one_paraphrase_equals_origin(tiny_model_path, origin, fusion, shared, tmp_path):
    batch = first_batch(pararel(tiny_model_path, 1, limit=40 if shared else 4), shared)
    assert batch.num_paraphrases == 1
    m = fusion_module(tiny_model_path, fusion, tmp_path)
    expected = origin_tokens(origin, batch)
    assert any(expected)
    assert fused_tokens(m, batch) == expected
    out = m.decode(batch)
    assert out.predictions == origin.decode(batch).predictions
    if FUSIONS[fusion].needs_weights:
        assert [len(e["weights"]) for e in out.extra] == [1] * len(batch.ids)


@pytest.mark.parametrize("fusion", ALL)
def test_reusing_the_prefix_changes_no_token(tiny_model_path, fusion, tmp_path):
    """One relation's facts share a prefix: read once (and cached for later batches), the tokens
    and fused answers are those of reading every prompt whole."""
    batch = first_batch(pararel(tiny_model_path, 3, limit=40), shared=True)
    with_reuse = fusion_module(tiny_model_path, fusion, tmp_path / "a")
    without = fusion_module(tiny_model_path, fusion, tmp_path / "b", reuse_prefix=False)
    assert with_reuse.single_prompts(batch).prefix is not None and without.single_prompts(batch).prefix is None
    tokens = fused_tokens(without, batch)
    assert any(tokens)
    assert fused_tokens(with_reuse, batch) == tokens
    assert fused_tokens(with_reuse, batch) == tokens  # the prefix KV now from the cache
    reused, plain = with_reuse.decode(batch), without.decode(batch)
    assert reused.predictions == plain.predictions
    assert reused.extra == plain.extra  # the same confidences, for weighted rules
    assert reused.cost.prefill_tokens < plain.cost.prefill_tokens


@pytest.mark.parametrize("method", [Origin, PerPrompt])
def test_baselines_reusing_the_prefix_change_no_answer(tiny_model_path, method):
    batch = first_batch(pararel(tiny_model_path, 3, limit=40), shared=True)
    with_reuse = method(model=tiny_model_path, max_new_tokens=MAX_NEW, stop_strings=[])
    without = method(model=tiny_model_path, max_new_tokens=MAX_NEW, stop_strings=[], reuse_prefix=False)
    for m in (with_reuse, without):
        m.configure_model()
    reused, plain = with_reuse.decode(batch), without.decode(batch)
    assert reused.predictions == plain.predictions
    assert reused.per_paraphrase == plain.per_paraphrase
    assert reused.cost.prefill_tokens < plain.cost.prefill_tokens


# -- the cached lockstep decoder against a reference loop ----------------------------------------------


def _ref_avg(logits):  # [B, N, V] -> [B, V]
    return logits.mean(1)


def _ref_max(logits):
    return logits.softmax(-1).amax(1)


@torch.inference_mode()
def reference_fused_decode(model, ids, valid, n, fuse, max_new_tokens, eos_ids, stop=None):
    """No cache: every step reruns the model on the full left-padded sequences and appends the fused
    token of each example to all n of its rows (finished examples too: they are only ignored)."""
    ids, valid = ids.clone(), valid.clone()
    b = ids.shape[0] // n
    tokens: list[list[int]] = [[] for _ in range(b)]
    done = [False] * b
    for _ in range(max_new_tokens):
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=valid.long(), position_ids=positions, use_cache=False).logits
        nxt = fuse(logits[:, -1].float().view(b, n, -1)).argmax(-1)  # [b]
        for e in range(b):
            if done[e]:
                continue
            if int(nxt[e]) in eos_ids:
                done[e] = True
            else:
                tokens[e].append(int(nxt[e]))
                done[e] = stop is not None and stop(e, tokens[e])
        if all(done):
            break
        ids = torch.cat([ids, nxt.repeat_interleave(n)[:, None]], -1)
        valid = torch.cat([valid, valid.new_ones(valid.shape[0], 1)], -1)
    return tokens


def stop_after(example: int, count: int):
    """A stop rule (in place of the module's stop strings) that ends one example after `count` tokens."""
    return lambda b, tokens: b == example and len(tokens) == count


@pytest.mark.parametrize("stopped", [None, 1], ids=["all-run", "middle-stops-early"])
@pytest.mark.parametrize("fusion, ref", [("avg", _ref_avg), ("max", _ref_max)])
def test_cached_lockstep_equals_uncached_reference(tiny_model_path, dm3, disagree3, fusion, ref, stopped, tmp_path):
    batch = collate(disagree3[:3], pad_id=dm3.tokenizer.pad_token_id)
    lengths = batch.valid.sum(-1)  # [3, 3]
    assert len(set(lengths.flatten().tolist())) > 2, "the prompts should differ in length"
    m = fusion_module(tiny_model_path, fusion, tmp_path, max_new_tokens=8)
    stop = None if stopped is None else stop_after(stopped, 2)
    if stop is not None:
        m.stop_rule = stop  # the decoder drops a finished example's rows: the others must not notice
    ids, valid = batch.rows()
    expected = reference_fused_decode(m.hf_model, ids, valid, 3, ref, 8, set(m.eos_ids), stop)
    assert [len(t) for t in expected] == ([8, 2, 8] if stopped is not None else [8, 8, 8])
    assert fused_tokens(m, batch) == expected


# -- weighted rules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stopped", [None, 0], ids=["all-run", "first-stops-early"])
def test_weighted_max_equals_most_confident_paraphrase_alone(tiny_model_path, batch3, origin, stopped, tmp_path):
    m = fusion_module(tiny_model_path, "weighted_max", tmp_path)
    conf = m.confidences(batch3)  # [B, N] token_prob (computed before any stop rule is set)
    assert conf.shape == (4, 3)
    best = conf.argmax(1).tolist()
    # Guard: with paraphrase 0 always the most confident this would only re-test origin.
    assert any(k != 0 for k in best), f"confidences {conf.tolist()} make paraphrase 0 the best everywhere"
    expected = [alone(origin, single_prompt(batch3, b, k)) for b, k in enumerate(best)]
    assert expected != origin_tokens(origin, batch3), "weighted_max would be indistinguishable from origin"
    if stopped is not None:
        # Once example 0 is done, the remaining examples must still get their own weights.
        m.stop_rule = stop_after(stopped, 2)
        expected[stopped] = expected[stopped][:2]
    assert fused_tokens(m, batch3) == expected
    out = m.decode(batch3)
    assert out.predictions == [origin.text(t) for t in expected]


def test_weighted_avg_with_equal_confidences_equals_avg(tiny_model_path, batch3, tmp_path):
    # Equal confidences, planted in the cache; compute_confidence=False proves that they are used.
    m = fusion_module(tiny_model_path, "weighted_avg", tmp_path, compute_confidence=False)
    settings, cache = m.confidence_settings(), m.confidence.cache
    for b in range(len(batch3.ids)):
        for k in range(batch3.num_paraphrases):
            cache.put(cache.key(settings, single_prompt(batch3, b, k)), 0.25)
    assert torch.equal(m.confidences(batch3), torch.full((4, 3), 0.25))
    avg = fusion_module(tiny_model_path, "avg", tmp_path)
    expected = fused_tokens(avg, batch3)
    assert any(expected)
    assert fused_tokens(m, batch3) == expected
    out = m.decode(batch3)
    assert out.predictions == avg.decode(batch3).predictions
    assert [e["weights"] for e in out.extra] == [[0.25] * 3] * 4


def test_fusion_changes_answers_on_disagreeing_batch(tiny_model_path, batch3, tmp_path):
    # Not a property of the rules but of the fixture: the comparisons here only mean something if
    # fusing the paraphrases of batch3 can change an answer (max does; avg happens not to).
    m = fusion_module(tiny_model_path, "max", tmp_path)
    assert fused_tokens(m, batch3) != origin_tokens(m, batch3)


# -- predictions rows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["weighted_avg", "weighted_max"])
def test_rows_of_weighted_methods_carry_weights(tiny_model_path, batch3, fusion, tmp_path):
    m = fusion_module(tiny_model_path, fusion, tmp_path)
    m.scores = m.build_scores(batch3.num_paraphrases)
    rows = m._step(batch3, score_it=True)
    conf = m.confidences(batch3).tolist()
    assert [r["index"] for r in rows] == batch3.index.tolist()
    for row, c in zip(rows, conf):
        assert row["method"] == fusion
        assert row["weights"] == [round(w, 4) for w in c]
        assert len(row["weights"]) == batch3.num_paraphrases
        assert set(row["scores"]) == {fusion} and set(row["scores"][fusion]) == {"em", "f1", "lemma"}
    # Via rows() directly, unscored.
    out = m.decode(batch3)
    plain = m.rows(batch3, out, scored=False)
    assert [r["weights"] for r in plain] == [r["weights"] for r in rows]
    assert all("scores" not in r for r in plain)


@pytest.mark.parametrize("fusion", ["avg", "max"])
def test_rows_of_unweighted_methods_have_no_weights(tiny_model_path, batch3, fusion, tmp_path):
    m = fusion_module(tiny_model_path, fusion, tmp_path)
    m.scores = m.build_scores(batch3.num_paraphrases)
    rows = m._step(batch3, score_it=True)
    assert len(rows) == 4 and all("weights" not in r for r in rows)
    assert not list(tmp_path.iterdir()), "unweighted fusion must not compute confidences"


@pytest.mark.parametrize("fusion", ["weighted_avg", "weighted_max"])
def test_zero_confidence_everywhere_is_said(tiny_model_path, batch3, fusion, tmp_path):
    """Every weight 0 leaves the rule nothing to go by: the rows are marked and the run says how
    many examples fell back, and to what."""
    m = fusion_module(tiny_model_path, fusion, tmp_path, compute_confidence=False)
    settings, cache = m.confidence_settings(), m.confidence.cache
    for b in range(len(batch3.ids)):
        for k in range(batch3.num_paraphrases):  # example 0 all zero; the others not
            cache.put(cache.key(settings, single_prompt(batch3, b, k)), 0.0 if b == 0 or k else 0.5)
    rows = m.rows(batch3, m.decode(batch3), scored=False)
    assert [r.get("all_zero", False) for r in rows] == [True, False, False, False]
    fallback = {"weighted_avg": "equal weights (as avg)", "weighted_max": "the first paraphrase's logits"}[fusion]
    assert m.warnings(rows) == [
        f"1 of 4 examples had confidence 0 for every paraphrase: {fusion} fused them with {fallback}"
    ]
    if fusion == "weighted_avg":  # equal weights: example 0's answer is avg's
        avg = fusion_module(tiny_model_path, "avg", tmp_path)
        assert rows[0]["prediction"] == avg.decode(batch3).predictions[0]


def test_unreadable_confidence_cache_lines_are_counted(tiny_model_path, batch3, tmp_path):
    from selfens.methods.confidence import ConfidenceCache

    m = fusion_module(tiny_model_path, "weighted_avg", tmp_path)
    m.confidences(batch3)  # fills the cache
    path = m.confidence.cache.path
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "not json", *lines[1:], '{"key": "cut sho']) + "\n")
    reread = ConfidenceCache(path.parent, m.model_name)
    assert reread.skipped == [f"{path}:2", f"{path}:{len(lines) + 2}"]
    assert len(reread.values) == len(lines)
    m.confidence.cache = reread
    (said,) = m.warnings([])
    assert said.startswith(f"confidence cache: 2 unreadable line(s) skipped ({path}:2, ")
