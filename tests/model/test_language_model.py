"""The loaded-model seam: methods, the paraphraser and `ask` take a model name or a loaded
`LanguageModel`; sharing one gives exactly the answers of each method loading its own."""

import pytest
import torch

from selfens.data import ParaRel, collate
from selfens.methods import AttentionFusion, LogitFusion, Origin, PerPrompt
from selfens.model.language_model import LanguageModel, as_language_model
from selfens.paraphrase.module import Paraphraser
from selfens.run.cost import RunCost, cost_names


def pararel(lm: LanguageModel, n: int = 3) -> ParaRel:
    dm = ParaRel(num_paraphrases=n, num_shots=2, limit=6, prompt_style="raw", fill_style="completion")
    dm.connect(lm.tokenizer, lm.name)
    dm.setup("test")
    return dm


def answers(module, dm) -> list[str]:
    module.configure_model()
    return module.decode(collate(dm.examples, dm.tokenizer.pad_token_id)).predictions


METHODS = [
    (Origin, {}),
    (PerPrompt, {}),
    (LogitFusion, {"fusion": "avg"}),
    (AttentionFusion, {"first_token": "block_ends", "backend": "dense"}),
]


def test_methods_sharing_one_model_answer_as_each_alone(tiny_model_path):
    shared = LanguageModel(tiny_model_path)
    dm = pararel(shared)
    together = [cls(model=shared, max_new_tokens=5, **kwargs) for cls, kwargs in METHODS]
    alone = [cls(model=tiny_model_path, max_new_tokens=5, **kwargs) for cls, kwargs in METHODS]
    for a, b in zip(together, alone):
        assert answers(a, dm) == answers(b, dm), type(a).__name__
    assert all(m.hf_model is shared.hf_model for m in together), "one copy of the weights"
    assert len({id(m.hf_model) for m in alone}) == len(alone)
    assert all(m.hparams["model"] == tiny_model_path for m in together), "hparams name the model, not the object"


def test_a_shared_model_switches_attention_implementation_per_method(tiny_model_path):
    shared = LanguageModel(tiny_model_path)
    dm = pararel(shared)
    eager = Origin(model=shared, attn_implementation="eager", max_new_tokens=5)
    sdpa = Origin(model=shared, max_new_tokens=5)
    first = answers(sdpa, dm)
    assert answers(eager, dm) == first
    assert shared.hf_model.config._attn_implementation == "eager"
    assert answers(sdpa, dm) == first and shared.hf_model.config._attn_implementation == "sdpa"


def test_language_model_takes_a_name_or_itself(tiny_model_path):
    lm = LanguageModel(tiny_model_path)
    assert as_language_model(lm) is lm and as_language_model(tiny_model_path).name == tiny_model_path
    assert not lm.loaded
    with pytest.raises(RuntimeError, match="not loaded"):
        _ = lm.eos_ids
    assert lm.load().load() is lm and lm.loaded  # loads once
    assert lm.text(lm.tokenizer.encode(" Paris\nand more", add_special_tokens=False), ["\n"]) == "Paris"


def test_paraphraser_shares_a_loaded_model(tiny_model_path):
    shared = LanguageModel(tiny_model_path).load()
    own, given = Paraphraser(model=tiny_model_path, max_tries=1), Paraphraser(model=shared, max_tries=1)
    own.configure_model()
    given.configure_model()
    question = ["what is the capital of france?"]
    assert given.paraphrase(question, [[]]) == own.paraphrase(question, [[]])
    assert given.language_model.hf_model is shared.hf_model


def test_run_cost_fields_are_the_one_list():
    cost = RunCost(*range(len(cost_names())))
    assert list(cost.to_dict()) == list(cost_names())
    assert RunCost.from_dict(cost.to_dict()) == cost and (cost + RunCost()).values() == cost.values()
    assert RunCost.from_dict({"decode_seconds": 2}).decode_seconds == 2.0  # missing names count 0


@pytest.fixture(autouse=True)
def _cpu_threads():
    torch.set_num_threads(1)


@pytest.mark.parametrize("family", ["gemma2", "llama"])
def test_a_model_without_sdpa_is_said_to_run_eager(family, tmp_path):
    """Gemma 2 soft-caps its attention scores, which SDPA cannot: it runs eager, and the run says so."""
    from tests.helpers import build_tiny_model

    path = str(build_tiny_model(tmp_path / family, family=family))
    origin = Origin(model=path)
    origin.configure_model()
    said = [f"{path} has no SDPA attention: it ran with eager attention (the same answers, slower)"]
    assert origin.warnings([]) == (said if family == "gemma2" else [])
    eager = Origin(model=path, attn_implementation="eager")  # asked for: nothing to say
    eager.configure_model()
    assert eager.warnings([]) == []


def test_the_fingerprint_tells_weights_apart_not_dtypes(tiny_model_path, tmp_path):
    """A run's identity holds the model's fingerprint: another model saved under the same name (a
    retrained checkpoint) differs; the same weights loaded in another dtype do not."""
    import shutil

    from tests.helpers import build_tiny_model

    fp32 = LanguageModel(tiny_model_path).load("float32")
    bf16 = LanguageModel(tiny_model_path).load("bfloat16")
    assert fp32.fingerprint() == bf16.fingerprint() and (fp32.dtype, bf16.dtype) == ("float32", "bfloat16")
    retrained = tmp_path / "same_name"
    shutil.copytree(build_tiny_model(tmp_path / "other", seed=1), retrained)
    assert LanguageModel(str(retrained)).load().fingerprint() != fp32.fingerprint()
