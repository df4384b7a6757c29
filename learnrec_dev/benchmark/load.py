"""``learnrec benchmark load``: many concurrent learners against the local API gateway.

The serving benchmark times the handler alone; this one asks what a learner waits for
when 100 of them use the service at once: HTTP, the gateway's API Gateway translation,
queueing for the function container, the handler, and the local AWS behind it. locust
runs headless in its own process (it monkey-patches the standard library with gevent,
which must not leak into this process) with the tasks in
:mod:`learnrec_dev.benchmark.locustfile`, and its summary becomes ``DIR/load.json``.

If a gateway already answers on the port (``make demo``), it is measured as it is, with
the demo learners from its ``/ui/config.json``. Otherwise this command brings up what it
needs and stops exactly that afterwards: the local AWS (only when none runs), the
stage's resources, the sample bundle (reused from ``--bundle``, trained there when
missing), published to the stage's S3 model store and promoted, a SQLite database with
the sample's catalog, learners and history, and the gateway as a subprocess. Everything
talks to 127.0.0.1 only; locust's ``--run-time`` bounds the run.

Like the serving benchmark, this module imports only the standard library at the top,
so ``learnrec --help`` stays fast.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnrec_dev.local.gateway import DEFAULT_PORT, HOST

if TYPE_CHECKING:
    from learnrec.data.generator import GeneratedData
    from learnrec.stages import ResourceNames
    from learnrec_dev.local.aws import LocalAws

RESULT_FILE = "load.json"
DEFAULT_BUNDLE = Path("build/sample-bundle")
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
TARGET_P95_MS = 200.0
DEMO_LEARNERS = 50
MAX_SPAWN_RATE = 20.0
READY_TIMEOUT_S = 180.0  # the gateway's first /health loads the bundle from S3
STOP_TIMEOUT_S = 15.0
#: Shutdown grace and start-up allowance on top of --duration before locust is killed.
LOCUST_SLACK_S = 60.0


def run_load(
    users: int,
    duration_s: int,
    out: Path,
    port: int = DEFAULT_PORT,
    bundle: Path = DEFAULT_BUNDLE,
    spawn_rate: float | None = None,
    stage: str = "dev",
    progress: bool = True,
    data: GeneratedData | None = None,
) -> dict[str, Any]:
    """Run the load test and write ``out/load.json``; return what it writes.

    ``data`` is what a started stack's database holds (default: the sample the sample
    bundle is trained on); pass the data a non-sample ``bundle`` was trained on.
    """
    if users < 1:
        raise ValueError("--users must be at least 1")
    if duration_s < 1:
        raise ValueError("--duration must be at least 1 second")
    rate = spawn_rate if spawn_rate is not None else min(float(users), MAX_SPAWN_RATE)
    if rate <= 0:
        raise ValueError("--spawn-rate must be positive")
    out.mkdir(parents=True, exist_ok=True)
    url = f"http://{HOST}:{port}"
    from learnrec_dev.local.aws import is_listening

    with ExitStack() as stack:
        reused = is_listening(HOST, port)
        if reused:
            _say(progress, f"measuring the gateway already running on {url}")
        else:
            stack.enter_context(_local_stack(port, out, bundle, stage, data, progress))
        learners = _demo_learner_count(url)
        _say(progress, f"locust: {users} users for {duration_s}s against {url}")
        stats = run_locust(url, users, rate, duration_s, out)
    result = {
        **stats,
        "users": users,
        "duration_s": duration_s,
        "spawn_rate": rate,
        "host": url,
        "gateway": "reused" if reused else "started",
        "demo_learners": learners,
        "target": {"p95_ms": TARGET_P95_MS, "failures": 0},
        "meets_target": stats["p95_ms"] < TARGET_P95_MS and stats["failures"] == 0,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "note": (
            "Client-side latency measured by locust on the same machine as the gateway, "
            "the handler and the local AWS; locust rounds percentiles above 100 ms to 10 ms."
        ),
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[load] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- stack


@contextmanager
def _local_stack(
    port: int, out: Path, bundle: Path, stage: str, data: GeneratedData | None, progress: bool
) -> Iterator[None]:
    """Local AWS, resources, bundle, database and gateway; stops what it started."""
    from learnrec.function_env import Value, process_environment
    from learnrec.stages import ResourceNames
    from learnrec_dev.local.aws import create_resources, local_aws

    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    with local_aws(log_file=out / "moto.log") as aws:
        origin = "started" if aws.started_here else "reused"
        _say(progress, f"local AWS on {aws.endpoint} ({origin})")
        names = ResourceNames(stage)
        create_resources(aws, names)
        version = publish_bundle(aws, names, ensure_bundle(bundle, work, progress))
        _say(progress, f"model {version} active in {names.model_store_url}")
        secret = aws.client("secretsmanager").get_secret_value(SecretId=names.user_id_hash_secret)
        hash_key = str(secret["SecretString"]).encode()
        learners, database_url = seed_database(work, hash_key, data)
        private_key, public_pem = _dev_keys(work)
        # The api function's variables, and none of the shell's settings besides.
        settings: dict[str, Value] = {
            "database_url": database_url,
            "model_store": names.model_store_url,
            "jwt_public_key": public_pem,
            "user_id_hash_secret_id": names.user_id_hash_secret,
            "events_stream": names.events_stream,
        }
        env = {
            **process_environment("api", settings, os.environ, namespace="learnrec-load"),
            "AWS_ENDPOINT_URL": aws.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": names.region,
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
        argv = [
            sys.executable,
            "-m",
            "learnrec_dev.cli",
            "local",
            "gateway",
            "--port",
            str(port),
            "--dev-private-key",
            str(private_key),
            "--demo-learners",
            ",".join(learners[:DEMO_LEARNERS]),
            "--no-access-log",
        ]
        log = out / "gateway.log"
        with log.open("ab") as output:
            process = subprocess.Popen(
                argv, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            wait_until_ready(f"http://{HOST}:{port}", process, log)
            _say(progress, f"gateway on {HOST}:{port} (pid {process.pid}, log {log})")
            yield
        finally:
            stop_process(process)


def ensure_bundle(bundle: Path, work: Path, progress: bool) -> Path:
    """``bundle`` if it holds a model; otherwise train the sample bundle into it."""
    if (bundle / "manifest.json").is_file():
        return bundle
    from learnrec_dev.benchmark.quality import Source, run_quality

    _say(progress, f"no bundle in {bundle}: training the sample bundle (a few minutes)")
    quality = work / "quality"
    run_quality(Source(dataset="sample"), quality, progress=progress)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(quality / "bundle", bundle)
    return bundle


def publish_bundle(aws: LocalAws, names: ResourceNames, bundle: Path) -> str:
    """Publish ``bundle`` to the stage's model store (once per version) and promote it."""
    from learnrec.bundle import read_manifest
    from learnrec.serving.model_store import S3ModelStore, promote
    from learnrec.stages import MODELS_PREFIX

    version = str(read_manifest(bundle)["version"])
    store = S3ModelStore(names.data_bucket, MODELS_PREFIX.rstrip("/"), aws.client("s3"))
    if version not in store.versions():
        store.publish(bundle, version)
    promote(store, version)
    return version


def seed_database(
    work: Path, hash_key: bytes, data: GeneratedData | None = None
) -> tuple[list[str], str]:
    """The sample's catalog, learners and history in SQLite; returns (active learners, URL).

    Learners are stored under the keyed hash of their id, as the catalog loader and the
    ingest function store them, so the API finds their profiles and histories. Active
    learners (most events first, raw ids) are the demo learners: they have the
    histories that make recommendation requests do their full work.
    """
    from collections import Counter

    from learnrec.data.generator import generate
    from learnrec.identity import UserIdHasher
    from learnrec.storage import CatalogStore, make_engine
    from learnrec_dev.benchmark.serving import seed_database as write_learners

    path = work / "learnrec.db"
    path.unlink(missing_ok=True)
    database_url = f"sqlite:///{path}"
    data = data or generate()
    hashed = UserIdHasher(hash_key)
    learners = [
        learner.model_copy(update={"user_id": hashed(learner.user_id)}) for learner in data.learners
    ]
    histories: dict[str, list[Any]] = {learner.user_id: [] for learner in learners}
    for event in data.events:
        if event.strength > 0:
            histories[hashed(event.user_id)].append(
                (event.content_id, event.event_type, event.ts, event.strength)
            )
    write_learners(database_url, learners, histories)
    engine = make_engine(database_url)
    try:
        CatalogStore(engine).upsert_items(data.items)
    finally:
        engine.dispose()
    counts = Counter(event.user_id for event in data.events)
    return [user for user, _ in counts.most_common()], database_url


def _dev_keys(work: Path) -> tuple[Path, str]:
    from learnrec.serving.auth import generate_key_pair

    private_pem, public_pem = generate_key_pair()
    path = work / "dev-private.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, private_pem.encode("ascii"))
    finally:
        os.close(fd)
    return path, public_pem


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until ``/health`` says the model is loaded; the first call is the cold start."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the gateway exited with code {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=60) as response:
                body = json.loads(response.read())
            if body.get("status") == "ok":
                return
            last = json.dumps(body)
        except (OSError, ValueError) as error:
            last = str(error)
        time.sleep(0.3)
    raise RuntimeError(f"the gateway on {url} was not ready in {READY_TIMEOUT_S:g}s: {last}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _demo_learner_count(url: str) -> int:
    """Fail before locust starts if the gateway offers no learners to impersonate."""
    try:
        with urllib.request.urlopen(f"{url}/ui/config.json", timeout=30) as response:
            config = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise ValueError(
            f"{url}/ui/config.json answered {error.code}: start the gateway with "
            "--dev-private-key and --demo-learners, or stop it and let this command start one"
        ) from None
    learners = config.get("learners") or []
    if not learners:
        raise ValueError(f"{url}/ui/config.json lists no demo learners (--demo-learners)")
    return len(learners)


# ----------------------------------------------------------------------------- locust


def run_locust(url: str, users: int, rate: float, duration_s: int, out: Path) -> dict[str, Any]:
    """locust headless in its own process; its CSV summary as figures."""
    prefix = out / "locust"
    for old in out.glob("locust_*.csv"):
        old.unlink()
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        f"{rate:g}",
        "--run-time",
        f"{duration_s}s",
        "--stop-timeout",
        "5",
        "--host",
        url,
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    log = out / "locust.log"
    with log.open("wb") as output:
        completed = subprocess.run(
            argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=duration_s + LOCUST_SLACK_S,
            check=False,
        )
    stats = prefix.with_name(prefix.name + "_stats.csv")
    # locust exits 1 when any request failed; that is a figure, not an error.
    if completed.returncode not in (0, 1) or not stats.exists():
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"locust failed (exit {completed.returncode}):\n{tail}")
    return parse_stats(stats)


def parse_stats(path: Path) -> dict[str, Any]:
    """The Aggregated row as the figures, and each endpoint's own line."""
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    endpoints: dict[str, Any] = {}
    total: dict[str, Any] | None = None
    for row in rows:
        figures = {
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "p50_ms": _number(row["50%"]),
            "p95_ms": _number(row["95%"]),
            "p99_ms": _number(row["99%"]),
            "rps": round(float(row["Requests/s"]), 2),
        }
        if row["Name"] == "Aggregated":
            total = figures
        else:
            endpoints[f"{row['Type']} {row['Name']}"] = figures
    if total is None or total["requests"] == 0:
        raise RuntimeError(f"locust recorded no requests ({path})")
    return {**total, "endpoints": endpoints}


def _number(text: str) -> float:
    """locust writes ``N/A`` for a percentile it has no data for."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


# ----------------------------------------------------------------------------- CLI


def add_load_command(bench_subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``benchmark load`` to the ``benchmark`` subcommands of the CLI."""
    load = bench_subparsers.add_parser(
        "load", help="locust, headless: concurrent learners against the local gateway"
    )
    load.add_argument("--users", type=int, default=100, help="concurrent simulated learners")
    load.add_argument("--duration", type=int, default=30, help="seconds of load")
    load.add_argument("--spawn-rate", type=float, default=None, help="users started per second")
    load.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"gateway port on {HOST}")
    load.add_argument(
        "--bundle",
        type=Path,
        default=DEFAULT_BUNDLE,
        help="model bundle to serve when starting a gateway (trained here if missing)",
    )
    load.add_argument("--stage", default="dev", help="stage whose local resources to use")
    load.add_argument("--out", type=Path, required=True)
    load.add_argument("--quiet", action="store_true", help="no progress lines")
    load.set_defaults(func=_load_command)


def _load_command(args: argparse.Namespace) -> int:
    result = run_load(
        args.users,
        args.duration,
        args.out,
        port=args.port,
        bundle=args.bundle,
        spawn_rate=args.spawn_rate,
        stage=args.stage,
        progress=not args.quiet,
    )
    print(
        f"{result['users']} users, {result['duration_s']}s: {result['requests']} requests, "
        f"{result['failures']} failures, {result['rps']} req/s; "
        f"p50 {result['p50_ms']:g} ms, p95 {result['p95_ms']:g} ms, p99 {result['p99_ms']:g} ms "
        f"(target p95 < {TARGET_P95_MS:g} ms, 0 failures: "
        f"{'met' if result['meets_target'] else 'NOT met'})"
    )
    print(f"figures: {args.out / RESULT_FILE}")
    return 0
