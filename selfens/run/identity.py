"""What a run is, in the two parts that decide what it may be compared or merged with.

- The *evaluation*: the model (name and a fingerprint of its weights), the examples, how they are
  prompted and how answers are decoded. Two runs of one evaluation answered the same questions
  under the same conditions, so `report` pairs a method only with a baseline of the same evaluation.
- The *method*: the method, its settings, N and the paraphrases it fused. `--resume` continues a
  folder only when both parts are equal.

The method module and the data module each give their share (`evaluation_identity`,
`method_identity`); a run writes the whole as identity.json when it starts (so an interrupted run
has it) and in results.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

IDENTITY_FILE = "identity.json"


@dataclass(frozen=True)
class RunIdentity:
    evaluation: dict
    method: dict

    @classmethod
    def of(cls, module, data) -> RunIdentity:
        """The identity of a run of `module` (a method) on `data` (a set-up data module)."""
        evaluation = {**module.evaluation_identity(), **data.evaluation_identity()}
        method = {**module.method_identity(), **data.method_identity()}
        return cls.from_dict(_as_saved({"evaluation": evaluation, "method": method}))

    @classmethod
    def from_dict(cls, saved: dict) -> RunIdentity:
        return cls(saved["evaluation"], saved["method"])

    def to_dict(self) -> dict:
        return asdict(self)

    def write(self, folder: Path) -> None:
        (folder / IDENTITY_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def differences(self, other: RunIdentity) -> list[str]:
        """Every field in which the two runs differ, with both values: `model: 'a' vs 'b'`."""
        return differences(self.evaluation, other.evaluation) + differences(self.method, other.method)


def load_identity(folder: Path) -> Optional[RunIdentity]:
    """The identity a run folder recorded (results.json once finished, identity.json from its start);
    None for a folder written before runs recorded one."""
    results, started = folder / "results.json", folder / IDENTITY_FILE
    if results.exists():
        saved = json.loads(results.read_text(encoding="utf-8")).get("identity")
        return RunIdentity.from_dict(saved) if saved else None
    if started.exists():
        return RunIdentity.from_dict(json.loads(started.read_text(encoding="utf-8")))
    return None


def _as_saved(identity: dict) -> dict:
    """As it reads back from JSON (tuples become lists), so that a live identity equals a saved one."""
    return json.loads(json.dumps(identity))


def differences(a: dict, b: dict) -> list[str]:
    """The fields of `a` and `b` whose values differ (a field only one has counts), in `a`'s order."""
    fields = list(dict.fromkeys([*a, *b]))
    return [f"{f}: {_shown(a.get(f))} vs {_shown(b.get(f))}" for f in fields if a.get(f) != b.get(f)]


def _shown(value) -> str:
    # Hashes are 64 hex digits: 12 tell them apart in a message.
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return "(none)" if value is None else repr(value)
