"""selfens as an lm-eval model, on the bundled tasks (selfens_capitals: generation, selfens_capitals_mc:
multiple choice), against lm-eval's own `hf` backend on the same model folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from selfens.data.records import DataError
from selfens.harness.backend import HarnessError, SelfensLM

TASKS = ["selfens_capitals", "selfens_capitals_mc"]
LIMIT = 5
TOLERANCE = 1e-4


def evaluate(model, model_args, limit: int = LIMIT) -> dict:
    """lm-eval's samples per task: {task: {doc_id: sample}}."""
    import lm_eval

    from selfens.data.lm_eval_task import task_manager

    results = lm_eval.simple_evaluate(
        model=model, model_args=model_args, tasks=TASKS, limit=limit, task_manager=task_manager(), log_samples=True
    )
    return {task: {s["doc_id"]: s for s in samples} for task, samples in results["samples"].items()}


def responses(samples: dict) -> dict:
    """(task, doc) -> the raw responses: generated strings, or (log-likelihood, greedy) per choice."""
    return {(task, doc): s["resps"] for task, by_doc in samples.items() for doc, s in by_doc.items()}


def assert_same(a: dict, b: dict) -> None:
    """Generations identical; log-likelihoods within TOLERANCE; greedy flags identical."""
    assert a.keys() == b.keys()
    for key in a:
        for ra, rb in zip(a[key], b[key], strict=True):
            if isinstance(ra[0], str):
                assert ra == rb, key
            else:
                (la, ga), (lb, gb) = ra[0], rb[0]
                assert math.isclose(float(la), float(lb), abs_tol=TOLERANCE), (key, la, lb)
                assert ga == gb, key


def phrasing_file(folder: Path, task_docs: dict[str, list[int]], phrase, name: str = "phrasings.jsonl") -> Path:
    """A phrasing file whose row for each (task, doc) holds `phrase(original)`'s phrasings."""
    from selfens.data.lm_eval_task import load_tasks

    tasks = load_tasks(list(task_docs))
    path = folder / name
    with path.open("w") as f:
        for task, docs in task_docs.items():
            eval_docs = list(tasks[task].eval_docs)
            for doc in docs:
                original = eval_docs[doc]["question"]
                f.write(
                    json.dumps({"id": f"{task}/{doc}", "original": original, "paraphrases": phrase(original)}) + "\n"
                )
    return path


def rephrased(original: str) -> list[str]:
    city = original.removeprefix("Which country or region is ").removesuffix(" the capital of?")
    return [f"{city} is the capital of which country or region?", f"Of which country or region is {city} the capital?"]


@pytest.fixture(scope="module")
def origin(tiny_model_path):
    return evaluate("selfens", f"model={tiny_model_path},method=origin")


@pytest.mark.slow
def test_origin_equals_hf_backend_on_a_tiny_model(tiny_model_path, origin):
    hf = evaluate("hf", f"pretrained={tiny_model_path},dtype=float32,device=cpu,batch_size=2")
    assert_same(responses(origin), responses(hf))


@pytest.mark.slow
def test_origin_equals_hf_backend_on_smollm2():
    from selfens.model.registry import EMBEDDED, model_path

    ours = evaluate("selfens", f"model={EMBEDDED},method=origin", limit=3)
    hf = evaluate("hf", f"pretrained={model_path(EMBEDDED)},dtype=float32,device=cpu,batch_size=3", limit=3)
    assert_same(responses(ours), responses(hf))
    assert any(r[0][1] == "True" or r[0][1] is True for s in ours["selfens_capitals_mc"].values() for r in s["resps"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["per_prompt", "avg", "max", "weighted_avg", "weighted_max", "attention"])
def test_one_phrasing_equals_origin(tiny_model_path, tmp_path, origin, method):
    file = phrasing_file(tmp_path, {t: list(range(LIMIT)) for t in TASKS}, rephrased)
    extra = f",num_samples=3,confidence_dir={tmp_path}/confidence" if method.startswith("weighted") else ""
    ours = evaluate("selfens", f"model={tiny_model_path},method={method},num_paraphrases=1,paraphrases={file}{extra}")
    assert_same(responses(ours), responses(origin))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["avg", "max"])
def test_fusing_copies_of_the_question_equals_origin(tiny_model_path, tmp_path, origin, method):
    file = phrasing_file(tmp_path, {t: list(range(LIMIT)) for t in TASKS}, lambda original: [original] * 3)
    ours = evaluate("selfens", f"model={tiny_model_path},method={method},num_paraphrases=4,paraphrases={file}")
    assert_same(responses(ours), responses(origin))


@pytest.mark.slow
def test_phrasings_change_what_fusion_reads(tiny_model_path, tmp_path, origin):
    # The counterpart of the equalities above: real phrasings are read (the test could not pass by
    # ignoring the file).
    file = phrasing_file(tmp_path, {t: list(range(LIMIT)) for t in TASKS}, rephrased)
    ours = evaluate("selfens", f"model={tiny_model_path},method=avg,num_paraphrases=3,paraphrases={file}")
    mc = [float(r[0][0]) for s in ours["selfens_capitals_mc"].values() for r in s["resps"]]
    base = [float(r[0][0]) for s in origin["selfens_capitals_mc"].values() for r in s["resps"]]
    assert max(abs(a - b) for a, b in zip(mc, base)) > 1e-2


def test_other_tasks_phrasing_file_is_refused(tiny_model_path, tmp_path):
    file = tmp_path / "other.jsonl"
    file.write_text(json.dumps({"id": "arc_easy/0", "original": "Why?", "paraphrases": ["How come?"]}) + "\n")
    lm = SelfensLM(model=tiny_model_path, method="avg", paraphrases=str(file))
    with pytest.raises(DataError, match=r"phrasings of task\(s\) arc_easy, not of selfens_capitals"):
        lm.phrasing_file.check_tasks(["selfens_capitals"])


@pytest.mark.parametrize(
    "row, message",
    [
        ({"id": "7", "original": "q?", "paraphrases": ["p?"]}, "is not <task>/<doc_id>"),
        ({"id": "t/x", "original": "q?", "paraphrases": ["p?"]}, "is not <task>/<doc_id>"),
        ({"id": "t/1", "paraphrases": ["p?"]}, "field 'original'"),
        ({"id": "t/1", "original": "q?", "paraphrases": [""]}, "non-empty strings"),
    ],
)
def test_a_bad_phrasing_row_names_its_line(tmp_path, row, message):
    from selfens.harness.phrasings import PhrasingFile

    file = tmp_path / "bad.jsonl"
    file.write_text(json.dumps({"id": "t/0", "original": "a?", "paraphrases": ["b?"]}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError, match=message) as error:
        PhrasingFile.read(file)
    assert "bad.jsonl:2" in str(error.value) or message == "non-empty strings"


def test_loglikelihood_rolling_is_refused_naming_the_task(tiny_model_path):
    from lm_eval.api.instance import Instance

    lm = SelfensLM(model=tiny_model_path, method="avg")
    request = Instance("loglikelihood_rolling", {}, ("a whole document",), 0, ("wikitext", 0, 1))
    with pytest.raises(HarnessError, match="task wikitext asks for loglikelihood_rolling"):
        lm.loglikelihood_rolling([request])


def test_sampling_tasks_and_fitted_methods_are_refused(tiny_model_path):
    from lm_eval.api.instance import Instance

    from selfens.errors import ConfigError

    with pytest.raises(ConfigError, match="fitted rules need a fit"):
        SelfensLM(model=tiny_model_path, method="best_phrasing")
    lm = SelfensLM(model=tiny_model_path, method="origin")
    request = Instance("generate_until", {}, ("Q: x?\nA:", {"do_sample": True}), 0, ("sampled_task", 0, 1))
    with pytest.raises(HarnessError, match="task sampled_task asks to sample"):
        lm.generate_until([request])


@pytest.mark.parametrize(
    "context, kept",
    [
        ("Q: Paris?\nA: France\n\nQ: Cairo?\nA:", ("Q: Paris?\nA: France\n\nQ: ", "\nA:")),
        ("Q: Rome?\nA:", None),  # the span is not in the context: it runs as origin
    ],
)
def test_only_the_test_question_is_rephrased(context, kept):
    from selfens.harness.phrasings import Phrasings, phrased_parts

    parts = phrased_parts(context, Phrasings("Cairo?", ["Of where is Cairo the capital?"]), 5)
    if kept is None:
        assert parts is None
    else:
        assert (parts[0], parts[2]) == kept and parts[1] == ["Cairo?", "Of where is Cairo the capital?"]


def test_phrasing_zero_reads_the_context_as_lm_eval_tokenizes_it(tiny_model_path):
    from selfens.harness.phrasings import Phrasings, phrased_parts, request_segments
    from selfens.model.registry import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_path)
    context = "Question: Which country is Oslo the capital of?\nAnswer: Norway\n\nQuestion: Where is Rome?\nAnswer:"
    parts = phrased_parts(context, Phrasings("Where is Rome?", ["Rome lies where?", "In what country is Rome?"]), 3)
    segments = request_segments(tokenizer, context, parts, add_special_tokens=True)
    assert segments.prompt(0) == tokenizer(context)["input_ids"]
    assert segments.prefix and segments.suffix, "the few-shot prefix and the answer cue are shared"
    for k, text in enumerate(parts[1]):
        assert tokenizer.decode(segments.prompt(k)) == context.replace("Where is Rome?", text)


def test_a_missing_phrasing_file_says_how_to_write_one(tmp_path):
    from selfens.harness.phrasings import PhrasingFile

    with pytest.raises(DataError, match=r"phrasing file not found: .*configs/paraphrase/lm_eval.yaml"):
        PhrasingFile.read(tmp_path / "none.jsonl")
