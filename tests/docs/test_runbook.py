"""RUNBOOK.md's first deployment: every learnrec command in it is one the CLI accepts,
and every stack output it reads is one the stack has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from learnrec_dev.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = REPO / "docs" / "RUNBOOK.md"
STACK = REPO / "cdk" / "learnrec_cdk" / "stack.py"


def _first_deployment() -> str:
    text = RUNBOOK.read_text()
    start = text.index("## First deployment")
    return text[start : text.index("\n## ", start + 1)]


def _commands(section: str) -> list[str]:
    """Shell commands of the section's code blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [line.split("#", 1)[0].strip() for line in joined.splitlines() if line.strip()]


def _learnrec_arguments(section: str) -> list[list[str]]:
    found = []
    for command in _commands(section):
        for match in re.finditer(r"\.venv/bin/learnrec ([^)|;&]*)", command):
            # Shell values become plausible literals; the parser checks names and types.
            words = shlex.split(re.sub(r'"?\$\{?\w+\}?[^"\s]*"?', "VALUE", match.group(1)))
            found.append(words)
    return found


def test_the_first_deployment_uses_the_cli_as_it_is() -> None:
    arguments = _learnrec_arguments(_first_deployment())
    assert {words[0] + " " + words[1] for words in arguments} >= {
        "deploy bootstrap",
        "deploy seed",
        "deploy smoke",
        "auth token",
    }
    parser = build_parser()
    for words in arguments:
        # --stage takes a stage name; VALUE stands for $STAGE.
        previous = ["", *words[:-1]]
        words = ["dev" if p == "--stage" else w for p, w in zip(previous, words, strict=True)]
        try:
            parser.parse_args(words)
        except SystemExit:
            pytest.fail(f"RUNBOOK.md: `learnrec {' '.join(words)}` is not a valid command")


def test_the_stack_outputs_it_reads_exist() -> None:
    section = _first_deployment()
    read = set(re.findall(r"\$\(output (\w+)\)", section))
    assert read == {"ApiUrl", "StateMachineArn"}
    stack = STACK.read_text()
    for name in read:
        assert f'("{name}",' in stack, f"the stack has no output {name}"
