"""The pipeline's function steps: ``start``, ``register`` and ``promote``.

Called in AWS by ``functions/pipeline/handler.py`` (the pipeline Lambda, through
:func:`handle`) and locally, in process, by :mod:`learnrec.pipeline.local`; both call the
entry the step registry names (:mod:`learnrec.pipeline.definition`) with the same run
document. Like every step they read their inputs from the run's artifacts in S3 and
write their outputs there, so a retried state finds what it needs.

- ``start`` (not a pipeline step: it makes the run): request -> ``{"run": {...}}``, and
  the same document as the ``run`` artifact that the processing jobs read.
- ``register``: the ``bundle`` and ``evaluation`` artifacts -> the version's bundle under
  ``models/versions/<version>/`` with its final manifest, a SageMaker model package in
  the stage's group, ``model_drift_score`` published; output ``version/version.json``.
- ``promote``: records the verdict in the registry, then moves the OpenSearch alias (with
  ``VECTOR_INDEX=opensearch``) and the pointer if the gate passed and the active
  version is still the one the run compared with; output ``active/active.json``.

The model package group is the stage's (``ResourceNames.model_package_group``); the
CDK app creates it, so nothing here creates AWS resources at run time.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from learnrec.bundle import EVALUATION_FILE, BundleLayout, read_manifest, write_manifest
from learnrec.config import Settings, get_settings
from learnrec.pipeline import drift
from learnrec.pipeline.artifacts import download_prefix, tarball_key, unpack
from learnrec.pipeline.definition import (
    RUN_ARTIFACT,
    RUN_FILE,
    StepKind,
    load_entry,
    step,
    steps_of,
)
from learnrec.pipeline.errors import StepError
from learnrec.pipeline.lifecycle import LifecycleError, activate, alias_swap
from learnrec.pipeline.run import RunContext, RunError, RunRequest, new_run
from learnrec.serving.model_store import S3ModelStore
from learnrec.stages import MODELS_PREFIX, ResourceNames

VERSION_FILE = "version.json"
ACTIVE_FILE = "active.json"
#: Not a pipeline step: it makes the run the steps are given.
START = "start"


class Clients:
    """boto3 clients by service name, each made on first use unless given.

    A step creates only the clients it calls; the local runner and tests hand in theirs.
    """

    def __init__(self, given: Mapping[str, Any] | None = None) -> None:
        self._clients = {name: client for name, client in (given or {}).items() if client}

    def __getitem__(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service)
        return self._clients[service]


#: What a function step's entry is called with, and what it answers (the step's result).
FunctionEntry = Callable[[RunContext, Clients], dict[str, Any]]


def store_for(run: RunContext, s3: Any) -> S3ModelStore:
    return S3ModelStore(run.bucket, run.models_prefix, s3)


def start_run(request: RunRequest, s3: Any) -> RunContext:
    """A new run, comparing with whatever version is active now, written as the run's
    first artifact (``pipeline/<run id>/run/run.json``) for the processing jobs."""
    names = ResourceNames(request.stage)
    bucket = request.bucket or names.data_bucket
    active = S3ModelStore(bucket, MODELS_PREFIX.rstrip("/"), s3).pointer().active
    run = new_run(request, active, names=names)
    _write_json(s3, run, RUN_ARTIFACT, RUN_FILE, run.to_json())
    return run


def start(request: Mapping[str, Any], s3: Any) -> dict[str, Any]:
    """A new run document for ``request`` (``{"mode": "full", "stage": "dev", ...}``)."""
    return {"run": start_run(RunRequest.from_json(request), s3).to_json()}


def _read_json(s3: Any, run: RunContext, artifact: str, name: str, step: str) -> dict[str, Any]:
    key = run.artifact_key(artifact) + name
    try:
        body = s3.get_object(Bucket=run.bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as error:
        raise StepError(step, f"missing input s3://{run.bucket}/{key}") from error
    data: dict[str, Any] = json.loads(body)
    return data


def _write_json(s3: Any, run: RunContext, artifact: str, name: str, data: Mapping[str, Any]) -> str:
    key = run.artifact_key(artifact) + name
    s3.put_object(
        Bucket=run.bucket,
        Key=key,
        Body=json.dumps(data, indent=2, default=str).encode(),
        ContentType="application/json",
    )
    return f"s3://{run.bucket}/{key}"


def register(run: RunContext, s3: Any, sagemaker: Any, cloudwatch: Any) -> dict[str, Any]:
    step = "register"
    evaluation = _read_json(s3, run, "evaluation", EVALUATION_FILE, step)
    store = store_for(run, s3)
    bundle_uri = f"{run.model_store_url}/versions/{run.version}/"
    if run.version not in store.versions():  # a retried state finds the bundle there
        with tempfile.TemporaryDirectory(prefix="learnrec-register-") as tmp:
            bundle = Path(tmp) / "bundle"
            if not download_prefix(s3, run.bucket, run.artifact_key("bundle"), bundle):
                raise StepError(step, f"the bundle artifact {run.artifact_uri('bundle')} is empty")
            unpack(bundle)
            layout = BundleLayout(bundle)
            if not layout.manifest.exists():
                raise StepError(step, "the bundle artifact has no manifest: not a model bundle")
            made = read_manifest(bundle)  # refuses a bundle altered since training
            layout.evaluation.write_text(json.dumps(evaluation, indent=2))
            # The evaluation report (Markdown and plots) travels with the version it judged.
            download_prefix(s3, run.bucket, run.artifact_key("evaluation"), layout.report_dir)
            (layout.report_dir / EVALUATION_FILE).unlink(missing_ok=True)
            write_manifest(
                bundle,
                version=run.version,
                parameters=made.get("parameters", {}),
                metrics={
                    "primary_metric": evaluation["primary_metric"],
                    "k": evaluation["k"],
                    "users": evaluation["users"],
                    "gate": evaluation["gate"],
                    **evaluation["models"],
                },
                data={
                    "window": {
                        "from": run.window_start.isoformat(),
                        "to": run.window_end.isoformat(),
                    },
                    **{k: v for k, v in evaluation.get("data", {}).items() if k != "window"},
                },
                drift=evaluation["drift"],
                extra={"run": {"run_id": run.run_id, "mode": run.mode.value}},
            )
            store.publish(bundle, run.version)
    tarball = tarball_key(s3, run.bucket, run.artifact_key("bundle"))
    package = _model_package(run, sagemaker, evaluation, bundle_uri, tarball)
    score = evaluation["drift"].get("model_drift_score")
    if score is not None:
        drift.publish(cloudwatch, score, run.stage)
    result = {
        "version": run.version,
        "bundle_uri": bundle_uri,
        "model_package_arn": package,
        "model_drift_score": score,
    }
    _write_json(s3, run, "version", VERSION_FILE, result)
    return result


def _model_package(
    run: RunContext,
    sagemaker: Any,
    evaluation: Mapping[str, Any],
    bundle_uri: str,
    tarball: str | None,
) -> str:
    metric = evaluation["primary_metric"]
    candidate = evaluation["models"]["candidate"]
    properties = {
        "version": run.version,
        "run_id": run.run_id,
        "mode": run.mode.value,
        "bundle_uri": bundle_uri,
        metric: f"{candidate[metric]:.6f}",
        "gate": "passed" if evaluation["gate"]["passed"] else "failed",
    }
    if tarball:
        properties["model_data_url"] = f"s3://{run.bucket}/{tarball}"
    response = sagemaker.create_model_package(
        ModelPackageGroupName=run.model_package_group,
        ModelPackageDescription=f"learnrec {run.version} ({run.mode.value} retrain {run.run_id})",
        ModelApprovalStatus="PendingManualApproval",
        CustomerMetadataProperties=properties,
        ModelMetrics={
            "ModelQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": bundle_uri + EVALUATION_FILE,
                }
            }
        },
        ClientToken=run.run_id,  # a retried state does not register the version twice
    )
    return str(response["ModelPackageArn"])


def promote_step(
    run: RunContext,
    s3: Any,
    sagemaker: Any,
    opensearch_client: Any = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Apply the gate: approve and activate the version, or reject it and say why.

    The registry is updated before the alias and the pointer move: the pointer is what
    serving follows, so once it has moved nothing that can fail may be left to do. If
    activation then fails, the package is marked rejected with the reason. A retried
    state that finds its own version already active (an earlier attempt moved the
    pointer, then failed writing its output) finishes the promotion instead of reading
    the moved pointer as "the active version changed during the run".
    """
    step = "promote"
    settings = settings or get_settings()
    evaluation = _read_json(s3, run, "evaluation", EVALUATION_FILE, step)
    registered = _read_json(s3, run, "version", VERSION_FILE, step)
    package = registered["model_package_arn"]
    store = store_for(run, s3)
    current = store.pointer().active
    gate = evaluation["gate"]
    if not gate["passed"]:
        promoted, reason = False, f"gate failed: {gate['reason']}"
    elif current not in (run.active_version, run.version):
        promoted = False
        reason = (
            f"the active version changed during the run ({run.active_version} -> {current}); "
            "the candidate was not compared with it"
        )
    else:
        promoted, reason = True, gate["reason"]
    _review(sagemaker, package, promoted, reason)
    if promoted:
        try:
            activate(store, run.version, alias_swap(settings, opensearch_client))
        except LifecycleError as error:
            _review(sagemaker, package, False, f"activation failed: {error}")
            raise StepError(step, str(error)) from error
        current = run.version
    result = {"version": run.version, "promoted": promoted, "reason": reason, "active": current}
    _write_json(s3, run, "active", ACTIVE_FILE, result)
    return result


def _review(sagemaker: Any, package: str, approved: bool, reason: str) -> None:
    """The registry's verdict on a package (SageMaker keeps at most 1000 characters)."""
    sagemaker.update_model_package(
        ModelPackageArn=package,
        ModelApprovalStatus="Approved" if approved else "Rejected",
        ApprovalDescription=reason[:1000],
    )


def run_register(run: RunContext, clients: Clients) -> dict[str, Any]:
    """The ``register`` step's registered entry."""
    return register(run, clients["s3"], clients["sagemaker"], clients["cloudwatch"])


def run_promote(run: RunContext, clients: Clients) -> dict[str, Any]:
    """The ``promote`` step's registered entry."""
    return promote_step(run, clients["s3"], clients["sagemaker"])


def function_entry(name: str) -> FunctionEntry:
    """The entry of function step ``name``; :class:`StepError` for any other name."""
    known = [s.name for s in steps_of(StepKind.FUNCTION)]
    if name not in known:
        usage = f"{', '.join([START, *known[:-1]])} or {known[-1]}"
        raise StepError(name or "?", f"unknown function step: use {usage}")
    entry: FunctionEntry = load_entry(step(name))
    return entry


def handle(event: Mapping[str, Any], clients: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One invocation of the pipeline function (see ``functions/pipeline/handler.py``)."""
    aws = Clients(clients)
    name = str(event.get("step", ""))
    try:
        if name == START:
            return {"step": name, "ok": True, **start(event.get("request") or {}, aws["s3"])}
        entry = function_entry(name)
        result = entry(RunContext.from_json(event.get("run") or {}), aws)
    except StepError as error:
        return {"step": name, "ok": False, "error": str(error)}
    except RunError as error:
        return {"step": name, "ok": False, "error": f"{name}: {error}"}
    return {"step": name, "ok": True, **result}
