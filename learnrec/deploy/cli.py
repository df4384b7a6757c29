"""``learnrec deploy``: bootstrap a fresh stage's secrets, and smoke-check a deployment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from learnrec.stages import STAGES


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

    options = SmokeOptions(
        stage=args.stage,
        api_url=args.api_url,
        private_key=args.private_key,
        issuer=args.issuer,
        audience=args.audience,
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


def add_deploy_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``deploy bootstrap`` and ``deploy smoke`` to a ``learnrec``-style subcommand set."""
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
    smoke.add_argument("--issuer", default=None, help="iss claim (the stack's JWT_ISSUER)")
    smoke.add_argument("--audience", default=None, help="aud claim (the stack's JWT_AUDIENCE)")
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
