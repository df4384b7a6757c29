"""The stages' templates, synthesized once per test session in-process.

The same code path as ``npx cdk synth`` (``cdk/app.py``: :func:`build_app` with cdk-nag
as a validation plugin, the same feature flags), minus the CLI. The Lambda packages and
layers are really built (``build/lambda``, reused across runs), so the templates point
at real assets.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from learnrec.stages import StageConfig

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "cdk"))
# jsii warns at length about Node 20 at every import; the warning is not the test's business.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

ACCOUNT = "123456789012"
REGION = "eu-west-1"


def stage_config(stage: str) -> StageConfig:
    """The configuration the fixtures synthesize ``stage`` with."""
    return StageConfig.for_stage(stage, ACCOUNT, REGION)  # type: ignore[arg-type]


@dataclass
class Synthesized:
    stage: str
    template: dict[str, Any]
    outdir: Path
    validation: dict[str, Any]

    @property
    def config(self) -> StageConfig:
        return stage_config(self.stage)

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.template["Resources"].items() if r["Type"] == kind}


def _synthesize(stage: str, outdir: Path, inputs: Any) -> Synthesized:
    from app import build_app  # cdk/app.py
    from aws_cdk import App
    from learnrec_cdk.stack import FEATURE_FLAGS

    app = App(context=FEATURE_FLAGS, outdir=str(outdir))
    stack = build_app(app, stage, ACCOUNT, REGION, inputs)  # type: ignore[arg-type]
    report_path = outdir / "validation-report.json"
    try:
        assembly = app.synth()
    except RuntimeError as error:
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
        pytest.fail(f"synth of {stage} failed: {error}\n{json.dumps(report, indent=1)[:20000]}")
    template = assembly.get_stack_by_name(stack.stack_name).template
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return Synthesized(stage, template, outdir, report)


@pytest.fixture(scope="session")
def stack_inputs() -> Any:
    from app import stack_inputs

    return stack_inputs(REGION, REPO / "build" / "lambda")


@pytest.fixture(scope="session")
def prod(stack_inputs: Any, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize("prod", tmp_path_factory.mktemp("cdk-prod"), stack_inputs)


@pytest.fixture(scope="session")
def dev(stack_inputs: Any, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize("dev", tmp_path_factory.mktemp("cdk-dev"), stack_inputs)


@pytest.fixture(scope="session", params=["dev", "prod"])
def each_stage(request: pytest.FixtureRequest) -> Synthesized:
    synthesized: Synthesized = request.getfixturevalue(request.param)
    return synthesized
