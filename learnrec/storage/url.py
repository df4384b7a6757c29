"""The database URL: ``DATABASE_URL``, or built from the Aurora secret in AWS.

The CDK app gives functions and jobs ``DATABASE_SECRET_ARN`` (the secret Aurora rotates)
rather than a URL, so no password sits in a function's configuration. The URL is built
from the secret at cold start; an explicit ``DATABASE_URL`` wins, for local runs.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from learnrec.config import Settings


def url_from_secret(secret: dict[str, Any]) -> str:
    """An RDS-format secret (username, password, host, port, dbname) as a SQLAlchemy URL."""
    missing = [key for key in ("username", "password", "host") if not secret.get(key)]
    if missing:
        raise ValueError(f"the database secret lacks {', '.join(missing)}")
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    port = secret.get("port", 5432)
    database = secret.get("dbname", "learnrec")
    return f"postgresql+psycopg://{user}:{password}@{secret['host']}:{port}/{database}"


def database_url(settings: Settings, secrets_client: Any = None) -> str:
    if settings.database_url_explicit or not settings.database_secret_arn:
        return settings.database_url
    if secrets_client is None:
        import boto3

        secrets_client = boto3.client("secretsmanager")
    response = secrets_client.get_secret_value(SecretId=settings.database_secret_arn)
    return url_from_secret(json.loads(response["SecretString"]))
