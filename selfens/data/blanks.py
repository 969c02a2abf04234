"""Fill-in-the-blank data (ParaRel, MyriadLAMA): templates with `[X]` (the subject) and `[Y]` (the
object), shown as `[MASK]` sentences or cut before `[Y]` for the model to complete."""

from __future__ import annotations

import logging
import re
from typing import Literal, Optional

from selfens.data.base import ParaphraseDataModule
from selfens.data.records import DataError
from selfens.prompting.formats import FORMATS, PromptFormat

FillStyle = Literal["mask", "completion"]
OnShort = Literal["skip", "error"]

_AFTER_ANSWER = re.compile(r"[\s.]+$")  # what may follow [Y] in a template the completion style can cut
_NAMES_SHOWN = 10  # skipped items named in the warning


def completes_at_end(template: str) -> bool:
    """Whether `template` ends in `[Y]`, up to spaces and dots: only such a template can be cut before
    `[Y]` for the model to complete."""
    return _AFTER_ANSWER.sub("", template).endswith("[Y]")


class FillInTheBlank(ParaphraseDataModule):
    """The fill style (the config's, or the model's default), which templates it can show, and how a
    template is filled with it."""

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

    def evaluation_identity(self) -> dict:
        return {**super().evaluation_identity(), "fill_style": self.fill_style}

    def prompt_format(self) -> PromptFormat:
        return FORMATS[self.fill_style]

    def usable(self, template: str) -> bool:
        """Whether `template` can be shown in this fill style: it has `[X]` and `[Y]`, and for the
        completion style it ends in `[Y]` (`completes_at_end`)."""
        if "[X]" not in template or "[Y]" not in template:
            return False
        return self.fill_style == "mask" or completes_at_end(template)

    def fill(self, template: str, subject: str) -> tuple[str, str]:
        """(query, tail): the query of a template for a subject, and what follows the answer (the
        completion style's "." after `[Y]`)."""
        text = template.replace("[X]", subject)
        if self.fill_style == "mask":
            return text.replace("[Y]", "[MASK]"), ""
        head, tail = text.split("[Y]", 1)
        return head.rstrip(), tail

    def too_few(self, kind: str, unit: str, source: str, option: str, on_short: OnShort) -> TooFew:
        """The skip-or-error rule for items (relations, facts) with fewer usable phrasings than num_paraphrases.

        Args:
            kind: what an item is, e.g. "relation".
            unit: what is counted of it, e.g. "templates".
            source: the data the items come from (the error's prefix).
            option: the config option that chooses skip or error, e.g. "on_short_relation".
            on_short: that option's value, "skip" or "error".
        """
        return TooFew(type(self).__name__, kind, unit, source, option, on_short, self.fill_style, self.num_paraphrases)


class TooFew:
    """Items with fewer usable phrasings than num_paraphrases: each is skipped and counted (`on_short`
    "skip"), or a DataError that says where and what to do ("error"). Made by `FillInTheBlank.too_few`."""

    def __init__(self, dataset, kind, unit, source, option, on_short: OnShort, fill_style: str, num_paraphrases: int):
        self.dataset, self.kind, self.unit, self.source, self.option = dataset, kind, unit, source, option
        self.on_short, self.fill_style, self.num_paraphrases = on_short, fill_style, num_paraphrases
        self.skipped: list[str] = []  # what `warn` reports

    def enough(self, name: str, count: int) -> bool:
        """Whether item `name`, with `count` usable phrasings, has enough; if not, it is counted as
        skipped, or it is an error."""
        if count >= self.num_paraphrases:
            return True
        message = (
            f"{self.kind} {name} has {count} {self.unit} usable with fill_style {self.fill_style!r}, "
            f"fewer than num_paraphrases={self.num_paraphrases}"
        )
        if self.on_short == "error":
            raise DataError(f"{self.source}: {message}; lower num_paraphrases or set {self.option}: skip")
        self.skipped.append(name)
        return False

    def warn(self, log: logging.Logger, of: int, items: str) -> None:
        """One warning naming the skipped items, if any: "<dataset>: skipped k of `of` `items` ..."."""
        if not self.skipped:
            return
        names = ", ".join(self.skipped[:_NAMES_SHOWN])
        if len(self.skipped) > _NAMES_SHOWN:
            names += f" and {len(self.skipped) - _NAMES_SHOWN} more"
        log.warning(
            "%s: skipped %d of %d %s with fewer than num_paraphrases=%d %s usable with fill_style %r: %s",
            self.dataset,
            len(self.skipped),
            of,
            items,
            self.num_paraphrases,
            self.unit,
            self.fill_style,
            names,
        )
