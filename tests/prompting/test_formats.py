"""prompts.render: the parts of a prompt, joined, are exactly the single prompt's text."""

from selfens.prompting.formats import FORMATS, Shot, render

QA_INSTRUCTION = "Answer the question based on general world knowledge. Provide a short and direct answer."
SHOTS = [Shot("who is the president of france?", "Macron"), Shot("where is tokyo?", "Japan")]
QUESTION = "what does jamaican people speak?"
QA_TEXT = (
    f"{QA_INSTRUCTION}\n\n"
    "Q: who is the president of france?\nA: Macron\n\n"
    "Q: where is tokyo?\nA: Japan\n\n"
    "Q: what does jamaican people speak?\nA:"
)


def fake_chat(content: str) -> str:
    return f"<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"


def joined(parts) -> str:
    return "".join(text for _, text in parts)


def test_qa_raw_parts_and_full_text():
    parts = render(FORMATS["qa"], QUESTION, SHOTS)
    assert parts == [
        ("instruction", QA_INSTRUCTION + "\n\n"),
        ("shot", "Q: who is the president of france?\nA: Macron\n\n"),
        ("shot", "Q: where is tokyo?\nA: Japan\n\n"),
        ("block", "Q: what does jamaican people speak?\nA:"),
        ("suffix", ""),
    ]
    assert joined(parts) == QA_TEXT


def test_cue_in_suffix_moves_the_cue_but_not_the_text():
    parts = render(FORMATS["qa"], QUESTION, SHOTS, cue_in="suffix")
    assert dict(parts[-2:]) == {"block": "Q: what does jamaican people speak?", "suffix": "\nA:"}
    assert joined(parts) == QA_TEXT


def test_no_shots():
    parts = render(FORMATS["qa"], QUESTION, [])
    assert [kind for kind, _ in parts] == ["instruction", "block", "suffix"]
    assert joined(parts) == f"{QA_INSTRUCTION}\n\nQ: what does jamaican people speak?\nA:"


def test_mask_format():
    shots = [Shot("Paul Mounsey is originally from [MASK].", "Scotland")]
    parts = render(FORMATS["mask"], "Allan Peiper was born in [MASK].", shots)
    assert joined(parts) == (
        "Predict the [MASK] in the sentence in one word.\n\n"
        "Paul Mounsey is originally from [MASK].\nA: Scotland\n\n"
        "Allan Peiper was born in [MASK].\nA:"
    )


def test_completion_format_has_no_instruction_and_keeps_the_tail():
    shots = [
        Shot("Paul Mounsey is originally from", "Scotland", "."),
        Shot("Mark Strong used to work in", "London", " ."),
    ]
    parts = render(FORMATS["completion"], "Allan Peiper was born in", shots)
    assert parts[0] == ("instruction", "")
    assert parts[-1] == ("suffix", "")
    assert joined(parts) == (
        "Paul Mounsey is originally from Scotland.\nMark Strong used to work in London .\nAllan Peiper was born in"
    )


def test_chat_wraps_the_raw_text():
    for cue_in in ("block", "suffix"):
        parts = render(FORMATS["qa"], QUESTION, SHOTS, cue_in=cue_in, chat=fake_chat)
        assert joined(parts) == fake_chat(QA_TEXT)
        kinds = dict(parts[:1] + parts[-2:])
        assert kinds["instruction"] == "<|im_start|>user\n" + QA_INSTRUCTION + "\n\n"
        assert "<|im_start|>assistant\n" in kinds["suffix"]
        assert kinds["suffix"].endswith("<|im_end|>\n<|im_start|>assistant\n")
        # The paraphrase block holds no chat markup: only the question (and the cue).
        assert kinds["block"] == render(FORMATS["qa"], QUESTION, SHOTS, cue_in=cue_in)[-2][1]
    parts = render(FORMATS["qa"], QUESTION, SHOTS, cue_in="suffix", chat=fake_chat)
    assert parts[-1] == ("suffix", "\nA:<|im_end|>\n<|im_start|>assistant\n")


def test_chat_with_a_real_template(tiny):
    _, tokenizer = tiny

    def chat(content):
        messages = [{"role": "user", "content": content}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    parts = render(
        FORMATS["completion"], "Allan Peiper was born in", [Shot("Paul Mounsey is from", "Scotland", ".")], chat=chat
    )
    assert parts[0] == ("instruction", "<|im_start|>user\n")  # the completion format has no instruction text
    assert parts[-1] == ("suffix", "<|im_end|>\n<|im_start|>assistant\n")
    assert joined(parts) == chat("Paul Mounsey is from Scotland.\nAllan Peiper was born in")
