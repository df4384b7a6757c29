"""Authentication (RS256 JWT bearer tokens) and authorisation (roles) for the API.

The HTTP layer calls :meth:`TokenVerifier.verify` with the raw ``Authorization`` header and
then one of the ``authorize_*`` functions; both raise :class:`AuthError`, which carries the
HTTP status (401 or 403) and a message that is safe to return to the client. Nothing here
imports FastAPI, so the same rules apply to any caller (the Lambda handler, the local server,
tests).

Design choices, and why:

* Only RS256 is accepted, and the algorithm is pinned on our side rather than read from the
  token, so the classic forgeries (``alg: none``, or HS256 "signed" with the public key as the
  HMAC secret) fail before any key is used. Keys are parsed into RSA key objects up front,
  so a key that is not an RSA public key of at least 2048 bits is a configuration error at
  start-up, not a surprise per request.
* There is deliberately no switch that turns verification off: a verifier needs a key, and
  :meth:`TokenVerifier.from_environment` raises when none is configured. Local development
  uses real keys and tokens from :func:`generate_key_pair` and :func:`issue_token` (also
  ``learnrec auth dev-keys`` / ``learnrec auth token``).
* A token without a ``roles`` claim has no roles and so may do nothing: access is granted by
  a role, never assumed.
* Every token must say when it was issued (``iat``) and live at most
  :data:`MAX_TOKEN_LIFETIME_S` (``exp - iat``): an issuer misconfigured to mint year-long
  tokens would otherwise turn every leaked token into a long-lived credential.
* Error messages never contain user ids or token contents, because user ids are only ever
  stored or logged hashed (:mod:`learnrec.identity`) and error messages end up in logs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from learnrec.config import MAX_TOKEN_LIFETIME_S as DEFAULT_MAX_TOKEN_LIFETIME_S
from learnrec.config import Settings, settings_from

ALGORITHM = "RS256"
"""The only signing algorithm accepted or issued."""

LEEWAY_SECONDS = 30
"""Clock skew tolerated on ``exp``, ``nbf`` and ``iat``: Lambda and issuer clocks drift a bit."""

MAX_TOKEN_LIFETIME_S = DEFAULT_MAX_TOKEN_LIFETIME_S
"""Longest ``exp - iat`` accepted (``JWT_MAX_LIFETIME_S`` overrides it): a leaked token
is usable for a bounded time, whatever lifetime its issuer chose."""

MIN_RSA_KEY_BITS = 2048
MAX_TOKEN_CHARS = 8192
"""Longer bearer tokens are refused before parsing; real ones are well under 2 KB."""

# The variables behind the settings (learnrec.config) that messages name.
ENV_PUBLIC_KEY = "JWT_PUBLIC_KEY"
ENV_JWKS = "JWT_JWKS"
ENV_SECRET_ID = "JWT_SECRET_ID"
ENV_ALGORITHM = "JWT_ALGORITHM"


class Role(StrEnum):
    """What a token may do. A token may carry several roles."""

    LEARNER = "learner"
    """May read its own recommendations and post its own events."""
    SERVICE = "service"
    """A backend of the learning platform: reads and posts for any learner."""
    ADMIN = "admin"
    """Everything a service may do, plus ``/admin/*``."""


@dataclass(frozen=True)
class Principal:
    """The verified caller: who the token is for and what it may do."""

    subject: str
    roles: frozenset[Role]
    token_id: str | None = None

    def has_role(self, *roles: Role) -> bool:
        """True if the principal holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)


class AuthError(Exception):
    """A request that is not authenticated (401) or not allowed (403).

    ``message`` is meant for the client as-is: it says what is wrong without echoing the
    token or any user id.
    """

    def __init__(self, status: Literal[401, 403], message: str) -> None:
        super().__init__(message)
        self.status: Literal[401, 403] = status
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        """Response headers RFC 6750 asks for, so clients can tell "log in" from "forbidden"."""
        description = self.message.replace('"', "'")
        if self.status == 401:
            return {
                "WWW-Authenticate": (
                    f'Bearer error="invalid_token", error_description="{description}"'
                )
            }
        return {
            "WWW-Authenticate": (
                f'Bearer error="insufficient_scope", error_description="{description}"'
            )
        }

    def __repr__(self) -> str:
        return f"AuthError({self.status}, {self.message!r})"


class AuthConfigurationError(ValueError):
    """The verifier cannot be built: no key, an unusable key, or an ambiguous configuration.

    Raised at start-up, never per request; it is a ``ValueError`` so the CLI reports it as a
    usage error.
    """


class NoVerificationKeyError(AuthConfigurationError):
    """No key at all: nothing configured, or an empty key set (a stage not bootstrapped)."""


class KeySourceUnreadableError(AuthConfigurationError):
    """The configured key secret cannot be read (missing, no permission, service down)."""


class SecretsManagerClient(Protocol):
    """The one call :meth:`TokenVerifier.from_secret` makes on a boto3 ``secretsmanager``."""

    def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]: ...


# ----------------------------------------------------------------------------- keys


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_to_int(text: str) -> int:
    padded = text + "=" * (-len(text) % 4)
    return int.from_bytes(base64.urlsafe_b64decode(padded.encode("ascii")), "big")


def _check_rsa_public_key(key: object, source: str) -> rsa.RSAPublicKey:
    if not isinstance(key, rsa.RSAPublicKey):
        raise AuthConfigurationError(f"{source}: not an RSA public key (RS256 needs RSA)")
    if key.key_size < MIN_RSA_KEY_BITS:
        raise AuthConfigurationError(
            f"{source}: RSA key of {key.key_size} bits; at least {MIN_RSA_KEY_BITS} required"
        )
    return key


def _load_public_pem(pem: str | bytes) -> rsa.RSAPublicKey:
    text = pem.decode("ascii", errors="replace") if isinstance(pem, bytes) else pem
    # Environment variables and secrets often carry the PEM with escaped newlines.
    if "\\n" in text and "\n" not in text:
        text = text.replace("\\n", "\n")
    if "PRIVATE KEY" in text:
        raise AuthConfigurationError(
            "public key PEM: got a private key; give the verifier only the public key"
        )
    try:
        key = serialization.load_pem_public_key(text.strip().encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError) as error:
        raise AuthConfigurationError(f"public key PEM: cannot be read ({error})") from None
    return _check_rsa_public_key(key, "public key PEM")


def _jwk_to_key(jwk: Mapping[str, Any], index: int) -> rsa.RSAPublicKey | None:
    """One JWKS entry as an RSA key, or None for entries that cannot sign RS256 tokens."""
    if jwk.get("kty") != "RSA":
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", ALGORITHM) != ALGORITHM:
        return None
    if "d" in jwk or "p" in jwk:
        raise AuthConfigurationError(
            f"JWKS key {index}: contains private key material; publish only public keys"
        )
    n, e = jwk.get("n"), jwk.get("e")
    if not isinstance(n, str) or not isinstance(e, str):
        raise AuthConfigurationError(f"JWKS key {index}: 'n' and 'e' must be base64url strings")
    try:
        key = rsa.RSAPublicNumbers(_b64url_to_int(e), _b64url_to_int(n)).public_key()
    except (ValueError, TypeError, UnicodeEncodeError) as error:
        raise AuthConfigurationError(f"JWKS key {index}: invalid RSA key ({error})") from None
    return _check_rsa_public_key(key, f"JWKS key {index}")


def _parse_jwks(jwks: Mapping[str, Any] | str) -> dict[str | None, rsa.RSAPublicKey]:
    if isinstance(jwks, str):
        try:
            jwks = json.loads(jwks)
        except json.JSONDecodeError as error:
            raise AuthConfigurationError(f"JWKS: not valid JSON ({error})") from None
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise AuthConfigurationError('JWKS: expected an object with a "keys" list')
    keys: dict[str | None, rsa.RSAPublicKey] = {}
    for index, jwk in enumerate(jwks["keys"]):
        if not isinstance(jwk, Mapping):
            raise AuthConfigurationError(f"JWKS key {index}: not an object")
        key = _jwk_to_key(jwk, index)
        if key is None:
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthConfigurationError(f"JWKS key {index}: 'kid' must be a string")
        if kid in keys:
            raise AuthConfigurationError(f"JWKS: two keys share the key id {kid!r}")
        keys[kid] = key
    if not keys:
        raise NoVerificationKeyError("JWKS: no RSA signing key usable for RS256")
    if None in keys and len(keys) > 1:
        raise AuthConfigurationError(
            "JWKS: with several keys every key needs a 'kid', or tokens cannot pick one"
        )
    return keys


# ----------------------------------------------------------------------------- verifier


def _roles_from_claim(value: object) -> frozenset[Role]:
    if value is None:
        return frozenset()
    if not isinstance(value, list):
        raise AuthError(401, "invalid roles claim (expected a list)")
    known = {role.value for role in Role}
    return frozenset(Role(item) for item in value if isinstance(item, str) and item in known)


# PyJWT exception -> client message. Order matters: subclasses before their bases.
_JWT_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidSignatureError, "invalid token signature"),
    (jwt.InvalidIssuerError, "invalid token issuer"),
    (jwt.InvalidAudienceError, "invalid token audience"),
    (jwt.InvalidAlgorithmError, "token algorithm must be RS256"),
    (jwt.InvalidKeyError, "token signing key rejected"),
    (jwt.DecodeError, "malformed token"),
)


class TokenVerifier:
    """Verifies RS256 bearer tokens against one PEM key or a JWKS (several keys, by ``kid``).

    Build it once per process (a Lambda container) with one of the ``from_*`` constructors;
    :meth:`verify` is then pure CPU work, no I/O. Key rotation: publish the new key in the
    JWKS next to the old one, let containers pick it up, then start signing with it.
    """

    def __init__(
        self,
        keys: Mapping[str | None, rsa.RSAPublicKey],
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: float = LEEWAY_SECONDS,
        max_lifetime_s: int = MAX_TOKEN_LIFETIME_S,
    ) -> None:
        """Prefer the ``from_*`` constructors; ``keys`` maps key id (None: any) to key."""
        if max_lifetime_s <= 0:
            raise AuthConfigurationError("the maximum token lifetime must be positive")
        if not keys:
            raise AuthConfigurationError("a token verifier needs at least one public key")
        self._keys = {kid: _check_rsa_public_key(key, f"key {kid!r}") for kid, key in keys.items()}
        if None in self._keys and len(self._keys) > 1:
            raise AuthConfigurationError("with several keys every key needs a key id")
        self.issuer = issuer or None
        self.audience = audience or None
        self.leeway_seconds = leeway_seconds
        self.max_lifetime_s = max_lifetime_s

    @property
    def key_ids(self) -> frozenset[str | None]:
        """Key ids this verifier accepts (None: a single key that takes any ``kid``)."""
        return frozenset(self._keys)

    # -- constructors

    @classmethod
    def from_public_key_pem(
        cls, pem: str | bytes, issuer: str | None = None, audience: str | None = None
    ) -> TokenVerifier:
        """A verifier for one RSA public key; tokens' ``kid`` header is then not consulted."""
        return cls({None: _load_public_pem(pem)}, issuer=issuer, audience=audience)

    @classmethod
    def from_jwks(
        cls,
        jwks: Mapping[str, Any] | str,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> TokenVerifier:
        """A verifier for a JWKS document (a dict or its JSON text) with one or more keys.

        Only RSA signing keys usable for RS256 are kept; others (encryption keys, EC keys)
        are skipped so a shared JWKS works. With several keys each must have a ``kid``.
        """
        return cls(_parse_jwks(jwks), issuer=issuer, audience=audience)

    @classmethod
    def from_secret(
        cls,
        secret_id: str,
        client: SecretsManagerClient | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> TokenVerifier:
        """A verifier for the key stored in AWS Secrets Manager.

        The secret string is JSON with exactly one of ``public_key_pem`` (a PEM string) or
        ``jwks`` (a JWKS object, or its JSON text). ``client`` defaults to
        ``boto3.client("secretsmanager")``, which honours ``AWS_ENDPOINT_URL`` for a local
        AWS. The secret is read once, here: rotate by adding the new key to the JWKS.
        """
        if client is None:
            # Imported lazily (only this constructor needs boto3) and through importlib
            # because boto3 ships no type information.
            boto3 = importlib.import_module("boto3")
            client = boto3.client("secretsmanager")
        try:
            response = client.get_secret_value(SecretId=secret_id)
        except Exception as error:  # botocore raises many types; all mean "no key"
            raise KeySourceUnreadableError(
                f"cannot read JWT key secret {secret_id!r}: {error}"
            ) from error
        text = response.get("SecretString")
        if not isinstance(text, str):
            raise AuthConfigurationError(f"secret {secret_id!r} has no SecretString")
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise AuthConfigurationError(f"secret {secret_id!r} is not JSON") from None
        if not isinstance(document, dict):
            raise AuthConfigurationError(f"secret {secret_id!r} is not a JSON object")
        has_pem, has_jwks = "public_key_pem" in document, "jwks" in document
        if has_pem == has_jwks:
            raise AuthConfigurationError(
                f"secret {secret_id!r} needs exactly one of 'public_key_pem' or 'jwks'"
            )
        if has_pem:
            pem = document["public_key_pem"]
            if not isinstance(pem, str):
                raise AuthConfigurationError(f"secret {secret_id!r}: public_key_pem not a string")
            return cls.from_public_key_pem(pem, issuer=issuer, audience=audience)
        return cls.from_jwks(document["jwks"], issuer=issuer, audience=audience)

    @classmethod
    def from_environment(
        cls,
        *,
        public_key_pem: str | bytes | None = None,
        jwks: Mapping[str, Any] | str | None = None,
        secret_id: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        client: SecretsManagerClient | None = None,
        settings: Settings | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> TokenVerifier:
        """The verifier the service runs with: explicit arguments, else the settings.

        Key source: an explicit ``public_key_pem``/``jwks``/``secret_id`` wins over
        ``JWT_PUBLIC_KEY``/``JWT_JWKS``/``JWT_SECRET_ID``; two sources at the same level are
        an error rather than a silent pick. ``issuer``/``audience`` fall back to
        ``JWT_ISSUER``/``JWT_AUDIENCE`` the same way. Nothing configured is an error: there is
        no unauthenticated mode. ``JWT_ALGORITHM``, if set, must say RS256.

        The settings are ``settings``, else those ``environ`` gives, else the process
        environment's as it is now (a verifier is built once per process).
        """
        configured_settings = _settings(settings, environ)
        algorithm = _given(configured_settings.jwt_algorithm)
        if algorithm is not None and algorithm.upper() != ALGORITHM:
            raise AuthConfigurationError(
                f"{ENV_ALGORITHM}={algorithm!r} is not supported; only {ALGORITHM} is accepted"
            )
        issuer = issuer if issuer is not None else _given(configured_settings.jwt_issuer)
        audience = audience if audience is not None else _given(configured_settings.jwt_audience)

        level = "arguments"
        sources = [public_key_pem, jwks, secret_id]
        if all(source is None for source in sources):
            public_key_pem = _given(configured_settings.jwt_public_key)
            jwks = _given(configured_settings.jwt_jwks)
            secret_id = _given(configured_settings.jwt_secret_id)
            sources = [public_key_pem, jwks, secret_id]
            level = "the environment"
        configured = sum(source is not None for source in sources)
        if configured == 0:
            raise NoVerificationKeyError(
                "no JWT verification key configured: set one of "
                f"{ENV_PUBLIC_KEY}, {ENV_JWKS} or {ENV_SECRET_ID}"
            )
        if configured > 1:
            raise AuthConfigurationError(
                f"several JWT key sources in {level} (public key, JWKS, secret id); give one"
            )
        if public_key_pem is not None:
            verifier = cls.from_public_key_pem(public_key_pem, issuer=issuer, audience=audience)
        elif jwks is not None:
            verifier = cls.from_jwks(jwks, issuer=issuer, audience=audience)
        else:
            assert secret_id is not None  # exactly one source is set
            verifier = cls.from_secret(secret_id, client=client, issuer=issuer, audience=audience)
        verifier.max_lifetime_s = configured_settings.jwt_max_lifetime_s
        return verifier

    # -- verification

    def verify(self, authorization_header: str | None) -> Principal:
        """The principal for an ``Authorization: Bearer <token>`` header, or AuthError(401)."""
        token = _bearer_token(authorization_header)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(401, "malformed token") from None
        # Pinned before any key is touched: alg "none" and HS256 forgeries stop here.
        if header.get("alg") != ALGORITHM:
            raise AuthError(401, "token algorithm must be RS256")
        key = self._select_key(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_seconds,
                options={
                    "require": ["exp", "iat", "sub"],
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_nbf": True,
                    "verify_iat": True,
                    "verify_iss": self.issuer is not None,
                    "verify_aud": True,
                    "verify_sub": True,
                    "verify_jti": True,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.MissingRequiredClaimError as error:
            raise AuthError(401, f"token is missing the '{error.claim}' claim") from None
        except jwt.PyJWTError as error:
            raise AuthError(401, _message_for(error)) from None
        # PyJWT has checked both are numbers (and iat not in the future).
        if claims["exp"] - claims["iat"] > self.max_lifetime_s:
            raise AuthError(
                401, f"token lifetime (exp - iat) is over the maximum of {self.max_lifetime_s} s"
            )
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.strip():
            raise AuthError(401, "token has an empty subject")
        token_id = claims.get("jti")
        return Principal(
            subject=subject,
            roles=_roles_from_claim(claims.get("roles")),
            token_id=token_id if isinstance(token_id, str) else None,
        )

    def _select_key(self, kid: object) -> rsa.RSAPublicKey:
        if kid is not None and not isinstance(kid, str):
            raise AuthError(401, "malformed token (kid must be a string)")
        if kid in self._keys:
            return self._keys[kid]
        if len(self._keys) == 1:
            ((only_kid, only_key),) = self._keys.items()
            # A key without an id (a PEM) serves any kid; a token without kid, the only key.
            if only_kid is None or kid is None:
                return only_key
        if kid is None:
            raise AuthError(401, "token has no key id (kid) and several keys are trusted")
        raise AuthError(401, "unknown token key id")


def max_token_lifetime(
    environ: Mapping[str, str] | None = None, *, settings: Settings | None = None
) -> int:
    """The maximum ``exp - iat`` in seconds: ``JWT_MAX_LIFETIME_S`` if set, else 24 h.

    The verifier and ``learnrec auth token`` read it the same way, so the CLI never
    signs a token the API would refuse. The settings are chosen as
    :meth:`TokenVerifier.from_environment` chooses them.
    """
    return _settings(settings, environ).jwt_max_lifetime_s


def _settings(settings: Settings | None, environ: Mapping[str, str] | None) -> Settings:
    """``settings``, else those ``environ`` gives, else the process environment's now.

    Read afresh rather than from the process's cached settings: a verifier or a CLI
    command is built once, and must see the variables set for it. A value that does not
    validate is a configuration error that names its variable, as auth's own are.
    """
    if settings is not None:
        return settings
    try:
        return Settings() if environ is None else settings_from(environ)
    except ValidationError as error:
        problems = "; ".join(
            f"{str(problem['loc'][0]).upper()}={problem['input']!r}: {problem['msg']}"
            for problem in error.errors()
        )
        raise AuthConfigurationError(problems) from None


def _given(value: str | None) -> str | None:
    """A setting's value, or None when it is unset or blank (an empty variable)."""
    return (value.strip() or None) if value is not None else None


def _bearer_token(authorization_header: str | None) -> str:
    if authorization_header is None or not authorization_header.strip():
        raise AuthError(401, "missing bearer token")
    parts = authorization_header.split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise AuthError(401, "malformed authorization header (expected 'Bearer <token>')")
    token = parts[1]
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError(401, "token too large")
    return token


def _message_for(error: jwt.PyJWTError) -> str:
    for kind, message in _JWT_ERRORS:
        if isinstance(error, kind):
            return message
    return "invalid token"


# ----------------------------------------------------------------------------- authorisation


def authorize_learner(principal: Principal, user_id: str) -> None:
    """Allow reading ``user_id``'s data: learners only their own, service and admin anyone."""
    if principal.has_role(Role.ADMIN, Role.SERVICE):
        return
    if not principal.has_role(Role.LEARNER):
        raise AuthError(403, "learner, service or admin role required")
    if principal.subject != user_id:
        raise AuthError(403, "token is for another learner")


def authorize_reader(principal: Principal) -> None:
    """Allow reading what is not personal (trending, similar items): any known role.

    A valid token without a role is still refused: access is granted by a role.
    """
    if not principal.has_role(Role.LEARNER, Role.SERVICE, Role.ADMIN):
        raise AuthError(403, "learner, service or admin role required")


def authorize_admin(principal: Principal) -> None:
    """Allow ``/admin/*``: the admin role only (service tokens are not admins)."""
    if not principal.has_role(Role.ADMIN):
        raise AuthError(403, "admin role required")


def authorize_events(principal: Principal, user_ids: Iterable[str]) -> None:
    """Allow posting events for ``user_ids``: learners only their own, service and admin any.

    A batch is all or nothing, so one foreign event rejects the whole request.
    """
    if principal.has_role(Role.ADMIN, Role.SERVICE):
        return
    if not principal.has_role(Role.LEARNER):
        raise AuthError(403, "learner, service or admin role required")
    if any(user_id != principal.subject for user_id in user_ids):
        raise AuthError(403, "token is for another learner")


# ----------------------------------------------------------------------------- dev tooling


def generate_key_pair() -> tuple[str, str]:
    """A fresh RSA 2048 key pair as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM).

    For local development and tests; production keys live in the identity provider and only
    their public half reaches Secrets Manager.
    """
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_KEY_BITS)
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return private_pem, public_pem_of(private_pem)


def _load_private_pem(private_pem: str | bytes) -> rsa.RSAPrivateKey:
    data = private_pem.encode("ascii") if isinstance(private_pem, str) else private_pem
    return _load_private_bytes(data)


@functools.lru_cache(maxsize=8)
def _load_private_bytes(data: bytes) -> rsa.RSAPrivateKey:
    """Cached: loading checks the RSA key's consistency, ~40 ms, for every token otherwise."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"private key PEM cannot be read ({error})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private key is not an RSA key (RS256 needs RSA)")
    return key


def public_pem_of(private_pem: str | bytes) -> str:
    """The public key PEM that matches an RSA private key PEM."""
    return (
        _load_private_pem(private_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def _public_jwk_members(public_pem: str | bytes) -> dict[str, str]:
    numbers = _load_public_pem(public_pem).public_numbers()
    return {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}


def key_id(public_pem: str | bytes) -> str:
    """The RFC 7638 JWK thumbprint of a public key: a stable ``kid`` derived from the key.

    Deriving the id from the key means ``auth dev-keys`` and ``auth token`` agree on it
    without being told.
    """
    canonical = json.dumps(_public_jwk_members(public_pem), separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def public_jwks(public_pem: str | bytes, kid: str | None = None) -> dict[str, Any]:
    """A JWKS document with one RS256 signing key; ``kid`` defaults to :func:`key_id`."""
    jwk: dict[str, Any] = {
        **_public_jwk_members(public_pem),
        "kid": kid if kid is not None else key_id(public_pem),
        "use": "sig",
        "alg": ALGORITHM,
    }
    return {"keys": [jwk]}


def issue_token(
    private_pem: str | bytes,
    subject: str,
    roles: Iterable[Role | str],
    ttl_seconds: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
    kid: str | None = None,
    now: datetime | None = None,
    max_lifetime_s: int = MAX_TOKEN_LIFETIME_S,
) -> str:
    """An RS256 token for local development and tests (the service itself never issues).

    ``roles`` must be known role names, so a typo fails here rather than as a puzzling 403.
    ``now`` fixes the clock, and a ``ttl_seconds`` of zero or less gives a token that is
    already expired: both exist so tests can exercise the 401 paths with real signatures.
    A ``ttl_seconds`` over ``max_lifetime_s`` is refused, as the verifier would refuse it.
    """
    if not subject:
        raise ValueError("subject must not be empty")
    if ttl_seconds > max_lifetime_s:
        raise ValueError(
            f"a token may live at most {max_lifetime_s} s (the API refuses longer ones)"
        )
    requested = list(roles)
    try:
        role_names = sorted({Role(role).value for role in requested})
    except ValueError:
        known = ", ".join(role.value for role in Role)
        raise ValueError(f"unknown role in {requested!r}; known roles: {known}") from None
    issued = now if now is not None else datetime.now(UTC)
    if issued.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": role_names,
        "iat": int(issued.timestamp()),
        "nbf": int(issued.timestamp()),
        "exp": int((issued + timedelta(seconds=ttl_seconds)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, _load_private_pem(private_pem), algorithm=ALGORITHM, headers=headers)
