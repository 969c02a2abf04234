"""Fill-in-the-blank data (ParaRel, MyriadLAMA): templates with `[X]` (the subject) and `[Y]` (the
object), shown as `[MASK]` sentences or cut before `[Y]` for the model to complete."""

from __future__ import annotations

from typing import Literal, Optional

from selfens.data.base import ParaphraseDataModule
from selfens.prompts import FORMATS, PromptFormat

FillStyle = Literal["mask", "completion"]


class FillInTheBlank(ParaphraseDataModule):
    """The fill style (the config's, or the model's default) and how a template is filled with it."""

    def __init__(self, fill_style: Optional[FillStyle] = None, **kwargs):
        """
        Args:
            fill_style: "mask" or "completion"; None: the model's default.
            **kwargs: see ParaphraseDataModule.
        """
        super().__init__(**kwargs)
        self._fill_style = fill_style

    @property
    def fill_style(self) -> str:
        return self._fill_style or super().fill_style

    def resolved_settings(self) -> dict[str, str]:
        return {**super().resolved_settings(), "fill_style": self.fill_style}

    def prompt_format(self) -> PromptFormat:
        return FORMATS[self.fill_style]

    def fill(self, template: str, subject: str) -> tuple[str, str]:
        """(query, tail): the query of a template for a subject, and what follows the answer (the
        completion style's "." after `[Y]`)."""
        text = template.replace("[X]", subject)
        if self.fill_style == "mask":
            return text.replace("[Y]", "[MASK]"), ""
        head, tail = text.split("[Y]", 1)
        return head.rstrip(), tail
