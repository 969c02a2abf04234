"""A config that is not valid YAML, or not a mapping, fails in one line that names the file, and
PyYAML's problem at `file:line:column` (where editors jump to), for every command that reads one."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers import selfens_fails

# The Lightning commands read configs with libyaml where PyYAML has it, `selfens study` with PyYAML's
# own parser: the same places, in their own words. Each case: the text, line:column: problem as the
# Lightning commands and as `selfens study` say it, and where the construct it is in starts.
LIBYAML = yaml.__with_libyaml__
BROKEN = {
    "unclosed bracket": (
        "model:\n  init_args:\n    stop_strings: [unclosed\ndata: {}\n",
        "4:5: did not find expected ',' or ']'" if LIBYAML else "4:5: expected ',' or ']', but got ':'",
        "4:5: expected ',' or ']', but got ':'",
        " (while parsing a flow sequence that starts at line 3, column 19)",
    ),
    "bad indentation": (
        "model:\n  class_path: selfens.methods.Origin\n   init_args: {}\n",
        "3:13: mapping values are not allowed " + ("in this context" if LIBYAML else "here"),
        "3:13: mapping values are not allowed here",
        "",
    ),
    "tab": (
        "model:\n\tclass_path: selfens.methods.Origin\n",
        r"2:1: found character '\t' that cannot start any token",
        r"2:1: found character '\t' that cannot start any token",
        "",
    ),
}


@pytest.mark.parametrize("command", ["test", "confidence", "study"])
@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_yaml_syntax_error_names_the_file_line_and_problem(command, broken, tmp_path, capsys):
    text, lightning, study, context = BROKEN[broken]
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    expected = f"selfens: error: {config}:{study if command == 'study' else lightning}{context}"
    assert selfens_fails(capsys, command, "--config", config) == expected


@pytest.mark.parametrize(
    "text, got", [("- model\n- data\n", "a list"), ("just text\n", "a single value"), ("# nothing yet\n", "nothing")]
)
def test_a_config_that_is_not_a_mapping(text, got, tmp_path, capsys):
    config = tmp_path / "list.yaml"
    config.write_text(text)
    expected = f"selfens: error: {config}: expected a mapping of options (key: value lines), got {got}"
    assert selfens_fails(capsys, "test", "--config", config) == expected


def test_a_relative_path_is_named_as_given(tmp_path, capsys, monkeypatch):
    """jsonargparse reads a config in its own folder; the error names it as typed."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "bad.yaml").write_text("model: [x\n")
    monkeypatch.chdir(tmp_path)
    expected = "selfens: error: configs/bad.yaml:2:1: did not find expected ',' or ']'"
    if not LIBYAML:
        expected = "selfens: error: configs/bad.yaml:2:1: expected ',' or ']', but got '<stream end>'"
    assert selfens_fails(capsys, "test", "--config", "configs/bad.yaml").startswith(expected)
