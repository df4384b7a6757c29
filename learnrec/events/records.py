"""One event's raw bytes -> a validated event, or the reason why not.

`POST /events` and the ingest function accept exactly the same events because both go
through :func:`parse_event`; producers get the same per-field messages from the API as
the dead-letter queue records for the stream. The archived form of an event
(:func:`archived_event`) always carries an ``event_id`` and holds no raw id: the user id
and the ids a client may derive from it (``event_id``, ``session_id``) are keyed hashes.

Producers that know the hash key (`POST /events`, :class:`learnrec.events.producer.
KinesisProducer` given the key) put that archived form on the stream, wrapped as
``{"stored": {...}}`` (:func:`stream_record`), so the stream never holds a raw id either;
the ingest function reads both shapes (:func:`read_stream_record`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
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

ID_FIELDS = ("user_id", "event_id", "session_id")
"""The fields that are, or may be built from, the learner's own id: stored only hashed."""


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


def stored_event_id(event: Event, hash_id: Callable[[str], str]) -> str:
    """The id an event is archived and de-duplicated under.

    A producer's own ``event_id`` may be built from the raw user id (``u123-0001``), so
    it is stored as its keyed hash (``hash_id``, the user id hasher): the same id gives
    the same hash, so de-duplication still works. An event sent without one gets
    :func:`derive_event_id`, built from hashed fields only (a UUID, never mistaken for
    a 32-hex-digit hash).
    """
    if event.event_id is not None:
        return hash_id(event.event_id)
    return derive_event_id(event, hash_id(event.user_id))


def archived_event(event: Event, hash_id: Callable[[str], str]) -> dict[str, Any]:
    """The event as stored in S3: JSON-ready, ``event_id`` set, no raw id in it.

    ``hash_id`` is the user id hasher; ``user_id``, ``event_id`` and ``session_id`` are
    all replaced by their keyed hashes (see :func:`stored_event_id`).
    """
    data = event.model_dump(mode="json", exclude_none=True)
    data["user_id"] = hash_id(event.user_id)
    data["event_id"] = stored_event_id(event, hash_id)
    if event.session_id is not None:
        data["session_id"] = hash_id(event.session_id)
    return data


STORED_ENVELOPE = "stored"
"""The one key of a pseudonymised stream record: ``{"stored": {...}}``."""
STORED_PREFIX = b'{"' + STORED_ENVELOPE.encode() + b'":'
"""How a pseudonymised stream record starts (:func:`stream_record` writes it so)."""


def stream_record(stored: dict[str, Any]) -> bytes:
    """The stream record of an event already in its archived (hashed) form."""
    return STORED_PREFIX + json.dumps(stored, separators=(",", ":")).encode() + b"}"


def read_stream_record(
    payload: bytes, hash_id: Callable[[str], str], window: EventWindow | None = None
) -> tuple[Event, dict[str, Any]] | Rejection:
    """One stream record -> (the event, its archived form), or why it is not an event.

    A raw event (sent by a producer without the hash key) is validated and hashed here;
    a pseudonymised one is validated as it is and not hashed again. Never raises for bad
    input.
    """
    if not payload.startswith(STORED_PREFIX):
        event = parse_event(payload, window)
        if isinstance(event, Rejection):
            return event
        return event, archived_event(event, hash_id)
    size = len(payload)
    if size > MAX_EVENT_BYTES + len(STORED_PREFIX) + 1:
        return Rejection(
            "oversized", (FieldError(field="(body)", message=_oversized_message(size)),)
        )
    try:
        envelope = json.loads(payload)
    except (RecursionError, ValueError):
        return Rejection(
            "malformed JSON", (FieldError(field="(body)", message="not a JSON object"),)
        )
    only_stored = isinstance(envelope, dict) and len(envelope) == 1
    stored = envelope.get(STORED_ENVELOPE) if only_stored else None
    if not isinstance(stored, dict) or not isinstance(stored.get("event_id"), str):
        return Rejection(
            "invalid event",
            (FieldError(field=STORED_ENVELOPE, message="a stored event with its event_id"),),
        )
    event = validate_event(stored, window)
    if isinstance(event, Rejection):
        return event
    return event, event.model_dump(mode="json", exclude_none=True)
