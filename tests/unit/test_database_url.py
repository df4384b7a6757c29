"""The database URL: DATABASE_URL wins; in AWS it is built from the Aurora secret."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from learnrec.config import Settings
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
