"""The CI checks: cdk-nag, cfn-lint, and the pinned CLI synthesizing offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint  # type: ignore[import-untyped]

from .conftest import REPO, Synthesized


def test_cdk_nag_aws_solutions_has_no_unacknowledged_findings(each_stage: Synthesized) -> None:
    reports = {r["pluginName"]: r for r in each_stage.validation.get("pluginReports", [])}
    nag = reports.get("AwsSolutions")
    # cdk-nag 3 reports only when it finds something; no report means it found nothing.
    if nag is not None:
        findings = [
            f"{v['ruleName']} at {c['constructPath']}"
            for v in nag["violations"]
            for c in v["violatingConstructs"]
        ]
        assert nag["conclusion"] == "success" and not findings, "\n".join(findings)


def test_nag_runs_and_would_fail_an_unjustified_wildcard(tmp_path: Path, stack_inputs: Any) -> None:
    """The check is live: an unacknowledged wildcard grant fails synthesis."""
    from app import build_app
    from aws_cdk import App
    from aws_cdk import aws_iam as iam
    from learnrec_cdk.stack import FEATURE_FLAGS

    app = App(context=FEATURE_FLAGS, outdir=str(tmp_path))
    stack = build_app(app, "dev", "123456789012", "eu-west-1", stack_inputs)
    stack.serving.role.add_to_policy(
        iam.PolicyStatement(actions=["s3:GetObject"], resources=["arn:aws:s3:::other/*"])
    )
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    assert "AwsSolutions-IAM5[Resource::arn:aws:s3:::other/*]" in rules


def test_cfn_lint_finds_no_errors(each_stage: Synthesized) -> None:
    matches = lint(
        json.dumps(each_stage.template),
        config=ManualArgs(regions=["eu-west-1"]),
    )
    errors = [f"{m.rule.id} {m.message} ({m.path})" for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(errors)


def test_pinned_cli_synthesizes_offline_without_credentials(tmp_path: Path) -> None:
    cdk = REPO / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        if os.environ.get("CI"):
            pytest.fail("node_modules missing: make test runs npm ci first")
        pytest.skip("node_modules missing: run `make node_modules` (npm ci)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "CDK_DISABLE_VERSION_CHECK": "1",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        # No credentials anywhere: an empty shared config and credentials file.
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    out = tmp_path / "cdk.out"
    completed = subprocess.run(
        [str(cdk), "synth", "--quiet", "--no-notices", "-c", "stage=staging", "-o", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-5000:]
    template = json.loads((out / "learnrec-staging.template.json").read_text())
    assert any(
        r["Type"] == "AWS::StepFunctions::StateMachine" for r in template["Resources"].values()
    )
    shutil.rmtree(out, ignore_errors=True)
