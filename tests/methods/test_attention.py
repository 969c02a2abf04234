"""The `attention` method (packed paraphrases, see `selfens.attention`) end to end on the tiny random Llama.

Token ids are compared, not text. Modules are built without a Trainer (configure_model falls back
to the CPU), batches come from the bundled ParaRel.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.attention.flex_attention import BlockMask

from selfens.attention.packing import LAYOUTS, pack
from selfens.data.batch import ParaphraseBatch, collate
from selfens.data.pararel import ParaRel
from selfens.decoding.loop import prefill
from selfens.decoding.prompt import Prompt
from selfens.methods.attention import AttentionFusion
from selfens.methods.base import EnsembleModule
from selfens.methods.baselines import Origin
from tests.helpers import (
    ATTENTION_CONFIGS,
    ATTENTION_MAX_NEW,
    assert_cached_equals_recomputed,
    assert_same_steps,
    differs,
    first_step_logits,
    reverse_block,
    run_attention,
    with_blocks,
)

POSITIONS = ("sequential", "parallel")

EMPTY_SUFFIX = ("completion", "mask_block")
# The prompt configuration each first-token mode needs on a non-seed layout.
CONFIG_OF = {"block_ends": "completion", "suffix": "mask_suffix"}


def first_token_modes(layout: str, config: str) -> list[str]:
    """The first-token modes that are meaningful (accepted) for a layout and prompt configuration."""
    if layout == "seed":
        return ["block_ends", "suffix"]
    return ["block_ends"] if config in EMPTY_SUFFIX else ["suffix"]


def cases(configs=ATTENTION_CONFIGS):
    return [
        pytest.param(layout, positions, config, mode, id=f"{layout}-{positions}-{config}-{mode}")
        for layout in LAYOUTS
        for positions in POSITIONS
        for config in configs
        for mode in first_token_modes(layout, config)
    ]


MODE_CASES = [
    pytest.param(layout, positions, CONFIG_OF[mode], mode, id=f"{layout}-{positions}-{mode}")
    for layout in LAYOUTS
    for positions in POSITIONS
    for mode in ("block_ends", "suffix")
]


# -- fixtures and helpers ----------------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models run on one thread


@pytest.fixture(scope="module")
def module(tiny_model_path):
    """module(cls, **kwargs): a configured method module, built once per distinct arguments."""
    built = {}

    def get(cls=AttentionFusion, **kwargs) -> EnsembleModule:
        if cls is AttentionFusion:
            kwargs.setdefault("backend", "dense")
        key = (cls, tuple(sorted(kwargs.items())))
        if key not in built:
            m = cls(model=tiny_model_path, max_new_tokens=ATTENTION_MAX_NEW, stop_strings=[], **kwargs)
            m.configure_model()
            m.eval()
            built[key] = m
        return built[key]

    return get


@pytest.fixture(scope="module")
def data(tiny_model_path):
    """data(config, n, shots, shared): (a batch of 4 examples, data module), built once per arguments.

    shared=False: 4 facts of 4 relations, whose prompt prefixes differ (read whole, left-padded);
    shared=True: 4 facts of one relation, whose common prefix the methods read once."""
    from selfens.model.registry import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_path)
    built = {}

    def get(config: str, n: int, shots: int, shared: bool = False) -> tuple[ParaphraseBatch, ParaRel]:
        key = (config, n, shots, shared)
        if key not in built:
            dm = ParaRel(num_paraphrases=n, num_shots=shots, limit=40 if shared else 4, **ATTENTION_CONFIGS[config])
            dm.connect(tokenizer, tiny_model_path)
            dm.setup("test")
            examples = dm.examples[:4]
            if shared:
                examples = [e for e in dm.examples if e.segments.prefix == dm.examples[0].segments.prefix][:4]
            assert len(examples) == 4 and len({tuple(e.segments.prefix) for e in examples}) == (1 if shared else 4)
            built[key] = (collate(examples, tokenizer.pad_token_id), dm)
        return built[key]

    return get


SHARED = pytest.mark.parametrize("shared", [False, True], ids=["mixed", "shared"])


def attention(module, layout, positions, mode, **kwargs) -> AttentionFusion:
    return module(layout=layout, positions=positions, first_token=mode, **kwargs)


@torch.no_grad()
def single_prompt_logits(m: EnsembleModule, batch: ParaphraseBatch, k: int) -> torch.Tensor:
    """Next-token logits at the end of paraphrase k's single prompt. [B, V]"""
    logits, _ = prefill(m.hf_model, Prompt.left_padded(*batch.rows([k])))
    return logits[:, 0]


# -- 1. one paraphrase is the single prompt ------------------------------------------------------------
@pytest.mark.parametrize("layout, positions, config, mode", cases())
@SHARED
def test_one_paraphrase_equals_origin(module, data, layout, positions, config, mode, shared):
    batch, _ = data(config, n=1, shots=1, shared=shared)  # isolated_fewshot with one shot: nothing to isolate
    segments = batch.segments[0]
    assert (not segments.suffix) == (config in EMPTY_SUFFIX)  # the configuration is what it claims
    out, decoded, steps = run_attention(attention(module, layout, positions, mode), batch)
    origin_out, origin_decoded, origin_steps = run_attention(module(Origin), batch)
    assert any(decoded.tokens)
    assert decoded.tokens == origin_decoded.tokens
    assert out.predictions == origin_out.predictions
    for b in range(len(decoded.tokens)):
        assert_same_steps(steps[b], origin_steps[b])


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("mode", ["block_ends", "suffix"])
def test_isolated_fewshot_with_two_shots_is_not_the_single_prompt(module, data, positions, mode):
    # Documented property: with >= 2 shots, isolated_fewshot hides shots from each other, so even
    # with N = 1 it is not the single prompt (origin), unlike the other layouts.
    batch, _ = data(CONFIG_OF[mode], n=1, shots=2)
    assert all(len(s.shots) == 2 for s in batch.segments)
    isolated = first_step_logits(attention(module, "isolated_fewshot", positions, mode), batch)
    origin = single_prompt_logits(module(Origin), batch, 0)
    assert differs(isolated, origin).all()
    # With the same data, shared_prefix is still the single prompt.
    shared = first_step_logits(attention(module, "shared_prefix", positions, mode), batch)
    torch.testing.assert_close(shared, origin, atol=1e-4, rtol=1e-4)


# -- 2. cached decoding == recomputing the whole packed sequence -------------------------------------


@pytest.mark.parametrize("layout, positions, config, mode", cases(("completion", "mask_suffix")))
@SHARED
def test_cached_decoding_equals_full_recomputation(module, data, layout, positions, config, mode, shared):
    batch, dm = data(config, n=3, shots=2, shared=shared)
    m = attention(module, layout, positions, mode)
    assert_cached_equals_recomputed(m, batch, dm.tokenizer.pad_token_id)


# -- 3. dense == flex ----------------------------------------------------------------------------------
@pytest.mark.parametrize("layout, positions, config, mode", MODE_CASES)
@SHARED
def test_dense_equals_flex(module, data, layout, positions, config, mode, shared):
    batch, _ = data(config, n=3, shots=2, shared=shared)
    dense = attention(module, layout, positions, mode, backend="dense")
    flex = attention(module, layout, positions, mode, backend="flex")
    assert flex.hf_model.config._attn_implementation == "selfens_flex"
    packed = pack(batch.segments, layout, dense.tokenizer.pad_token_id)  # whole rows: no prefix cache needed
    dense_prompt, flex_prompt = dense.prompt(packed), flex.prompt(packed)
    assert isinstance(flex_prompt.attention_mask, BlockMask)
    assert isinstance(dense_prompt.attention_mask, torch.Tensor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager (uncompiled) flex warns that it is unfused
        _, flex_decoded, flex_steps = run_attention(flex, batch)
        with torch.no_grad():
            flex_logits = flex.hf_model(
                input_ids=flex_prompt.input_ids,
                attention_mask=flex_prompt.attention_mask,
                position_ids=flex_prompt.position_ids,
                use_cache=False,
            ).logits
    _, dense_decoded, dense_steps = run_attention(dense, batch)
    with torch.no_grad():
        dense_logits = dense.hf_model(
            input_ids=dense_prompt.input_ids,
            attention_mask=dense_prompt.attention_mask,
            position_ids=dense_prompt.position_ids,
            use_cache=False,
        ).logits
    assert flex_decoded.tokens == dense_decoded.tokens
    for b in range(len(dense_decoded.tokens)):
        assert_same_steps(flex_steps[b], dense_steps[b])
    valid = packed.valid
    torch.testing.assert_close(flex_logits[valid], dense_logits[valid], atol=1e-4, rtol=1e-4)


# -- 4. a batch == each example alone ----------------------------------------------------------------
@pytest.mark.parametrize("layout, positions, config, mode", MODE_CASES)
@SHARED
def test_batch_equals_each_example_alone(module, data, layout, positions, config, mode, shared):
    batch, dm = data(config, n=3, shots=2, shared=shared)
    m = attention(module, layout, positions, mode)
    packed = m.pack(batch)
    assert len(set(packed.valid.sum(-1).tolist())) > 1  # different packed lengths: padding is exercised
    _, together, together_steps = run_attention(m, batch)
    for b, i in enumerate(batch.index.tolist()):
        _, alone, alone_steps = run_attention(m, collate([dm.examples[i]], dm.tokenizer.pad_token_id))
        assert together.tokens[b] == alone.tokens[0]
        assert_same_steps(together_steps[b], alone_steps[0])


# -- 5. the fusion is real -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "layout, positions, config, mode",
    [p for p in MODE_CASES if p.values[0] != "seed" or p.values[3] == "block_ends"],
)
def test_changing_any_one_block_changes_the_first_step(module, data, layout, positions, config, mode):
    n = 3
    batch, dm = data(config, n=n, shots=2)
    m = attention(module, layout, positions, mode)
    original = first_step_logits(m, batch)
    for k in range(n):
        changed = first_step_logits(m, with_blocks(batch, dm, reverse_block(k)))
        assert differs(original, changed).all(), f"changing block {k + 1} left the first step unchanged"


@pytest.mark.parametrize("positions", POSITIONS)
def test_seed_layout_first_token_comes_from_the_last_paraphrase_alone(module, data, positions):
    # The documented flaw of the seed's script: with first_token: suffix, the seed layout predicts
    # the first answer token at the end of segment N, which sees only paraphrase N's prompt.
    n = 3
    batch, dm = data("mask_suffix", n=n, shots=2)
    m = attention(module, "seed", positions, "suffix")
    seed = first_step_logits(m, batch)
    last = single_prompt_logits(module(Origin), batch, n - 1)  # origin on paraphrase N
    torch.testing.assert_close(seed, last, atol=1e-4, rtol=1e-4)
    _, decoded, _ = run_attention(m, batch)
    assert [t[:1] for t in decoded.tokens] == last.argmax(-1).unsqueeze(-1).tolist()
    for k in range(n - 1):  # blocks 1..N-1 do not matter
        torch.testing.assert_close(
            first_step_logits(m, with_blocks(batch, dm, reverse_block(k))), seed, atol=1e-4, rtol=1e-4
        )
    assert differs(first_step_logits(m, with_blocks(batch, dm, reverse_block(n - 1))), seed).all()


# -- 6. prefill token accounting -----------------------------------------------------------------------
def _expected_prefill_tokens(layout: str, batch: ParaphraseBatch) -> int:
    """Each example's packed row, its prompt prefix read once per prefix group of the batch."""
    total, seen = 0, set()
    for s in batch.segments:
        prefix = len(s.instruction) + sum(map(len, s.shots))
        blocks = sum(map(len, s.blocks))
        if layout == "seed":  # every segment is a whole single prompt
            total += len(s.blocks) * (prefix + len(s.suffix)) + blocks
        else:  # the prefix (instruction + shots) and the suffix are encoded once
            total += prefix + blocks + len(s.suffix)
        if tuple(s.prefix) in seen:  # its group's first row carries it (shared_prefix: the first segment's)
            total -= prefix
        seen.add(tuple(s.prefix))
    return total


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["block_ends", "suffix"])
def test_prefill_token_and_forward_call_accounting(module, data, layout, mode):
    batch, _ = data(CONFIG_OF[mode], n=3, shots=2)
    groups = len({tuple(s.prefix) for s in batch.segments})
    assert groups > 1, "the batch should mix prefixes"
    m = attention(module, layout, "sequential", mode)
    m.prefix_cache.entries.clear()
    out, decoded, _ = run_attention(m, batch)
    cost = out.cost
    assert cost.prefill_tokens == _expected_prefill_tokens(layout, batch)
    # Per prefix group its prefix, then its rows; then one forward per step for the whole batch.
    assert cost.forward_calls == 2 * groups + cost.decode_steps
    assert 0 < cost.decode_steps <= ATTENTION_MAX_NEW - 1
    assert cost.decode_steps >= max(map(len, decoded.tokens)) - 1  # a step for every token after the first
    if layout == "shared_prefix":
        per_prompt = int(batch.valid.sum())  # every single prompt alone: the prefix N times
        assert cost.prefill_tokens < per_prompt


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["block_ends", "suffix"])
def test_a_shared_prefix_is_read_once_then_taken_from_the_cache(module, data, layout, mode):
    """4 facts of one relation: the prefix is prefilled once for the batch, and not at all for a
    later batch with the same prefix; the rest of every packed row is read as without reuse."""
    batch, _ = data(CONFIG_OF[mode], n=3, shots=2, shared=True)
    m = attention(module, layout, "sequential", mode)
    m.prefix_cache.entries.clear()
    prefix = len(batch.segments[0].prefix)
    first = run_attention(m, batch)[0].cost
    again = run_attention(m, batch)[0].cost
    assert first.prefill_tokens == _expected_prefill_tokens(layout, batch)  # 4 rows, 1 prefix
    assert again.prefill_tokens == first.prefill_tokens - prefix  # from the cache
    assert first.forward_calls == 2 + first.decode_steps  # the prefix, then the rest of the batch
    assert again.forward_calls == 1 + again.decode_steps
    assert first.prefill_padded_tokens >= first.prefill_tokens


@pytest.mark.parametrize("layout, positions, config, mode", MODE_CASES)
def test_reusing_the_prefix_changes_no_token(module, data, layout, positions, config, mode):
    batch, _ = data(config, n=3, shots=2, shared=True)
    with_reuse = attention(module, layout, positions, mode)
    without = attention(module, layout, positions, mode, reuse_prefix=False)
    assert with_reuse.prompt(with_reuse.pack(batch)).prefix is not None
    assert without.prompt(without.pack(batch)).prefix is None
    _, reused, reused_steps = run_attention(with_reuse, batch)
    _, plain, plain_steps = run_attention(without, batch)
    assert reused.tokens == plain.tokens
    for b in range(len(plain.tokens)):
        assert_same_steps(reused_steps[b], plain_steps[b])
    assert reused.cost.prefill_tokens < plain.cost.prefill_tokens


# -- 7. refused first-token configurations ----------------------------------------------------------
@pytest.mark.parametrize("layout", ["shared_prefix", "isolated_fewshot"])
def test_suffix_mode_refuses_an_empty_suffix(module, data, layout):
    batch, _ = data("completion", n=3, shots=1)
    assert not any(s.suffix for s in batch.segments)
    with pytest.raises(ValueError, match="block_ends"):
        attention(module, layout, "sequential", "suffix").decode(batch)


@pytest.mark.parametrize("layout", ["shared_prefix", "isolated_fewshot"])
@pytest.mark.parametrize("config", ["mask_suffix", "chat"])
def test_block_ends_mode_refuses_a_suffix(module, data, layout, config):
    batch, _ = data(config, n=3, shots=1)
    assert all(s.suffix for s in batch.segments)
    with pytest.raises(ValueError, match="empty suffix"):
        attention(module, layout, "sequential", "block_ends").decode(batch)
