"""The learnrec CDK app: ``npx cdk synth -c stage=dev`` (or staging, prod) from the repo root.

The one place that reads the CDK context: ``stage`` (default ``dev``), ``account`` and
``region`` (default: the CLI's account and region when it has credentials, else the
local AWS's fixed ones, so synth works offline), ``training_image_tag`` and
``lambda_build_dir``; with ``github_repository`` (``<owner>/<name>``, and optionally
``github_oidc_provider_arn`` where the account has GitHub's provider already) it also
defines ``learnrec-cicd``, the role that ``.github/workflows/cd.yml`` deploys with.
Before synthesizing it builds the Lambda functions and layers with
:func:`learnrec_dev.packaging.build` (layers whose pinned requirements did not change are
reused; the first build downloads the wheels from PyPI) and the SageMaker source
archive, then applies cdk-nag's AwsSolutions checks to everything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import cast, get_args

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from learnrec.serving.openapi_doc import gateway_routes, openapi_spec
from learnrec.stages import LOCAL_ACCOUNT, LOCAL_REGION, STAGES, StageConfig, StageName

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learnrec_cdk.assets import lambda_assets, size_summary
from learnrec_cdk.cicd import LearnrecCicdStack
from learnrec_cdk.job_source import build_source_archive
from learnrec_cdk.stack import FEATURE_FLAGS, LearnrecStack, StackInputs
from learnrec_cdk.training import training_image

REPO = Path(__file__).resolve().parents[1]
# The newest TensorFlow 2.x CPU training container with Python >= 3.11 (learnrec's floor).
DEFAULT_TRAINING_IMAGE_TAG = "2.21.0-cpu-py312-amzn2023-sagemaker"


def stack_inputs(
    region: str, build_dir: Path, image_tag: str = DEFAULT_TRAINING_IMAGE_TAG
) -> StackInputs:
    """Build what the stack deploys: Lambda folders and layers, the jobs' source archive."""
    return StackInputs(
        assets=lambda_assets(build_dir),
        job_source_archive=build_source_archive(
            REPO, REPO / "cdk" / "sagemaker", build_dir / "sagemaker" / "sourcedir.tar.gz"
        ),
        training_image=training_image(region, image_tag),
        routes=gateway_routes(openapi_spec()),
    )


def build_app(
    app: App, stage: StageName, account: str, region: str, inputs: StackInputs
) -> LearnrecStack:
    """The stage's stack in ``app``, checked by cdk-nag (findings become annotations)."""
    config = StageConfig.for_stage(stage, account, region)
    stack = LearnrecStack(app, f"learnrec-{stage}", config=config, inputs=inputs)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return stack


def main() -> None:
    app = App(context=FEATURE_FLAGS)
    stage = str(app.node.try_get_context("stage") or "dev")
    if stage not in get_args(StageName):
        raise SystemExit(f"unknown stage {stage!r}: use -c stage=dev|staging|prod")
    account = str(
        app.node.try_get_context("account")
        or os.environ.get("CDK_DEFAULT_ACCOUNT")
        or LOCAL_ACCOUNT
    )
    region = str(
        app.node.try_get_context("region") or os.environ.get("CDK_DEFAULT_REGION") or LOCAL_REGION
    )
    build_dir = Path(str(app.node.try_get_context("lambda_build_dir") or REPO / "build" / "lambda"))
    tag = str(app.node.try_get_context("training_image_tag") or DEFAULT_TRAINING_IMAGE_TAG)
    inputs = stack_inputs(region, build_dir, tag)
    # The CLI shows the app's stderr: the package sizes against the 250 MB limit.
    print(size_summary(inputs.assets.report), file=sys.stderr)
    build_app(app, cast(StageName, stage), account, region, inputs)
    repository = app.node.try_get_context("github_repository")
    if repository:
        LearnrecCicdStack(
            app,
            "learnrec-cicd",
            account=account,
            region=region,
            repository=str(repository),
            environments=STAGES,
            existing_provider_arn=app.node.try_get_context("github_oidc_provider_arn"),
        )
    app.synth()


if __name__ == "__main__":
    main()
