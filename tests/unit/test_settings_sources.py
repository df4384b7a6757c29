"""Configuration reaches the API through Settings only: an explicit argument, else the
settings, else the default; settings given explicitly ignore the process environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnrec.config import Settings, settings_from
from learnrec.serving.auth import TokenVerifier, generate_key_pair, max_token_lifetime
from learnrec.serving.context import build_context
from learnrec.serving.readiness import NotReadyError
from learnrec.storage import make_engine


def test_settings_from_an_environment_ignore_the_process_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JWT_PUBLIC_KEY", "from the process")
    monkeypatch.setenv("JWT_ISSUER", "process-issuer")
    settings = settings_from({"jwt_issuer": "given", "KINESIS_STREAM_NAME": "events"})
    assert settings.jwt_public_key is None
    assert (settings.jwt_issuer, settings.events_stream) == ("given", "events")
    assert Settings().jwt_issuer == "process-issuer"


def test_the_verifier_reads_keys_claims_and_lifetime_from_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, public_pem = generate_key_pair()
    _, other_pem = generate_key_pair()
    monkeypatch.setenv("JWT_PUBLIC_KEY", other_pem)  # not these settings' key
    settings = settings_from(
        {"JWT_JWKS": "", "JWT_PUBLIC_KEY": public_pem, "JWT_ISSUER": "i", "JWT_AUDIENCE": "a"}
        | {"JWT_MAX_LIFETIME_S": "600"}
    )
    verifier = TokenVerifier.from_environment(settings=settings)
    assert (verifier.issuer, verifier.audience, verifier.max_lifetime_s) == ("i", "a", 600)
    assert max_token_lifetime(settings=settings) == 600
    explicit = TokenVerifier.from_environment(issuer="other", settings=settings)
    assert (explicit.issuer, explicit.audience) == ("other", "a")


def test_make_engine_defaults_to_the_settings_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'process.db'}")
    settings = settings_from({"DATABASE_URL": f"sqlite:///{tmp_path / 'given.db'}"})
    assert make_engine(settings=settings).url.database == str(tmp_path / "given.db")
    assert make_engine().url.database == str(tmp_path / "process.db")
    assert make_engine(f"sqlite:///{tmp_path / 'arg.db'}", settings=settings).url.database == (
        str(tmp_path / "arg.db")
    )


def test_the_fix_for_missing_keys_names_the_stage_of_the_settings_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JWT_SECRET_ID", raising=False)
    settings = settings_from(
        {
            "JWT_JWKS": '{"keys": []}',  # what a stage holds before its bootstrap
            "USER_ID_HASH_KEY": "k",
            "USER_ID_HASH_SECRET_ID": "learnrec/staging/user-id-hash",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'learnrec.db'}",
            "MODEL_STORE": str(tmp_path / "models"),
        }
    )
    with pytest.raises(NotReadyError) as raised:
        build_context(settings)
    problems = {p.dependency: p.message for p in raised.value.problems}
    assert problems["jwt_keys"] == (
        "JWT verification keys are not configured: run `learnrec deploy bootstrap --stage staging`"
    )
