"""Parse errors as one line: the gist of a jsonargparse error with the closest valid name to a
misspelled one, and a config file that is not YAML (or not a mapping) as `file:line:column: problem`."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from selfens.cli.commands import COMMANDS


def explain_parse_error(message: str, parser) -> str:
    """The gist of a jsonargparse error, with the closest valid name to a misspelled one."""
    if message.startswith(("Problems parsing config:", "Unexpected config:")):
        return _bad_config(message)
    own = [s for a in parser._actions for s in a.option_strings]
    unknown = re.search(r"nrecognized arguments: (\S+)", message)
    if unknown:
        return f"unknown option {unknown.group(1)}" + _closest(unknown.group(1), own)
    not_accepted = re.search(r"(?:Option|Key) ['\"]([^'\"]+)['\"] is not (?:accepted|expected)", message)
    if not_accepted:  # raised inside the parser of one class's init_args, which knows its options
        name = not_accepted.group(1).split(".")[-1]
        return f"unknown option {name!r}" + _closest(name, [o.lstrip("-").split(".")[-1] for o in own])
    invalid = re.search(r"invalid choice: '([^']+)'", message)
    if invalid:
        return (
            f"unknown command {invalid.group(1)!r}"
            + _closest(invalid.group(1), list(COMMANDS))
            + " (selfens --help lists them)"
        )
    key = re.match(r'Parser key "([^"]+)":\s*(.*)', message, re.S)
    if key:  # a bad value; nested parsers wrap an inner one's (already explained) reason in "- ..."
        name, body = key.groups()
        reasons = [r for r in re.findall(r"^\s*- (.*)$", body, re.M) if "NoneType" not in r]
        reason = reasons[0] if reasons else body.strip().splitlines()[0]
        given = re.search(r"Given value: (.*)", body) or re.search(r"Got value: (.*)", body)
        if reason.startswith("Expected a"):
            reason = reason.replace("typing.", "").replace("<class '", "").replace("'>", "")
            reason = re.sub(r"\. Got value: .*", "", reason).replace("Expected a ", "expected ")
            reason += f", got {given.group(1).strip()!r}" if given else ""
        inner = re.match(r"([\w.]+): (.*)", reason, re.S)
        return (
            f"{name}.{inner.group(1)}: {inner.group(2)}" if inner and " " not in inner.group(1) else f"{name}: {reason}"
        )
    return " ".join(line.strip() for line in message.strip().splitlines()[:2])


_YAML_MARK = re.compile(r'\s+in ".*", line (\d+), column (\d+)')


def _bad_config(message: str) -> str:
    """A config file that is not YAML, as `file:line:column: problem` (PyYAML's problem and where it
    is, which editors jump to, with where the construct it was in starts), or that is not a mapping."""
    (where, real), body = _config_file(), message.split(":", 1)[1].strip()
    if message.startswith("Unexpected config:"):  # valid YAML, but not `key: value` lines
        import yaml

        value = yaml.safe_load(body)
        got = "nothing" if value is None else "a list" if isinstance(value, list) else "a single value"
        return f"{where}: expected a mapping of options (key: value lines), got {got}"
    said = []  # PyYAML's lines (its context, then its problem), each with (line, column) where it has one
    for line in body.splitlines():
        mark = _YAML_MARK.match(line)
        if mark and said and said[-1][1] is None:
            said[-1] = (said[-1][0], tuple(map(int, mark.groups())))
        elif not line.startswith(" "):
            said.append((line, None))
    marked = [k for k, (_, at) in enumerate(said) if at]
    if not marked:
        return f"{where}: not valid YAML: {' '.join(body.split())}"
    (problem, (line, column)), context = said[marked[-1]], said[: marked[-1]]
    unnamed = problem == "found character that cannot start any token"  # libyaml's words; PyYAML's name it
    if unnamed and (found := _character(real, line, column)):
        problem = f"found character {found!r} that cannot start any token"
    explained = f"{where}:{line}:{column}: {problem}"
    if context and context[0][1]:  # e.g. the open bracket of a list that was never closed
        explained += f" ({context[0][0]} that starts at line {context[0][1][0]}, column {context[0][1][1]})"
    return explained


def _config_file() -> tuple[str, str | None]:
    """The config file that jsonargparse is reading (from its private record): as given, and its real
    path (jsonargparse reads it in its folder); ("config", None) for a config given as text."""
    try:
        from jsonargparse._util import config_load_stack

        real, given = config_load_stack.get()[-1]
        return given, real
    except (ImportError, IndexError, ValueError):
        return "config", None


def _character(path: str | None, line: int, column: int) -> str | None:
    """The character at `line` and `column` (from 1) of the text file at `path`, if there is one."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()[line - 1][column - 1]
    except (TypeError, OSError, ValueError, IndexError):
        return None


def _closest(name: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""
