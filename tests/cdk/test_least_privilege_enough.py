"""Least privilege that is enough: every AWS call the functions and jobs make is allowed.

The real flows run against the local AWS with botocore's events recording each call and
who made it (``tests/iam/recorder.py``): a full and then a ranking retraining run through
the local pipeline runner (``start``, ``register`` and ``promote`` in process as the pipeline
function; ``build_dataset``, ``train_retrieval``, ``build_index``, ``train_ranking`` and
``evaluate`` as child processes, in the job role; the channel downloads and output
uploads the runner does in SageMaker's place, also in the job role), then the API
handler configured as the stack configures it (model store in S3, keys in Secrets
Manager, events to Kinesis) on every kind of route, then the ingest handler fed by the
local event source mapping, which in AWS reads the stream with the function's role, then
the maintenance handler and one more sweep a day later (in a versioned bucket, as the
stack makes it), so erasure rewrites and deletes archive objects, spilled dead letters,
queue messages and bundle vocabularies, and retention deletes an old bundle and the
finished runs' learner-level data.
Jobs, the pipeline function and the API use OpenSearch as they do in AWS, on one
recorded in-memory cluster (``tests/iam/search.py``).

Each call becomes the IAM request(s) AWS authorizes for it (``tests/iam/actions.py``) and
is decided by a real policy evaluator against its role's policies in the synthesized dev
template, intrinsics resolved and names translated from the test's stage to ``dev``.
"""

from __future__ import annotations

import copy
import io
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from functional.pipeline_data import archive_events, catalog_database, request, sample
from functional.serving_harness import REPO, Api
from iam.actions import Request, Target, UnmappedOperationError, rename_map, requests_for
from iam.evaluate import Decision, decide, evaluate
from iam.recorder import CLUSTER_ENV, Call, Recorder, read_calls
from iam.search import ENDPOINT, use_shared_cluster
from iam.template import Template

from learnrec.bundle import SPACE_FILE
from learnrec.config import Settings, get_settings
from learnrec.identity import UserIdHasher, user_id_hash_key
from learnrec.pipeline.definition import Mode, Step, StepKind, job_name, steps_for
from learnrec.pipeline.local import LocalRunner, run_pipeline
from learnrec.privacy.maintenance import run_maintenance
from learnrec.serving.auth import generate_key_pair
from learnrec.serving.model_store import POINTER_FILE, Pointer
from learnrec.stages import MODELS_PREFIX, ResourceNames
from learnrec.storage import CatalogStore, PrivacyStore, make_engine
from learnrec_dev.benchmark.ingest import _environment, load_handler
from learnrec_dev.local.aws import LocalAws, create_resources, local_environment
from learnrec_dev.local.poller import KinesisPoller

from .conftest import ACCOUNT, REGION, Synthesized
from .test_maintenance import ROLE as MAINTENANCE_ROLE

pytestmark = pytest.mark.training

# Recorded principal -> the logical id (part) of its role in the template. SageMaker
# moves a job's channels and outputs with the job's execution role.
ROLES = {
    "api": "ServingApiRole",
    "ingest": "IngestRole",
    "pipeline": "RetrainPipelineRole",
    "job": "JobsRole",
    "sagemaker": "JobsRole",
    "maintenance": MAINTENANCE_ROLE,
}


@dataclass
class Recording:
    names: ResourceNames
    calls: list[Call]
    runs: list[tuple[Mode, str]]  # (mode, run id) of each pipeline run

    def made(self, principal: str, service: str, operation: str) -> list[Call]:
        return [
            c
            for c in self.calls
            if (c.principal, c.service, c.operation) == (principal, service, operation)
        ]


def _attributed(run_step: Callable[[LocalRunner, Step], Any], recorder: Recorder) -> Any:
    """The runner's steps, each as the principal that runs it in AWS."""

    def wrapped(runner: LocalRunner, step: Step) -> Any:
        principal = "pipeline" if step.kind is StepKind.FUNCTION else "sagemaker"
        with recorder.acting_as(principal):
            return run_step(runner, step)

    return wrapped


def _event(user: str, item: str, kind: str) -> dict[str, str]:
    ts = datetime.now(UTC) - timedelta(minutes=1)
    return {"user_id": user, "content_id": item, "event_type": kind, "ts": ts.isoformat()}


def _serve(
    recorder: Recorder,
    names: ResourceNames,
    catalog: str,
    items: list[str],
) -> None:
    """Every kind of API route, with the API configured as the stack configures it."""
    private_pem, public_pem = generate_key_pair()
    import boto3

    # The stage's JWT secret exists (empty, as the stack creates it); bootstrap fills it.
    boto3.client("secretsmanager").put_secret_value(
        SecretId=names.jwt_secret, SecretString=json.dumps({"public_key_pem": public_pem})
    )
    env = {
        "DATABASE_URL": catalog,
        "S3_BUCKET": names.data_bucket,
        "MODEL_STORE": names.model_store_url,
        "USER_ID_HASH_SECRET_ID": names.user_id_hash_secret,
        "JWT_SECRET_ID": names.jwt_secret,
        "KINESIS_STREAM_NAME": names.events_stream,
        "POWERTOOLS_SERVICE_NAME": "api",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    with _environment(env):
        api = Api(load_handler(REPO / "functions" / "api" / "handler.py"), private_pem,
                  CatalogStore(make_engine(catalog)))  # fmt: skip
        admin = api.token("iam-admin", "admin")
        learner = api.token("iam-learner")
        with recorder.acting_as("api"):
            answers = [
                api.call("GET", "/health"),
                api.call("GET", "/recommend/iam-learner", {"k": "5"}, token=learner),
                api.call("GET", f"/similar/{items[0]}", {"k": "5"}, token=learner),
                api.call("GET", "/trending", token=learner),
                api.call(
                    "POST",
                    "/events",
                    body=[_event("iam-learner", items[1], "complete")],
                    token=learner,
                ),
                api.call("GET", "/admin/models", token=admin),
            ]
            listed = answers[-1][1]
            version = next(v for v in listed["versions"] if v != listed["active"])
            answers += [
                api.call("POST", f"/admin/models/{version}/promote", token=admin),
                api.call("POST", "/admin/models/rollback", token=admin),
                api.call(
                    "PUT",
                    "/admin/catalog",
                    token=admin,
                    body=[{"content_id": "iam-new", "title": "New", "topics": ["t"]}],
                ),
            ]
    statuses = [status for status, _ in answers]
    assert all(s < 500 for s in statuses), answers
    assert statuses[:8] == [200, 200, 200, 200, 202, 200, 200, 200], answers


def _ingest(recorder: Recorder, names: ResourceNames, catalog: str, queue_url: str) -> None:
    """The events the API put on the stream, plus one that cannot be parsed."""
    import boto3

    boto3.client("kinesis").put_record(
        StreamName=names.events_stream, Data=b"not json", PartitionKey="broken"
    )
    env = {
        "DATABASE_URL": catalog,
        "S3_BUCKET": names.data_bucket,
        "DEAD_LETTER_QUEUE_URL": queue_url,
        "USER_ID_HASH_SECRET_ID": names.user_id_hash_secret,
        "POWERTOOLS_SERVICE_NAME": "ingest",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    with _environment(env), recorder.acting_as("ingest"):
        poller = KinesisPoller(names.events_stream, load_handler().handler)
        assert poller.drain() == 2


# A bundle version older than retention keeps (learnrec.bundle.new_version's format).
OLD_VERSION = "20200101T000000Z"


@dataclass
class LambdaContext:
    """What the maintenance handler and Powertools read of Lambda's context object."""

    function_name: str = "learnrec-dev-maintenance"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:learnrec-dev-maintenance"
    )
    aws_request_id: str = "5a1e5a1e-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 15 * 60 * 1000


def _erasures(names: ResourceNames, catalog: str, queue_url: str) -> None:
    """Setup, not recorded: two erased learners with data in every store the sweeps visit.

    The learner the API recorded events for (hashed, as in AWS), in the archive the
    ingest function wrote, in a spilled dead letter and a queue message; and a learner of
    the trained bundles (the sample archive holds the sample's ids as they are), in the
    active bundle and in a copy of it old enough for retention to delete.
    """
    import boto3

    s3, bucket = boto3.client("s3"), names.data_bucket
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    settings = Settings(user_id_hash_secret_id=names.user_id_hash_secret)
    hasher = UserIdHasher(user_id_hash_key(settings, boto3.client("secretsmanager")))
    learner = hasher("iam-learner")
    pointer_key = f"{MODELS_PREFIX}{POINTER_FILE}"
    pointer = Pointer.from_json(
        json.loads(s3.get_object(Bucket=bucket, Key=pointer_key)["Body"].read())
    )
    active = f"{MODELS_PREFIX}versions/{pointer.active}/"
    space = json.loads(s3.get_object(Bucket=bucket, Key=active + SPACE_FILE)["Body"].read())
    trained = space["users"][0]
    for entry in s3.list_objects_v2(Bucket=bucket, Prefix=active)["Contents"]:
        copy = entry["Key"].replace(f"/{pointer.active}/", f"/{OLD_VERSION}/")
        s3.copy_object(Bucket=bucket, Key=copy, CopySource={"Bucket": bucket, "Key": entry["Key"]})
    spilled = json.dumps({"partition_key_hash": hasher(learner)}) + "\n" + '{"other": 1}\n'
    s3.put_object(Bucket=bucket, Key="dead-letters/iam/spilled.json", Body=spilled.encode())
    # A day-old batch of recommendations: retention deletes it.
    s3.put_object(Bucket=bucket, Key="digests/iam/part-00000.jsonl", Body=b'{"user_key": "x"}\n')
    boto3.client("sqs").send_message(
        QueueUrl=queue_url, MessageBody=json.dumps({"partition_key_hash": hasher(learner)})
    )
    privacy = PrivacyStore(make_engine(catalog))
    for user_id in (learner, trained):
        privacy.erase_learner(user_id)


def _maintain(recorder: Recorder, names: ResourceNames, catalog: str, queue_url: str) -> None:
    """The maintenance handler as the stack configures it, then a sweep a day later: the
    erasures are past their grace period and the pipeline runs long finished."""
    _erasures(names, catalog, queue_url)
    env = {
        "DATABASE_URL": catalog,
        "S3_BUCKET": names.data_bucket,
        "MODEL_STORE": names.model_store_url,
        "DEAD_LETTER_QUEUE_URL": queue_url,
        "USER_ID_HASH_SECRET_ID": names.user_id_hash_secret,
        "EVENT_RETENTION_DAYS": "90",
        "POWERTOOLS_SERVICE_NAME": "maintenance",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    with _environment(env), recorder.acting_as("maintenance"):
        handler = load_handler(REPO / "functions" / "maintenance" / "handler.py").handler
        first = handler({"source": "aws.events"}, LambdaContext())
        later = run_maintenance(now=datetime.fromisoformat(first["at"]) + timedelta(days=1))
    assert first["erasure"]["bundles_unlinked"] >= 1, first
    assert OLD_VERSION in first["retention"]["bundles_deleted"], first
    erasure = later["erasure"]
    assert erasure["complete"] and erasure["learners"] == 2, later
    assert erasure["objects_deleted"] and erasure["objects_rewritten"], later
    assert erasure["queue_messages_deleted"] == 1, later
    assert later["retention"]["run_objects_deleted"], later


@pytest.fixture(scope="module")
def recorded(
    local_aws_server: LocalAws, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Recording]:
    names = ResourceNames(stage=f"t{uuid.uuid4().hex[:10]}")
    root = tmp_path_factory.mktemp("iam")
    sink = root / "job-calls.jsonl"
    recorder = Recorder()
    with local_environment(), pytest.MonkeyPatch.context() as patch:
        resources = create_resources(local_aws_server, names)
        data = sample(seed=5)
        archive_events(local_aws_server.client("s3"), names.data_bucket, data)
        catalog = catalog_database(root / "catalog.db", data)
        items = [item.content_id for item in data.items[:2]]
        recorder.install()
        try:
            for name, value in recorder.child_environment(sink, "job").items():
                patch.setenv(name, value)
            # Jobs, the pipeline function and the API all use OpenSearch, as in AWS: one
            # cluster for them all (tests/iam/search.py).
            cluster = root / "opensearch.json"
            for name, value in {
                "VECTOR_INDEX": "opensearch",
                "OPENSEARCH_ENDPOINT": ENDPOINT,
                "OPENSEARCH_ALIAS": names.opensearch_alias,
                CLUSTER_ENV: str(cluster),
            }.items():
                patch.setenv(name, value)
            use_shared_cluster(cluster, recorder, patch)
            get_settings.cache_clear()
            patch.setattr(LocalRunner, "run_step", _attributed(LocalRunner.run_step, recorder))
            # A full run with no active model, then a ranking run that compares with the
            # active one (reads its bundle, publishes drift) and keeps its towers.
            runs = []
            for mode in (Mode.FULL, Mode.RANKING):
                with recorder.acting_as("pipeline"):
                    outcome = run_pipeline(
                        request(names, catalog, mode), root / "work", io.StringIO()
                    )
                assert outcome.promotion["promoted"] or mode is Mode.RANKING, outcome.promotion
                runs.append((mode, outcome.run.run_id))
            _serve(recorder, names, catalog, items)
            _ingest(recorder, names, catalog, resources["dead_letter_queue_url"])
            _maintain(recorder, names, catalog, resources["dead_letter_queue_url"])
        finally:
            recorder.uninstall()
            get_settings.cache_clear()
    yield Recording(names, recorder.calls + read_calls(sink), runs)


def target_for(recording: Recording, template: Template) -> Target:
    """Names as the test's stage made them -> names as the dev stage has them."""
    test, dev = recording.names, ResourceNames("dev", ACCOUNT, REGION)
    rename = rename_map(
        {
            test.data_bucket: dev.data_bucket,
            test.prefix: dev.prefix,
            f"learnrec/{test.stage}/": f"learnrec/{dev.stage}/",
        }
    )
    return Target(ACCOUNT, REGION, rename, template.domain_arn())


def denials(template: dict[str, Any], recording: Recording) -> list[Decision]:
    resolved = Template(template, ACCOUNT, REGION)
    decisions = evaluate(resolved, ROLES, recording.calls, target_for(recording, resolved))
    assert decisions
    return [d for d in decisions if not d.allowed]


def test_the_flows_made_the_calls_this_test_is_about(recorded: Recording) -> None:
    """Guards the test itself: every principal acted, on the paths that matter."""
    assert {c.principal for c in recorded.calls} == set(ROLES)
    for principal, service, operation in [
        ("pipeline", "s3", "GetObject"),
        ("pipeline", "s3", "PutObject"),
        ("pipeline", "sagemaker", "CreateModelPackage"),
        ("pipeline", "sagemaker", "UpdateModelPackage"),
        ("pipeline", "cloudwatch", "PutMetricData"),
        ("sagemaker", "s3", "ListObjectsV2"),
        ("sagemaker", "s3", "PutObject"),
        ("job", "s3", "ListObjectsV2"),
        ("job", "s3", "GetObject"),
        ("api", "secretsmanager", "GetSecretValue"),
        ("api", "s3", "GetObject"),
        ("api", "s3", "PutObject"),
        ("api", "kinesis", "PutRecords"),
        ("api", "es", "HTTP POST"),
        ("job", "es", "HTTP PUT"),
        ("job", "es", "HTTP POST"),
        ("pipeline", "es", "HTTP POST"),
        ("ingest", "kinesis", "GetRecords"),
        ("ingest", "s3", "PutObject"),
        ("ingest", "sqs", "SendMessageBatch"),
        ("ingest", "secretsmanager", "GetSecretValue"),
        ("maintenance", "secretsmanager", "GetSecretValue"),
        ("maintenance", "s3", "GetObject"),
        ("maintenance", "s3", "PutObject"),
        ("maintenance", "s3", "DeleteObject"),
        ("maintenance", "s3", "ListObjectVersions"),
        ("maintenance", "sqs", "ReceiveMessage"),
        ("maintenance", "sqs", "DeleteMessageBatch"),
        ("maintenance", "sqs", "ChangeMessageVisibilityBatch"),
    ]:
        seen = sorted({(c.principal, c.service, c.operation) for c in recorded.calls})
        assert recorded.made(principal, service, operation), (principal, service, operation, seen)


def test_every_recorded_call_is_allowed_by_its_role(dev: Synthesized, recorded: Recording) -> None:
    denied = denials(dev.template, recorded)
    assert not denied, "calls the synthesized roles do not allow:\n" + "\n".join(
        d.describe() for d in denied
    )


def _without_grant(
    template: dict[str, Any], principal: str, action: str, resource_part: str
) -> dict[str, Any]:
    """The template minus the one grant of ``action`` on resources containing
    ``resource_part`` to the principal's role."""
    changed = copy.deepcopy(template)
    resolved = Template(changed, ACCOUNT, REGION)
    role = resolved.role_id(ROLES[principal])
    removed = 0
    for resource in changed["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in properties["Roles"]:
            continue
        statements = properties["PolicyDocument"]["Statement"]
        for statement in list(statements):
            actions = statement["Action"]
            resources = statement["Resource"]
            resources = resources if isinstance(resources, list) else [resources]
            matched = [r for r in resources if resource_part in json.dumps(r)]
            if action not in actions or not matched:
                continue
            kept = [r for r in resources if r not in matched]
            if kept:
                statement["Resource"] = kept
            else:
                statements.remove(statement)
            removed += 1
    assert removed == 1
    return changed


def _key(decision: Decision) -> tuple[str, str, str]:
    return decision.role, decision.request.action, decision.request.resource


@pytest.mark.parametrize(
    ("principal", "granted", "resource_part", "denied_action", "denied_prefix"),
    [
        ("ingest", "s3:PutObject", "/events/*", "s3:PutObject", "events/"),
        # The retention sweep's deletes of finished runs' datasets (every version).
        (
            "maintenance",
            "s3:DeleteObject*",
            "/pipeline/*/dataset/*",
            "s3:DeleteObjectVersion",
            "pipeline/",
        ),
    ],
)
def test_removing_one_grant_is_caught(
    dev: Synthesized,
    recorded: Recording,
    principal: str,
    granted: str,
    resource_part: str,
    denied_action: str,
    denied_prefix: str,
) -> None:
    before = {_key(d) for d in denials(dev.template, recorded)}
    changed = _without_grant(dev.template, principal, granted, resource_part)
    after = denials(changed, recorded)
    denied = [d for d in after if _key(d) not in before]
    assert denied
    dev_bucket = ResourceNames("dev", ACCOUNT, REGION).data_bucket
    role = Template(dev.template, ACCOUNT, REGION).role_id(ROLES[principal])
    for decision in denied:
        assert decision.role == role
        assert decision.request.action == denied_action
        assert decision.request.resource.startswith(f"arn:aws:s3:::{dev_bucket}/{denied_prefix}")
        assert decision.result == "ImplicitlyDenied"


def test_an_operation_without_a_mapping_fails_with_what_to_do() -> None:
    call = Call("api", "s3", "PutBucketPolicy", {"Bucket": "b"}, "us-east-1", 200)
    target = Target(ACCOUNT, REGION, lambda name: name, "arn:aws:es:eu-west-1:1:domain/d")
    with pytest.raises(
        UnmappedOperationError, match=r"add one to MAPPINGS in tests/iam/actions.py"
    ):
        requests_for(call, target)


def test_conditions_and_resources_are_evaluated(dev: Synthesized) -> None:
    """The evaluator reads conditions and resources, not only actions: the pipeline
    function may publish metrics to learnrec only, and list only its prefixes."""
    from iam.evaluate import simulate

    template = Template(dev.template, ACCOUNT, REGION)
    policies = template.role_policies(template.role_id(ROLES["pipeline"]))
    bucket = f"arn:aws:s3:::{ResourceNames('dev', ACCOUNT, REGION).data_bucket}"
    requests = [
        Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "learnrec"}),
        Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "other"}),
        Request("s3:GetObject", f"{bucket}/models/active.json"),
        Request("s3:GetObject", f"{bucket}/events/dt=2026-01-01/x.gz"),
    ]
    results = simulate(
        [
            {
                "principal": f"arn:aws:sts::{ACCOUNT}:assumed-role/pipeline/session",
                "action": r.action,
                "resource": r.resource,
                "account": ACCOUNT,
                "context": r.context,
                "policies": policies,
            }
            for r in requests
        ]
    )
    assert [r["result"] for r in results] == [
        "Allowed", "ImplicitlyDenied", "Allowed", "ImplicitlyDenied",
    ]  # fmt: skip


def state_machine_requests(recording: Recording, template: Template) -> list[tuple[Call, Request]]:
    """What the state machine's role is asked for when it runs the recorded runs' steps:
    the pipeline function invoked for ``start`` and each function step; for each job,
    the ``.sync`` integration's create/describe/stop calls on the job's name, passing
    the job role to SageMaker, and the EventBridge rule the integration manages."""
    dev = ResourceNames("dev", ACCOUNT, REGION)
    function = template.arn("lambda", f"function:{dev.pipeline_function}")
    job_role = template.get_att(template.role_id(ROLES["job"]), "Arn")
    requests: list[tuple[Call, Request]] = []
    for mode, run_id in recording.runs:
        call = Call("statemachine", "states", "start task", {"run": run_id}, REGION, 200)
        requests.append((call, Request("lambda:InvokeFunction", function)))
        for step in steps_for(mode):
            call = Call("statemachine", "states", f"{step.name} task", {"run": run_id}, REGION, 200)
            if step.kind is StepKind.FUNCTION:
                requests.append((call, Request("lambda:InvokeFunction", function)))
                continue
            kind = "Training" if step.kind is StepKind.TRAINING else "Processing"
            job = template.arn("sagemaker", f"{kind.lower()}-job/{job_name(run_id, step.name)}")
            rule = template.arn("events", f"rule/StepFunctionsGetEventsForSageMaker{kind}JobsRule")
            passed: dict[str, str | list[str]] = {"iam:PassedToService": "sagemaker.amazonaws.com"}
            for needed in (
                Request(f"sagemaker:Create{kind}Job", job),
                Request(f"sagemaker:Describe{kind}Job", job),
                Request(f"sagemaker:Stop{kind}Job", job),
                Request("iam:PassRole", job_role, passed),
                Request("events:PutTargets", rule),
                Request("events:PutRule", rule),
                Request("events:DescribeRule", rule),
            ):
                requests.append((call, needed))
    return requests


def test_the_state_machine_may_run_every_step_of_the_recorded_runs(
    dev: Synthesized, recorded: Recording
) -> None:
    template = Template(dev.template, ACCOUNT, REGION)
    decisions = decide(template, "StateMachineRole", state_machine_requests(recorded, template))
    assert len(decisions) > len(recorded.runs) * 5
    denied = [d for d in decisions if not d.allowed]
    assert not denied, "\n".join(d.describe() for d in denied)


def _uri(value: Any, run_id: str) -> str:
    """An ``S3Uri`` as the state machine renders it for the run (``States.Format`` of
    the run id, or a fixed URI such as the job source's)."""
    if isinstance(value, str) and value.startswith("States.Format("):
        match = re.fullmatch(r"States\.Format\('(.*)', \$\.run\.run_id\)", value)
        assert match, value
        return match.group(1).replace("{}", run_id)
    return str(value)


def _field(parameters: dict[str, Any], name: str, run_id: str) -> str:
    return _uri(parameters[name] if name in parameters else parameters[f"{name}.$"], run_id)


def sagemaker_data_access(recording: Recording, template: Template) -> list[tuple[Call, Request]]:
    """What SageMaker does with the job role for each job of the recorded runs, read
    from the job requests in the synthesized state machine: list and read every input
    (channels, processing inputs, the source archive), write every output."""
    states = template.state_machine()["States"]
    requests: list[tuple[Call, Request]] = []

    def access(call: Call, uri: str, write: bool, leaf: str) -> None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        obj = f"arn:aws:s3:::{bucket}/{key}{leaf if key.endswith('/') else ''}"
        if write:
            requests.append((call, Request("s3:PutObject", obj)))
        else:
            listing = Request("s3:ListBucket", f"arn:aws:s3:::{bucket}", {"s3:prefix": key})
            requests.extend([(call, listing), (call, Request("s3:GetObject", obj))])

    for mode, run_id in recording.runs:
        for step in steps_for(mode):
            if step.kind is StepKind.FUNCTION:
                continue
            job = job_name(run_id, step.name)
            call = Call("sagemaker", "sagemaker", f"{step.name} job", {"job": job}, REGION, 200)
            parameters = states[step.name]["Parameters"]
            if step.kind is StepKind.TRAINING:
                for channel in parameters["InputDataConfig"]:
                    source = channel["DataSource"]["S3DataSource"]
                    access(call, _field(source, "S3Uri", run_id), False, "part-0")
                fixed = states[f"{step.name} hyperparameters"]["Parameters"]["fixed"]
                access(call, fixed["sagemaker_submit_directory"], False, "")
                output = _field(parameters["OutputDataConfig"], "S3OutputPath", run_id)
                access(call, output, True, f"{job}/output/model.tar.gz")
            else:
                for item in parameters["ProcessingInputs"]:
                    access(call, _field(item["S3Input"], "S3Uri", run_id), False, "part-0")
                for item in parameters["ProcessingOutputConfig"]["Outputs"]:
                    access(call, _field(item["S3Output"], "S3Uri", run_id), True, "part-0")
    return requests


def test_sagemaker_may_move_each_jobs_data_with_the_job_role(
    dev: Synthesized, recorded: Recording
) -> None:
    template = Template(dev.template, ACCOUNT, REGION)
    requests = sagemaker_data_access(recorded, template)
    # The source archive comes from CDK's asset bucket, not the data bucket.
    assert any("cdk-" in r.resource and "-assets-" in r.resource for _, r in requests)
    decisions = decide(template, ROLES["job"], requests)
    denied = [d for d in decisions if not d.allowed]
    assert not denied, "\n".join(d.describe() for d in denied)
