"""The URL built from the Aurora secret, against a real PostgreSQL server and libpq.

In AWS the secret names the cluster and DATABASE_HOST the RDS Proxy, which refuses
connections without TLS. Here the secret (moto) names a host that does not resolve and
DATABASE_HOST names the local server (127.0.0.1:5432, trust auth, no TLS): the override
is what gets connected to, and ``sslmode=require`` really reaches libpq, which refuses a
server that cannot do TLS rather than falling back to plain text.
"""

from __future__ import annotations

import json
import os

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from learnrec.config import Settings
from learnrec.storage import make_engine
from learnrec.storage.url import database_url

pytestmark = pytest.mark.postgres

LOCAL = make_url(
    os.environ.get(
        "LEARNREC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
)


def _url(sslmode: str | None = None) -> str:
    secret = {
        "username": LOCAL.username,
        "password": LOCAL.password or "unused-with-trust-auth",
        "host": "learnrec-test.cluster-x.invalid",  # what the secret names: not reachable
        "port": LOCAL.port or 5432,
        "dbname": LOCAL.database,
        "engine": "postgres",
    }
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="db", SecretString=json.dumps(secret))["ARN"]
        return database_url(
            Settings(database_secret_arn=arn, database_host=LOCAL.host, database_sslmode=sslmode),
            client,
        )


def _server_has_tls() -> bool:
    engine = make_engine(_url("disable"), connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            return bool(connection.execute(text("SHOW ssl")).scalar() == "on")
    except OperationalError:
        pytest.skip("no PostgreSQL on the test URL")
    finally:
        engine.dispose()


def test_database_host_replaces_the_secrets_host() -> None:
    engine = make_engine(_url("disable"), connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT current_database()")).scalar() == (
                LOCAL.database
            )
    except OperationalError:
        pytest.skip("no PostgreSQL on the test URL")
    finally:
        engine.dispose()


def test_through_database_host_tls_is_required() -> None:
    if _server_has_tls():
        pytest.skip("the test server speaks TLS; this test needs one that does not")
    url = _url()
    assert make_url(url).query == {"sslmode": "require"}
    engine = make_engine(url, connect_args={"connect_timeout": 5})
    try:
        with pytest.raises(OperationalError, match="SSL"), engine.connect():
            pass
    finally:
        engine.dispose()
