"""`.env.example` lists exactly the settings `Settings` reads, each with its default, so a
setting added, renamed, removed or given a new default shows up here first."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic.fields import FieldInfo

from learnrec.config import Settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / ".env.example"
# "# NAME=value" (commented: the default) or "NAME=value"; prose never has "NAME=".
ASSIGNMENT = re.compile(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def _environment_name(name: str, field: FieldInfo) -> str:
    """The variable pydantic-settings reads for a field (case-insensitive, shown upper)."""
    alias = field.validation_alias or field.alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str), f"{name}: an alias path has no variable name"
        alias = first
    if isinstance(alias, str):
        return alias.upper()
    assert alias is None, f"{name}: {alias!r} is not an alias this test understands"
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return (prefix + name).upper()


def _shown(default: object) -> str:
    """A default as the example writes it: None as nothing, the rest as Python prints it."""
    return "" if default is None else str(default)


def _example() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            name, value = match.groups()
            assert name not in found, f".env.example lists {name} twice"
            found[name] = value.strip()
    return found


def test_every_setting_and_nothing_else_is_listed() -> None:
    expected = {_environment_name(n, f) for n, f in Settings.model_fields.items()}
    listed = set(_example())
    assert not expected - listed, f"missing from .env.example: {sorted(expected - listed)}"
    assert not listed - expected, f"not settings, yet in .env.example: {sorted(listed - expected)}"


def test_each_listed_value_is_the_default() -> None:
    listed = _example()
    for name, field in Settings.model_fields.items():
        variable = _environment_name(name, field)
        default = field.get_default(call_default_factory=True)
        assert listed[variable] == _shown(default), f"{variable}: the default is {default!r}"


def test_each_setting_is_explained() -> None:
    """Every assignment follows at least one line of prose (a comment that assigns nothing)."""
    lines = [line.strip() for line in EXAMPLE.read_text().splitlines()]
    for number, line in enumerate(lines):
        if not ASSIGNMENT.match(line):
            continue
        above = number - 1
        while above >= 0 and ASSIGNMENT.match(lines[above]):
            above -= 1  # settings that share one explanation
        prose = lines[above] if above >= 0 else ""
        explained = prose.startswith("# ") and not prose.startswith("# ---")
        assert explained, f".env.example line {number + 1}: {line} has no explanation above it"


def test_the_example_sets_nothing_when_loaded() -> None:
    """Loading it as it is must not change a setting: an empty value is not an unset one."""
    active = [
        line
        for line in EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert active == []
