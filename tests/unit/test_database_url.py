"""The database URL: DATABASE_URL wins; in AWS it is built from the Aurora secret and goes
through RDS Proxy. The connection pool's bounds."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

from learnrec.config import Settings
from learnrec.storage import make_engine
from learnrec.storage.url import database_url, url_from_secret

SECRET = {
    "username": "learnrec",
    "password": "p@ss/word:1",
    "host": "db.cluster.local",
    "port": 5432,
    "dbname": "learnrec",
    "engine": "postgres",
}


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)


def test_the_url_is_built_from_the_secret_with_the_password_escaped() -> None:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="db", SecretString=json.dumps(SECRET))["ARN"]
        url = database_url(Settings(database_secret_arn=arn), client)
    assert url == "postgresql+psycopg://learnrec:p%40ss%2Fword%3A1@db.cluster.local:5432/learnrec"


def test_an_explicit_database_url_wins_over_the_secret() -> None:
    settings = Settings(database_url="sqlite:///local.db", database_secret_arn="arn:unused")
    assert database_url(settings) == "sqlite:///local.db"


def test_without_either_the_sqlite_default_is_used() -> None:
    assert database_url(Settings()).startswith("sqlite:///")


def test_a_secret_without_credentials_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="password"):
        url_from_secret({"username": "x", "host": "h"})


def test_through_the_proxy_the_host_is_replaced_and_tls_required() -> None:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        arn = client.create_secret(Name="db", SecretString=json.dumps(SECRET))["ARN"]
        proxy = "learnrec-prod-catalog.proxy-abc.eu-west-1.rds.amazonaws.com"
        url = database_url(Settings(database_secret_arn=arn, database_host=proxy), client)
        stricter = database_url(
            Settings(database_secret_arn=arn, database_host=proxy, database_sslmode="verify-full"),
            client,
        )
    parsed = make_url(url)
    assert parsed.host == proxy and parsed.port == 5432 and parsed.database == "learnrec"
    assert parsed.password == SECRET["password"]
    assert parsed.query == {"sslmode": "require"}
    assert make_url(stricter).query == {"sslmode": "verify-full"}
    # psycopg receives it as a libpq connection parameter.
    engine = make_engine(url)
    assert engine.dialect.create_connect_args(engine.url)[1]["sslmode"] == "require"


def test_a_local_database_url_ignores_the_proxy_settings() -> None:
    local = "postgresql://postgres@127.0.0.1:5432/test"
    settings = Settings(database_url=local, database_secret_arn="arn:x", database_host="proxy")
    assert database_url(settings) == local


def test_an_unknown_sslmode_is_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="sslmode"):
        url_from_secret(SECRET, host="proxy", sslmode="required")
    with pytest.raises(ValueError, match="host"):
        url_from_secret({"username": "u", "password": "p"})


def _pool(engine: Engine) -> tuple[int, int, float]:
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool.size(), pool._max_overflow, pool._timeout


def test_pools_are_small_in_lambda_and_sqlalchemy_sized_elsewhere() -> None:
    url = "postgresql://u:p@proxy:5432/learnrec"  # no connection is made
    in_lambda = Settings(aws_lambda_function_name="learnrec-prod-api")
    assert _pool(make_engine(url, settings=in_lambda)) == (1, 1, 10.0)
    assert _pool(make_engine(url, settings=Settings())) == (5, 10, 10.0)
    configured = Settings(
        aws_lambda_function_name="learnrec-prod-ingest",
        database_pool_size=2,
        database_max_overflow=0,
        database_pool_timeout_s=3,
    )
    assert _pool(make_engine(url, settings=configured)) == (2, 0, 3.0)
    # An explicit argument still wins, and SQLite keeps its own pool.
    assert _pool(make_engine(url, settings=in_lambda, pool_size=4))[0] == 4
    assert make_engine("sqlite://", settings=in_lambda).dialect.name == "sqlite"


def test_lambda_is_recognised_from_its_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "learnrec-dev-api")
    monkeypatch.setenv("DATABASE_MAX_OVERFLOW", "3")
    assert Settings().database_pool == (1, 3)
