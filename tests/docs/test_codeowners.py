"""CODEOWNERS names only paths that exist and only the project's teams, so a moved
folder cannot leave its area without reviewers unnoticed."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CODEOWNERS = REPO / ".github" / "CODEOWNERS"
TEAMS = {"@learnrec/maintainers", "@learnrec/ml", "@learnrec/infra"}


def _rules() -> list[tuple[str, list[str]]]:
    rules = []
    for line in CODEOWNERS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pattern, *owners = line.split()
            rules.append((pattern, owners))
    return rules


def test_every_path_exists() -> None:
    for pattern, _ in _rules():
        if pattern == "*":
            continue
        assert pattern.startswith("/"), f"{pattern}: anchor it at the repository's root"
        assert (REPO / pattern.strip("/")).exists(), f"CODEOWNERS names a missing {pattern}"


def test_every_rule_has_the_maintainers_and_known_teams_only() -> None:
    rules = _rules()
    assert rules[0] == ("*", ["@learnrec/maintainers"]), "the default owner comes first"
    for pattern, owners in rules:
        assert owners, f"{pattern} has no owner"
        assert set(owners) <= TEAMS, f"{pattern}: unknown owners {set(owners) - TEAMS}"
        # The last matching rule wins: without them, an area would wait for its team alone.
        assert "@learnrec/maintainers" in owners, pattern
