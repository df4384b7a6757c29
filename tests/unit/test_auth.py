"""The auth matrix: who gets a 401, who gets a 403, and which keys a verifier trusts."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from learnrec.config import Settings
from learnrec.serving.auth import (
    MAX_TOKEN_LIFETIME_S,
    AuthConfigurationError,
    AuthError,
    Principal,
    Role,
    TokenVerifier,
    authorize_admin,
    authorize_events,
    authorize_learner,
    authorize_reader,
    generate_key_pair,
    issue_token,
    key_id,
    max_token_lifetime,
    public_jwks,
)
from learnrec.serving.auth_cli import add_auth_commands
from learnrec.serving.context import build_context
from learnrec.stages import StageConfig
from learnrec.storage.migrate import upgrade

ISSUER = "https://id.example.test"
AUDIENCE = "learnrec-api"


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_key_pair()


@pytest.fixture(scope="module")
def other_keys() -> tuple[str, str]:
    return generate_key_pair()


@pytest.fixture(scope="module")
def verifier(keys: tuple[str, str]) -> TokenVerifier:
    return TokenVerifier.from_public_key_pem(keys[1])


def bearer(token: str) -> str:
    return f"Bearer {token}"


def rejection(verifier: TokenVerifier, header: str | None) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(header)
    assert caught.value.status == 401
    assert "WWW-Authenticate" in caught.value.headers
    return caught.value


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_parts(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"


def valid_claims(subject: str = "u1", roles: list[str] | None = None) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    return {"sub": subject, "roles": roles or ["admin"], "iat": now, "exp": now + 600}


# ----------------------------------------------------------------------------- authentication


def test_valid_token_gives_principal(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    token = issue_token(keys[0], "learner-1", [Role.LEARNER, "admin"])
    principal = verifier.verify(bearer(token))
    assert principal.subject == "learner-1"
    assert principal.roles == frozenset({Role.LEARNER, Role.ADMIN})
    assert principal.token_id


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_is_case_insensitive(
    keys: tuple[str, str], verifier: TokenVerifier, scheme: str
) -> None:
    token = issue_token(keys[0], "u1", ["learner"])
    assert verifier.verify(f"{scheme} {token}").subject == "u1"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(verifier: TokenVerifier, header: str | None) -> None:
    assert rejection(verifier, header).message == "missing bearer token"


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Token abc", "abc.def.ghi"]
)
def test_malformed_header(verifier: TokenVerifier, header: str) -> None:
    assert "malformed authorization header" in rejection(verifier, header).message


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "!!!.???.###"])
def test_malformed_token(verifier: TokenVerifier, token: str) -> None:
    assert rejection(verifier, bearer(token)).message == "malformed token"


def test_oversized_token(verifier: TokenVerifier) -> None:
    assert rejection(verifier, bearer("a" * 10_000)).message == "token too large"


def test_token_signed_by_another_key(other_keys: tuple[str, str], verifier: TokenVerifier) -> None:
    token = issue_token(other_keys[0], "u1", ["admin"])
    assert rejection(verifier, bearer(token)).message == "invalid token signature"


def test_tampered_claims(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    header, _, signature = issue_token(keys[0], "u1", ["learner"]).split(".")
    forged = unsigned_parts({"alg": "RS256", "typ": "JWT"}, valid_claims("u2", ["admin"]))
    forged = f"{forged.split('.')[0]}.{forged.split('.')[1]}.{signature}"
    assert header  # the original header is irrelevant; the signature no longer matches
    assert rejection(verifier, bearer(forged)).message == "invalid token signature"


def test_expired(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    token = issue_token(keys[0], "u1", ["learner"], ttl_seconds=3600, now=past)
    assert rejection(verifier, bearer(token)).message == "token expired"


def test_negative_ttl_gives_an_expired_token(
    keys: tuple[str, str], verifier: TokenVerifier
) -> None:
    token = issue_token(keys[0], "u1", ["learner"], ttl_seconds=-120)
    assert rejection(verifier, bearer(token)).message == "token expired"


def test_not_yet_valid(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    future = datetime.now(UTC) + timedelta(minutes=10)
    token = issue_token(keys[0], "u1", ["learner"], now=future)
    assert rejection(verifier, bearer(token)).message == "token not yet valid"


def test_leeway_tolerates_small_clock_skew(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    # Issued 10 s "in the future" by a fast clock; expired 10 s ago by a slow one.
    ahead = issue_token(keys[0], "u1", ["learner"], now=datetime.now(UTC) + timedelta(seconds=10))
    assert verifier.verify(bearer(ahead)).subject == "u1"
    behind = issue_token(
        keys[0], "u1", ["learner"], ttl_seconds=60, now=datetime.now(UTC) - timedelta(seconds=70)
    )
    assert verifier.verify(bearer(behind)).subject == "u1"


def test_exp_is_required(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    import jwt

    token = jwt.encode({"sub": "u1", "roles": ["admin"]}, keys[0], algorithm="RS256")
    assert rejection(verifier, bearer(token)).message == "token is missing the 'exp' claim"


def test_iat_is_required(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    import jwt

    claims = valid_claims()
    del claims["iat"]
    token = jwt.encode(claims, keys[0], algorithm="RS256")
    assert rejection(verifier, bearer(token)).message == "token is missing the 'iat' claim"


def test_a_lifetime_over_the_maximum_is_refused(
    keys: tuple[str, str], verifier: TokenVerifier
) -> None:
    import jwt

    assert verifier.max_lifetime_s == MAX_TOKEN_LIFETIME_S == 24 * 3600
    claims = valid_claims()
    claims["exp"] = claims["iat"] + MAX_TOKEN_LIFETIME_S
    assert verifier.verify(bearer(jwt.encode(claims, keys[0], algorithm="RS256"))).subject == "u1"
    claims["exp"] += 1  # a year-long token from a misconfigured issuer is the same case
    error = rejection(verifier, bearer(jwt.encode(claims, keys[0], algorithm="RS256")))
    assert error.message == "token lifetime (exp - iat) is over the maximum of 86400 s"


def test_the_maximum_lifetime_comes_from_the_environment(keys: tuple[str, str]) -> None:
    environ = {"JWT_PUBLIC_KEY": keys[1], "JWT_MAX_LIFETIME_S": "600"}
    verifier = TokenVerifier.from_environment(environ=environ)
    assert verifier.max_lifetime_s == 600
    assert verifier.verify(bearer(issue_token(keys[0], "u1", ["learner"], ttl_seconds=600)))
    longer = issue_token(keys[0], "u1", ["learner"], ttl_seconds=601)
    assert "over the maximum of 600 s" in rejection(verifier, bearer(longer)).message
    for bad in ("0", "-5", "a day"):
        with pytest.raises(AuthConfigurationError, match="JWT_MAX_LIFETIME_S"):
            max_token_lifetime({"JWT_MAX_LIFETIME_S": bad})
    assert max_token_lifetime({}) == MAX_TOKEN_LIFETIME_S


def test_issue_token_refuses_a_lifetime_the_api_would_refuse(keys: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="at most 86400 s"):
        issue_token(keys[0], "u1", ["learner"], ttl_seconds=MAX_TOKEN_LIFETIME_S + 1)
    with pytest.raises(ValueError, match="at most 60 s"):
        issue_token(keys[0], "u1", ["learner"], ttl_seconds=61, max_lifetime_s=60)


def test_sub_is_required(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    import jwt

    claims = valid_claims()
    del claims["sub"]
    token = jwt.encode(claims, keys[0], algorithm="RS256")
    assert rejection(verifier, bearer(token)).message == "token is missing the 'sub' claim"


def test_issuer_and_audience(keys: tuple[str, str]) -> None:
    strict = TokenVerifier.from_public_key_pem(keys[1], issuer=ISSUER, audience=AUDIENCE)
    good = issue_token(keys[0], "u1", ["learner"], issuer=ISSUER, audience=AUDIENCE)
    assert strict.verify(bearer(good)).subject == "u1"

    wrong_issuer = issue_token(keys[0], "u1", ["learner"], issuer="https://evil", audience=AUDIENCE)
    assert rejection(strict, bearer(wrong_issuer)).message == "invalid token issuer"
    wrong_audience = issue_token(keys[0], "u1", ["learner"], issuer=ISSUER, audience="other-api")
    assert rejection(strict, bearer(wrong_audience)).message == "invalid token audience"
    no_issuer = issue_token(keys[0], "u1", ["learner"], audience=AUDIENCE)
    assert rejection(strict, bearer(no_issuer)).message == "token is missing the 'iss' claim"
    no_audience = issue_token(keys[0], "u1", ["learner"], issuer=ISSUER)
    assert rejection(strict, bearer(no_audience)).message == "token is missing the 'aud' claim"


def test_token_for_an_audience_is_refused_when_none_is_configured(
    keys: tuple[str, str], verifier: TokenVerifier
) -> None:
    # RFC 7519 4.1.3: a recipient not named in "aud" must reject the token.
    token = issue_token(keys[0], "u1", ["learner"], audience="someone-else")
    assert rejection(verifier, bearer(token)).message == "invalid token audience"


def test_alg_none_forgery(verifier: TokenVerifier) -> None:
    forged = unsigned_parts({"alg": "none", "typ": "JWT"}, valid_claims()) + "."
    assert rejection(verifier, bearer(forged)).message == "token algorithm must be RS256"


@pytest.mark.parametrize("alg", ["HS256", "RS512", "PS256", "ES256"])
def test_other_algorithms_refused(keys: tuple[str, str], verifier: TokenVerifier, alg: str) -> None:
    forged = unsigned_parts({"alg": alg, "typ": "JWT"}, valid_claims()) + ".c2ln"
    assert rejection(verifier, bearer(forged)).message == "token algorithm must be RS256"


def test_hs256_with_public_key_as_secret_forgery(
    keys: tuple[str, str], verifier: TokenVerifier
) -> None:
    # The classic key-confusion attack: HMAC "signed" with the (public) verification key.
    signing_input = unsigned_parts({"alg": "HS256", "typ": "JWT"}, valid_claims("u1", ["admin"]))
    mac = hmac.new(keys[1].encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64url(mac)}"
    assert rejection(verifier, bearer(forged)).message == "token algorithm must be RS256"
    # Also refused when the header lies and says RS256 over an HMAC signature.
    signing_input = unsigned_parts({"alg": "RS256", "typ": "JWT"}, valid_claims("u1", ["admin"]))
    mac = hmac.new(keys[1].encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64url(mac)}"
    assert rejection(verifier, bearer(forged)).message == "invalid token signature"


def test_roles_claim(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    import jwt

    claims = valid_claims(roles=["learner", "superuser", "Admin"])
    claims["roles"].append(7)
    principal = verifier.verify(bearer(jwt.encode(claims, keys[0], algorithm="RS256")))
    assert principal.roles == frozenset({Role.LEARNER})  # unknown and mis-cased names ignored

    claims = valid_claims()
    del claims["roles"]
    principal = verifier.verify(bearer(jwt.encode(claims, keys[0], algorithm="RS256")))
    assert principal.roles == frozenset()

    claims = valid_claims()
    claims["roles"] = "admin"
    token = jwt.encode(claims, keys[0], algorithm="RS256")
    assert "roles" in rejection(verifier, bearer(token)).message


# ----------------------------------------------------------------------------- JWKS


def test_jwks_with_two_keys_selects_by_kid(
    keys: tuple[str, str], other_keys: tuple[str, str]
) -> None:
    jwks = {"keys": public_jwks(keys[1], "old")["keys"] + public_jwks(other_keys[1], "new")["keys"]}
    verifier = TokenVerifier.from_jwks(jwks)
    assert verifier.key_ids == frozenset({"old", "new"})
    assert verifier.verify(bearer(issue_token(keys[0], "a", ["learner"], kid="old"))).subject == "a"
    new = issue_token(other_keys[0], "b", ["learner"], kid="new")
    assert verifier.verify(bearer(new)).subject == "b"
    # Right key set, wrong kid: the signature is checked against the named key only.
    crossed = issue_token(keys[0], "a", ["learner"], kid="new")
    assert rejection(verifier, bearer(crossed)).message == "invalid token signature"


def test_jwks_unknown_kid(keys: tuple[str, str], other_keys: tuple[str, str]) -> None:
    jwks = {"keys": public_jwks(keys[1], "old")["keys"] + public_jwks(other_keys[1], "new")["keys"]}
    verifier = TokenVerifier.from_jwks(json.dumps(jwks))
    token = issue_token(keys[0], "a", ["learner"], kid="retired")
    assert rejection(verifier, bearer(token)).message == "unknown token key id"
    single = TokenVerifier.from_jwks(public_jwks(keys[1], "only"))
    assert rejection(single, bearer(token)).message == "unknown token key id"


def test_jwks_token_without_kid(keys: tuple[str, str], other_keys: tuple[str, str]) -> None:
    single = TokenVerifier.from_jwks(public_jwks(keys[1], "only"))
    assert single.verify(bearer(issue_token(keys[0], "a", ["learner"]))).subject == "a"
    jwks = {"keys": public_jwks(keys[1], "old")["keys"] + public_jwks(other_keys[1], "new")["keys"]}
    several = TokenVerifier.from_jwks(jwks)
    token = issue_token(keys[0], "a", ["learner"])
    assert "no key id" in rejection(several, bearer(token)).message


def test_jwks_skips_keys_not_for_rs256(keys: tuple[str, str]) -> None:
    usable = public_jwks(keys[1], "sig")["keys"][0]
    jwks = {
        "keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AA", "y": "AA"},
            {**usable, "kid": "enc", "use": "enc"},
            {**usable, "kid": "ps", "alg": "PS256"},
            usable,
        ]
    }
    assert TokenVerifier.from_jwks(jwks).key_ids == frozenset({"sig"})


def test_jwks_configuration_errors(keys: tuple[str, str]) -> None:
    jwk = public_jwks(keys[1], "a")["keys"][0]
    for bad in [{}, {"keys": "x"}, {"keys": []}, "not json", {"keys": [{**jwk, "d": "AA"}]}]:
        with pytest.raises(AuthConfigurationError):
            TokenVerifier.from_jwks(bad)  # type: ignore[arg-type]
    with pytest.raises(AuthConfigurationError, match="share the key id"):
        TokenVerifier.from_jwks({"keys": [jwk, jwk]})


def test_public_key_configuration_errors(keys: tuple[str, str]) -> None:
    with pytest.raises(AuthConfigurationError, match="private key"):
        TokenVerifier.from_public_key_pem(keys[0])
    with pytest.raises(AuthConfigurationError, match="cannot be read"):
        TokenVerifier.from_public_key_pem(
            "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"
        )
    escaped = keys[1].strip().replace("\n", "\\n")  # as it often arrives in an env variable
    assert TokenVerifier.from_public_key_pem(escaped).key_ids == frozenset({None})


def test_key_id_is_rfc7638_thumbprint() -> None:
    # The RFC 7638 section 3.1 example key and its published thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    padded = n + "=" * (-len(n) % 4)
    modulus = int.from_bytes(base64.urlsafe_b64decode(padded), "big")
    pem = (
        rsa.RSAPublicNumbers(65537, modulus)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    assert key_id(pem) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


# ----------------------------------------------------------------------------- authorisation

LEARNER = Principal("u1", frozenset({Role.LEARNER}), None)
SERVICE = Principal("platform", frozenset({Role.SERVICE}), None)
ADMIN = Principal("ops", frozenset({Role.ADMIN}), None)
NOBODY = Principal("u1", frozenset(), None)


def forbidden(call: Any, *args: Any) -> AuthError:
    with pytest.raises(AuthError) as caught:
        call(*args)
    assert caught.value.status == 403
    assert "insufficient_scope" in caught.value.headers["WWW-Authenticate"]
    return caught.value


def test_learner_reads_only_self() -> None:
    authorize_learner(LEARNER, "u1")
    error = forbidden(authorize_learner, LEARNER, "u2")
    assert error.message == "token is for another learner"
    assert "u2" not in error.message  # no user ids in messages that end up in logs


def test_admin_and_service_read_any_learner() -> None:
    authorize_learner(ADMIN, "u2")
    authorize_learner(SERVICE, "u2")


def test_no_role_reads_nothing() -> None:
    forbidden(authorize_learner, NOBODY, "u1")
    forbidden(authorize_events, NOBODY, ["u1"])
    forbidden(authorize_admin, NOBODY)
    assert forbidden(authorize_reader, NOBODY).message == "learner, service or admin role required"


def test_any_role_reads_what_is_not_personal() -> None:
    for principal in (LEARNER, SERVICE, ADMIN):
        authorize_reader(principal)


def test_admin_endpoints() -> None:
    authorize_admin(ADMIN)
    assert forbidden(authorize_admin, LEARNER).message == "admin role required"
    forbidden(authorize_admin, SERVICE)


def test_events() -> None:
    authorize_events(SERVICE, ["u1", "u2", "u3"])
    authorize_events(ADMIN, ["u1", "u2"])
    authorize_events(LEARNER, ["u1", "u1"])
    authorize_events(LEARNER, iter(["u1"]))
    error = forbidden(authorize_events, LEARNER, ["u1", "u2"])
    assert error.message == "token is for another learner"


def test_end_to_end_learner_token(keys: tuple[str, str], verifier: TokenVerifier) -> None:
    principal = verifier.verify(bearer(issue_token(keys[0], "u1", ["learner"])))
    authorize_learner(principal, "u1")
    forbidden(authorize_learner, principal, "u2")
    forbidden(authorize_admin, principal)


# ----------------------------------------------------------------------------- configuration


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ["AWS_ENDPOINT_URL", "AWS_PROFILE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_from_secret_with_public_key(keys: tuple[str, str], aws: Any) -> None:
    aws.create_secret(Name="learnrec/jwt", SecretString=json.dumps({"public_key_pem": keys[1]}))
    verifier = TokenVerifier.from_secret("learnrec/jwt", client=aws, issuer=ISSUER)
    token = issue_token(keys[0], "u1", ["learner"], issuer=ISSUER)
    assert verifier.verify(bearer(token)).subject == "u1"


def test_from_secret_with_jwks_and_default_client(
    keys: tuple[str, str], other_keys: tuple[str, str], aws: Any
) -> None:
    jwks = {"keys": public_jwks(keys[1], "k1")["keys"] + public_jwks(other_keys[1], "k2")["keys"]}
    aws.create_secret(Name="learnrec/jwks", SecretString=json.dumps({"jwks": jwks}))
    verifier = TokenVerifier.from_secret("learnrec/jwks")  # boto3 client made inside
    token = issue_token(other_keys[0], "svc", ["service"], kid="k2")
    assert verifier.verify(bearer(token)).roles == frozenset({Role.SERVICE})


def test_from_secret_errors(keys: tuple[str, str], aws: Any) -> None:
    with pytest.raises(AuthConfigurationError, match="cannot read"):
        TokenVerifier.from_secret("does-not-exist", client=aws)
    both = {"public_key_pem": keys[1], "jwks": public_jwks(keys[1])}
    aws.create_secret(Name="both", SecretString=json.dumps(both))
    with pytest.raises(AuthConfigurationError, match="exactly one"):
        TokenVerifier.from_secret("both", client=aws)
    aws.create_secret(Name="text", SecretString="plain text")
    with pytest.raises(AuthConfigurationError, match="not JSON"):
        TokenVerifier.from_secret("text", client=aws)


def test_from_environment_reads_variables(keys: tuple[str, str]) -> None:
    env = {"JWT_PUBLIC_KEY": keys[1], "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}
    verifier = TokenVerifier.from_environment(environ=env)
    assert (verifier.issuer, verifier.audience) == (ISSUER, AUDIENCE)
    token = issue_token(keys[0], "u1", ["learner"], issuer=ISSUER, audience=AUDIENCE)
    assert verifier.verify(bearer(token)).subject == "u1"

    jwks_env = {"JWT_JWKS": json.dumps(public_jwks(keys[1], "k"))}
    assert TokenVerifier.from_environment(environ=jwks_env).key_ids == frozenset({"k"})


def test_from_environment_uses_process_environment(
    keys: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ["JWT_JWKS", "JWT_SECRET_ID", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_ALGORITHM"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JWT_PUBLIC_KEY", keys[1])
    assert TokenVerifier.from_environment().key_ids == frozenset({None})


def test_from_environment_explicit_beats_environment(
    keys: tuple[str, str], other_keys: tuple[str, str], aws: Any
) -> None:
    env = {"JWT_PUBLIC_KEY": other_keys[1], "JWT_ISSUER": "env-issuer", "JWT_AUDIENCE": "env-aud"}
    verifier = TokenVerifier.from_environment(
        public_key_pem=keys[1], issuer=ISSUER, audience=AUDIENCE, environ=env
    )
    token = issue_token(keys[0], "u1", ["learner"], issuer=ISSUER, audience=AUDIENCE)
    assert verifier.verify(bearer(token)).subject == "u1"
    env_token = issue_token(other_keys[0], "u1", ["learner"], issuer=ISSUER, audience=AUDIENCE)
    assert rejection(verifier, bearer(env_token)).message == "invalid token signature"

    # An explicit source of another kind also wins over the environment's key.
    aws.create_secret(Name="s", SecretString=json.dumps({"public_key_pem": keys[1]}))
    from_secret = TokenVerifier.from_environment(secret_id="s", client=aws, environ=env)
    assert from_secret.issuer == "env-issuer"  # issuer/audience still fall back separately
    env_secret = {"JWT_SECRET_ID": "s", "JWT_ISSUER": ISSUER}
    assert TokenVerifier.from_environment(client=aws, environ=env_secret).issuer == ISSUER


def test_from_environment_nothing_configured() -> None:
    with pytest.raises(AuthConfigurationError, match="no JWT verification key configured"):
        TokenVerifier.from_environment(environ={})
    with pytest.raises(AuthConfigurationError, match="no JWT verification key configured"):
        TokenVerifier.from_environment(environ={"JWT_PUBLIC_KEY": "  ", "JWT_ISSUER": ISSUER})


def test_from_environment_ambiguous_or_wrong_algorithm(keys: tuple[str, str]) -> None:
    env = {"JWT_PUBLIC_KEY": keys[1], "JWT_SECRET_ID": "s"}
    with pytest.raises(AuthConfigurationError, match="several JWT key sources"):
        TokenVerifier.from_environment(environ=env)
    with pytest.raises(AuthConfigurationError, match="several JWT key sources"):
        TokenVerifier.from_environment(public_key_pem=keys[1], secret_id="s", environ={})
    with pytest.raises(AuthConfigurationError, match="HS256"):
        TokenVerifier.from_environment(
            environ={"JWT_PUBLIC_KEY": keys[1], "JWT_ALGORITHM": "HS256"}
        )
    rs256 = {"JWT_PUBLIC_KEY": keys[1], "JWT_ALGORITHM": "RS256"}
    assert TokenVerifier.from_environment(environ=rs256).key_ids == frozenset({None})


def test_issue_token_validates_arguments(keys: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        issue_token(keys[0], "u1", ["root"])
    with pytest.raises(ValueError, match="empty"):
        issue_token(keys[0], "", ["learner"])
    with pytest.raises(ValueError, match="timezone"):
        issue_token(keys[0], "u1", ["learner"], now=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="cannot be read"):
        issue_token(keys[1], "u1", ["learner"])


# ----------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_auth_commands(p.add_subparsers(dest="command", required=True))
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


def test_cli_dev_keys_and_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keys"
    assert run(["auth", "dev-keys", "--out", str(out)]) == 0
    written = json.loads(capsys.readouterr().out)
    private, public, jwks = Path(written["private_key"]), out / "public.pem", out / "jwks.json"
    assert written["public_key"] == str(public) and written["jwks"] == str(jwks)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert json.loads(jwks.read_text())["keys"][0]["kid"] == written["kid"]

    argv = [
        "auth",
        "token",
        "--private-key",
        str(private),
        "--sub",
        "u1",
        "--roles",
        "learner,admin",
    ]
    assert run([*argv, "--ttl", "120", "--issuer", ISSUER, "--audience", AUDIENCE]) == 0
    token = capsys.readouterr().out.strip()
    for verifier in [
        TokenVerifier.from_jwks(jwks.read_text(), issuer=ISSUER, audience=AUDIENCE),
        TokenVerifier.from_public_key_pem(public.read_text(), issuer=ISSUER, audience=AUDIENCE),
    ]:
        principal = verifier.verify(bearer(token))
        assert principal.subject == "u1"
        assert principal.roles == frozenset({Role.LEARNER, Role.ADMIN})


def test_cli_refuses_to_overwrite_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["auth", "dev-keys", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "private.pem").read_text()
    with pytest.raises(ValueError, match="--force"):
        run(["auth", "dev-keys", "--out", str(tmp_path)])
    (tmp_path / "private.pem").chmod(0o644)
    assert run(["auth", "dev-keys", "--out", str(tmp_path), "--force", "--kid", "dev"]) == 0
    assert (tmp_path / "private.pem").read_text() != before
    assert stat.S_IMODE((tmp_path / "private.pem").stat().st_mode) == 0o600
    capsys.readouterr()


def test_cli_token_default_role_and_custom_kid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(["auth", "dev-keys", "--out", str(tmp_path), "--kid", "dev-1"])
    capsys.readouterr()
    key = str(tmp_path / "private.pem")
    run(["auth", "token", "--private-key", key, "--sub", "u9", "--kid", "dev-1"])
    token = capsys.readouterr().out.strip()
    verifier = TokenVerifier.from_jwks(json.loads((tmp_path / "jwks.json").read_text()))
    assert verifier.verify(bearer(token)).roles == frozenset({Role.LEARNER})
    with pytest.raises(ValueError, match="unknown role"):
        run(["auth", "token", "--private-key", key, "--sub", "u9", "--roles", "learner,root"])
    with pytest.raises(ValueError, match="--ttl"):
        run(["auth", "token", "--private-key", key, "--sub", "u9", "--ttl", "0"])


def test_cli_token_respects_the_maximum_lifetime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(["auth", "dev-keys", "--out", str(tmp_path)])
    capsys.readouterr()
    argv = ["auth", "token", "--private-key", str(tmp_path / "private.pem"), "--sub", "u9"]
    with pytest.raises(ValueError, match="over the maximum token lifetime of 86400 s"):
        run([*argv, "--ttl", "86401"])
    assert run([*argv, "--ttl", "86400"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("JWT_MAX_LIFETIME_S", "900")
    with pytest.raises(ValueError, match="of 900 s"):
        run([*argv, "--ttl", "901"])


def test_cli_token_takes_iss_and_aud_from_the_stage_or_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(["auth", "dev-keys", "--out", str(tmp_path)])
    capsys.readouterr()
    public = (tmp_path / "public.pem").read_text()
    argv = ["auth", "token", "--private-key", str(tmp_path / "private.pem"), "--sub", "u1"]

    def verifier_of(stage: str) -> TokenVerifier:
        config = StageConfig.for_stage(stage)  # type: ignore[arg-type]
        return TokenVerifier.from_public_key_pem(
            public, issuer=config.token_issuer, audience=config.token_audience
        )

    run([*argv, "--stage", "staging"])
    token = bearer(capsys.readouterr().out.strip())
    assert verifier_of("staging").verify(token).subject == "u1"
    # Issuer and audience name the stage: a staging token is no good in prod.
    assert rejection(verifier_of("prod"), token).message == "invalid token issuer"

    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    run(argv)
    from_env = bearer(capsys.readouterr().out.strip())
    strict = TokenVerifier.from_public_key_pem(public, issuer=ISSUER, audience=AUDIENCE)
    assert strict.verify(from_env).subject == "u1"
    run([*argv, "--audience", "other-api"])  # an explicit claim beats the environment
    assert rejection(strict, bearer(capsys.readouterr().out.strip())).message == (
        "invalid token audience"
    )


def test_the_serving_context_verifies_iss_and_aud_from_its_settings(
    tmp_path: Path, keys: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("JWT_JWKS", "JWT_SECRET_ID", "JWT_ISSUER", "JWT_AUDIENCE", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JWT_PUBLIC_KEY", keys[1])
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'learnrec.db'}",
        model_store=str(tmp_path / "models"),
        user_id_hash_key="k",
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    upgrade(settings.database_url)  # the deploy-time migration's job; never a cold start's
    verifier = build_context(settings).verifier
    assert (verifier.issuer, verifier.audience) == (ISSUER, AUDIENCE)
    good = issue_token(keys[0], "u1", ["learner"], issuer=ISSUER, audience=AUDIENCE)
    assert verifier.verify(bearer(good)).subject == "u1"
    unnamed = issue_token(keys[0], "u1", ["learner"])
    assert rejection(verifier, bearer(unnamed)).message == "token is missing the 'iss' claim"
