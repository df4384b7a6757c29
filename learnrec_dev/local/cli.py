"""``learnrec local ...``: run learnrec's AWS parts on this machine.

``learnrec local gateway`` serves the API Lambda over HTTP on 127.0.0.1 (see
:mod:`learnrec_dev.local.gateway`); ``learnrec local poller`` feeds the Kinesis stream on the
local AWS to the ingest Lambda (:mod:`learnrec_dev.local.poller`); ``learnrec local demo``
runs the main job end to end and ``learnrec local stop`` ends what it started
(:mod:`learnrec_dev.local.demo`). The handlers read their configuration from the
environment, as in Lambda (``DATABASE_URL``, ``MODEL_STORE``, ``JWT_PUBLIC_KEY``, ...);
the flags here only configure what runs around them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType

from learnrec_dev.local.gateway import (
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


def _poller(args: argparse.Namespace) -> int:
    from learnrec_dev.local.poller import KinesisPoller

    handler = load_handler(args.handler or default_ingest_handler_path())
    poller = KinesisPoller(args.stream, handler, batch_size=args.batch_size)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    if args.drain:
        print(json.dumps({"handled": poller.drain()}), flush=True)
        return 0
    print(json.dumps({"stream": args.stream, "pid": os.getpid()}), flush=True)
    poller.run(stop, args.interval)
    return 0


def default_ingest_handler_path() -> Path:
    return Path(__file__).resolve().parents[2] / "functions" / "ingest" / "handler.py"


def _demo(args: argparse.Namespace) -> int:
    from learnrec_dev.local.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(
        out=args.out,
        users=args.users,
        items=args.items,
        events=args.events,
        seed=args.seed,
        port=args.port,
        epochs=args.epochs,
    )
    try:
        run_demo(options)
    except DemoError as error:
        raise ValueError(f"demo stopped: {error}") from None
    return 0


def _stop(args: argparse.Namespace) -> int:
    from learnrec_dev.local.demo import stop_demo

    stopped = stop_demo(args.out)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def add_local_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``local gateway|poller|demo|stop`` to a ``learnrec``-style subcommand set."""
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

    poller = local.add_parser(
        "poller", help="feed the Kinesis stream on the local AWS to the ingest handler"
    )
    poller.add_argument("--stream", required=True, help="stream name (e.g. learnrec-dev-events)")
    poller.add_argument("--batch-size", type=int, default=500, help="records per invocation")
    poller.add_argument("--interval", type=float, default=0.2, help="seconds between empty polls")
    poller.add_argument(
        "--handler", type=Path, default=None, help="default: functions/ingest/handler.py"
    )
    poller.add_argument("--drain", action="store_true", help="process what is there, then exit")
    poller.set_defaults(func=_poller)

    demo = local.add_parser("demo", help="the main job end to end (what `make demo` runs)")
    demo.add_argument("--out", type=Path, default=Path("build/demo"))
    demo.add_argument("--users", type=int, default=1000)
    demo.add_argument("--items", type=int, default=500)
    demo.add_argument("--events", type=int, default=10_000)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--port", type=int, default=DEFAULT_PORT)
    demo.add_argument("--epochs", type=int, default=None, help="retrieval epochs (default: job's)")
    demo.set_defaults(func=_demo)

    stop = local.add_parser("stop", help="stop what `learnrec local demo` started, only that")
    stop.add_argument("--out", type=Path, default=Path("build/demo"))
    stop.set_defaults(func=_stop)
