"""Each function's environment parses into Settings and carries what the function reads."""

from __future__ import annotations

import pytest

from learnrec.config import Settings
from learnrec.function_env import (
    FUNCTIONS,
    READS,
    REQUIRED,
    FunctionName,
    Value,
    env_name,
    function_environment,
    process_environment,
)

# What the stack gives (tokens there; plain strings here), and what the local demo gives.
DEPLOYED: dict[str, Value] = {
    "s3_bucket": "learnrec-dev-data",
    "model_store": "s3://learnrec-dev-data/models",
    "database_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
    "database_host": "proxy.example.internal",
    "user_id_hash_secret_id": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hash",
    "event_retention_days": 30,
    "events_stream": "learnrec-dev-events",
    "dead_letter_queue_url": "https://sqs.eu-west-1.amazonaws.com/123456789012/dead",
    "vector_index": "opensearch",
    "opensearch_endpoint": "search.example.internal",
    "opensearch_alias": "learnrec-dev-items",
    "jwt_secret_id": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:jwt",
    "jwt_issuer": "https://issuer.example",
    "jwt_audience": "learnrec",
}
LOCAL: dict[str, Value] = {
    "database_url": "sqlite:///demo.db",
    "model_store": "s3://learnrec-local-data/models",
    "model_check_interval_s": 2,
    "s3_bucket": "learnrec-local-data",
    "events_stream": "learnrec-local-events",
    "dead_letter_queue_url": "http://127.0.0.1:4602/000000000000/dead",
    "user_id_hash_secret_id": "learnrec-local-hash",
    "jwt_public_key": "-----BEGIN PUBLIC KEY-----\nMII\n-----END PUBLIC KEY-----\n",
    "api_docs": False,
}


def parse(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Settings:
    """Settings as the function's process would read them, with nothing else set."""
    for field in Settings.model_fields:
        monkeypatch.delenv(env_name(field), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_every_named_setting_is_a_settings_field() -> None:
    named = {f for fields in READS.values() for f in fields}
    named |= {f for groups in REQUIRED.values() for group in groups for f in group}
    assert named - set(Settings.model_fields) == set()
    assert set(READS) == set(REQUIRED) == set(FUNCTIONS)


def test_a_variable_is_named_as_settings_reads_it() -> None:
    assert env_name("model_store") == "MODEL_STORE"
    assert env_name("events_stream") == "KINESIS_STREAM_NAME"  # an alias, not the field
    with pytest.raises(KeyError):
        env_name("model_stor")


@pytest.mark.parametrize("given", [DEPLOYED, LOCAL], ids=["deployed", "local"])
@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_environment_parses_and_carries_what_the_function_reads(
    monkeypatch: pytest.MonkeyPatch, function: FunctionName, given: dict[str, Value]
) -> None:
    environment = function_environment(function, given)
    settings = parse(monkeypatch, environment)
    for field in READS[function]:
        if given.get(field) is not None:
            assert getattr(settings, field) == given[field], field
    # Nothing the function does not read, and no setting outside Settings, is set.
    read = {env_name(f) for f in READS[function]}
    assert set(environment) - read <= {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}


def test_what_each_function_is_given_in_aws() -> None:
    api = function_environment("api", DEPLOYED)
    assert api["JWT_SECRET_ID"] == DEPLOYED["jwt_secret_id"]
    assert api["VECTOR_INDEX"] == "opensearch"
    assert "DEAD_LETTER_QUEUE_URL" not in api
    assert function_environment("ingest", DEPLOYED)["KINESIS_STREAM_NAME"] == "learnrec-dev-events"
    assert "OPENSEARCH_ENDPOINT" not in function_environment("maintenance", DEPLOYED)
    # Schema changes reach the cluster itself, not the proxy; the jobs run no Powertools.
    assert function_environment("migrate", DEPLOYED) == {
        "DATABASE_SECRET_ARN": str(DEPLOYED["database_secret_arn"]),
        "POWERTOOLS_SERVICE_NAME": "migrate",
    }
    job = function_environment("job", DEPLOYED)
    assert not any(name.startswith("POWERTOOLS_") for name in job)
    assert job["DATABASE_HOST"] == DEPLOYED["database_host"]
    load = function_environment("api", DEPLOYED, namespace="learnrec-load")
    assert load["POWERTOOLS_METRICS_NAMESPACE"] == "learnrec-load"


def test_a_misspelt_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="model_stor"):
        function_environment("api", {**DEPLOYED, "model_stor": "s3://x/models"})


def test_a_missing_required_setting_is_named() -> None:
    without = {k: v for k, v in DEPLOYED.items() if k != "dead_letter_queue_url"}
    with pytest.raises(ValueError, match="DEAD_LETTER_QUEUE_URL"):
        function_environment("ingest", without)
    no_key = {k: v for k, v in LOCAL.items() if k != "jwt_public_key"}
    with pytest.raises(ValueError, match="JWT_PUBLIC_KEY or JWT_JWKS or JWT_SECRET_ID"):
        function_environment("api", no_key)


def test_a_local_process_keeps_none_of_the_shells_settings() -> None:
    shell = {"PATH": "/usr/bin", "JWT_JWKS": "{}", "USER_ID_HASH_KEY": "mine", "TOP_K_RANKING": "5"}
    environment = process_environment("api", LOCAL, shell)
    assert environment["PATH"] == "/usr/bin"
    assert "JWT_JWKS" not in environment and "USER_ID_HASH_KEY" not in environment
    # A tunable the deployment leaves at its default is the developer's to set.
    assert environment["TOP_K_RANKING"] == "5"
    assert environment["JWT_PUBLIC_KEY"] == LOCAL["jwt_public_key"]
