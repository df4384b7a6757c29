"""ONBOARDING.md stays true: its commands are ones the CLI and the Makefile accept, the
files its map names exist, and its links (and the README's and ARCHITECTURE.md's) lead
somewhere."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from learnrec_dev.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
ONBOARDING = DOCS / "ONBOARDING.md"
TOP_LEVEL = ("learnrec/", "learnrec_dev/", "functions/", "training/", "cdk/", "tests/", "layers/")


def _commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", ONBOARDING.read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [part.strip() for line in lines for part in line.split("&&") if part.strip()]


def test_the_guide_runs_the_demo_the_fast_tests_and_a_benchmark() -> None:
    commands = _commands()
    assert "make demo" in commands
    assert "make test-fast" in commands
    assert any(c.startswith(".venv/bin/learnrec benchmark ") for c in commands)


def test_each_make_target_exists() -> None:
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", (REPO / "Makefile").read_text(), re.M))
    for command in _commands():
        if command.startswith("make "):
            for target in command.split()[1:]:
                assert target in targets, f"ONBOARDING.md: the Makefile has no target {target}"


def test_each_learnrec_command_is_one_the_cli_accepts() -> None:
    parser = build_parser()
    found = [c for c in _commands() if c.startswith(".venv/bin/learnrec ")]
    assert found
    for command in found:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"ONBOARDING.md: `{command}` is not a valid command")


def test_each_path_in_the_map_exists() -> None:
    text = ONBOARDING.read_text()
    named = [p for p in re.findall(r"`([^`\s]+)`", text) if p.startswith(TOP_LEVEL)]
    assert len(named) > 20
    for path in named:
        assert list(REPO.glob(path.rstrip("/"))), f"ONBOARDING.md names a missing {path}"


@pytest.mark.parametrize(
    "document", [ONBOARDING, DOCS / "ARCHITECTURE.md", REPO / "README.md"], ids=lambda p: p.name
)
def test_relative_links_lead_to_files(document: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        assert (document.parent / path).exists(), f"{document.name} links to a missing {target}"
