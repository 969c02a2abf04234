"""The prompt builder: chat or raw, rendered into parts, tokenized into segments. The data modules,
`selfens ask` and `selfens paraphrase` all build their prompts through it."""

from __future__ import annotations

from typing import Callable, Optional

from selfens.data.encoding import encode_example
from selfens.errors import ConfigError
from selfens.prompting.formats import CuePlace, Part, PromptFormat, Shot, render
from selfens.prompting.segments import Segments


def chat_renderer(tokenizer, model_name: str) -> Callable[[str], str]:
    """Maps a user message to the full chat text, ending with the assistant's header."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"prompt_style 'chat' needs a tokenizer with a chat template; {model_name!r} has none. "
            f"Use prompt_style: raw."
        )
    return lambda content: tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )


class PromptBuilder:
    """Prompts of one format for one tokenizer: `parts` renders a query with its shots, `encode` an
    example's phrasings into segments whose shared parts are the same tokens in every phrasing."""

    def __init__(self, tokenizer, fmt: PromptFormat, *, chat: bool, model_name: str, cue_in: CuePlace = "block"):
        self.tokenizer, self.format, self.cue_in = tokenizer, fmt, cue_in
        self.chat: Optional[Callable[[str], str]] = chat_renderer(tokenizer, model_name) if chat else None

    def parts(self, query: str, shots: list[Shot]) -> list[Part]:
        return render(self.format, query, shots, cue_in=self.cue_in, chat=self.chat)

    def encode(self, phrasings: list[str], shots: list[Shot], example_id: str) -> Segments:
        prompts = [self.parts(p, shots) for p in phrasings]
        # A chat template writes its own special tokens; raw text gets the tokenizer's (e.g. BOS).
        return encode_example(self.tokenizer, prompts, add_special_tokens=self.chat is None, example_id=example_id)
