"""Every model family: decoding and attention fusion on a tiny random model of each family that
transformers ships (conftest.FAMILIES), and the refusal, by name, of those selfens cannot decode
(conftest.REFUSED).

Per family: (a) our decode == transformers' generate; (b) attention fusion with N = 1 == origin;
(c) cached decoding == recomputing the packed sequence; (d) dense == flex; (e) the fusion is real and
the blocks are isolated; and per attention implementation, a batch == each example alone, for origin
and for attention fusion's packed mask. The sliding windows of the tiny configs are shorter than the
prompts and Gemma 2 soft-caps its attention scores, so both are exercised (see the last tests).

Each family's model is built once for this module; the families share one tokenizer, so the batches
are built once too.
"""

from __future__ import annotations

import pytest
import torch

from selfens.attention.layers import layer_windows
from selfens.data.batch import ParaphraseBatch, collate
from selfens.data.pararel import ParaRel
from selfens.decoding.loop import decode, prefill
from selfens.decoding.prompt import Prompt
from selfens.errors import ConfigError
from selfens.methods.attention import AttentionFusion
from selfens.methods.base import EnsembleModule
from selfens.methods.baselines import Origin
from selfens.model.registry import eos_token_ids, load_tokenizer
from tests.helpers import (
    ATTENTION_CONFIGS,
    ATTENTION_MAX_NEW,
    FAMILIES,
    REFUSED,
    WINDOW,
    assert_cached_equals_recomputed,
    assert_same_steps,
    build_refused_model,
    build_tiny_model,
    differs,
    first_step_logits,
    reverse_block,
    run_attention,
    with_blocks,
)

# Eager (uncompiled) FlexAttention on the CPU warns that it is unfused.
pytestmark = [
    pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile"),
    pytest.mark.usefixtures("one_thread"),  # conftest: tiny models run on one thread
]

# Attention fusion's backends: (backend, attn_implementation of the dense one). Gemma 2 has no SDPA:
# its "sdpa" loads with eager.
BACKENDS = {"sdpa": ("dense", "sdpa"), "eager": ("dense", "eager"), "flex": ("flex", "sdpa")}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory) -> tuple[str, str]:
    """(family name, folder of its tiny model)."""
    name = request.param
    return name, str(build_tiny_model(tmp_path_factory.mktemp(name), family=name))


@pytest.fixture(scope="module")
def module(family):
    """module(cls, **kwargs): a configured method module of this family, built once per arguments."""
    built = {}

    def get(cls=AttentionFusion, **kwargs) -> EnsembleModule:
        key = (cls, tuple(sorted(kwargs.items())))
        if key not in built:
            m = cls(model=family[1], max_new_tokens=ATTENTION_MAX_NEW, stop_strings=[], **kwargs)
            m.configure_model()
            m.eval()
            built[key] = m
        return built[key]

    return get


def attention(module, backend: str = "sdpa", **kwargs) -> AttentionFusion:
    dense_or_flex, implementation = BACKENDS[backend]
    return module(backend=dense_or_flex, attn_implementation=implementation, **kwargs)


_batches: dict = {}


@pytest.fixture(scope="module")
def data(family):
    """data(config, n, shots, shared): (4 examples, data module); shared: of one relation (one prefix)."""

    def get(config: str, n: int, shots: int = 2, shared: bool = False) -> tuple[ParaphraseBatch, ParaRel]:
        key = (config, n, shots, shared)
        if key not in _batches:
            tokenizer = load_tokenizer(family[1])
            dm = ParaRel(num_paraphrases=n, num_shots=shots, limit=40 if shared else 4, **ATTENTION_CONFIGS[config])
            dm.connect(tokenizer, family[1])
            dm.setup("test")
            examples = dm.examples[:4]
            if shared:
                examples = [e for e in dm.examples if e.segments.prefix == dm.examples[0].segments.prefix][:4]
            _batches[key] = (collate(examples, tokenizer.pad_token_id), dm)
        return _batches[key]

    return get


SHARED = pytest.mark.parametrize("shared", [False, True], ids=["mixed", "shared"])


# -- (a) our decode == generate --------------------------------------------------------------------------
def test_decode_equals_generate(module, data):
    m = module(Origin)
    batch, _ = data("completion", n=1)
    ids, valid = batch.rows([0])
    lengths = valid.sum(-1)
    assert lengths.min() > WINDOW and len(set(lengths.tolist())) > 1  # past the window, left-padded
    max_new = 12
    ours = decode(m.hf_model, Prompt.left_padded(ids, valid), max_new_tokens=max_new, eos_ids=m.eos_ids).tokens
    out = m.hf_model.generate(
        input_ids=ids,
        attention_mask=valid.long(),
        max_new_tokens=max_new,
        do_sample=False,
        pad_token_id=m.tokenizer.pad_token_id,
    )[:, ids.shape[1] :]
    eos = set(eos_token_ids(m.hf_model, m.tokenizer))
    theirs = [row[: next((i for i, t in enumerate(row) if t in eos), len(row))] for row in out.tolist()]
    assert any(ours) and ours == theirs


# -- (b) attention fusion with one paraphrase == origin --------------------------------------------------
ONE_PARAPHRASE = [
    pytest.param("shared_prefix", "sequential", "completion", "block_ends", id="shared_prefix-sequential-block_ends"),
    pytest.param("shared_prefix", "parallel", "mask_suffix", "suffix", id="shared_prefix-parallel-suffix"),
    pytest.param("seed", "sequential", "mask_suffix", "suffix", id="seed-sequential-suffix"),
]


@pytest.mark.parametrize("layout, positions, config, mode", ONE_PARAPHRASE)
@SHARED
def test_one_paraphrase_equals_origin(module, data, layout, positions, config, mode, shared):
    batch, _ = data(config, n=1, shots=1, shared=shared)
    _, decoded, steps = run_attention(attention(module, layout=layout, positions=positions, first_token=mode), batch)
    _, origin, origin_steps = run_attention(module(Origin), batch)
    assert any(decoded.tokens) and decoded.tokens == origin.tokens
    for b in range(len(decoded.tokens)):
        assert_same_steps(steps[b], origin_steps[b])


# -- (c) cached decoding == recomputing the packed sequence ------------------------------------------------
CACHED = [
    pytest.param("shared_prefix", "parallel", "completion", "block_ends", False, id="parallel-block_ends-mixed"),
    pytest.param("shared_prefix", "sequential", "mask_suffix", "suffix", True, id="sequential-suffix-shared"),
]


@pytest.mark.parametrize("layout, positions, config, mode, shared", CACHED)
def test_cached_decoding_equals_full_recomputation(module, data, layout, positions, config, mode, shared):
    batch, dm = data(config, n=3, shared=shared)
    m = attention(module, layout=layout, positions=positions, first_token=mode)
    assert_cached_equals_recomputed(m, batch, dm.tokenizer.pad_token_id)


# -- (d) dense == flex -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "positions, config, mode", [("sequential", "completion", "block_ends"), ("parallel", "mask_suffix", "suffix")]
)
def test_dense_equals_flex(module, data, positions, config, mode):
    batch, _ = data(config, n=3)
    settings = dict(layout="shared_prefix", positions=positions, first_token=mode)
    dense, flex = attention(module, "sdpa", **settings), attention(module, "flex", **settings)
    assert flex.hf_model.config._attn_implementation == "selfens_flex"
    _, dense_decoded, dense_steps = run_attention(dense, batch)
    _, flex_decoded, flex_steps = run_attention(flex, batch)
    assert any(dense_decoded.tokens) and flex_decoded.tokens == dense_decoded.tokens
    for b in range(len(dense_decoded.tokens)):
        assert_same_steps(flex_steps[b], dense_steps[b])


# -- (e) the fusion is real, the blocks isolated -----------------------------------------------------------
@pytest.mark.parametrize("backend", ["sdpa", "flex"])
@pytest.mark.parametrize("positions", ["sequential", "parallel"])
def test_each_block_is_fused_and_isolated(module, data, backend, positions):
    """Changing block k changes the fused first step and the logits at block k's end, but not those
    at the end of any other block: no block sees another."""
    n = 3
    batch, dm = data("completion", n=n)
    m = attention(module, backend, layout="shared_prefix", positions=positions, first_token="block_ends")

    @torch.no_grad()
    def block_end_logits(b: ParaphraseBatch) -> torch.Tensor:  # [B, N, V]
        return prefill(m.hf_model, m.prompt(m.pack(b)))[0]

    original, fused = block_end_logits(batch), first_step_logits(m, batch)
    for k in range(n):
        changed = with_blocks(batch, dm, reverse_block(k))
        logits = block_end_logits(changed)
        assert differs(first_step_logits(m, changed), fused).all(), f"changing block {k + 1} left the first step"
        assert differs(logits[:, k], original[:, k]).all()
        others = [j for j in range(n) if j != k]
        torch.testing.assert_close(logits[:, others], original[:, others], atol=1e-4, rtol=1e-4)


# -- padding: a batch == each example alone, per attention implementation ---------------------------------
def _assert_batch_equals_each_alone(m: EnsembleModule, batch: ParaphraseBatch, dm: ParaRel) -> None:
    _, together, together_steps = run_attention(m, batch)
    assert any(together.tokens)
    for b, i in enumerate(batch.index.tolist()):
        _, alone, alone_steps = run_attention(m, collate([dm.examples[i]], dm.tokenizer.pad_token_id))
        assert together.tokens[b] == alone.tokens[0], f"example {b}"
        assert_same_steps(together_steps[b], alone_steps[0])


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@SHARED
def test_origin_batch_equals_each_alone(module, data, implementation, shared):
    """Left padding (mixed prefixes), or padding after a prefix read once (shared), never leaks."""
    batch, dm = data("completion", n=1, shared=shared)
    m = module(Origin, attn_implementation=implementation)
    assert len(set(batch.valid.sum(-1).flatten().tolist())) > 1  # rows of different lengths: padded
    _assert_batch_equals_each_alone(m, batch, dm)


@pytest.mark.parametrize("backend", list(BACKENDS))
@SHARED
def test_attention_batch_equals_each_alone(module, data, backend, shared):
    batch, dm = data("completion", n=3, shared=shared)
    m = attention(module, backend, layout="shared_prefix", positions="parallel", first_token="block_ends")
    assert len(set(m.pack(batch).valid.sum(-1).tolist())) > 1  # packed rows of different lengths
    _assert_batch_equals_each_alone(m, batch, dm)


def test_flex_attention_of_transformers_is_refused_on_cpu(family):
    with pytest.raises(ConfigError, match="flex_attention"):
        Origin(model=family[1], attn_implementation="flex_attention").configure_model()


# -- the tiny configs exercise what they claim -------------------------------------------------------------
@torch.no_grad()
def _prefill_logits(m: AttentionFusion, batch: ParaphraseBatch) -> torch.Tensor:
    return prefill(m.hf_model, m.prompt(m.pack(batch)))[0].flatten(0, 1)  # [B*N, V]


def test_sliding_window_matters(module, data, family):
    """A family with sliding windows (none for Llama and OLMo 2) reads prompts longer than them:
    dropping the window changes the logits."""
    m = attention(module, layout="shared_prefix", positions="sequential", first_token="block_ends")
    config = m.hf_model.config.get_text_config(decoder=True)
    windowed = any(layer_windows(config).values())
    assert windowed == (family[0] not in ("llama", "olmo2"))
    if not windowed:
        return
    batch, _ = data("completion", n=3)
    logits = _prefill_logits(m, batch)
    window, config.sliding_window = config.sliding_window, None
    try:
        assert differs(_prefill_logits(m, batch), logits).any()
    finally:
        config.sliding_window = window


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_soft_capping_matters(module, data, family, backend):
    """Gemma 2 soft-caps its attention scores (and only it): every backend applies the cap."""
    m = attention(module, backend, layout="shared_prefix", positions="sequential", first_token="block_ends")
    capped = [attn for attn in m.hf_model.modules() if getattr(attn, "attn_logit_softcapping", None)]
    assert bool(capped) == (family[0] == "gemma2")
    if not capped:
        return
    batch, _ = data("completion", n=3)
    logits = _prefill_logits(m, batch)
    cap = capped[0].attn_logit_softcapping
    for attn in capped:
        attn.attn_logit_softcapping = None
    try:
        assert differs(_prefill_logits(m, batch), logits).any()
    finally:
        for attn in capped:
            attn.attn_logit_softcapping = cap


# -- refused families ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [Origin, AttentionFusion], ids=["origin", "attention"])
@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_by_name(tmp_path, name, method):
    from transformers import AutoConfig

    folder = str(build_refused_model(tmp_path / name, name))
    model_type = AutoConfig.from_pretrained(folder).model_type
    m = method(model=folder)
    with pytest.raises(ConfigError, match=f"model type '{model_type}'") as refused:
        m.configure_model()
    assert "\n" not in str(refused.value) and m.hf_model is None
