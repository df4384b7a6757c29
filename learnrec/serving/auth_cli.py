"""``learnrec auth``: development keys and tokens, so local runs use real RS256 verification.

The service has no switch that disables authentication; instead these commands make a key
pair and sign tokens with it, and the local server is pointed at the public half
(``JWT_PUBLIC_KEY`` or ``JWT_JWKS``). Production tokens come from the identity provider.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from learnrec.config import Settings
from learnrec.serving.auth import (
    Role,
    generate_key_pair,
    issue_token,
    key_id,
    max_token_lifetime,
    public_jwks,
    public_pem_of,
)
from learnrec.stages import STAGES, StageConfig

PRIVATE_KEY_FILE = "private.pem"
PUBLIC_KEY_FILE = "public.pem"
JWKS_FILE = "jwks.json"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, including when the file already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


def _dev_keys(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    private_path = out / PRIVATE_KEY_FILE
    if private_path.exists() and not args.force:
        # Replacing a key silently would invalidate every token signed with it.
        raise ValueError(f"{private_path} exists; pass --force to replace the key pair")
    private_pem, public_pem = generate_key_pair()
    kid = args.kid or key_id(public_pem)
    _write_private(private_path, private_pem)
    public_path = out / PUBLIC_KEY_FILE
    public_path.write_text(public_pem, encoding="ascii")
    jwks_path = out / JWKS_FILE
    jwks_path.write_text(json.dumps(public_jwks(public_pem, kid), indent=2) + "\n", "ascii")
    print(
        json.dumps(
            {
                "private_key": str(private_path),
                "public_key": str(public_path),
                "jwks": str(jwks_path),
                "kid": kid,
            }
        )
    )
    return 0


def token_claims(
    issuer: str | None, audience: str | None, stage: str | None, settings: Settings
) -> tuple[str | None, str | None]:
    """``iss`` and ``aud`` for a token: as given, else the stage's (what its stack sets
    as JWT_ISSUER/JWT_AUDIENCE), else this shell's JWT_ISSUER/JWT_AUDIENCE, else none."""
    if stage is not None:
        config = StageConfig.for_stage(stage)  # type: ignore[arg-type]  # argparse checked it
        issuer = issuer or config.token_issuer
        audience = audience or config.token_audience
    return (
        issuer or (settings.jwt_issuer or "").strip() or None,
        audience or (settings.jwt_audience or "").strip() or None,
    )


def _token(args: argparse.Namespace) -> int:
    private_pem = Path(args.private_key).read_text(encoding="ascii")
    if args.ttl <= 0:
        raise ValueError("--ttl must be a positive number of seconds")
    settings = Settings()  # this shell's variables as they are now
    longest = max_token_lifetime(settings=settings)
    if args.ttl > longest:
        raise ValueError(
            f"--ttl {args.ttl} is over the maximum token lifetime of {longest} s "
            "(JWT_MAX_LIFETIME_S); the API would refuse the token"
        )
    roles = [role.strip() for role in args.roles.split(",") if role.strip()]
    if not roles:
        raise ValueError("--roles needs at least one role")
    issuer, audience = token_claims(args.issuer, args.audience, args.stage, settings)
    token = issue_token(
        private_pem,
        subject=args.sub,
        roles=roles,
        ttl_seconds=args.ttl,
        issuer=issuer,
        audience=audience,
        kid=args.kid or key_id(public_pem_of(private_pem)),
        max_lifetime_s=longest,
    )
    print(token)
    return 0


def add_auth_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``auth dev-keys`` and ``auth token`` to a ``learnrec``-style subcommand set."""
    auth = subparsers.add_parser("auth", help="development keys and tokens").add_subparsers(
        dest="action", required=True
    )

    keys = auth.add_parser(
        "dev-keys", help="write an RSA key pair and its JWKS (private.pem is mode 0600)"
    )
    keys.add_argument("--out", type=Path, required=True, help="folder for the key files")
    keys.add_argument("--kid", default=None, help="key id (default: the key's RFC 7638 thumbprint)")
    keys.add_argument("--force", action="store_true", help="replace an existing key pair")
    keys.set_defaults(func=_dev_keys)

    token = auth.add_parser("token", help="print an RS256 token signed with a dev private key")
    token.add_argument("--private-key", type=Path, required=True, help="PEM from auth dev-keys")
    token.add_argument("--sub", required=True, help="subject: the learner or service id")
    token.add_argument(
        "--roles",
        default=Role.LEARNER.value,
        help=f"comma-separated, of: {', '.join(role.value for role in Role)} (default: learner)",
    )
    token.add_argument(
        "--ttl",
        type=int,
        default=3600,
        help="seconds until expiry, at most $JWT_MAX_LIFETIME_S (default 86400)",
    )
    token.add_argument(
        "--issuer", default=None, help="iss claim (default: the --stage's, else $JWT_ISSUER)"
    )
    token.add_argument(
        "--audience", default=None, help="aud claim (default: the --stage's, else $JWT_AUDIENCE)"
    )
    token.add_argument(
        "--stage",
        choices=STAGES,
        default=None,
        help="take iss and aud from this stage's configuration, as its API checks them",
    )
    token.add_argument(
        "--kid", default=None, help="key id header (default: the key's thumbprint, as in jwks.json)"
    )
    token.set_defaults(func=_token)
