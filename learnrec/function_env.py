"""Each function's environment: which settings it reads, named as :class:`Settings` reads them.

A function learns where its data, models and keys are only from environment variables
(:mod:`learnrec.config`). The CDK stack (with CloudFormation tokens as values), the local
demo and the benchmarks all build those variables here, from one mapping of
:class:`Settings` field names to values, so a variable cannot be spelled differently in
one of them, or given to one function and forgotten for another: a field name that
``Settings`` does not have is refused, and :data:`REQUIRED` says what each function
cannot start without.

The callers pass everything they know; each function gets the part it reads
(:data:`READS`). Variables that are not settings (``AWS_REGION`` for the SageMaker jobs,
the local AWS's endpoint and credentials, Powertools' tracing and log level) stay with
the caller; Powertools' service name and metrics namespace are set here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from learnrec import metric_names
from learnrec.config import Settings

FunctionName = Literal["api", "ingest", "pipeline", "maintenance", "migrate", "job"]
#: Lambda functions and the SageMaker jobs the pipeline starts (``job``).
FUNCTIONS: tuple[FunctionName, ...] = ("api", "ingest", "pipeline", "maintenance", "migrate", "job")
Value = str | int | float | bool | None

# Where the data is: the archive bucket, the model store, the database (a URL locally; in
# AWS the Aurora secret and the RDS Proxy endpoint), and the key learner ids are hashed
# with (a key locally, a secret in AWS).
_DATABASE = ("database_url", "database_secret_arn", "database_host")
_USER_ID_HASH = ("user_id_hash_key", "user_id_hash_secret_id")
_DATA = ("s3_bucket", "model_store", *_DATABASE, *_USER_ID_HASH)
# The k-NN index recommendations are retrieved from, and its alias promote moves.
_SEARCH = ("vector_index", "opensearch_endpoint", "opensearch_alias")
_JWT_KEY = ("jwt_public_key", "jwt_jwks", "jwt_secret_id")

#: The settings each function reads that a deployment sets (the tunables with sensible
#: defaults, such as ``top_k_retrieval``, are left to their defaults).
READS: Mapping[FunctionName, tuple[str, ...]] = {
    "api": (
        *_DATA,
        "event_retention_days",  # POST /events refuses what the archive would not keep
        "events_stream",
        "model_check_interval_s",
        *_SEARCH,
        *_JWT_KEY,
        "jwt_issuer",
        "jwt_audience",
        "api_docs",
    ),
    # The stream's name goes into each dead letter, with the record's position in it.
    "ingest": (*_DATA, "event_retention_days", "events_stream", "dead_letter_queue_url"),
    # promote moves the alias the API queries, together with the active-version pointer.
    "pipeline": (*_DATA, "event_retention_days", *_SEARCH),
    "maintenance": (*_DATA, "event_retention_days", "dead_letter_queue_url"),
    # Schema changes go to the cluster itself (the secret's host), not through the proxy.
    "migrate": ("database_url", "database_secret_arn"),
    # build_index fills the version's index that promote then points the alias at.
    "job": (*_DATA, *_SEARCH),
}

#: What each function cannot start without: every group needs one of its settings.
REQUIRED: Mapping[FunctionName, tuple[tuple[str, ...], ...]] = {
    "api": (("model_store",), _DATABASE[:2], _USER_ID_HASH, _JWT_KEY),
    "ingest": (("s3_bucket",), ("dead_letter_queue_url",), _DATABASE[:2], _USER_ID_HASH),
    "pipeline": (("model_store",), _DATABASE[:2], _USER_ID_HASH),
    "maintenance": (("s3_bucket",), ("model_store",), _DATABASE[:2], _USER_ID_HASH),
    "migrate": (_DATABASE[:2],),
    "job": (("model_store",), _DATABASE[:2], _USER_ID_HASH),
}

# Lambda functions publishing CloudWatch metrics get Powertools' namespace; the migration
# publishes none, and the jobs do not run Powertools.
_PUBLISHES_METRICS: frozenset[FunctionName] = frozenset(
    {"api", "ingest", "pipeline", "maintenance"}
)


def env_name(field: str) -> str:
    """The variable :class:`Settings` reads ``field`` from; a field it lacks is a KeyError."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else field.upper()


def _text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def function_environment(
    function: FunctionName,
    settings: Mapping[str, Value],
    *,
    namespace: str = metric_names.NAMESPACE,
) -> dict[str, str]:
    """The variables ``function`` is deployed with, from ``settings`` (field -> value).

    Fields the function does not read are left out, as are ``None`` values; a name that
    is not a :class:`Settings` field, or a missing required setting, raises ValueError.
    """
    unknown = sorted(set(settings) - set(Settings.model_fields))
    if unknown:
        raise ValueError(f"not Settings fields: {', '.join(unknown)}")
    given = {name for name, value in settings.items() if value is not None}
    missing = [group for group in REQUIRED[function] if not given.intersection(group)]
    if missing:
        wanted = "; ".join(" or ".join(env_name(f) for f in group) for group in missing)
        raise ValueError(f"the {function} function needs {wanted}")
    environment = {
        env_name(name): _text(value)
        for name in READS[function]
        if (value := settings.get(name)) is not None
    }
    if function in _PUBLISHES_METRICS:
        environment["POWERTOOLS_METRICS_NAMESPACE"] = namespace
    if function != "job":
        environment["POWERTOOLS_SERVICE_NAME"] = function
    return environment


def process_environment(
    function: FunctionName,
    settings: Mapping[str, Value],
    inherited: Mapping[str, str],
    *,
    namespace: str = metric_names.NAMESPACE,
) -> dict[str, str]:
    """``inherited`` (a local process's environment) without any variable the function
    reads, plus :func:`function_environment`: a setting left in the developer's shell
    cannot change what a local run of the function sees."""
    read = {env_name(name) for name in READS[function]}
    kept = {name: value for name, value in inherited.items() if name.upper() not in read}
    return {**kept, **function_environment(function, settings, namespace=namespace)}
