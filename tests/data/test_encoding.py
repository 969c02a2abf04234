"""Encoding: the cut segments of each paraphrase are exactly the tokens of its whole prompt."""

import copy

import pytest
import torch
from tokenizers.processors import TemplateProcessing

from selfens.data import Example, ParaRel, WebQuestions, collate
from selfens.data.encoding import PromptCutError, cut, encode_example
from selfens.prompting.formats import render
from selfens.prompting.segments import Segments

STYLES = ("raw", "chat")
FILLS = ("mask", "completion")
CUES = ("block", "suffix")


def chat_text(tokenizer, content: str) -> str:
    messages = [{"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def check_encoding(dm, tokenizer) -> None:
    """For each example and paraphrase k: instruction + shots + blocks[k] + suffix == tokenizer(full text)."""
    chat = dm.prompt_style == "chat"
    fmt = dm.prompt_format()
    records = dm.load_records()[: len(dm.examples)]
    assert [r.id for r in records] == [e.id for e in dm.examples]
    renderer = (lambda content: chat_text(tokenizer, content)) if chat else None
    for example, record in zip(dm.examples, records):
        s = example.segments
        assert len(s.blocks) == dm.num_paraphrases
        assert len(s.shots) == len(record.shots) == dm.num_shots
        shared = s.instruction + [t for shot in s.shots for t in shot]
        for k, query in enumerate(record.paraphrases):
            text = "".join(t for _, t in render(fmt, query, record.shots, cue_in=dm.cue_in))
            if chat:
                text = chat_text(tokenizer, text)
            expected = tokenizer(text, add_special_tokens=not chat)["input_ids"]
            assert shared + s.blocks[k] + s.suffix == expected, (example.id, k, text)
            assert example.segments.prompt(k) == expected
            # Shared parts: the cut of every paraphrase's own prompt gives the same tokens.
            pieces = cut(
                tokenizer,
                render(fmt, query, record.shots, cue_in=dm.cue_in, chat=renderer),
                add_special_tokens=not chat,
            )
            assert pieces[0] == s.instruction
            assert pieces[1:-2] == s.shots
            assert pieces[-2] == s.blocks[k]
            assert pieces[-1] == s.suffix
        assert len({tuple(b) for b in s.blocks}) == len(s.blocks)  # the paraphrases differ
        if chat:
            assert s.suffix and s.instruction
            assert tokenizer.decode(s.suffix).endswith("assistant\n")
        elif dm.cue_in == "block" or fmt.cue == "":
            assert s.suffix == []
        else:
            assert tokenizer.decode(s.suffix) == fmt.cue


def pararel(tokenizer, model_name, style, fill, cue, **kwargs):
    dm = ParaRel(num_paraphrases=5, limit=30, prompt_style=style, fill_style=fill, cue_in=cue, **kwargs)
    dm.connect(tokenizer, model_name)
    dm.setup("test")
    return dm


def webquestions(tokenizer, model_name, style, cue):
    dm = WebQuestions(limit=30, prompt_style=style, cue_in=cue)
    dm.connect(tokenizer, model_name)
    dm.setup("test")
    return dm


# -- the tiny tokenizer -------------------------------------------------------------------------------


@pytest.mark.parametrize("cue", CUES)
@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("style", STYLES)
def test_pararel_encoding(tiny, tiny_model_path, style, fill, cue):
    _, tokenizer = tiny
    dm = pararel(tokenizer, tiny_model_path, style, fill, cue)
    assert len(dm.examples) == 30
    check_encoding(dm, tokenizer)


@pytest.mark.parametrize("cue", CUES)
@pytest.mark.parametrize("style", STYLES)
def test_webquestions_encoding(tiny, tiny_model_path, style, cue):
    _, tokenizer = tiny
    check_encoding(webquestions(tokenizer, tiny_model_path, style, cue), tokenizer)


def test_model_defaults_for_a_local_chat_model(tiny, tiny_model_path):
    _, tokenizer = tiny
    dm = ParaRel(num_paraphrases=2, limit=2)
    dm.connect(tokenizer, tiny_model_path)
    assert dm.chat and dm.fill_style == "mask"
    dm.setup("test")
    assert tokenizer.decode(dm.examples[0].segments.instruction).startswith("<|im_start|>user\n")
    assert "[MASK]" in tokenizer.decode(dm.examples[0].segments.blocks[0])


# -- the real SmolLM2 tokenizer (merges such as "\n\n" differ with context) ----------------------------


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from selfens.model.registry import EMBEDDED, load_tokenizer

    return load_tokenizer(EMBEDDED)


@pytest.mark.slow
@pytest.mark.parametrize("cue", CUES)
@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("style", STYLES)
def test_pararel_encoding_smollm(smollm_tokenizer, style, fill, cue):
    check_encoding(pararel(smollm_tokenizer, "smollm2_135m_it", style, fill, cue), smollm_tokenizer)


@pytest.mark.slow
@pytest.mark.parametrize("cue", CUES)
@pytest.mark.parametrize("style", STYLES)
def test_webquestions_encoding_smollm(smollm_tokenizer, style, cue):
    check_encoding(webquestions(smollm_tokenizer, "smollm2_135m_it", style, cue), smollm_tokenizer)


@pytest.mark.slow
def test_parts_tokenized_apart_would_differ_smollm(smollm_tokenizer):
    """Why the whole prompt is tokenized once: "\\n\\n" at the end of a text merges differently."""
    dm = webquestions(smollm_tokenizer, "smollm2_135m_it", "raw", "block")
    s = dm.examples[0].segments
    instruction = dm.prompt_format().instruction + "\n\n"
    apart = smollm_tokenizer(instruction)["input_ids"]
    assert smollm_tokenizer.decode(s.instruction) == smollm_tokenizer.decode(apart) == instruction
    assert s.instruction != apart


# -- cut and encode_example ---------------------------------------------------------------------------


def test_cut_on_token_boundaries(tiny):
    _, tokenizer = tiny
    parts = [("instruction", "The"), ("block", " capital of France"), ("suffix", "")]
    pieces = cut(tokenizer, parts, add_special_tokens=True)
    assert sum(pieces, []) == tokenizer("The capital of France")["input_ids"]
    assert [tokenizer.decode(p) for p in pieces] == ["The", " capital of France", ""]


def test_cut_raises_when_a_token_spans_parts(tiny):
    _, tokenizer = tiny
    assert tokenizer.tokenize(" capital") == ["Ġcapital"]  # one token, so "capi"|"tal" splits it
    parts = [("instruction", "The capi"), ("block", "tal of France"), ("suffix", "")]
    with pytest.raises(PromptCutError, match=r"instruction.*block") as error:
        cut(tokenizer, parts, add_special_tokens=True)
    assert "Ġcapital" in str(error.value)
    parts = [("instruction", "Q:\n"), ("shot", "Q: x\n"), ("block", "The capi"), ("suffix", "tal\nA:")]
    with pytest.raises(PromptCutError, match=r"block \(part 2\) and the suffix \(part 3\)"):
        cut(tokenizer, parts, add_special_tokens=True)


def test_added_bos_stays_in_an_empty_instruction(tiny):
    _, tokenizer = tiny
    with_bos = copy.deepcopy(tokenizer)
    bos = tokenizer.bos_token_id
    with_bos.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{tokenizer.bos_token} $A", special_tokens=[(tokenizer.bos_token, bos)]
    )
    pieces = cut(with_bos, [("instruction", ""), ("block", "The capital"), ("suffix", "")], add_special_tokens=True)
    assert pieces[0] == [bos]
    assert pieces[1] == tokenizer("The capital", add_special_tokens=False)["input_ids"]


def test_encode_example_segments(tiny):
    _, tokenizer = tiny
    prompts = [
        [("instruction", "Q:\n"), ("shot", "The capital of France is Paris.\n"), ("block", query), ("suffix", "\nA:")]
        for query in ("Tokyo is located in", "Berlin is the capital of")
    ]
    s = encode_example(tokenizer, prompts, add_special_tokens=False, example_id="x")
    assert isinstance(s, Segments) and len(s.shots) == 1 and len(s.blocks) == 2
    for k, parts in enumerate(prompts):
        text = "".join(t for _, t in parts)
        assert (
            s.instruction + s.shots[0] + s.blocks[k] + s.suffix
            == tokenizer(text, add_special_tokens=False)["input_ids"]
        )


def test_encode_example_raises_when_shared_parts_differ(tiny):
    _, tokenizer = tiny
    prompts = [
        [("instruction", "Q:\n"), ("block", "Tokyo is located in"), ("suffix", "")],
        [("instruction", "A:\n"), ("block", "Berlin is the capital of"), ("suffix", "")],
    ]
    with pytest.raises(PromptCutError, match=r"example ex1: the instruction tokens of paraphrase 1 differ"):
        encode_example(tokenizer, prompts, add_special_tokens=False, example_id="ex1")
    prompts[1][0] = ("instruction", "Q:\n")
    prompts[1][2] = ("suffix", "\nA:")
    with pytest.raises(PromptCutError, match=r"suffix tokens of paraphrase 1 differ"):
        encode_example(tokenizer, prompts, add_special_tokens=False, example_id="ex1")


def test_encode_example_raises_on_an_empty_block(tiny):
    _, tokenizer = tiny
    prompts = [[("instruction", "Q:\n"), ("block", q), ("suffix", "")] for q in ("Tokyo", "")]
    with pytest.raises(PromptCutError, match="paraphrase 1 has no tokens"):
        encode_example(tokenizer, prompts, add_special_tokens=False, example_id="x")


# -- collate and ParaphraseBatch ------------------------------------------------------------------------


@pytest.fixture
def batches(tiny, tiny_model_path):
    _, tokenizer = tiny
    dm = ParaRel(num_paraphrases=3, limit=10, batch_size=4, fill_style="mask", prompt_style="raw")
    dm.connect(tokenizer, tiny_model_path)
    dm.setup("test")
    pad = tokenizer.pad_token_id
    return dm, [collate(dm.examples[i : i + 4], pad) for i in range(0, 10, 4)]


def test_loader_batches_are_full_and_ordered_by_prefix(batches):
    """The loader keeps batches full across prompt prefixes (10 facts of 10 relations, batches of 4:
    4, 4, 2), examples of one prefix together, each example exactly once, in the same order on every call."""
    dm, _ = batches
    loaded = list(dm.test_dataloader())
    assert [len(b.ids) for b in loaded] == [4, 4, 2]
    assert sorted(i for b in loaded for i in b.index.tolist()) == list(range(10))
    prefixes = [tuple(s.prefix) for b in loaded for s in b.segments]
    assert len(set(prefixes)) > 1, "the facts should span several prefixes"
    runs = [p for i, p in enumerate(prefixes) if i == 0 or p != prefixes[i - 1]]
    assert len(runs) == len(set(prefixes)), "examples of one prefix come together"
    assert [b.index.tolist() for b in loaded] == [b.index.tolist() for b in dm.test_dataloader()]


def test_prefix_batches_group_then_sort_by_length(tiny, tiny_model_path):
    from selfens.data.base import prefix_batches

    dm = ParaRel(num_paraphrases=3, relations=["P19", "P20"], limit=20, fill_style="mask", prompt_style="raw")
    dm.connect(tiny[1], tiny_model_path)
    dm.setup("test")
    batches = prefix_batches(dm.examples, 4)
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4]  # full: a batch may mix the two prefixes
    ordered = [e for b in batches for e in b]
    prefixes = [tuple(e.segments.prefix) for e in ordered]
    cut = prefixes.index(prefixes[-1])  # the second prefix starts here; none of the first follows
    assert len(set(prefixes[:cut])) == 1 and len(set(prefixes[cut:])) == 1
    for group in (ordered[:cut], ordered[cut:]):
        lengths = [sum(map(len, e.segments.blocks)) for e in group]
        assert lengths == sorted(lengths)
    assert sorted(e.index for e in ordered) == list(range(20))


def test_batch_is_left_padded(batches, tiny):
    dm, batches = batches
    pad = tiny[1].pad_token_id
    assert [b.input_ids.shape[0] for b in batches] == [4, 4, 2]
    for i, batch in enumerate(batches):
        examples = dm.examples[4 * i : 4 * i + 4]
        prompts = [[e.segments.prompt(k) for k in range(3)] for e in examples]
        length = max(len(p) for row in prompts for p in row)
        assert batch.input_ids.shape == (len(examples), 3, length)
        assert batch.valid.shape == batch.input_ids.shape and batch.valid.dtype == torch.bool
        assert batch.num_paraphrases == 3
        assert batch.index.tolist() == [e.index for e in examples] == list(range(4 * i, 4 * i + len(examples)))
        assert batch.ids == [e.id for e in examples]
        assert batch.paraphrases == [e.paraphrases for e in examples]
        assert batch.answers == [e.answers for e in examples]
        assert batch.segments == [e.segments for e in examples]
        for b, row in enumerate(prompts):
            for k, prompt in enumerate(row):
                ids, valid = batch.input_ids[b, k], batch.valid[b, k]
                assert valid.tolist() == [False] * (length - len(prompt)) + [True] * len(prompt)
                assert ids[valid].tolist() == prompt
                assert (ids[~valid] == pad).all()
    lengths = {len(e.segments.prompt(0)) for e in dm.examples[:4]}
    assert len(lengths) > 1  # the padding above is exercised


def test_rows_of_one_paraphrase(batches):
    dm, batches = batches
    batch = batches[0]
    ids, valid = batch.rows([0])
    prompts = [e.segments.prompt(0) for e in dm.examples[:4]]
    assert ids.shape == valid.shape == (4, max(map(len, prompts)))
    assert valid[:, 0].any()  # columns that were padding in every row are gone
    assert batch.input_ids.shape[-1] > ids.shape[-1]  # paraphrase 0 is not the longest here
    for b, prompt in enumerate(prompts):
        assert ids[b][valid[b]].tolist() == prompt
        assert valid[b].tolist() == [False] * (ids.shape[1] - len(prompt)) + [True] * len(prompt)


def test_rows_of_all_paraphrases_are_example_major(batches):
    dm, batches = batches
    ids, valid = batches[1].rows()
    assert ids.shape[0] == 4 * 3
    for b, example in enumerate(dm.examples[4:8]):
        for k in range(3):
            assert ids[b * 3 + k][valid[b * 3 + k]].tolist() == example.segments.prompt(k)


def test_collate_rejects_mixed_paraphrase_counts():
    one = Example(0, "a", ["x"], ["y"], Segments([1], [], [[2]], []))
    two = Example(1, "b", ["x", "z"], ["y"], Segments([1], [], [[2], [3]], []))
    with pytest.raises(ValueError, match="same number of paraphrases"):
        collate([one, two], pad_id=0)


def test_a_memoized_cut_equals_a_fresh_one_and_is_the_callers_own(tiny):
    from selfens.data.encoding import _CUTS, _cut

    tokenizer = tiny[1]
    parts = [("instruction", "Predict the [MASK]."), ("shot", "\nParis is in France."), ("block", "\nBerlin is in")]
    first = cut(tokenizer, parts, add_special_tokens=False)
    assert tuple(parts) in {key[0] for key in _CUTS[tokenizer]}  # the second call is served from the memo
    first[2].append(-1)  # a caller changing its segments leaves the memo as it was
    again = cut(tokenizer, parts, add_special_tokens=False)
    assert again == _cut(tokenizer, parts, add_special_tokens=False) and again[2][-1] != -1
    assert cut(tokenizer, parts, add_special_tokens=True) == _cut(tokenizer, parts, add_special_tokens=True)
