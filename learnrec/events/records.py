"""One event's raw bytes -> a validated event, or the reason why not.

`POST /events` and the ingest function accept exactly the same events because both go
through :func:`parse_event`; producers get the same per-field messages from the API as
the dead-letter queue records for the stream. The archived form of an event
(:func:`archived_event`) always carries an ``event_id`` and the hashed user id.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from learnrec.schemas import Event, EventWindow, FieldError, field_errors

MAX_EVENT_BYTES = 16 * 1024
"""An event is a few hundred bytes; anything this big is a producer bug, not an event.

Kinesis would take up to 1 MB, but every stored byte is kept for 90 days and read by
each retraining, so the limit is ours, stated in docs/EVENTS.md.
"""

# Fixed forever: derived ids must stay the same across releases, or a producer's retry
# of an id-less event after an upgrade would be counted twice.
EVENT_ID_NAMESPACE = uuid.UUID("6f1d7c1e-3a52-4b8e-9a55-2f1f0b6f3c11")


@dataclass(frozen=True)
class Rejection:
    """Why a payload is not an event: a short reason plus per-field detail."""

    reason: str
    errors: tuple[FieldError, ...] = ()

    def describe(self) -> str:
        detail = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        return f"{self.reason}: {detail}" if detail else self.reason


def parse_event(payload: bytes | str, window: EventWindow | None = None) -> Event | Rejection:
    """Validate one event's JSON; never raises for bad input.

    ``window`` bounds the timestamp to [now - retention, now + skew]: the edges that take
    events in pass one; without it only the clock (plus skew) bounds it.
    """
    size = len(payload.encode() if isinstance(payload, str) else payload)
    if size > MAX_EVENT_BYTES:
        return Rejection(
            "oversized", (FieldError(field="(body)", message=_oversized_message(size)),)
        )
    try:
        return Event.model_validate_json(payload, context=_context(window))
    except ValidationError as error:
        return _rejection(error)


def validate_event(value: Any, window: EventWindow | None = None) -> Event | Rejection:
    """Like :func:`parse_event` for an already-decoded JSON value (one item of a batch)."""
    try:
        size = len(json.dumps(value, separators=(",", ":"), default=str).encode())
    except (RecursionError, ValueError):  # nested past Python's stack, or a lone surrogate
        return Rejection(
            "invalid event",
            (FieldError(field="(body)", message="not an event: nested too deeply or not UTF-8"),),
        )
    if size > MAX_EVENT_BYTES:
        return Rejection(
            "oversized", (FieldError(field="(body)", message=_oversized_message(size)),)
        )
    try:
        return Event.model_validate(value, context=_context(window))
    except ValidationError as error:
        return _rejection(error)


def _context(window: EventWindow | None) -> dict[str, Any] | None:
    return window.context() if window is not None else None


def _oversized_message(size: int) -> str:
    return f"event is {size} bytes; at most {MAX_EVENT_BYTES} are accepted"


def _rejection(error: ValidationError) -> Rejection:
    errors = tuple(field_errors(error))
    if any(e["type"] == "json_invalid" for e in error.errors(include_url=False)):
        return Rejection("malformed JSON", errors)
    return Rejection("invalid event", errors)


def derive_event_id(event: Event, hashed_user_id: str) -> str:
    """A deterministic id for an event its producer sent without one.

    Built from the hashed user id (never the raw one: a plain hash of a raw id could be
    reversed by trying ids) and the fields that make an event what it is, so a producer's
    retry of the same event gets the same id and is stored once.
    """
    canonical = json.dumps(
        [
            hashed_user_id,
            event.content_id,
            event.event_type.value,
            event.value,
            event.ts.isoformat(),
        ],
        separators=(",", ":"),
    )
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, canonical))


def archived_event(event: Event, hashed_user_id: str) -> dict[str, Any]:
    """The event as stored in S3: JSON-ready, ``event_id`` set, user id hashed."""
    data = event.model_dump(mode="json", exclude_none=True)
    data["user_id"] = hashed_user_id
    data.setdefault("event_id", derive_event_id(event, hashed_user_id))
    return data
