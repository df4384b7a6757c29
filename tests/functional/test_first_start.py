"""A fresh deployment, before and after ``learnrec deploy bootstrap``, through the real handler.

The secrets are in Secrets Manager on the local AWS exactly as the stack writes them (an
empty JWKS, a generated hash key), and the handler reads them by ARN as it does in
Lambda. Until bootstrap every route answers 503 with what to do, and the context build
is tried again only on the loader's schedule (its clock is stepped, not waited for);
after bootstrap the same process serves without a restart.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from learnrec.bundle import MANIFEST_FILE, write_manifest
from learnrec.config import get_settings
from learnrec.deploy.bootstrap import BootstrapError, bootstrap
from learnrec.serving.apigw import LambdaContext, http_response, rest_event
from learnrec.serving.auth import Role, generate_key_pair, issue_token
from learnrec.serving.model_store import LocalModelStore, promote
from learnrec.serving.readiness import DATABASE_UNAVAILABLE, ContextLoader, NotReadyError, Unready
from learnrec.stages import EMPTY_JWT_SECRET, ResourceNames
from learnrec.storage.migrate import upgrade
from learnrec_dev.local.aws import LocalAws
from learnrec_dev.local.gateway import default_handler_path


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _arn(aws: LocalAws, name: str) -> str:
    return str(aws.client("secretsmanager").describe_secret(SecretId=name)["ARN"])


def _load_handler_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"api_{uuid.uuid4().hex[:8]}", default_handler_path()
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Api:
    def __init__(self, module: ModuleType, clock: FakeClock) -> None:
        self.module = module
        self.clock = clock
        self.loader: ContextLoader[Any] = module.app.state.context_loader
        self.loader.clock = clock

    def call(
        self, method: str, path: str, token: str | None = None
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        event = rest_event(method, path, headers=headers)
        response = http_response(self.module.handler(event, LambdaContext()))
        return response.status, dict(response.headers), json.loads(response.body)


@pytest.fixture
def fresh_stage(
    aws_names: ResourceNames,
    local_env: LocalAws,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Api]:
    """The API of a stage as `cdk deploy` leaves it: secrets by ARN, JWT key set empty."""
    secrets = local_env.client("secretsmanager")
    assert secrets.get_secret_value(SecretId=aws_names.jwt_secret)["SecretString"] == (
        EMPTY_JWT_SECRET
    )
    for name, value in {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db' / 'learnrec.db'}",
        "MODEL_STORE": aws_names.model_store_url,
        "JWT_SECRET_ID": _arn(local_env, aws_names.jwt_secret),
        "USER_ID_HASH_SECRET_ID": _arn(local_env, aws_names.user_id_hash_secret),
        "KINESIS_STREAM_NAME": aws_names.events_stream,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("USER_ID_HASH_KEY", "JWT_JWKS", "JWT_PUBLIC_KEY", "JWT_ISSUER", "JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "db").mkdir()
    # The stack's migration runs before the api function is updated: the schema is there.
    upgrade(f"sqlite:///{tmp_path / 'db' / 'learnrec.db'}")
    get_settings.cache_clear()
    try:
        yield Api(_load_handler_module(), FakeClock())
    finally:
        get_settings.cache_clear()


def test_the_stack_writes_the_same_empty_key_set() -> None:
    import sys

    sys.path.insert(0, str(default_handler_path().parents[2] / "cdk"))
    from learnrec_cdk.data import EMPTY_JWKS

    assert json.loads(EMPTY_JWKS) == json.loads(EMPTY_JWT_SECRET)


def test_a_fresh_stage_answers_503_until_bootstrap_then_serves(
    fresh_stage: Api, aws_names: ResourceNames, tmp_path: Path
) -> None:
    api = fresh_stage
    fix = f"run `learnrec deploy bootstrap --stage {aws_names.stage}`"
    for path in ("/health", "/recommend/u1", "/trending"):
        status, headers, body = api.call("GET", path)
        assert status == 503, (path, body)
        assert int(headers["retry-after"]) >= 1
        assert body["not_ready"] == {"jwt_keys": f"JWT verification keys are not configured: {fix}"}
        text = json.dumps(body)
        assert "arn:" not in text and "Traceback" not in text and "/tmp" not in text
    # One build for all those requests: the next one waits for the clock.
    assert api.loader.attempts == 1

    report = bootstrap(
        aws_names.stage, boto3.Session(), private_key_out=tmp_path / "keys" / "jwt.pem"
    )
    assert report.ok, report.actions
    assert [a.outcome for a in report.actions] == ["created", "kept"]
    key_file = report.private_key_file
    assert key_file is not None and stat.S_IMODE(key_file.stat().st_mode) == 0o600

    # Filled, but the loader waits its interval before trying again.
    assert api.call("GET", "/health")[0] == 503
    assert api.loader.attempts == 1
    api.clock.now += api.loader.retry_after_s()
    status, _, body = api.call("GET", "/health")
    assert status == 200, body
    assert api.loader.attempts == 2
    assert body["status"] == "degraded"  # no model trained yet: popularity serves

    status, headers, body = api.call("GET", "/recommend/u1")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    private_pem = key_file.read_text(encoding="ascii")
    token = issue_token(private_pem, "u1", [Role.LEARNER], kid=report.kid)
    status, _, body = api.call("GET", "/recommend/u1", token)
    assert status == 200, body
    assert api.loader.attempts == 2

    # The database goes away after start-up: 503 with the same key, not a 500.
    served = api.loader.loaded
    assert served is not None
    served.store.engine.dispose()
    shutil.rmtree(tmp_path / "db")
    for path in ("/health", "/recommend/u1"):
        status, headers, body = api.call("GET", path, token)
        assert status == 503 and headers["retry-after"] == "5", body
        assert body["not_ready"] == {"database": "the database cannot be reached; retrying"}


def test_the_build_is_retried_on_a_growing_bounded_schedule() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def factory() -> str:
        calls.append(clock.now)
        raise NotReadyError([Unready("database", "the database cannot be reached; retrying")])

    loader = ContextLoader(factory, retry_min_s=5, retry_max_s=30, clock=clock)
    for _ in range(400):  # 400 requests, one a second
        with pytest.raises(NotReadyError):
            loader.get()
        clock.now += 1
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[:4] == [5, 10, 20, 30] and set(gaps[3:]) == {30}
    assert len(calls) < 20


def test_unexpected_build_errors_are_a_503_without_their_text() -> None:
    def factory() -> str:
        raise RuntimeError("/secret/path exploded")

    loader = ContextLoader(factory, clock=FakeClock())
    with pytest.raises(NotReadyError) as raised:
        loader.get()
    assert "/secret/path" not in raised.value.detail
    assert raised.value.problems[0].dependency == "startup"


def test_an_unreachable_database_and_unfilled_keys_are_both_named(
    fresh_stage: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/test")
    get_settings.cache_clear()
    status, headers, body = fresh_stage.call("GET", "/health")
    assert status == 503 and "retry-after" in headers
    assert set(body["not_ready"]) == {"jwt_keys", "database"}
    assert body["not_ready"]["database"] == "the database cannot be reached; retrying"
    assert "127.0.0.1" not in json.dumps(body)


def test_bootstrap_is_idempotent_and_rotates_only_when_asked(
    aws_names: ResourceNames, local_env: LocalAws, tmp_path: Path
) -> None:
    secrets = local_env.client("secretsmanager")
    session = boto3.Session()
    first = bootstrap(aws_names.stage, session, private_key_out=tmp_path / "one.pem")
    stored = secrets.get_secret_value(SecretId=aws_names.jwt_secret)["SecretString"]
    hash_key = secrets.get_secret_value(SecretId=aws_names.user_id_hash_secret)["SecretString"]

    again = bootstrap(aws_names.stage, session, private_key_out=tmp_path / "two.pem")
    assert [a.outcome for a in again.actions] == ["kept", "kept"]
    assert again.private_key_file is None and not (tmp_path / "two.pem").exists()
    assert secrets.get_secret_value(SecretId=aws_names.jwt_secret)["SecretString"] == stored
    assert (
        secrets.get_secret_value(SecretId=aws_names.user_id_hash_secret)["SecretString"] == hash_key
    )

    # An identity provider's JWKS on a stage that has keys: refused without --rotate.
    from learnrec.serving.auth import generate_key_pair, public_jwks

    _, other_public = generate_key_pair()
    jwks_file = tmp_path / "idp.json"
    jwks_file.write_text(json.dumps(public_jwks(other_public)))
    with pytest.raises(BootstrapError, match="--rotate"):
        bootstrap(aws_names.stage, session, jwks_file=jwks_file)
    rotated = bootstrap(aws_names.stage, session, jwks_file=jwks_file, rotate=True)
    assert rotated.actions[0].outcome == "updated"
    keys = json.loads(secrets.get_secret_value(SecretId=aws_names.jwt_secret)["SecretString"])
    kids = [k["kid"] for k in keys["jwks"]["keys"]]
    assert kids == [first.kid, public_jwks(other_public)["keys"][0]["kid"]]

    # A private key in the "public" file is refused before anything is written.
    leaked = tmp_path / "leaked.json"
    leaked.write_text(json.dumps({"keys": [{**keys["jwks"]["keys"][0], "d": "AQAB"}]}))
    with pytest.raises(BootstrapError, match="private key material"):
        bootstrap(aws_names.stage, session, jwks_file=leaked, rotate=True)


def test_bootstrap_fills_an_empty_hash_key_and_refuses_a_short_one(
    aws_names: ResourceNames, local_env: LocalAws, tmp_path: Path
) -> None:
    secrets = local_env.client("secretsmanager")
    secrets.put_secret_value(SecretId=aws_names.user_id_hash_secret, SecretString=" ")
    report = bootstrap(aws_names.stage, boto3.Session(), private_key_out=tmp_path / "k.pem")
    assert report.actions[1].outcome == "created"
    value = secrets.get_secret_value(SecretId=aws_names.user_id_hash_secret)["SecretString"]
    assert len(value) == 64

    secrets.put_secret_value(SecretId=aws_names.user_id_hash_secret, SecretString="short")
    report = bootstrap(aws_names.stage, boto3.Session())
    assert not report.ok and report.actions[1].outcome == "failed"
    assert (
        secrets.get_secret_value(SecretId=aws_names.user_id_hash_secret)["SecretString"] == "short"
    )


def test_the_cli_reports_and_fails_on_a_stage_that_was_never_deployed(
    local_env: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    from learnrec_dev.cli import main

    assert main(["deploy", "bootstrap", "--stage", f"t{uuid.uuid4().hex[:10]}"]) == 2
    assert "deploy the stage's stack first" in capsys.readouterr().err


def test_an_unreadable_key_secret_is_named_without_its_error(
    fresh_stage: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET_ID", "learnrec/nowhere/jwt")
    status, _, body = fresh_stage.call("GET", "/health")
    assert status == 503
    assert body["not_ready"] == {
        "jwt_keys": "the JWT key secret cannot be read: check JWT_SECRET_ID and that the API "
        "function may read it"
    }
    assert "ResourceNotFound" not in json.dumps(body)


def test_bootstrap_takes_an_identity_providers_jwks_and_writes_no_private_key(
    aws_names: ResourceNames, local_env: LocalAws, tmp_path: Path
) -> None:
    from learnrec.serving.auth import TokenVerifier, generate_key_pair, public_jwks

    _, public_pem = generate_key_pair()
    jwks_file = tmp_path / "idp.json"
    jwks_file.write_text(json.dumps(public_jwks(public_pem, kid="idp-2026")))
    report = bootstrap(aws_names.stage, boto3.Session(), jwks_file=jwks_file)
    assert report.actions[0].outcome == "created" and report.private_key_file is None
    secret = local_env.client("secretsmanager").get_secret_value(SecretId=aws_names.jwt_secret)
    verifier = TokenVerifier.from_secret(
        aws_names.jwt_secret, client=local_env.client("secretsmanager")
    )
    assert verifier.key_ids == {"idp-2026"}
    assert "idp-2026" in secret["SecretString"]
    # The same file again changes nothing, without --rotate.
    assert bootstrap(aws_names.stage, boto3.Session(), jwks_file=jwks_file).actions[0].outcome == (
        "kept"
    )


def test_a_cold_start_without_the_database_serves_popular_items_until_it_answers(
    quality_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = LocalModelStore(tmp_path / "models")
    bundle = shutil.copytree(quality_run / "bundle", tmp_path / "v1")
    (bundle / MANIFEST_FILE).unlink()
    write_manifest(bundle, "v1", parameters={}, metrics={}, data={})
    models.publish(bundle, "v1")
    promote(models, "v1")
    private_pem, public_pem = generate_key_pair()
    url = f"sqlite:///{tmp_path / 'later' / 'learnrec.db'}"  # its folder is not there yet
    for name, value in {
        "DATABASE_URL": url,
        "MODEL_STORE": str(tmp_path / "models"),
        "JWT_PUBLIC_KEY": public_pem,
        "USER_ID_HASH_KEY": "cold-start-key",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "learnrec-test",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("JWT_SECRET_ID", "USER_ID_HASH_SECRET_ID", "JWT_JWKS", "KINESIS_STREAM_NAME"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        api = Api(_load_handler_module(), FakeClock())
        token = issue_token(private_pem, "ada", [Role.LEARNER])

        # The database unreachable from the start: popular items, flagged; /health says so.
        status, _, body = api.call("GET", "/recommend/ada", token)
        assert status == 200 and body["fallback"] == "popularity" and body["items"]
        assert any("database" in note for note in body["degraded"])
        status, headers, body = api.call("GET", "/health")
        assert status == 503 and body["not_ready"] == {"database": DATABASE_UNAVAILABLE}
        assert "retry-after" in headers and "later" not in json.dumps(body)

        # It answers, but without the schema: every use of it is a 503 that says so.
        (tmp_path / "later").mkdir()
        status, _, body = api.call("GET", "/recommend/ada", token)
        assert status == 503 and set(body["not_ready"]) == {"database_schema"}

        # Migrated: the same process serves from the database, no restart.
        upgrade(url)
        status, _, body = api.call("GET", "/health")
        assert status == 200 and body["dependencies"]["database"] == "ok"
        status, _, body = api.call("GET", "/recommend/ada", token)
        assert status == 200 and not any("database" in n for n in body["degraded"])
    finally:
        get_settings.cache_clear()
