"""``make demo``: the main job end to end on one machine, through the real data path.

Sample data in -> catalog and learner profiles in the database -> every event through
``POST /events`` on the local API gateway -> Kinesis on the local AWS -> the poller and
the ingest handler -> the S3 archive and the learners' history -> the retraining pipeline
(dataset, two-tower, index, ranker, evaluation, registry, promotion) -> the gateway picks
up the promoted version -> recommendations with their reasons, and the evaluation report.

The local AWS, the gateway and the poller keep running afterwards so that the API can be
called; their pid files live in ``<out>/run`` and ``learnrec local stop`` (``make stop``)
ends exactly those. A second run reuses what is there: the installed environment, the
running local AWS, the dev keys, and the events already ingested (the ledger skips them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learnrec.deploy.api_client import EVENTS_PER_REQUEST, batches, request_json
from learnrec.function_env import FunctionName, Value, function_environment
from learnrec.stages import ResourceNames
from learnrec_dev.local import aws
from learnrec_dev.local.processes import is_running, start_detached, stop_all

DEMO_LEARNERS = 5
Log = Callable[[str], None]


class DemoError(RuntimeError):
    """A stage of the demo failed; the message says which and where its log is."""


@dataclass(frozen=True)
class DemoOptions:
    out: Path = Path("build/demo")
    users: int = 1000
    items: int = 500
    events: int = 10_000
    seed: int = 42
    port: int = 8000
    stage: str = "dev"
    shown: int = 3
    epochs: int | None = None  # retrieval epochs; None keeps the pipeline's default

    @property
    def run_dir(self) -> Path:
        return self.out / "run"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{(self.out / 'learnrec.db').resolve()}"


@dataclass(frozen=True)
class DemoResult:
    url: str
    model_version: str | None
    report: Path | None
    events_sent: int
    events_ingested: int
    learner_token: str
    learner: str
    recommendations: dict[str, dict[str, Any]]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "learnrec_dev.cli", *args]


def _wait(what: str, check: Callable[[], bool], timeout_s: float, log_file: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            where = f"; see {log_file}" if log_file else ""
            raise DemoError(f"{what} did not happen within {timeout_s:.0f}s{where}")
        time.sleep(0.25)


class Demo:
    """One run of the demo; each method is one stage, in the order :meth:`run` calls them."""

    def __init__(self, options: DemoOptions, log: Log = print) -> None:
        self.options = options
        self.log = log
        self.names = ResourceNames(options.stage)
        self.url = f"http://{aws.HOST}:{options.port}"
        # What the local functions are configured with, by Settings field (the same
        # builder the stack uses gives each process its function's variables), and what
        # every process gets besides: the local AWS, quiet Powertools, no tracing.
        self.settings: dict[str, Value] = {}
        self.local_env: dict[str, str] = {}
        self.private_pem = ""

    # -- stages --------------------------------------------------------------------

    def start_local_aws(self) -> None:
        run_dir = self.options.run_dir
        if aws.is_listening():
            owner = "this demo's" if is_running(run_dir, "moto") else "an already running"
            self.log(f"local AWS: reusing {owner} moto server on {aws.ENDPOINT}")
        else:
            started = start_detached("moto", aws.moto_command(), run_dir)
            _wait("moto server answering", aws.is_listening, 30, started.log)
            self.log(f"local AWS: started moto server on {aws.ENDPOINT} (pid {started.pid})")
            # moto keeps everything in memory: a new server has no archive, no models and
            # a new hash key, so the database of an earlier run (its ledger says those
            # events are archived, its ids are hashed with the old key) must go too.
            database = self.options.out / "learnrec.db"
            if database.exists():
                database.unlink()
                self.log("  new local AWS: the previous run's database was reset to match")
        aws.configure()
        local = aws.LocalAws(aws.ENDPOINT, None)
        resources = aws.create_resources(local, self.names)
        self.settings = {
            "database_url": self.options.database_url,
            "model_store": self.names.model_store_url,
            "model_check_interval_s": 2,
            "s3_bucket": self.names.data_bucket,
            "events_stream": self.names.events_stream,
            "dead_letter_queue_url": resources["dead_letter_queue_url"],
            "user_id_hash_secret_id": self.names.user_id_hash_secret,
        }
        self.local_env = {
            **aws.LOCAL_ENVIRONMENT,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        self.log(
            f"  bucket {self.names.data_bucket}, stream {self.names.events_stream}, "
            f"dead-letter queue {self.names.dead_letter_queue}"
        )

    def keys(self) -> None:
        from learnrec.serving.auth import generate_key_pair

        folder = self.options.out / "keys"
        private, public = folder / "private.pem", folder / "public.pem"
        if not private.exists():
            folder.mkdir(parents=True, exist_ok=True)
            private_pem, public_pem = generate_key_pair()
            private.write_text(private_pem, encoding="ascii")
            private.chmod(0o600)
            public.write_text(public_pem, encoding="ascii")
        self.private_pem = private.read_text(encoding="ascii")
        self.settings["jwt_public_key"] = public.read_text(encoding="ascii")

    def sample_data(self) -> list[dict[str, Any]]:
        from datetime import UTC, datetime

        from learnrec.data.generator import generate, recent, write_sample

        o = self.options
        # Recent: POST /events refuses events older than the stage's retention.
        data = recent(
            generate(users=o.users, items=o.items, events=o.events, seed=o.seed),
            datetime.now(UTC),
        )
        paths = write_sample(data, o.out / "data")
        self.log(
            f"sample data: {o.users} learners, {o.items} items, {len(data.events)} events "
            f"(seed {o.seed}) in {o.out / 'data'}"
        )
        with paths["events"].open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def migrate(self) -> None:
        """The schema first, as a deployment does: the services only check for it."""
        self._run_cli("db", "upgrade", "--database-url", self.options.database_url)
        self.log(f"database schema migrated to head in {self.options.database_url}")

    def load_catalog(self) -> None:
        self._run_cli(
            "catalog", "load", "--data", str(self.options.out / "data"),
            "--database-url", self.options.database_url,
        )  # fmt: skip
        self.log(f"catalog and learner profiles loaded into {self.options.database_url}")

    def start_services(self) -> None:
        run_dir = self.options.run_dir
        # A previous demo's gateway and poller run with its settings: replace them.
        stop_all(run_dir, names=("gateway", "poller"))
        if aws.is_listening(port=self.options.port):
            raise DemoError(
                f"port {self.options.port} is taken by another program: stop it or run "
                f"with PORT=<free port>"
            )
        learners = ",".join(f"u{i:05d}" for i in range(min(DEMO_LEARNERS, self.options.users)))
        gateway = start_detached(
            "gateway",
            _cli(
                "local", "gateway", "--port", str(self.options.port),
                "--dev-private-key", str(self.options.out / "keys" / "private.pem"),
                "--demo-learners", learners, "--no-access-log",
            ),
            run_dir,
            self.environment("api"),
        )  # fmt: skip
        poller = start_detached(
            "poller",
            _cli("local", "poller", "--stream", self.names.events_stream, "--batch-size", "500"),
            run_dir,
            self.environment("ingest"),
        )
        _wait("the gateway answering /health", self._healthy, 120, gateway.log)
        self.log(f"gateway on {self.url} (pid {gateway.pid}), poller (pid {poller.pid})")

    def send_events(self, events: Sequence[dict[str, Any]]) -> list[str]:
        from tqdm import tqdm

        from learnrec.serving.auth import issue_token

        token = issue_token(self.private_pem, "demo-producer", ["service"], 3600)
        accepted: list[str] = []
        with tqdm(total=len(events), desc="POST /events", unit="ev", file=sys.stdout) as bar:
            for batch in batches(events, EVENTS_PER_REQUEST):
                status, _, body = request_json("POST", f"{self.url}/events", token, list(batch))
                if status != 202:
                    raise DemoError(f"POST /events answered {status}: {body}")
                accepted += [r["event_id"] for r in body["results"] if r["accepted"]]
                bar.update(len(batch))
        self.log(f"events: {len(accepted)} of {len(events)} accepted into Kinesis")
        return accepted

    def wait_for_ingest(self, event_ids: Sequence[str]) -> int:
        from learnrec.storage import make_engine
        from learnrec.storage.ledger import IngestStore

        ledger = IngestStore(make_engine(self.options.database_url))
        wanted = set(event_ids)

        def ingested() -> int:
            found = 0
            for chunk in batches([{"id": i} for i in sorted(wanted)], 900):
                found += len(ledger.recorded_ids([row["id"] for row in chunk]))
            return found

        _wait(
            "ingestion of every accepted event",
            lambda: ingested() == len(wanted),
            300,
            self.options.run_dir / "poller.log",
        )
        self.log(f"ingest: {len(wanted)} events archived in S3 and in the learners' history")
        return len(wanted)

    def retrain(self) -> tuple[str | None, Path | None]:
        workdir = self.options.out / "pipeline"
        args = [
            "pipeline", "run", "--stage", self.options.stage,
            "--database-url", self.options.database_url, "--workdir", str(workdir),
        ]  # fmt: skip
        if self.options.epochs is not None:
            args += ["--hyperparameter", f"train_retrieval.epochs={self.options.epochs}"]
        self.log("retraining pipeline (the same steps Step Functions runs):")
        self._run_cli(*args, capture=False)
        runs = sorted(workdir.glob("*/run.json"), key=lambda p: p.stat().st_mtime)
        if not runs:
            return None, None
        report = runs[-1].parent / "evaluate" / "output" / "evaluation" / "report.md"
        return json.loads(runs[-1].read_text())["version"], report if report.exists() else None

    def active_version(self) -> str | None:
        def served() -> bool:
            status, _, body = request_json("GET", f"{self.url}/health")
            return status == 200 and body.get("model_version") is not None

        _wait("the gateway serving a model", served, 60, self.options.run_dir / "gateway.log")
        return str(request_json("GET", f"{self.url}/health")[2]["model_version"])

    def recommendations(self, learners: Sequence[str]) -> dict[str, dict[str, Any]]:
        from learnrec.serving.auth import issue_token

        out = {}
        for learner in learners:
            token = issue_token(self.private_pem, learner, ["learner"], 3600)
            status, _, body = request_json("GET", f"{self.url}/recommend/{learner}?k=5", token)
            if status != 200:
                raise DemoError(f"GET /recommend/{learner} answered {status}: {body}")
            out[learner] = body
        return out

    # -- the whole run -------------------------------------------------------------

    def run(self) -> DemoResult:
        started = time.perf_counter()
        self.options.out.mkdir(parents=True, exist_ok=True)
        self.start_local_aws()
        self.keys()
        events = self.sample_data()
        self.migrate()
        self.load_catalog()
        self.start_services()
        accepted = self.send_events(events)
        ingested = self.wait_for_ingest(accepted)
        _, report = self.retrain()
        version = self.active_version()
        learners = [f"u{i:05d}" for i in range(min(self.options.shown, self.options.users))]
        recommendations = self.recommendations(learners)
        from learnrec.serving.auth import issue_token

        token = issue_token(self.private_pem, learners[0], ["learner"], 24 * 3600)
        self.log(f"demo ready in {time.perf_counter() - started:.0f}s")
        return DemoResult(
            self.url, version, report, len(events), ingested, token, learners[0], recommendations
        )

    # -- helpers -------------------------------------------------------------------

    def environment(self, function: FunctionName) -> dict[str, str]:
        """A local process's variables: the local AWS's, and what ``function`` reads."""
        return {**self.local_env, **function_environment(function, self.settings)}

    def _healthy(self) -> bool:
        try:
            return request_json("GET", f"{self.url}/health", timeout=2)[0] == 200
        except OSError:
            return False

    def _run_cli(self, *args: str, capture: bool = True) -> None:
        import os

        result = subprocess.run(
            _cli(*args),
            # The pipeline's steps run here, the SageMaker jobs' among them.
            env={**os.environ, **self.environment("job"), **self.environment("pipeline")},
            capture_output=capture,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip() if capture else ""
            raise DemoError(f"learnrec {' '.join(args[:2])} failed: {detail}".rstrip(": "))


def format_result(result: DemoResult, out: Path) -> str:
    lines = ["", f"Model version served: {result.model_version}", ""]
    for learner, body in result.recommendations.items():
        served = f" (fallback: {body['fallback']})" if body.get("fallback") else ""
        lines.append(f"Recommendations for {learner}{served}:")
        for item in body["items"]:
            title = f" {item['title']}" if item.get("title") else ""
            lines.append(
                f"  {item['rank']}. {item['content_id']}{title}  (score {item['score']:.3f})"
                f"  {item['reason']}"
            )
        lines.append("")
    if result.report is not None:
        lines.append(f"Evaluation report: {result.report}")
    lines += [
        f"Events: {result.events_sent} sent through POST /events, "
        f"{result.events_ingested} ingested",
        "",
        f"The API is on {result.url} (OpenAPI at {result.url}/docs, demo page at "
        f"{result.url}/ui/).",
        f"A token for learner {result.learner} (valid 24 h) is in {out / 'token.txt'}:",
        f'  curl -H "Authorization: Bearer $(cat {out / "token.txt"})" '
        f"{result.url}/recommend/{result.learner}?k=5",
        "",
        "Stop the local AWS, the gateway and the poller with: make stop",
    ]
    return "\n".join(lines)


def run_demo(options: DemoOptions, log: Log = print) -> DemoResult:
    result = Demo(options, log).run()
    (options.out / "token.txt").write_text(result.learner_token + "\n", encoding="ascii")
    log(format_result(result, options.out))
    return result


def stop_demo(out: Path) -> list[str]:
    """End what the demo started (per its pid files), and nothing else."""
    return stop_all(out / "run")
