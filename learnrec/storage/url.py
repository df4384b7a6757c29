"""The database URL: ``DATABASE_URL``, or built from the Aurora secret in AWS.

The CDK app gives functions and jobs ``DATABASE_SECRET_ARN`` (the secret Aurora rotates)
rather than a URL, so no password sits in a function's configuration, and
``DATABASE_HOST``, the RDS Proxy endpoint, which replaces the cluster host the secret
names: every connection goes through the proxy, which requires TLS, so such a URL carries
``sslmode=require`` (or ``DATABASE_SSLMODE``). The URL is built from the secret at cold
start; an explicit ``DATABASE_URL`` wins, for local runs.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from learnrec.config import Settings

#: libpq's sslmode values; anything else would only fail at the first connection.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
PROXY_SSLMODE = "require"


def url_from_secret(
    secret: dict[str, Any], host: str | None = None, sslmode: str | None = None
) -> str:
    """An RDS-format secret (username, password, host, port, dbname) as a SQLAlchemy URL.

    ``host`` replaces the secret's host (the proxy in front of the cluster); ``sslmode``
    is added as libpq's query parameter.
    """
    host = host or secret.get("host")
    missing = [key for key in ("username", "password") if not secret.get(key)]
    missing += [] if host else ["host"]
    if missing:
        raise ValueError(f"the database secret lacks {', '.join(missing)}")
    if sslmode is not None and sslmode not in SSL_MODES:
        raise ValueError(f"sslmode {sslmode!r} is not one of {', '.join(SSL_MODES)}")
    user, password = quote(secret["username"], safe=""), quote(secret["password"], safe="")
    port = secret.get("port", 5432)
    database = secret.get("dbname", "learnrec")
    query = f"?{urlencode({'sslmode': sslmode})}" if sslmode else ""
    return f"postgresql+psycopg://{user}:{password}@{host}:{port}/{database}{query}"


def database_url(settings: Settings, secrets_client: Any = None) -> str:
    if settings.database_url_explicit or not settings.database_secret_arn:
        return settings.database_url
    if secrets_client is None:
        import boto3

        secrets_client = boto3.client("secretsmanager")
    response = secrets_client.get_secret_value(SecretId=settings.database_secret_arn)
    host = settings.database_host or None
    sslmode = settings.database_sslmode or (PROXY_SSLMODE if host else None)
    return url_from_secret(json.loads(response["SecretString"]), host, sslmode)
