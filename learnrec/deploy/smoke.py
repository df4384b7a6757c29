"""``learnrec deploy smoke``: check a deployed stage the way a user would.

Over HTTP, against the stage's API: ``/health``; a token (admin + learner roles, signed
with the key that ``learnrec deploy bootstrap`` made, or any key whose public half is in
the stage's JWKS) that the API accepts; a recommendation for a synthetic learner; and an
event round trip. The API has no route that lists a learner's history, so the round
trip is observed where history shows: the learner completes the item ranked first for
them, and the check polls ``/recommend`` until that item is no longer recommended (the
recommender leaves out what a learner has consumed, and it learns that only from the
history the ingest function writes). The synthetic learner is erased at the end
(``DELETE /learners/{id}``).

Over AWS APIs, with boto3's default session: a retraining execution started on the
stage's state machine (``states:StartExecution``, input ``{"mode": ...}``), and its
states read back from the execution history (entered, succeeded, failed). Without
``wait`` the check passes once the execution runs and its first state was entered; with
``wait`` it waits for the end and passes only on success; an execution that has already
failed fails the check either way. On the local AWS (moto) only the first is meaningful:
moto runs the state machine, but its Lambda runs no code without Docker (the ``start``
step gets a non-JSON answer) and its SageMaker ``.sync`` integrations are not
implemented, so the execution fails after a few states; ``accept_failed_execution``
says that this is expected, and the table still shows which states failed and why.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from learnrec.deploy.api_client import request_json
from learnrec.stages import ResourceNames

SMOKE_LEARNER_PREFIX = "smoke-"
RECOMMEND_K = 10
HTTP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SmokeOptions:
    stage: str
    api_url: str
    private_key: Path | None = None
    issuer: str | None = None
    audience: str | None = None
    mode: str = "ranking"
    wait: bool = False
    # The local AWS runs the state machine but neither Lambda code nor SageMaker jobs.
    accept_failed_execution: bool = False
    event_timeout_s: float = 120.0
    execution_timeout_s: float = 3 * 3600.0
    poll_interval_s: float = 2.0
    learner: str | None = None  # default: a fresh smoke-<random> id
    session: Any = None  # boto3.Session; default: boto3's


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass
class StateRun:
    name: str
    status: str  # entered, succeeded, failed
    error: str | None = None  # the failure's error name and cause, shortened


@dataclass
class SmokeReport:
    stage: str
    api_url: str
    learner: str
    checks: list[Check] = field(default_factory=list)
    execution_arn: str | None = None
    execution_status: str | None = None
    states: list[StateRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "api_url": self.api_url,
            "learner": self.learner,
            "ok": self.ok,
            "checks": [vars(c) for c in self.checks],
            "execution": {
                "arn": self.execution_arn,
                "status": self.execution_status,
                "states": [vars(s) for s in self.states],
            },
        }


class CheckFailedError(Exception):
    """A check failed; the message is its detail."""


def _http(
    method: str, url: str, token: str | None = None, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    try:
        return request_json(method, url, token, body, timeout=HTTP_TIMEOUT_S)
    except OSError as error:  # nothing answered: the check fails with where and why
        raise CheckFailedError(f"{method} {url}: {error}") from None


def _short(body: Any) -> str:
    text = json.dumps(body) if not isinstance(body, str) else body
    return text if len(text) <= 200 else text[:197] + "..."


class Smoke:
    """One smoke run; each ``check_*`` method is one row of the table."""

    def __init__(self, options: SmokeOptions, sleep: Callable[[float], None] = time.sleep) -> None:
        self.options = options
        self.sleep = sleep
        self.base = options.api_url.rstrip("/")
        learner = options.learner or f"{SMOKE_LEARNER_PREFIX}{uuid.uuid4().hex[:12]}"
        self.report = SmokeReport(options.stage, self.base, learner)
        self.token: str | None = None
        self.first_item: str | None = None

    @property
    def learner(self) -> str:
        return self.report.learner

    def _run(self, name: str, check: Callable[[], str]) -> bool:
        started = time.perf_counter()
        try:
            detail, ok = check(), True
        except CheckFailedError as error:
            detail, ok = str(error), False
        self.report.checks.append(Check(name, ok, detail, round(time.perf_counter() - started, 2)))
        return ok

    # -- the API ----------------------------------------------------------------

    def check_health(self) -> str:
        status, headers, body = _http("GET", f"{self.base}/health")
        if status != 200:
            retry = f" (Retry-After {headers.get('retry-after')})" if status == 503 else ""
            raise CheckFailedError(f"GET /health answered {status}{retry}: {_short(body)}")
        version = body.get("model_version") if isinstance(body, dict) else None
        state = body.get("status") if isinstance(body, dict) else None
        return f"{state}, model {version or 'none yet (popularity serves)'}"

    def check_token(self) -> str:
        from learnrec.serving.auth import Role, issue_token, key_id, public_pem_of

        if self.options.private_key is None:
            raise CheckFailedError(
                "no --private-key: cannot sign a token (bootstrap printed its path)"
            )
        try:
            private_pem = self.options.private_key.read_text(encoding="ascii")
            kid = key_id(public_pem_of(private_pem))
        except (OSError, ValueError) as error:
            raise CheckFailedError(f"cannot read the private key: {error}") from None
        self.token = issue_token(
            private_pem,
            self.learner,
            [Role.ADMIN, Role.LEARNER],
            ttl_seconds=900,
            issuer=self.options.issuer,
            audience=self.options.audience,
            kid=kid,
        )
        status, _, body = _http("GET", f"{self.base}/admin/models", self.token)
        if status != 200:
            raise CheckFailedError(
                f"GET /admin/models with the token answered {status}: {_short(body)}"
            )
        return f"kid {kid} accepted (admin, learner); active model {body.get('active')}"

    def _recommend(self) -> dict[str, Any]:
        url = f"{self.base}/recommend/{self.learner}?k={RECOMMEND_K}"
        status, _, body = _http("GET", url, self.token)
        if status != 200 or not isinstance(body, dict):
            raise CheckFailedError(f"GET /recommend answered {status}: {_short(body)}")
        return body

    def check_recommendation(self) -> str:
        body = self._recommend()
        items = [str(i["content_id"]) for i in body.get("items", [])]
        if not items:
            raise CheckFailedError("no items recommended: is the catalog loaded?")
        self.first_item = items[0]
        served = body.get("model_version") or "no model"
        fallback = f", fallback {body['fallback']}" if body.get("fallback") else ""
        return f"{len(items)} items from {served}{fallback}; first {items[0]}"

    def check_event_round_trip(self) -> str:
        if self.first_item is None:
            raise CheckFailedError("no recommended item to complete")
        item = self.first_item
        event = {
            "user_id": self.learner,
            "content_id": item,
            "event_type": "complete",
            "ts": datetime.now(UTC).isoformat(timespec="seconds"),
            "context": {"source": "learnrec deploy smoke"},
        }
        status, _, body = _http("POST", f"{self.base}/events", self.token, [event])
        if status != 202 or not isinstance(body, dict) or body.get("accepted") != 1:
            raise CheckFailedError(f"POST /events answered {status}: {_short(body)}")
        deadline = time.monotonic() + self.options.event_timeout_s
        polls = 0
        while True:
            polls += 1
            items = [str(i["content_id"]) for i in self._recommend().get("items", [])]
            if item not in items:
                return (
                    f"'complete' of {item} accepted, then in the learner's history "
                    f"(left out of /recommend) after {polls} poll(s)"
                )
            if time.monotonic() > deadline:
                raise CheckFailedError(
                    f"the event for {item} was accepted but did not reach the learner's "
                    f"history within {self.options.event_timeout_s:.0f}s (ingest function, "
                    "its dead-letter queue and the database are the places to look)"
                )
            self.sleep(self.options.poll_interval_s)

    def erase_learner(self) -> None:
        """Best effort: the synthetic learner's profile and history go again."""
        if self.token is not None:
            with contextlib.suppress(CheckFailedError):
                _http("DELETE", f"{self.base}/learners/{self.learner}", self.token)

    # -- the retraining state machine --------------------------------------------

    def check_retraining(self, session: Any) -> str:
        region = session.region_name
        if not region:
            raise CheckFailedError("no AWS region: set AWS_REGION or AWS_DEFAULT_REGION")
        try:
            account = session.client("sts").get_caller_identity()["Account"]
            names = ResourceNames(self.options.stage, account, region)
            partition = session.get_partition_for_region(region)
            machine = (
                f"arn:{partition}:states:{region}:{account}:stateMachine:{names.state_machine}"
            )
            sfn = session.client("stepfunctions")
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            started = sfn.start_execution(
                stateMachineArn=machine,
                name=f"smoke-{stamp}-{uuid.uuid4().hex[:6]}",
                input=json.dumps({"mode": self.options.mode}),
            )
        except Exception as error:  # botocore's errors: no machine, no permission, no region
            raise CheckFailedError(f"cannot start an execution: {error}") from None
        arn = str(started["executionArn"])
        self.report.execution_arn = arn
        timeout = self.options.execution_timeout_s if self.options.wait else 60.0
        deadline = time.monotonic() + timeout
        while True:
            status = str(sfn.describe_execution(executionArn=arn)["status"])
            self.report.states = execution_states(sfn, arn)
            self.report.execution_status = status
            if status != "RUNNING" or (not self.options.wait and self.report.states):
                break
            if time.monotonic() > deadline:
                break
            self.sleep(self.options.poll_interval_s)
        summary = ", ".join(f"{s.name}: {s.status}" for s in self.report.states) or "none"
        name = arn.rsplit(":", 1)[-1]
        if self.options.wait:
            if status == "SUCCEEDED":
                return f"execution {name} SUCCEEDED; states: {summary}"
            if status == "RUNNING":
                raise CheckFailedError(
                    f"execution {name} still RUNNING after {timeout:.0f}s; states: {summary}"
                )
            if not self.options.accept_failed_execution:
                raise CheckFailedError(f"execution {name} ended {status}; states: {summary}")
            return f"execution {name} ended {status} (accepted); states: {summary}"
        if not self.report.states:
            raise CheckFailedError(
                f"execution {name} is {status} but entered no state within {timeout:.0f}s"
            )
        if status not in ("RUNNING", "SUCCEEDED") and not self.options.accept_failed_execution:
            raise CheckFailedError(f"execution {name} already ended {status}; states: {summary}")
        return f"execution {name} started ({status}); states so far: {summary}"

    def run(self) -> SmokeReport:
        if self._run("health", self.check_health) and self._run("token", self.check_token):
            if self._run("recommendation", self.check_recommendation):
                self._run("event round trip", self.check_event_round_trip)
            self.erase_learner()
        session = self.options.session
        if session is None:
            import boto3

            session = boto3.Session()
        self._run("retraining", lambda: self.check_retraining(session))
        return self.report


def execution_states(sfn: Any, arn: str) -> list[StateRun]:
    """Each state the execution entered, in order, with how it ended so far."""
    states: list[StateRun] = []
    open_states: dict[str, StateRun] = {}
    last: StateRun | None = None
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        for event in page["events"]:
            kind = str(event["type"])
            if kind.endswith("StateEntered"):
                name = str(event["stateEnteredEventDetails"]["name"])
                last = StateRun(name, "entered")
                states.append(last)
                open_states[name] = last
            elif kind.endswith("StateExited"):
                name = str(event["stateExitedEventDetails"]["name"])
                run = open_states.pop(name, None)
                if run is not None and run.status == "entered":
                    run.status = "succeeded"
            elif (
                kind.endswith(("Failed", "TimedOut", "Aborted"))
                and last is not None
                and last.status == "entered"
            ):
                last.status = "failed"
                last.error = _failure(event)
    return states


def _failure(event: dict[str, Any]) -> str | None:
    for key, details in event.items():
        if key.endswith("EventDetails") and isinstance(details, dict):
            error, cause = details.get("error"), details.get("cause")
            if error or cause:
                text = f"{error or ''}: {cause or ''}".strip(": ")
                return text if len(text) <= 300 else text[:297] + "..."
    return None


def run_smoke(options: SmokeOptions) -> SmokeReport:
    return Smoke(options).run()


def format_table(report: SmokeReport) -> str:
    rows = [
        (c.name, "PASS" if c.ok else "FAIL", f"{c.seconds:.1f}s", c.detail) for c in report.checks
    ]
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"smoke check of {report.stage} at {report.api_url} (learner {report.learner})"]
    lines += [f"  {n:<{width}}  {s}  {t:>7}  {d}" for n, s, t, d in rows]
    if report.states:
        lines.append(f"  execution {report.execution_status}:")
        for state in report.states:
            why = f"  ({state.error})" if state.error else ""
            lines.append(f"    {state.status:<9} {state.name}{why}")
    lines.append("PASS" if report.ok else "FAIL")
    return "\n".join(lines)
