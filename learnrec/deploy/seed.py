"""``learnrec deploy seed``: a fresh stage gets a catalog and events through its own API.

A new deployment has neither, and the first retraining needs both. This sends the
sample generator's catalog with ``PUT /admin/catalog`` and its events with ``POST
/events`` (batches of at most 500, the route's limit), the way a platform's backends
would, so the events take the production path: API -> Kinesis -> ingest -> S3 archive
and history. Tokens are signed with the key ``learnrec deploy bootstrap`` made; the
admin role loads the catalog, the service role sends events on the learners' behalf.
Events are sent with their ids, so running it again is safe: the ingest ledger skips
what it has seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from learnrec.deploy.api_client import EVENTS_PER_REQUEST, batches, request_json
from learnrec.deploy.smoke import CheckFailedError

ITEMS_PER_REQUEST = 200  # keeps a catalog request far below API Gateway's 10 MB


@dataclass(frozen=True)
class SeedOptions:
    api_url: str
    private_key: Path
    issuer: str | None = None
    audience: str | None = None
    users: int = 1000
    items: int = 500
    events: int = 10_000
    seed: int = 42


@dataclass(frozen=True)
class SeedReport:
    items: int
    events_sent: int
    events_accepted: int
    rejected: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.rejected and self.events_accepted == self.events_sent


def seed(options: SeedOptions, progress: Callable[[str], None] = print) -> SeedReport:
    """Send the sample catalog and events; raise :class:`CheckFailedError` on a refusal."""
    from learnrec.data.generator import generate, recent
    from learnrec.serving.auth import Role, issue_token, key_id, public_pem_of

    base = options.api_url.rstrip("/")
    private_pem = options.private_key.read_text(encoding="ascii")
    kid = key_id(public_pem_of(private_pem))

    def token(subject: str, role: Role) -> str:
        return issue_token(
            private_pem,
            subject,
            [role],
            ttl_seconds=3600,
            issuer=options.issuer,
            audience=options.audience,
            kid=kid,
        )

    # Recent: the stage refuses events older than its retention.
    data = recent(
        generate(
            users=options.users, items=options.items, events=options.events, seed=options.seed
        ),
        datetime.now(UTC),
    )
    items = [item.model_dump(mode="json", exclude_none=True) for item in data.items]
    admin = token("learnrec-seed", Role.ADMIN)
    for chunk in batches(items, ITEMS_PER_REQUEST):
        status, _, body = request_json("PUT", f"{base}/admin/catalog", admin, list(chunk))
        if status != 200:
            raise CheckFailedError(f"PUT /admin/catalog answered {status}: {body}")
    progress(f"catalog: {len(items)} items loaded")

    events = [event.model_dump(mode="json", exclude_none=True) for event in data.events]
    service = token("learnrec-seed", Role.SERVICE)
    accepted = 0
    rejected: list[str] = []
    for number, chunk in enumerate(batches(events, EVENTS_PER_REQUEST), start=1):
        status, _, body = request_json("POST", f"{base}/events", service, list(chunk))
        # 202: at least one accepted; 400: none was. Either way each event has its result.
        if status not in (202, 400) or not isinstance(body, dict) or "results" not in body:
            raise CheckFailedError(f"POST /events answered {status}: {body}")
        for result in body["results"]:
            if result["accepted"]:
                accepted += 1
            else:
                rejected.append(f"event {result.get('event_id')}: {result.get('errors')}")
        progress(f"events: {min(number * EVENTS_PER_REQUEST, len(events))} of {len(events)} sent")
    return SeedReport(len(items), len(events), accepted, tuple(rejected))
