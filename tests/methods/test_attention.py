"""The `attention` method (packed paraphrases, see `selfens.attention`) end to end on the tiny random Llama.

Token ids are compared, not text. Modules are built without a Trainer (configure_model falls back
to the CPU), batches come from the bundled ParaRel.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch
from torch.nn.attention.flex_attention import BlockMask

from selfens.attention.layers import model_mask
from selfens.attention.masks import dense_mask, packed_mask_mod
from selfens.attention.packing import FUSED, LAYOUTS, pack
from selfens.attention.positions import position_ids
from selfens.data.batch import ParaphraseBatch, collate
from selfens.data.pararel import ParaRel
from selfens.decoding.loop import prefill
from selfens.decoding.prompt import Prompt
from selfens.decoding.result import Decoded, decode_order
from selfens.decoding.sampling import greedy
from selfens.methods.attention import AttentionFusion
from selfens.methods.base import EnsembleModule, Output
from selfens.methods.baselines import Origin

MAX_NEW = 6
POSITIONS = ("sequential", "parallel")

# Prompt configurations of the ParaRel data module.
CONFIGS = {
    "completion": dict(fill_style="completion", prompt_style="raw", cue_in="block"),  # empty suffix
    "mask_block": dict(fill_style="mask", prompt_style="raw", cue_in="block"),  # empty suffix
    "mask_suffix": dict(fill_style="mask", prompt_style="raw", cue_in="suffix"),  # suffix "\nA:"
    "chat": dict(fill_style="mask", prompt_style="chat", cue_in="block"),  # suffix: assistant header
}
EMPTY_SUFFIX = ("completion", "mask_block")
# The prompt configuration each first-token mode needs on a non-seed layout.
CONFIG_OF = {"block_ends": "completion", "suffix": "mask_suffix"}


def first_token_modes(layout: str, config: str) -> list[str]:
    """The first-token modes that are meaningful (accepted) for a layout and prompt configuration."""
    if layout == "seed":
        return ["block_ends", "suffix"]
    return ["block_ends"] if config in EMPTY_SUFFIX else ["suffix"]


def cases(configs=CONFIGS):
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
            m = cls(model=tiny_model_path, max_new_tokens=MAX_NEW, stop_strings=[], **kwargs)
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
            dm = ParaRel(num_paraphrases=n, num_shots=shots, limit=40 if shared else 4, **CONFIGS[config])
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


def run(m: EnsembleModule, batch: ParaphraseBatch) -> tuple[Output, Decoded, list[list[torch.Tensor]]]:
    """m.decode(batch), also returning what its `generate` call decoded (token ids) and, per
    example, the fused logits [V] that chose each of its tokens (greedy, as by default).

    Greedy tokens of the tiny random model hardly react to small errors (a wrong position id in
    the decode steps left every token here unchanged), so tests compare these logits too.
    """
    calls, steps = [], []
    generate = m.generate

    def choose(fused: torch.Tensor, examples=None) -> torch.Tensor:
        steps.append(fused.detach().clone())
        return greedy(fused)

    def spy(*args, **kwargs):
        assert "choose" not in kwargs
        calls.append(generate(*args, choose=choose, **kwargs))
        return calls[-1]

    m.generate = spy
    try:
        out = m.decode(batch)
    finally:
        del m.generate
    assert len(calls) == 1
    decoded = calls[0]
    # The decoder may drop finished examples from the batch: step t then holds only the examples
    # still decoding at t, in order. An example decodes at steps 0 .. live_steps - 1.
    lives = [live_steps(tokens) for tokens in decoded.tokens]
    per_example: list[list[torch.Tensor]] = [[] for _ in lives]
    for t, fused in enumerate(steps):
        alive = [b for b, live in enumerate(lives) if t < live]
        if fused.shape[0] == len(lives):  # the whole batch every step
            rows = list(range(len(lives)))
        else:
            assert fused.shape[0] == len(alive), (t, fused.shape, lives)
            rows = alive
        for row, b in enumerate(rows):
            if b in alive:
                per_example[b].append(fused[row])
    assert [len(p) for p in per_example] == lives
    # The decode numbers examples by prefix group (`prefix_groups`): back to batch order.
    order = decode_order(m.prefix_groups(batch))
    in_batch_order = [None] * len(order)
    for i, b in enumerate(order):
        in_batch_order[b] = per_example[i]
    return out, decoded.reordered(order), in_batch_order


def live_steps(tokens: list[int]) -> int:
    """Steps that chose this example's tokens: one per token, plus the EOS step if it stopped early
    (stop_strings are empty here, so stopping early means EOS)."""
    return min(len(tokens) + 1, MAX_NEW)


def assert_same_steps(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    """Two examples' fused logits [V] are equal (to float tolerance) at every step."""
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b)):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4, msg=lambda m, t=t: f"step {t}: {m}")


def attention(module, layout, positions, mode, **kwargs) -> AttentionFusion:
    return module(layout=layout, positions=positions, first_token=mode, **kwargs)


@torch.no_grad()
def first_step_logits(m: AttentionFusion, batch: ParaphraseBatch) -> torch.Tensor:
    """The fused logits that choose the first answer token, computed as the method does. [B, V]"""
    packed = m.pack(batch)
    prompt = m.prompt(packed)
    if m.first_token == "block_ends":
        logits, _ = prefill(m.hf_model, prompt)  # [B, N, V]: the prompt reads the block ends
        return logits.mean(1)  # first_fusion = avg
    logits, _ = prefill(m.hf_model, prompt)  # last position
    return logits[:, 0]


@torch.no_grad()
def single_prompt_logits(m: EnsembleModule, batch: ParaphraseBatch, k: int) -> torch.Tensor:
    """Next-token logits at the end of paraphrase k's single prompt. [B, V]"""
    logits, _ = prefill(m.hf_model, Prompt.left_padded(*batch.rows([k])))
    return logits[:, 0]


def with_blocks(batch: ParaphraseBatch, dm: ParaRel, change) -> ParaphraseBatch:
    """The batch again, with each example's blocks replaced by change(blocks)."""
    examples = [dm.examples[int(i)] for i in batch.index]
    changed = [replace(ex, segments=replace(ex.segments, blocks=change(ex.segments.blocks))) for ex in examples]
    return collate(changed, dm.tokenizer.pad_token_id)


def differs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row of [B, V]: True where the two logit rows clearly differ."""
    return (a - b).abs().amax(-1) > 1e-3


# -- 1. one paraphrase is the single prompt ------------------------------------------------------------
@pytest.mark.parametrize("layout, positions, config, mode", cases())
@SHARED
def test_one_paraphrase_equals_origin(module, data, layout, positions, config, mode, shared):
    batch, _ = data(config, n=1, shots=1, shared=shared)  # isolated_fewshot with one shot: nothing to isolate
    segments = batch.segments[0]
    assert (not segments.suffix) == (config in EMPTY_SUFFIX)  # the configuration is what it claims
    out, decoded, steps = run(attention(module, layout, positions, mode), batch)
    origin_out, origin_decoded, origin_steps = run(module(Origin), batch)
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
@torch.no_grad()
def reference_decode(m: AttentionFusion, segments, pad_id: int) -> tuple[list[int], list[torch.Tensor]]:
    """Greedy decoding of one example without a cache: each step appends the token to the packed
    sequence as a level-3 (fused) token and reruns the model on all of it with the full dense mask.

    Returns the tokens (without EOS) and the fused logits [V] of each step."""
    packed = pack([segments], m.layout, pad_id)
    ids, level, segment, valid = packed.input_ids, packed.level, packed.segment, packed.valid  # [1, L]
    pos = position_ids(packed, m.positions)
    # Generated tokens join the suffix's segment (they see it and each other); with no suffix, a new one.
    fused = segment[level == FUSED]
    generated_segment = int(fused[0]) if len(fused) else int(segment.max()) + 1
    eos = set(m.eos_ids)
    tokens: list[int] = []
    steps: list[torch.Tensor] = []
    for step in range(MAX_NEW):
        length = ids.shape[1]
        mask = dense_mask(packed_mask_mod((level, segment, valid)), 1, length)
        # In the form the model's attention honours, with its sliding windows (test_architectures.py).
        mask = model_mask(m.hf_model, mask, pos, pos)
        logits = m.hf_model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[0].float()
        if step == 0 and m.first_token == "block_ends":
            scores = logits[packed.block_ends[0]].mean(0)  # avg over the block ends
        else:
            scores = logits[-1]
        steps.append(scores)
        token = int(scores.argmax())
        if token in eos:
            break
        tokens.append(token)
        next_pos = int(pos[valid].max()) + 1
        ids = torch.cat([ids, torch.tensor([[token]])], 1)
        level = torch.cat([level, torch.tensor([[FUSED]])], 1)
        segment = torch.cat([segment, torch.tensor([[generated_segment]])], 1)
        valid = torch.cat([valid, torch.tensor([[True]])], 1)
        pos = torch.cat([pos, torch.tensor([[next_pos]])], 1)
    return tokens, steps


@pytest.mark.parametrize("layout, positions, config, mode", cases(("completion", "mask_suffix")))
@SHARED
def test_cached_decoding_equals_full_recomputation(module, data, layout, positions, config, mode, shared):
    batch, dm = data(config, n=3, shots=2, shared=shared)
    m = attention(module, layout, positions, mode)
    assert_cached_equals_recomputed(m, batch, dm.tokenizer.pad_token_id)


def assert_cached_equals_recomputed(m, batch, pad_id: int) -> None:
    """Decoding with the KV cache == recomputing the whole packed sequence at every step, step by step."""
    _, decoded, steps = run(m, batch)
    reference = [reference_decode(m, s, pad_id) for s in batch.segments]
    assert any(tokens for tokens, _ in reference)
    assert decoded.tokens == [tokens for tokens, _ in reference]
    for b, (_, ref_steps) in enumerate(reference):
        assert_same_steps(steps[b], ref_steps)


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
        _, flex_decoded, flex_steps = run(flex, batch)
        with torch.no_grad():
            flex_logits = flex.hf_model(
                input_ids=flex_prompt.input_ids,
                attention_mask=flex_prompt.attention_mask,
                position_ids=flex_prompt.position_ids,
                use_cache=False,
            ).logits
    _, dense_decoded, dense_steps = run(dense, batch)
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
    _, together, together_steps = run(m, batch)
    for b, i in enumerate(batch.index.tolist()):
        _, alone, alone_steps = run(m, collate([dm.examples[i]], dm.tokenizer.pad_token_id))
        assert together.tokens[b] == alone.tokens[0]
        assert_same_steps(together_steps[b], alone_steps[0])


# -- 5. the fusion is real -----------------------------------------------------------------------------
def _reverse_block(k: int):
    def change(blocks):
        assert blocks[k] != blocks[k][::-1]
        return [b[::-1] if j == k else b for j, b in enumerate(blocks)]

    return change


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
        changed = first_step_logits(m, with_blocks(batch, dm, _reverse_block(k)))
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
    _, decoded, _ = run(m, batch)
    assert [t[:1] for t in decoded.tokens] == last.argmax(-1).unsqueeze(-1).tolist()
    for k in range(n - 1):  # blocks 1..N-1 do not matter
        torch.testing.assert_close(
            first_step_logits(m, with_blocks(batch, dm, _reverse_block(k))), seed, atol=1e-4, rtol=1e-4
        )
    assert differs(first_step_logits(m, with_blocks(batch, dm, _reverse_block(n - 1))), seed).all()


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
    out, decoded, _ = run(m, batch)
    cost = out.cost
    assert cost.prefill_tokens == _expected_prefill_tokens(layout, batch)
    # Per prefix group its prefix, then its rows; then one forward per step for the whole batch.
    assert cost.forward_calls == 2 * groups + cost.decode_steps
    assert 0 < cost.decode_steps <= MAX_NEW - 1
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
    first = run(m, batch)[0].cost
    again = run(m, batch)[0].cost
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
    _, reused, reused_steps = run(with_reuse, batch)
    _, plain, plain_steps = run(without, batch)
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
