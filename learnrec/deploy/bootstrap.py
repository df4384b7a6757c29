"""``learnrec deploy bootstrap``: fill what a fresh stage needs before its first request.

The stack creates the JWT secret with an empty key set (it cannot know the operator's
identity provider) and the user-id hash key as a generated string; until the key set has
a key the API answers 503. This fills the secrets, by their deterministic names
(:class:`learnrec.stages.ResourceNames`), and nothing else:

- JWT keys: the public keys of the operator's identity provider (``jwks_file``), or a key
  pair generated here, whose public half goes into the secret and whose private half is
  written to a local file readable by its owner only. A key set that already has keys is
  kept unless ``rotate`` asks to add one (old tokens stay valid until the old key is
  removed by hand, after the token lifetime).
- The user-id hash key: checked to be present and long enough; generated if empty. A
  short key is reported, never replaced: replacing it would orphan every hashed id
  already stored.

Running it twice changes nothing the second time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learnrec.serving.auth import (
    AuthConfigurationError,
    TokenVerifier,
    generate_key_pair,
    key_id,
    public_jwks,
)
from learnrec.stages import ResourceNames

MIN_HASH_KEY_CHARS = 32
"""128 bits as hex, or more: the stack generates 64 characters, the local AWS 64 hex digits."""


class BootstrapError(ValueError):
    """The stage cannot be bootstrapped as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Action:
    """One thing bootstrap looked at: ``outcome`` is created/updated/kept/failed."""

    item: str
    outcome: str
    detail: str


@dataclass
class BootstrapReport:
    stage: str
    account: str
    region: str
    actions: list[Action] = field(default_factory=list)
    private_key_file: Path | None = None
    kid: str | None = None

    @property
    def ok(self) -> bool:
        return all(a.outcome != "failed" for a in self.actions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "account": self.account,
            "region": self.region,
            "ok": self.ok,
            "actions": [vars(a) for a in self.actions],
            "private_key_file": str(self.private_key_file) if self.private_key_file else None,
            "kid": self.kid,
        }


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an RSA JWK: the same id :func:`key_id` gives its PEM."""
    members = {name: jwk[name] for name in ("e", "kty", "n")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _read_secret(client: Any, secret_id: str) -> str:
    try:
        response = client.get_secret_value(SecretId=secret_id)
    except client.exceptions.ResourceNotFoundException:
        raise BootstrapError(
            f"secret {secret_id} does not exist: deploy the stage's stack first (cdk deploy)"
        ) from None
    return str(response.get("SecretString") or "")


def _current_keys(text: str, secret_id: str) -> list[dict[str, Any]]:
    """The keys in the JWT secret, as JWKs (a PEM-style secret becomes one JWK)."""
    if not text.strip():
        return []
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise BootstrapError(f"secret {secret_id} is not JSON; fix or empty it first") from None
    if not isinstance(document, dict):
        raise BootstrapError(f"secret {secret_id} is not a JSON object")
    if isinstance(document.get("public_key_pem"), str):
        return list(public_jwks(document["public_key_pem"])["keys"])
    jwks = document.get("jwks", {"keys": []})
    if isinstance(jwks, str):
        jwks = json.loads(jwks)
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        raise BootstrapError(f'secret {secret_id}: "jwks" has no "keys" list')
    return [dict(k) for k in keys]


def _load_jwks_file(path: Path) -> list[dict[str, Any]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BootstrapError(f"{path}: not valid JSON ({error.msg})") from None
    try:
        TokenVerifier.from_jwks(document)  # the API's own rules: RS256, 2048 bits, public
    except AuthConfigurationError as error:
        raise BootstrapError(f"{path}: {error}") from None
    return [dict(k) for k in document["keys"]]


def _with_kids(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every RSA key gets a ``kid`` (its thumbprint), so several keys can coexist."""
    return [
        {**k, "kid": jwk_thumbprint(k)} if k.get("kty") == "RSA" and "kid" not in k else k
        for k in keys
    ]


def _write_private_key(path: Path, pem: str) -> None:
    """Create ``path`` readable by the owner only; an existing file is never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BootstrapError(f"{path} exists; choose another --private-key-out") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, pem.encode("ascii"))
    finally:
        os.close(fd)


def default_private_key_path(stage: str, kid: str) -> Path:
    return Path.home() / ".config" / "learnrec" / f"{stage}-jwt-{kid[:16]}.pem"


def bootstrap_jwt(
    client: Any,
    names: ResourceNames,
    report: BootstrapReport,
    *,
    jwks_file: Path | None = None,
    rotate: bool = False,
    private_key_out: Path | None = None,
) -> None:
    secret_id = names.jwt_secret
    current = _current_keys(_read_secret(client, secret_id), secret_id)
    usable = bool(current)
    if usable:
        try:
            TokenVerifier.from_jwks({"keys": current})
        except AuthConfigurationError:
            usable = False
    private_pem: str | None = None
    if jwks_file is not None:
        new = _load_jwks_file(jwks_file)
        source = f"from {jwks_file}"
    else:
        new = []
        source = "generated here"
    if usable and not rotate:
        if not new or _with_kids(new) == _with_kids(current):
            kids = ", ".join(str(k.get("kid")) for k in current)
            report.actions.append(Action(secret_id, "kept", f"{len(current)} key(s): {kids}"))
            return
        raise BootstrapError(
            f"{secret_id} already has {len(current)} key(s); pass --rotate to add these "
            "(nothing was changed)"
        )
    if not new:
        private_pem, public_pem = generate_key_pair()
        new = list(public_jwks(public_pem)["keys"])
        report.kid = key_id(public_pem)
    merged: list[dict[str, Any]] = []
    for key in _with_kids(current if usable else []) + _with_kids(new):
        if all(key.get("kid") != other.get("kid") for other in merged):
            merged.append(key)
    try:
        TokenVerifier.from_jwks({"keys": merged})
    except AuthConfigurationError as error:
        raise BootstrapError(f"the resulting key set would be unusable: {error}") from None
    if private_pem is not None:
        assert report.kid is not None
        path = private_key_out or default_private_key_path(names.stage, report.kid)
        _write_private_key(path, private_pem)  # before the secret: a key never gets lost
        report.private_key_file = path
    client.put_secret_value(SecretId=secret_id, SecretString=json.dumps({"jwks": {"keys": merged}}))
    added = ", ".join(str(k.get("kid")) for k in _with_kids(new))
    outcome = "updated" if usable else "created"
    detail = f"added {len(new)} key(s) {source} ({added}); {len(merged)} key(s) in the set"
    report.actions.append(Action(secret_id, outcome, detail))


def bootstrap_hash_key(client: Any, names: ResourceNames, report: BootstrapReport) -> None:
    secret_id = names.user_id_hash_secret
    value = _read_secret(client, secret_id)
    if not value.strip():
        client.put_secret_value(SecretId=secret_id, SecretString=secrets.token_hex(32))
        report.actions.append(Action(secret_id, "created", "was empty; generated 64 hex digits"))
    elif len(value.strip()) < MIN_HASH_KEY_CHARS:
        report.actions.append(
            Action(
                secret_id,
                "failed",
                f"only {len(value.strip())} characters, {MIN_HASH_KEY_CHARS} needed; not "
                "replaced, because stored hashed ids would be orphaned: if the stage holds "
                "no data yet, empty the secret and run bootstrap again",
            )
        )
    else:
        report.actions.append(Action(secret_id, "kept", f"{len(value.strip())} characters"))


def bootstrap(
    stage: str,
    session: Any = None,
    *,
    jwks_file: Path | None = None,
    rotate: bool = False,
    private_key_out: Path | None = None,
) -> BootstrapReport:
    """Fill the stage's secrets in the account and region of ``session`` (boto3's default)."""
    if session is None:
        import boto3

        session = boto3.Session()
    region = session.region_name
    if not region:
        raise BootstrapError("no AWS region: set AWS_REGION or AWS_DEFAULT_REGION")
    account = session.client("sts").get_caller_identity()["Account"]
    names = ResourceNames(stage, account, region)
    report = BootstrapReport(stage, account, region)
    client = session.client("secretsmanager")
    bootstrap_jwt(
        client,
        names,
        report,
        jwks_file=jwks_file,
        rotate=rotate,
        private_key_out=private_key_out,
    )
    bootstrap_hash_key(client, names, report)
    return report


def format_report(report: BootstrapReport) -> str:
    lines = [f"bootstrap of stage {report.stage} in {report.account}/{report.region}:"]
    for action in report.actions:
        lines.append(f"  {action.outcome:<8} {action.item}: {action.detail}")
    if report.private_key_file is not None:
        lines.append(
            f"  private key (kid {report.kid}) written to {report.private_key_file} (mode 0600):"
            " sign tokens with it, keep it out of version control"
        )
    lines.append("ok" if report.ok else "FAILED: see above")
    return "\n".join(lines)
