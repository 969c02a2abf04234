"""Every decoded answer carries its log-probability under the distribution that chose it, from the
logits the decode already had: equal to scoring the answer's tokens after the prompt in a separate
forward pass (origin: the model's; avg: the fused distribution of the N prompts; per_prompt: each
phrasing's own)."""

from __future__ import annotations

import pytest
import torch

from selfens.data import ParaRel
from selfens.data.batch import collate
from selfens.decoding.fusion import FUSIONS
from selfens.methods import LogitFusion, Origin, PerPrompt
from selfens.model.registry import load_tokenizer

N, MAX_NEW = 3, 6


@pytest.fixture(scope="module")
def batch(tiny_model_path):
    dm = ParaRel(num_paraphrases=N, num_shots=2, limit=4, batch_size=4, prompt_style="raw", fill_style="completion")
    dm.connect(load_tokenizer(tiny_model_path), tiny_model_path)
    dm.setup("test")
    return collate(dm.examples[:4], pad_id=dm.tokenizer.pad_token_id)


def built(cls, path: str, **kwargs):
    m = cls(model=path, max_new_tokens=MAX_NEW, stop_strings=[], **kwargs)
    m.configure_model()
    return m


def answer_logits(model, prompt: list[int], tokens: list[int]) -> torch.Tensor:
    """[T, V]: the logits that predict each answer token, from one forward pass over prompt + answer."""
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    return logits[len(prompt) - 1 : len(prompt) - 1 + len(tokens)]


def scored(logits: torch.Tensor, tokens: list[int]) -> float:
    """The sum of log-softmax(logits) at `tokens`."""
    return float(logits.log_softmax(-1).gather(-1, torch.tensor(tokens)[:, None]).sum()) if tokens else 0.0


def prompt_of(batch, b: int, k: int) -> list[int]:
    return batch.input_ids[b, k][batch.valid[b, k]].tolist()


def test_origin_answers_carry_the_models_log_probability(tiny_model_path, batch):
    m = built(Origin, tiny_model_path)
    out, tokens = m.decode(batch), m.generate(m.single_prompts(batch, [0])).tokens
    for b, (logprob, count) in enumerate(out.logprobs):
        assert count == len(tokens[b]) > 0
        expected = scored(answer_logits(m.hf_model, prompt_of(batch, b, 0), tokens[b]), tokens[b])
        assert logprob == pytest.approx(expected, abs=1e-4)


def test_avg_answers_carry_the_fused_log_probability(tiny_model_path, batch, tmp_path):
    m = built(LogitFusion, tiny_model_path, fusion="avg", confidence_dir=str(tmp_path))
    out = m.decode(batch)
    tokens = m.generate(m.single_prompts(batch), rows_per_example=N, fuse=lambda x, e: FUSIONS["avg"].fn(x)).tokens
    for b, (logprob, count) in enumerate(out.logprobs):
        assert count == len(tokens[b])
        each = torch.stack(
            [answer_logits(m.hf_model, prompt_of(batch, b, k), tokens[b]) for k in range(N)]
        )  # [N, T, V]
        fused = FUSIONS["avg"].fn(each.transpose(0, 1))  # [T, V]
        assert logprob == pytest.approx(scored(fused, tokens[b]), abs=1e-4)


def test_per_prompt_rows_carry_each_phrasings_log_probability(tiny_model_path, batch):
    m = built(PerPrompt, tiny_model_path)
    out = m.decode(batch)
    rows = m.rows(batch, out, scored=False)
    tokens = m.generate(m.single_prompts(batch)).tokens  # B*N rows, example-major
    for b, row in enumerate(rows):
        assert len(row["per_paraphrase_logprob"]) == len(row["per_paraphrase_tokens"]) == N
        for k in range(N):
            t = tokens[b * N + k]
            expected = scored(answer_logits(m.hf_model, prompt_of(batch, b, k), t), t)
            assert row["per_paraphrase_logprob"][k] == pytest.approx(expected, abs=1e-4)
            assert row["per_paraphrase_tokens"][k] == len(t)
        assert "answer_logprob" not in row  # the majority's confidence is its share: `agreement`


def test_the_answers_do_not_change(tiny_model_path, batch):
    """The probabilities come from the decode's own logits: the same answers as choosing alone."""
    m = built(Origin, tiny_model_path)
    assert m.decode(batch).predictions == [m.text(t) for t in m.generate(m.single_prompts(batch, [0])).tokens]
