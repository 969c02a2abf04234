"""What the tests share: the tiny models and tokenizer they build, running `selfens` in-process and
as a console script, reading run folders, an independent scorer, and data files."""

from __future__ import annotations

import collections
import json
import math
import os
import re
import shutil
import socket
import string
import subprocess
import sys
import time
import unicodedata
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from selfens.attention.layers import model_mask
from selfens.attention.masks import dense_mask, packed_mask_mod
from selfens.attention.packing import FUSED, pack
from selfens.attention.positions import position_ids
from selfens.data.batch import ParaphraseBatch, collate
from selfens.data.pararel import ParaRel
from selfens.decoding.loop import prefill
from selfens.decoding.result import Decoded, decode_order
from selfens.decoding.sampling import greedy
from selfens.methods.attention import AttentionFusion
from selfens.methods.base import EnsembleModule, Output

# -- tiny models of every family, with a tokenizer trained on the fly ------------------------------

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


CORPUS = [
    "Answer the question based on general world knowledge. Provide a short and direct answer.",
    "Predict the [MASK] in the sentence in one word.",
    "Q: what does jamaican people speak?\nA: Jamaican English",
    "Allan Peiper was born in Alexandra. Paul Mounsey is originally from Scotland.",
    "The capital of France is Paris. Tokyo is located in Japan. Berlin is the capital of Germany.",
    "the a an of in is was from born located capital city country language speaks works plays",
]


def build_tokenizer():
    """A byte-level BPE tokenizer trained on CORPUS, with a chat template and a pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# A sliding window shorter than the bundled ParaRel prompts (~40-90 tiny tokens), so that it matters.
WINDOW = 16


GEMMA3_TEXT = dict(
    head_dim=8, query_pre_attn_scalar=8, sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"]
)


# Tiny configs of the families that transformers ships: (config class, model class, their own settings).
# Sliding windows are switched on wherever the family has them; Gemma 2 keeps its attention logit
# soft-capping, lowered from 50 to below the tiny model's scores (~0.01) so that it changes them.
FAMILIES: dict[str, tuple[str, str, dict]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        dict(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),  # layer 1 slides
    ),
    "qwen3": (
        "Qwen3Config",
        "Qwen3ForCausalLM",
        dict(head_dim=8, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1),
    ),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(head_dim=8, sliding_window=WINDOW)),
    "gemma2": (
        "Gemma2Config",
        "Gemma2ForCausalLM",
        dict(head_dim=8, query_pre_attn_scalar=8, sliding_window=WINDOW, attn_logit_softcapping=0.02),
    ),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", GEMMA3_TEXT),  # gemma-3-1b: text only
    # gemma-3-4b and up: the multimodal wrapper, read with text-only prompts. Its image tokens lie
    # beyond the vocabulary, so no prompt holds one.
    "gemma3_vlm": (
        "Gemma3Config",
        "Gemma3ForConditionalGeneration",
        dict(
            text_config=("Gemma3TextConfig", GEMMA3_TEXT),
            vision_config=dict(
                model_type="siglip_vision_model",
                hidden_size=16,
                intermediate_size=32,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=28,
                patch_size=14,
            ),
            mm_tokens_per_image=4,
            boi_token_index=1000,
            eoi_token_index=1001,
            image_token_index=1002,
        ),
    ),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(sliding_window=WINDOW)),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}),
}


# Families selfens refuses by model type (selfens.attention.layers.check_architecture), each with why.
REFUSED: dict[str, tuple[str, dict]] = {
    "llama4": ("Llama4TextConfig", {}),  # chunked attention layers
    "qwen3_next": ("Qwen3NextConfig", {}),  # linear attention layers (a recurrent state, no mask)
    "gemma3_bidirectional": ("Gemma3TextConfig", dict(use_bidirectional_attention=True)),  # not causal
}


def tiny_config(config_class: str, tokenizer, **settings):
    """A transformers config of 2 tiny layers for `tokenizer`; `settings` add to or change it."""
    import transformers

    return getattr(transformers, config_class)(
        **{
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "tie_word_embeddings": False,
            **settings,
        }
    )


def build_tiny_model(folder: Path, seed: int = 0, family: str = "llama", **overrides) -> Path:
    """A tiny random model of `family` (see FAMILIES; `overrides` change its config) with the shared
    tokenizer, saved in `folder`."""
    import transformers

    tokenizer = build_tokenizer()
    config_class, model_class, own = FAMILIES[family]
    settings = {**own, **overrides}
    torch.manual_seed(seed)
    if "text_config" in settings:  # a multimodal wrapper around a tiny language model
        text_class, text_settings = settings.pop("text_config")
        text = tiny_config(text_class, tokenizer, **text_settings)
        tokens = {name: getattr(text, name) for name in ("eos_token_id", "pad_token_id", "bos_token_id")}
        config = getattr(transformers, config_class)(
            text_config=text.to_dict(), tie_word_embeddings=False, **tokens, **settings
        )
    else:
        config = tiny_config(config_class, tokenizer, **settings)
    model = getattr(transformers, model_class)(config)
    # Random weights give near-uniform logits; scale the head so greedy choices are well separated
    # (ties would make token-equality tests depend on float noise).
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_refused_model(folder: Path, family: str) -> Path:
    """A model folder of a REFUSED family: its config, the tokenizer and an empty weights file (it is
    refused by its architecture before any weights load; a folder without one is refused as no model)."""
    tokenizer = build_tokenizer()
    config_class, settings = REFUSED[family]
    tiny_config(config_class, tokenizer, **settings).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (Path(folder) / "model.safetensors").write_bytes(b"")
    return folder


# -- running selfens in-process, and reading run folders -------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


ORIGIN = ROOT / "configs" / "pararel" / "origin.yaml"


PER_PROMPT = ROOT / "configs" / "pararel" / "per_prompt.yaml"


def selfens(*args) -> None:
    """`selfens ARGS` in this process (LightningCLI warns if it also sees pytest's own argv)."""
    from selfens.cli.main import main

    saved_argv, saved_env = sys.argv, dict(os.environ)
    sys.argv = ["selfens"]
    try:
        main([str(a) for a in args])
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)  # seed_everything leaves PL_GLOBAL_SEED behind


def selfens_fails(capsys, *args) -> str:
    """Run `selfens ARGS`, which must fail as a user sees it: exit status 2 and one error line on
    stderr (no traceback). Returns that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit:
        selfens(*args)
    assert exit.value.code == 2, f"exit status {exit.value.code}"
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("selfens: error:")]
    assert len(errors) == 1, errors
    return errors[0]


def run_folder(parent: Path, k: int = 0) -> Path:
    """The run folder `version_<k>-<method...>` under a logger's folder (a path that does not exist
    when there is none)."""
    found = sorted(parent.glob(f"version_{k}-*"))
    assert len(found) <= 1, found
    return found[0] if found else parent / f"version_{k}-(none)"


def logger_name(config: Path) -> str:
    return yaml.safe_load(config.read_text())["trainer"]["logger"]["init_args"]["name"]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def quiet() -> list[str]:
    return ["--trainer.enable_progress_bar", "false"]


# Very different wordings, so that the random tiny model answers them differently.
OWN_QUESTIONS = [
    [
        "what does jamaican people speak?",
        "which language is spoken in jamaica?",
        "the capital of France is what city?",
        "where is Tokyo located?",
        "who works in Berlin?",
    ],
    [
        "where was Allan Peiper born?",
        "Paul Mounsey is originally from where?",
        "what is the capital of Germany?",
        "which city plays the country?",
        "the a an of in",
    ],
    [
        "capital city country language",
        "born located capital",
        "Predict the word",
        "Answer the question",
        "Tokyo Japan Paris",
    ],
    [
        "what is the capital of France?",
        "France capital?",
        "name the capital of France",
        "Paris is the capital of which country?",
        "which country speaks Jamaican English?",
    ],
    ["is it?", "was it?", "who?", "when?", "from where?"],
    ["the capital of Germany", "Berlin is located in", "Tokyo is located in", "the language of Jamaica", "Paris is in"],
    ["speaks", "works in the city of", "plays for", "was born in", "is from"],
]


def own_answers_data(model: str, folder: Path, batch_size: int = 2) -> tuple[Path, list]:
    """A JSONL file of OWN_QUESTIONS whose gold answers are the tiny model's own answers: example i's is
    its paraphrase (i mod 5)'s answer (or the first non-empty one), so every view scores something.
    Returns the file and the common CLI arguments of a per_prompt run on it."""
    from selfens.metrics import normalize_answer

    data = folder / "q.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "paraphrases": ps, "answers": ["unused"]}) + "\n"
            for i, ps in enumerate(OWN_QUESTIONS)
        )
    )
    args = [
        "--config",
        PER_PROMPT,
        "--model.init_args.model",
        model,
        "--data",
        "selfens.data.JsonlQuestions",
        "--data.init_args.path",
        data,
        "--data.init_args.num_shots",
        0,
        "--data.init_args.format",
        "completion",
        "--data.init_args.prompt_style",
        "raw",
        "--data.init_args.batch_size",
        batch_size,
        *quiet(),
    ]
    selfens("predict", *args, "--trainer.logger.init_args.save_dir", folder / "first")
    first = read_jsonl(run_folder(folder / "first" / logger_name(PER_PROMPT)) / "predictions.jsonl")
    lines = []
    for i, (row, paraphrases) in enumerate(zip(first, OWN_QUESTIONS)):
        candidates = [p for p in row["per_paraphrase"][i % 5 :] + row["per_paraphrase"] if normalize_answer(p)]
        assert candidates, f"the tiny model gave only empty answers for {row['id']}"
        lines.append(json.dumps({"id": row["id"], "paraphrases": paraphrases, "answers": [candidates[0]]}) + "\n")
    data.write_text("".join(lines))
    return data, args


# -- running selfens as a console script, several processes ----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def console_script() -> list[str]:
    script = Path(sys.executable).parent / "selfens"
    return [str(script)] if script.exists() else [sys.executable, "-m", "selfens"]


def run_distributed(stage: str, args: list, save_dir: Path, devices: int) -> Path:
    """`selfens STAGE ARGS` in a fresh process on `devices` CPU processes; the run folder."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(var, None)
    trainer = ["--trainer.accelerator", "cpu", "--trainer.devices", str(devices)]
    if devices > 1:
        trainer += ["--trainer.strategy", "ddp"]
    command = [
        *console_script(),
        stage,
        *map(str, args),
        *trainer,
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger.init_args.save_dir",
        str(save_dir),
    ]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (
        f"`{' '.join(command)}` exited {proc.returncode}\n--- stderr (tail) ---\n{proc.stderr[-6000:]}"
    )
    folders = sorted(save_dir.glob("*/version_*"))
    assert len(folders) == 1, f"expected one run folder under {save_dir}, found {folders}"
    return folders[0]


# -- an independent scorer (SQuAD v1.1, spaCy lemmas) and runs to rescore --------------------------

RUN_LIMIT, RUN_BATCH = 10, 3


BUNDLED = ROOT / "selfens" / "resources" / "pararel"


def normalize(s: str) -> str:  # SQuAD v1.1 evaluate-v1.1.py, punctuation widened to Unicode's (category P*)
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation) and unicodedata.category(ch)[0] != "P")
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def em(pred: str, gold: str) -> float:
    return float(normalize(pred) == normalize(gold))


def f1(pred: str, gold: str) -> float:
    p, g = normalize(pred).split(), normalize(gold).split()
    same = sum((collections.Counter(p) & collections.Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


_NLP = None


def lemmas(text: str) -> list[str]:
    global _NLP
    if _NLP is None:
        import spacy

        _NLP = spacy.blank("en")
        _NLP.add_pipe("lemmatizer", config={"mode": "lookup"})
        _NLP.initialize()
    return [t.lemma_.lower() for t in _NLP(text.lower()) if not (t.is_punct or t.is_space)]


def lemma(pred: str, gold: str) -> float:
    p, g = lemmas(pred), lemmas(gold)
    return float(bool(g) and any(p[i : i + len(g)] == g for i in range(len(p) - len(g) + 1)))


def scores(pred: str, answers: list[str]) -> dict[str, float]:
    return {name: max(fn(pred, a) for a in answers) for name, fn in (("em", em), ("f1", f1), ("lemma", lemma))}


def standard_error(values: list[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def gold_from(answer: str, i: int) -> str:
    """Example i's new gold answer, from the run's own answer. The first batch scores 0 everywhere."""
    words = normalize(answer).split()
    if i < RUN_BATCH or not words:
        return "zyzzyva quokka"
    # EM counts exact + article rows, lemma only exact ones, F1 adds a part of each extra row.
    return [answer, f"the {answer}", f"the {answer}", f"{answer} zyzzyva"][i % 4]


def data_dir_with_gold(folder: Path, rows: list[dict]) -> Path:
    """A copy of the bundled ParaRel whose evaluated facts have gold answers from `rows`."""
    target = folder / "pararel"
    shutil.copytree(BUNDLED, target)
    gold = {}
    for i, row in enumerate(rows):
        answer = (
            row["per_paraphrase"][i % len(row["per_paraphrase"])]
            if "per_paraphrase" in row and i % 2
            else row["prediction"]
        )
        gold[row["id"]] = gold_from(answer, i)
    for path in (target / "triples").glob("*.jsonl"):
        facts = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for fact in facts:
            fact["obj_label"] = gold.get(f"{path.stem}/{fact['uuid']}", fact["obj_label"])
        path.write_text("".join(json.dumps(f) + "\n" for f in facts))
    return target


def run_config(config: Path, model: str, folder: Path, stage: str, *extra, name: str | None = None) -> Path:
    """`selfens STAGE` of a config on RUN_LIMIT facts, into `folder`; its run folder. `name`: the logger's
    name (default: the config's)."""
    extra = (*extra, "--trainer.logger.init_args.name", name) if name else extra
    selfens(
        stage,
        "--config",
        config,
        "--model.init_args.model",
        model,
        "--data.init_args.limit",
        RUN_LIMIT,
        "--data.init_args.batch_size",
        RUN_BATCH,
        "--trainer.logger.init_args.save_dir",
        folder,
        *quiet(),
        *extra,
    )
    return run_folder(folder / (name or logger_name(config)))


# -- own data files and the options of a run on them -----------------------------------------------


def own_data(tmp_path: Path, lines: list) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines), encoding="utf-8")
    return path


def jsonl_args(path: Path, model: str, save_dir: Path, *extra) -> list:
    """`selfens test` of origin on a user's own file, with the file's defaults (no num_paraphrases)."""
    config = save_dir / "own.yaml"
    config.write_text(
        "model:\n  class_path: selfens.methods.Origin\n"
        f"data:\n  class_path: selfens.data.JsonlQuestions\n  init_args:\n    path: {path}\n"
        "trainer:\n  logger:\n    class_path: lightning.pytorch.loggers.TensorBoardLogger\n"
        f"    init_args:\n      name: {logger_name(ORIGIN)}\n"
    )
    return command("test", config, model, save_dir, *quiet(), *extra)


JSONL_QUESTIONS = [
    {
        "id": "a",
        "paraphrases": ["where is tokyo?", "tokyo is in which country?", "in what country is tokyo?"],
        "answers": ["Japan"],
    },
    {
        "id": "b",
        "paraphrases": ["capital of france?", "france's capital?", "which city is france's capital?"],
        "answers": ["Paris"],
    },
]


# -- attention fusion against references -----------------------------------------------------------

ATTENTION_MAX_NEW = 6


# Prompt configurations of the ParaRel data module.
ATTENTION_CONFIGS = {
    "completion": dict(fill_style="completion", prompt_style="raw", cue_in="block"),  # empty suffix
    "mask_block": dict(fill_style="mask", prompt_style="raw", cue_in="block"),  # empty suffix
    "mask_suffix": dict(fill_style="mask", prompt_style="raw", cue_in="suffix"),  # suffix "\nA:"
    "chat": dict(fill_style="mask", prompt_style="chat", cue_in="block"),  # suffix: assistant header
}


def run_attention(m: EnsembleModule, batch: ParaphraseBatch) -> tuple[Output, Decoded, list[list[torch.Tensor]]]:
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


def assert_same_steps(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    """Two examples' fused logits [V] are equal (to float tolerance) at every step."""
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b)):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4, msg=lambda m, t=t: f"step {t}: {m}")


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


def with_blocks(batch: ParaphraseBatch, dm: ParaRel, change) -> ParaphraseBatch:
    """The batch again, with each example's blocks replaced by change(blocks)."""
    examples = [dm.examples[int(i)] for i in batch.index]
    changed = [replace(ex, segments=replace(ex.segments, blocks=change(ex.segments.blocks))) for ex in examples]
    return collate(changed, dm.tokenizer.pad_token_id)


def differs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per row of [B, V]: True where the two logit rows clearly differ."""
    return (a - b).abs().amax(-1) > 1e-3


def assert_cached_equals_recomputed(m, batch, pad_id: int) -> None:
    """Decoding with the KV cache == recomputing the whole packed sequence at every step, step by step."""
    _, decoded, steps = run_attention(m, batch)
    reference = [reference_decode(m, s, pad_id) for s in batch.segments]
    assert any(tokens for tokens, _ in reference)
    assert decoded.tokens == [tokens for tokens, _ in reference]
    for b, (_, ref_steps) in enumerate(reference):
        assert_same_steps(steps[b], ref_steps)


def reverse_block(k: int):
    def change(blocks):
        assert blocks[k] != blocks[k][::-1]
        return [b[::-1] if j == k else b for j, b in enumerate(blocks)]

    return change


def command(name: str, config: Path, model: str, save_dir: Path, *extra) -> list:
    """`selfens NAME --config CONFIG` with the model and run folder overridden."""
    return [
        name,
        "--config",
        config,
        "--model.init_args.model",
        model,
        "--trainer.logger.init_args.save_dir",
        save_dir,
        *extra,
    ]


def live_steps(tokens: list[int]) -> int:
    """Steps that chose this example's tokens: one per token, plus the EOS step if it stopped early
    (stop_strings are empty here, so stopping early means EOS)."""
    return min(len(tokens) + 1, ATTENTION_MAX_NEW)


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
    for step in range(ATTENTION_MAX_NEW):
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


def signal_mid_run(process: subprocess.Popen, folder: Path, signum: int, rows: int = 1, timeout: float = 300) -> None:
    """Send `signum` to `process` once the run in `folder` has written at least `rows` rows, and
    fewer than all (it must stop mid-run); fails if the run ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        parts = list(folder.glob("predictions.rank*.jsonl"))
        if parts and len(read_jsonl(parts[0])) >= rows:
            process.send_signal(signum)
            return
        time.sleep(0.01)
    pytest.fail(f"{folder}: the run ended (or wrote fewer than {rows} rows in {timeout} s) before it could be stopped")
