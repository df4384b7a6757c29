"""The pre-commit hooks are local, run the project's own tools, and each exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / ".pre-commit-config.yaml"
MAKEFILE = REPO / "Makefile"


def _hooks() -> list[dict[str, Any]]:
    config = yaml.safe_load(CONFIG.read_text())
    repos = config["repos"]
    # A remote hook repository would be cloned and installed at commit time.
    assert [r["repo"] for r in repos] == ["local"]
    hooks: list[dict[str, Any]] = repos[0]["hooks"]
    return hooks


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", MAKEFILE.read_text(), re.M))


def test_the_hooks_cover_lint_format_types_and_fast_tests() -> None:
    entries = {hook["id"]: hook["entry"] for hook in _hooks()}
    assert entries == {
        "ruff-check": ".venv/bin/ruff check --force-exclude",
        "ruff-format": ".venv/bin/ruff format --force-exclude",
        "mypy": ".venv/bin/mypy",
        "test-fast": "make test-fast",
    }


def test_each_hook_runs_a_command_that_exists() -> None:
    targets = _make_targets()
    for hook in _hooks():
        # "system": the command as written, nothing installed by pre-commit itself.
        assert hook["language"] == "system", hook["id"]
        program, *arguments = shlex.split(hook["entry"])
        if program == "make":
            assert arguments, hook["id"]
            for target in arguments:
                assert target in targets, f"{hook['id']}: the Makefile has no target {target}"
        else:
            assert program.startswith(".venv/bin/"), f"{hook['id']}: {program} is not the venv's"
            tool = REPO / program
            assert tool.is_file(), f"{hook['id']}: {program} is missing (make install)"


def test_whole_tree_hooks_take_no_file_names() -> None:
    """mypy and the tests check the configured tree, not the list of changed files."""
    for hook in _hooks():
        if hook["id"] in {"mypy", "test-fast"}:
            assert hook.get("pass_filenames") is False, hook["id"]
