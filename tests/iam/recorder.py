"""Records the AWS calls the code makes, and on whose behalf, through botocore's events.

Every botocore client created while the recorder is installed (``boto3.client``,
``boto3.Session().client``, clients made inside libraries) gets two handlers: one on
``before-parameter-build`` that keeps the caller's parameters (what names the resources),
one on ``after-call`` that stores the call with its HTTP status once AWS (here: moto
server) has answered. A call is kept only while a principal is set with
:meth:`Recorder.acting_as`, so the test's own setup and assertions are never attributed to
a function or a job.

Child processes (the local pipeline runner starts training and processing jobs as
processes) record through ``tests/iam/child/sitecustomize.py``: with :data:`RECORD_ENV`
and :data:`PRINCIPAL_ENV` in their environment and that folder on ``PYTHONPATH`` they
install the same hooks at start-up and append JSON lines to the file.

OpenSearch requests (SigV4-signed HTTP in AWS, not botocore) are recorded by
:class:`RecordingOpenSearchConnection` as service ``es`` with operation ``HTTP <METHOD>``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RECORD_ENV = "LEARNREC_IAM_RECORD"
PRINCIPAL_ENV = "LEARNREC_IAM_PRINCIPAL"
#: The file of the shared in-memory OpenSearch cluster (``tests/iam/search.py``).
CLUSTER_ENV = "LEARNREC_IAM_OPENSEARCH"
CHILD_DIR = Path(__file__).resolve().parent / "child"

# Parameters that name what a call acts on; everything else (bodies, metadata) is dropped.
RESOURCE_PARAMS = (
    "Bucket",
    "Key",
    "VersionId",
    "Prefix",
    "Delimiter",
    "CopySource",
    "Delete",
    "StreamName",
    "StreamARN",
    "ShardId",
    "ShardIterator",
    "ConsumerARN",
    "QueueUrl",
    "QueueName",
    "SecretId",
    "ModelPackageGroupName",
    "ModelPackageArn",
    "ModelPackageName",
    "stateMachineArn",
    "executionArn",
    "Namespace",
    "FunctionName",
    "TrainingJobName",
    "ProcessingJobName",
    "RoleArn",
)
# Response members that name a resource the call created (its ARN is known only then).
RESULT_PARAMS = ("ModelPackageArn",)


@dataclass(frozen=True)
class Call:
    """One AWS request as the caller made it."""

    principal: str
    service: str  # botocore's service name (s3, kinesis, ...), or "es" for OpenSearch
    operation: str  # the API operation (GetObject, ...), or "HTTP GET" for OpenSearch
    params: dict[str, Any]
    region: str
    status: int
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items() if k != "Delete")
        return f"{self.principal}: {self.service}.{self.operation}({shown})"


def _resource_params(params: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name in RESOURCE_PARAMS:
        if name not in params:
            continue
        value = params[name]
        if name == "Delete":
            value = {
                "Objects": [
                    {k: o[k] for k in ("Key", "VersionId") if k in o}
                    for o in value.get("Objects", [])
                ]
            }
        kept[name] = value
    # CloudWatch: the namespace of each datum is the call's; nothing else matters.
    return kept


class Recorder:
    """Collects :class:`Call` records for the principal currently acting."""

    def __init__(self, sink: Path | None = None, principal: str | None = None) -> None:
        self.calls: list[Call] = []
        self._stack: list[str] = [principal] if principal else []
        self._sink = sink
        self._lock = threading.Lock()
        self._original: Any = None
        self._iterators: dict[str, str] = {}

    @property
    def principal(self) -> str | None:
        # A plain attribute, not a context variable: s3transfer uploads and downloads
        # in worker threads, which would not see a context variable's value.
        return self._stack[-1] if self._stack else None

    @contextmanager
    def acting_as(self, principal: str) -> Iterator[None]:
        self._stack.append(principal)
        try:
            yield
        finally:
            self._stack.pop()

    def add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            if self._sink is not None:
                with self._sink.open("a") as handle:
                    handle.write(json.dumps(asdict(call)) + "\n")

    # botocore hooks ------------------------------------------------------------------

    def _before(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if self.principal is not None:
            context["learnrec_iam"] = (self.principal, _resource_params(params))

    def _after(
        self,
        http_response: Any,
        parsed: dict[str, Any],
        model: Any,
        context: dict[str, Any],
        **_: Any,
    ) -> None:
        noted = context.get("learnrec_iam")
        if noted is None:
            return
        principal, params = noted
        service = model.service_model.service_name
        if service == "kinesis":
            params = self._stream_of_iterator(model.name, params, parsed)
        error = (
            (parsed.get("Error") or {}).get("Code") if http_response.status_code >= 300 else None
        )
        result = {k: parsed[k] for k in RESULT_PARAMS if isinstance(parsed.get(k), str)}
        region = context.get("client_region") or ""
        self.add(
            Call(
                principal,
                service,
                model.name,
                params,
                region,
                http_response.status_code,
                error,
                result,
            )
        )

    def _stream_of_iterator(
        self, operation: str, params: dict[str, Any], parsed: dict[str, Any]
    ) -> dict[str, Any]:
        """GetRecords names its stream only through the shard iterator it is given:
        remember which stream each iterator was issued for."""
        params = dict(params)
        iterator = params.pop("ShardIterator", None)
        if operation == "GetRecords" and iterator in self._iterators:
            known = self._iterators[iterator]
            params.setdefault("StreamARN" if known.startswith("arn:") else "StreamName", known)
        stream = params.get("StreamName") or params.get("StreamARN")
        for issued in (parsed.get("ShardIterator"), parsed.get("NextShardIterator")):
            if issued and stream:
                self._iterators[issued] = str(stream)
        return params

    def attach(self, client: Any) -> None:
        events = client.meta.events
        region = client.meta.region_name

        def before(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
            context["client_region"] = region
            self._before(params, context, **kwargs)

        # First, so the caller's parameters are seen before botocore's own handlers
        # rewrite them (S3's CopySource, SSE-C and the like).
        events.register_first("before-parameter-build", before, unique_id="learnrec-iam-before")
        events.register("after-call", self._after, unique_id="learnrec-iam-after")

    def install(self) -> None:
        """Hook every botocore client created from now on, in any session."""
        import botocore.session

        if self._original is not None:
            return
        original = botocore.session.Session.create_client
        recorder = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            recorder.attach(client)
            return client

        self._original = original
        botocore.session.Session.create_client = create_client

    def uninstall(self) -> None:
        import botocore.session

        if self._original is not None:
            botocore.session.Session.create_client = self._original
            self._original = None

    # child processes -----------------------------------------------------------------

    def child_environment(self, sink: Path, principal: str) -> dict[str, str]:
        """What a child process needs in its environment to record as ``principal``."""
        path = os.environ.get("PYTHONPATH", "")
        return {
            RECORD_ENV: str(sink),
            PRINCIPAL_ENV: principal,
            "PYTHONPATH": os.pathsep.join(p for p in (str(CHILD_DIR), path) if p),
        }


def read_calls(sink: Path) -> list[Call]:
    """The calls child processes appended to ``sink``."""
    if not sink.exists():
        return []
    return [Call(**json.loads(line)) for line in sink.read_text().splitlines() if line.strip()]


def install_from_environment() -> Recorder | None:
    """The child side: record everything this process does, if asked to."""
    sink, principal = os.environ.get(RECORD_ENV), os.environ.get(PRINCIPAL_ENV)
    if not sink or not principal:
        return None
    recorder = Recorder(Path(sink), principal)
    recorder.install()
    cluster = os.environ.get(CLUSTER_ENV)
    if cluster:
        from .search import use_shared_cluster

        use_shared_cluster(Path(cluster), recorder)
    return recorder


class OpenSearchRecording:
    """Wraps an opensearch-py connection's ``perform_request`` to record each request."""

    def __init__(self, recorder: Recorder, region: str) -> None:
        self.recorder = recorder
        self.region = region

    def wrap_all(self, client: Any) -> None:
        for connection in client.transport.connection_pool.connections:
            self.wrap(connection)

    def wrap(self, connection: Any) -> None:
        perform = connection.perform_request

        def perform_request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            principal = self.recorder.principal
            try:
                result = perform(method, url, *args, **kwargs)
            except Exception as error:
                status = int(getattr(error, "status_code", 0) or 0)
                if principal is not None:
                    self._add(principal, method, url, status, type(error).__name__)
                raise
            if principal is not None:
                self._add(principal, method, url, int(result[0]), None)
            return result

        connection.perform_request = perform_request

    def _add(self, principal: str, method: str, url: str, status: int, error: str | None) -> None:
        path = url.split("?", 1)[0]
        self.recorder.add(
            Call(
                principal,
                "es",
                f"HTTP {method.upper()}",
                {"path": path},
                self.region,
                status,
                error,
            )
        )
