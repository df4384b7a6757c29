"""``learnrec deploy``: bootstrap a fresh stage's secrets, and smoke-check a deployment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from learnrec.stages import STAGES, StageConfig


def _stage(value: str) -> str:
    # Test and fork stages exist too, so any name of the secret-name alphabet is allowed.
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a stage name ({', '.join(STAGES)})")
    return value


def _bootstrap(args: argparse.Namespace) -> int:
    from learnrec.deploy.bootstrap import bootstrap, format_report

    report = bootstrap(
        args.stage,
        jwks_file=args.jwks,
        rotate=args.rotate,
        private_key_out=args.private_key_out,
    )
    print(json.dumps(report.as_dict(), indent=2) if args.json else format_report(report))
    return 0 if report.ok else 1


def _smoke(args: argparse.Namespace) -> int:
    from learnrec.deploy.smoke import SmokeOptions, format_table, run_smoke

    issuer, audience = _stage_claims(args.stage, args.issuer, args.audience)
    options = SmokeOptions(
        stage=args.stage,
        api_url=args.api_url,
        private_key=args.private_key,
        issuer=issuer,
        audience=audience,
        mode=args.mode,
        wait=args.wait,
        accept_failed_execution=args.accept_failed_execution,
        event_timeout_s=args.event_timeout,
        execution_timeout_s=args.execution_timeout,
    )
    report = run_smoke(options)
    print(format_table(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0 if report.ok else 1


def _stage_claims(stage: str, issuer: str | None, audience: str | None) -> tuple[str | None, ...]:
    """The token claims a stage's API checks: given ones, else the stage's own."""
    if stage in STAGES:
        # The stack sets JWT_ISSUER/JWT_AUDIENCE of the named stages from StageConfig.
        config = StageConfig.for_stage(stage)
        return issuer or config.token_issuer, audience or config.token_audience
    return issuer, audience


def _seed(args: argparse.Namespace) -> int:
    from learnrec.deploy.seed import SeedOptions, seed
    from learnrec.deploy.smoke import CheckFailedError

    issuer, audience = _stage_claims(args.stage, args.issuer, args.audience)
    options = SeedOptions(
        api_url=args.api_url,
        private_key=args.private_key,
        issuer=issuer,
        audience=audience,
        users=args.users,
        items=args.items,
        events=args.events,
        seed=args.seed,
    )
    try:
        report = seed(options)
    except (CheckFailedError, OSError) as error:  # a refusal, or nothing answered
        print(f"seed failed: {error}")
        return 1
    print(
        f"{report.items} items, {report.events_accepted} of {report.events_sent} events "
        "accepted into the stream"
    )
    for line in report.rejected[:20]:
        print(f"  rejected {line}")
    return 0 if report.ok else 1


def add_deploy_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``deploy bootstrap``, ``smoke`` and ``seed`` to a ``learnrec``-style subcommand set."""
    deploy = subparsers.add_parser("deploy", help="bootstrap and check a stage").add_subparsers(
        dest="action", required=True
    )

    boot = deploy.add_parser(
        "bootstrap", help="fill a fresh stage's secrets (JWT keys, user-id hash key)"
    )
    boot.add_argument("--stage", type=_stage, required=True, help="dev, staging or prod")
    boot.add_argument(
        "--jwks", type=Path, default=None, help="your identity provider's public JWKS (JSON file)"
    )
    boot.add_argument(
        "--rotate", action="store_true", help="add a key to a key set that already has keys"
    )
    boot.add_argument(
        "--private-key-out",
        type=Path,
        default=None,
        help="where a generated private key goes (default: ~/.config/learnrec/)",
    )
    boot.add_argument("--json", action="store_true", help="print the report as JSON")
    boot.set_defaults(func=_bootstrap)

    smoke = deploy.add_parser("smoke", help="check a deployment the way a user would")
    smoke.add_argument("--stage", type=_stage, required=True, help="dev, staging or prod")
    smoke.add_argument("--api-url", required=True, help="the API's base URL (with the stage)")
    smoke.add_argument(
        "--private-key", type=Path, default=None, help="PEM that signs the smoke's tokens"
    )
    smoke.add_argument(
        "--issuer", default=None, help="iss claim (default: the stage's, as the stack sets it)"
    )
    smoke.add_argument(
        "--audience", default=None, help="aud claim (default: the stage's, as the stack sets it)"
    )
    smoke.add_argument("--mode", choices=["ranking", "full"], default="ranking")
    smoke.add_argument(
        "--wait", action="store_true", help="wait for the retraining execution to end"
    )
    smoke.add_argument(
        "--accept-failed-execution",
        action="store_true",
        help="pass a started execution that failed (the local AWS runs no Lambda code or "
        "SageMaker jobs)",
    )
    smoke.add_argument("--event-timeout", type=float, default=120.0, help="seconds")
    smoke.add_argument("--execution-timeout", type=float, default=10800.0, help="seconds")
    smoke.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    smoke.set_defaults(func=_smoke)

    seed_parser = deploy.add_parser(
        "seed", help="send the sample catalog and events through a stage's API"
    )
    seed_parser.add_argument("--stage", type=_stage, required=True, help="dev, staging or prod")
    seed_parser.add_argument("--api-url", required=True, help="the API's base URL (with the stage)")
    seed_parser.add_argument(
        "--private-key", type=Path, required=True, help="PEM from learnrec deploy bootstrap"
    )
    seed_parser.add_argument("--issuer", default=None, help="iss claim (default: the stage's)")
    seed_parser.add_argument("--audience", default=None, help="aud claim (default: the stage's)")
    seed_parser.add_argument("--users", type=int, default=1000)
    seed_parser.add_argument("--items", type=int, default=500)
    seed_parser.add_argument("--events", type=int, default=10_000)
    seed_parser.add_argument("--seed", type=int, default=42)
    seed_parser.set_defaults(func=_seed)
