"""``learnrec local ...``: run learnrec's AWS parts on this machine.

``learnrec local gateway`` serves the API Lambda over HTTP on 127.0.0.1 (see
:mod:`learnrec.local.gateway`). The handler reads its configuration from the
environment, as in Lambda (``DATABASE_URL``, ``MODEL_STORE``, ``JWT_PUBLIC_KEY``, ...);
the flags here only configure the gateway around it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from learnrec.local.gateway import (
    DEFAULT_PORT,
    HOST,
    DemoConfig,
    Gateway,
    default_frontend,
    default_handler_path,
    load_handler,
)


def parse_learners(text: str) -> list[str]:
    """``u1,u2, u3`` -> ``["u1", "u2", "u3"]``; duplicates dropped, order kept."""
    learners = [part.strip() for part in text.split(",") if part.strip()]
    return list(dict.fromkeys(learners))


def _write_pid_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


def _remove_pid_file(path: Path) -> None:
    """Remove it only if it is still ours: a newer gateway may have replaced it."""
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except FileNotFoundError:
        pass


def _gateway(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be 0-65535, got {args.port}")
    learners = parse_learners(args.demo_learners or "")
    if learners and args.dev_private_key is None:
        raise ValueError("--demo-learners needs --dev-private-key to sign their tokens")
    demo = None
    if args.dev_private_key is not None:
        private_pem = args.dev_private_key.read_text(encoding="ascii")
        demo = DemoConfig(private_pem, learners)
    frontend = args.frontend if args.frontend is not None else default_frontend()
    handler = load_handler(args.handler or default_handler_path())
    try:
        gateway = Gateway(
            handler, args.port, frontend=frontend, demo=demo, access_log=args.access_log
        )
    except OSError as error:
        raise ValueError(f"cannot listen on {HOST}:{args.port}: {error.strerror}") from None

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    gateway.start()
    if args.pid_file is not None:
        _write_pid_file(args.pid_file)
    try:
        ready = {"url": gateway.url, "pid": os.getpid()}
        if frontend is not None:
            ready["ui"] = f"{gateway.url}/ui/"
        print(json.dumps(ready), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        gateway.stop()
        if args.pid_file is not None:
            _remove_pid_file(args.pid_file)
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
    return 0


def add_local_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``local gateway`` to a ``learnrec``-style subcommand set."""
    local = subparsers.add_parser("local", help="run the AWS parts on this machine").add_subparsers(
        dest="action", required=True
    )

    gateway = local.add_parser(
        "gateway",
        help=f"serve the API handler on {HOST} as API Gateway would (and the demo page)",
    )
    gateway.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    gateway.add_argument(
        "--handler",
        type=Path,
        default=None,
        help="handler file (default: functions/api/handler.py)",
    )
    gateway.add_argument(
        "--frontend", type=Path, default=None, help="folder served under /ui/ (default: frontend/)"
    )
    gateway.add_argument(
        "--dev-private-key",
        type=Path,
        default=None,
        help="PEM from `learnrec auth dev-keys`: signs the demo learners' tokens (/ui/config.json)",
    )
    gateway.add_argument(
        "--demo-learners", default="", help="comma-separated user ids offered by the demo page"
    )
    gateway.add_argument("--pid-file", type=Path, default=None, help="write the pid here")
    gateway.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one stderr line per request",
    )
    gateway.set_defaults(func=_gateway)
