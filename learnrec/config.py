"""Configuration: environment variables read once into one typed settings object.

Every setting the runtime reads comes from here, so one place says what a variable
means, what it defaults to and which values it accepts (README, "Configuration"). An
explicit argument to a function or constructor beats these settings, which beat the
defaults. boto3 reads its own ``AWS_ENDPOINT_URL`` for a local AWS, so it does not
appear here.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

LAMBDA_POOL_SIZE, LAMBDA_MAX_OVERFLOW = 1, 1
DEFAULT_POOL_SIZE, DEFAULT_MAX_OVERFLOW = 5, 10  # SQLAlchemy's own defaults
DEFAULT_DATABASE_URL = "sqlite:///learnrec.db"
"""A file in the working directory: what runs with no database configured."""
MAX_TOKEN_LIFETIME_S = 24 * 3600
"""Longest ``exp - iat`` a token may have unless ``JWT_MAX_LIFETIME_S`` says otherwise."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    # In AWS: the Aurora secret the URL is built from (learnrec.storage.url), and the host
    # to connect to instead of the secret's: the RDS Proxy endpoint. Through the proxy
    # the connection needs TLS (DATABASE_SSLMODE, "require" unless set otherwise).
    database_secret_arn: str | None = None
    database_host: str | None = None
    database_sslmode: str | None = None
    # SQLAlchemy's pool per process (learnrec.storage.make_engine). A Lambda container
    # serves one request at a time, and each container's connections add up at the
    # proxy: None means 1 + 1 overflow in Lambda, SQLAlchemy's 5 + 10 elsewhere.
    database_pool_size: int | None = Field(default=None, ge=1)
    database_max_overflow: int | None = Field(default=None, ge=0)
    database_pool_timeout_s: float = Field(default=10.0, gt=0)
    # Set by Lambda in every function's environment; tells the pool where it runs.
    aws_lambda_function_name: str | None = None
    # Model bundles: a local folder, or s3://bucket/prefix (see learnrec.serving.model_store).
    model_store: str = "build/models"
    model_check_interval_s: float = Field(default=60.0, ge=0)
    s3_bucket: str | None = None
    top_k_retrieval: int = Field(default=100, ge=1, le=1000)
    # How many items GET /recommend returns when the request gives no ``k``.
    top_k_ranking: int = Field(default=10, ge=1, le=100)
    # Slots per list reserved for new items (no engagement in the model's training data,
    # or added through PUT /admin/catalog since) that share a topic with the learner and
    # sit near their level, never more than half a list; 0 turns it off
    # (learnrec.serving.exposure; README, "New items").
    new_item_slots: int = Field(default=1, ge=0, le=100)
    vector_index: Literal["faiss", "opensearch"] = "faiss"
    opensearch_endpoint: str | None = None
    opensearch_alias: str = "learnrec-items"
    # The API's token verification (learnrec.serving.auth): one key source of the three,
    # the claims tokens must carry, and their longest lifetime. The algorithm is checked
    # there rather than here, so that a wrong one is reported as the auth error it is.
    jwt_algorithm: str = "RS256"
    jwt_public_key: str | None = None
    jwt_jwks: str | None = None
    jwt_secret_id: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_max_lifetime_s: int = Field(default=MAX_TOKEN_LIFETIME_S, gt=0)
    events_stream: str | None = Field(default=None, validation_alias="KINESIS_STREAM_NAME")
    user_id_hash_key: str | None = None
    user_id_hash_secret_id: str | None = None
    # The commit a deployment shipped, for model manifests made where there is no .git.
    git_commit: str | None = Field(default=None, validation_alias="LEARNREC_GIT_COMMIT")
    # Event ingestion (functions/ingest): records that cannot be processed go here.
    dead_letter_queue_url: str | None = None
    # How long processed event ids are remembered for de-duplication across batches.
    dedupe_window_days: float = Field(default=7.0, gt=0)
    # The stage's event retention: events whose ts is older are refused on arrival.
    event_retention_days: int = Field(default=90, ge=1)
    # A/B test: variant name -> model version, or -> {"model_version": v, "weight": w};
    # JSON, e.g. '{"control": "v1", "treatment": "v2"}' (see learnrec.events.experiments).
    experiment_variants: str | None = None
    experiment_name: str = "default"
    # The interactive API docs (/docs, /redoc) and the spec (/openapi.json). Unset: on
    # locally, off in Lambda, so a deployed stage serves them only when its stack sets
    # API_DOCS=true; they describe every route and parameter to anyone who asks.
    api_docs: bool | None = None

    @property
    def in_lambda(self) -> bool:
        return bool(self.aws_lambda_function_name)

    @property
    def docs_enabled(self) -> bool:
        return self.api_docs if self.api_docs is not None else not self.in_lambda

    @property
    def database_pool(self) -> tuple[int, int]:
        """(pool_size, max_overflow) for a database server's connection pool."""
        small = self.in_lambda
        size = self.database_pool_size or (LAMBDA_POOL_SIZE if small else DEFAULT_POOL_SIZE)
        overflow = self.database_max_overflow
        if overflow is None:
            overflow = LAMBDA_MAX_OVERFLOW if small else DEFAULT_MAX_OVERFLOW
        return size, overflow

    @property
    def database_url_explicit(self) -> bool:
        """Whether ``DATABASE_URL`` was set, rather than left at its SQLite default."""
        return "database_url" in self.model_fields_set


class _Given(Settings):
    """Settings from the values given to it alone: no environment variable, no file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def settings_from(environ: Mapping[str, str]) -> Settings:
    """The settings ``environ`` would give, ignoring the process's own environment.

    For callers that hold an environment of their own (a test, a tool preparing a
    function's variables): names are matched case-insensitively, as for the process.
    """
    given = {name.upper(): value for name, value in environ.items()}
    values: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        key = field.validation_alias if isinstance(field.validation_alias, str) else name
        if key.upper() in given:
            values[key] = given[key.upper()]
    return _Given(**values)  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
