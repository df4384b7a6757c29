"""Schema migrations on a real PostgreSQL: the same contract as SQLite, plus what only a
server shows (concurrent migrations) and the migrate function called as CloudFormation's
provider framework calls it.

Each test gets a throw-away schema (the contract) or a throw-away database (the
function, which builds its URL from an RDS-format secret and so cannot be given a
search path), dropped afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, text
from unit import legacy_schema
from unit.test_migrations import MigrationContract, differences, tables

from functional.serving_harness import REPO
from functional.test_storage_postgres import POSTGRES_URL, pg_engine  # noqa: F401 (fixture)
from learnrec.config import get_settings
from learnrec.storage import Base, make_engine
from learnrec.storage.migrate import current, scripts_digest, upgrade
from learnrec.storage.schema import HEAD, VERSION_TABLE
from learnrec_dev.benchmark.ingest import load_handler

pytestmark = pytest.mark.postgres


@pytest.fixture
def admin(pg_engine: Engine) -> Iterator[Engine]:  # noqa: F811 (pg_engine skips without a server)
    engine = make_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
    yield engine
    engine.dispose()


class TestPostgresMigrations(MigrationContract):
    @pytest.fixture
    def engine(self, admin: Engine) -> Iterator[Engine]:
        schema = f"learnrec_mig_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine = make_engine(
            POSTGRES_URL,
            connect_args={"connect_timeout": 5, "options": f"-csearch_path={schema}"},
        )
        try:
            yield engine
        finally:
            engine.dispose()
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))

    def test_concurrent_upgrades_wait_for_each_other(self, engine: Engine) -> None:
        legacy_schema.create_with_rows(engine)

        with ThreadPoolExecutor(max_workers=4) as pool:
            revisions = list(pool.map(lambda _: upgrade(engine), range(4)))

        assert revisions == [HEAD] * 4
        with engine.connect() as conn:
            assert conn.scalar(text(f"SELECT count(*) FROM {VERSION_TABLE}")) == 1
            assert conn.scalar(text("SELECT count(*) FROM learnrec_learners")) == 2
        assert differences(engine) == []


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that Powertools' logger reads."""

    function_name: str = "learnrec-test-migrate"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:eu-west-1:123456789012:function:learnrec-test-migrate"
    )
    aws_request_id: str = "2f1c3f4e-0000-4000-8000-000000000001"


def provider_event(request: str, **extra: Any) -> dict[str, Any]:
    """An event as the CDK provider framework passes it to its on-event handler."""
    token = "arn:aws:lambda:eu-west-1:123456789012:function:learnrec-test-migrate-provider"
    return {
        "RequestType": request,
        "ServiceToken": token,
        "ResponseURL": "https://cloudformation-custom-resource-response.example/x",
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/learnrec-test/1",
        "RequestId": str(uuid.uuid4()),
        "LogicalResourceId": "MigrationsSchema",
        "ResourceType": "AWS::CloudFormation::CustomResource",
        "ResourceProperties": {"ServiceToken": token, "MigrationsDigest": scripts_digest()},
        **extra,
    }


@pytest.fixture
def database(admin: Engine) -> Iterator[str]:
    """A throw-away database: the name."""
    name = f"learnrec_fn_{uuid.uuid4().hex[:12]}"
    autocommit = admin.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with autocommit.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrate_function_brings_the_database_to_head(
    database: str, admin: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = admin.url.set(database=database)
    secret = {  # the shape of the secret that Aurora's construct creates and rotates
        "engine": "postgres",
        "username": url.username,
        "password": url.password or "trust-auth-ignores-it",
        "host": url.host,
        "port": url.port or 5432,
        "dbname": database,
    }
    for name in ("DATABASE_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="learnrec-test-db", SecretString=json.dumps(secret)
        )["ARN"]
        monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
        get_settings.cache_clear()
        try:
            migrate = load_handler(REPO / "functions" / "migrate" / "handler.py")
            engine = make_engine(url.render_as_string(hide_password=False))
            legacy_schema.create_with_rows(engine)  # the release before migrations

            created = migrate.handler(provider_event("Create"), LambdaContext())
            updated = migrate.handler(
                provider_event("Update", PhysicalResourceId=created["PhysicalResourceId"]),
                LambdaContext(),
            )
            deleted = migrate.handler(
                provider_event("Delete", PhysicalResourceId=created["PhysicalResourceId"]),
                LambdaContext(),
            )
        finally:
            get_settings.cache_clear()

    assert created["Data"] == {"Revision": HEAD, "From": ""}
    assert updated["Data"] == {"Revision": HEAD, "From": HEAD}
    assert deleted == {"PhysicalResourceId": created["PhysicalResourceId"]}
    try:
        assert current(engine) == HEAD
        assert tables(engine) == set(Base.metadata.tables) | {VERSION_TABLE}  # Delete kept it all
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM learnrec_learners")) == 2
        assert differences(engine) == []
    finally:
        engine.dispose()
