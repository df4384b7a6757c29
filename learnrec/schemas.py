"""The domain model: content items, learners and learning events.

These are the contracts that the API, the event stream, the importers and the training
jobs share. Validation lives here, once, so that every
entry point rejects the same bad input with the same per-field message.
"""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)


def _printable(value: str) -> str:
    """Refuse control characters and lone surrogates in any stored string.

    A NUL is valid JSON and a valid Python string, but PostgreSQL refuses it in text
    columns, and a lone surrogate cannot be encoded as UTF-8: either would fail the
    database write or the archive of every event stored with it, again on every retry.
    """
    for position, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ValueError(
                f"must not contain control characters (U+{ord(char):04X} at {position})"
            )
    return value


Identifier = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
    AfterValidator(_printable),
]
Token = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64),
    AfterValidator(_printable),
]
Text = Annotated[str, AfterValidator(_printable)]

MIN_LEVEL = 1
MAX_LEVEL = 5
# Producers' clocks drift; anything further ahead than this is a bug, not skew.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Events older than the archive keeps them (the stage's event_retention_days) would be
# expired on arrival, or kept past the retention that the privacy notice promises.
DEFAULT_EVENT_RETENTION = timedelta(days=90)
# An event's free-form context: enough for a page, a device and a few flags.
MAX_CONTEXT_DEPTH = 4
MAX_CONTEXT_KEYS = 64
MAX_CONTEXT_KEY_CHARS = 64
MAX_CONTEXT_BYTES = 4096
MAX_CONTEXT_INT = 2**53  # what every JSON reader (and the training jobs) reads exactly


@dataclass(frozen=True)
class EventWindow:
    """The timestamps an arriving event may carry: [now - retention, now + skew].

    The edges that take events in (``POST /events``, the ingest function) validate with
    one, passed as pydantic's validation context (:meth:`context`); events read back from
    the archive or a generated data set are validated without, so old events stay
    readable. ``now`` is the caller's clock (None: the system clock at validation).
    """

    retention: timedelta = DEFAULT_EVENT_RETENTION
    skew: timedelta = MAX_CLOCK_SKEW
    now: datetime | None = None

    def bounds(self) -> tuple[datetime, datetime]:
        now = self.now or datetime.now(UTC)
        return now - self.retention, now + self.skew

    def context(self) -> dict[str, Any]:
        return {WINDOW_CONTEXT: self}


WINDOW_CONTEXT = "event_window"


class EventType(StrEnum):
    """What a learner did with a content item."""

    IMPRESSION = "impression"
    CLICK = "click"
    VIEW = "view"
    START = "start"
    PROGRESS = "progress"
    COMPLETE = "complete"
    LIKE = "like"
    DISLIKE = "dislike"
    BOOKMARK = "bookmark"
    RATE = "rate"


# How much each event says that the learner wanted the item. Impressions say nothing
# (the system chose them) and dislikes say the opposite, so neither is a positive.
EVENT_STRENGTH: dict[EventType, float] = {
    EventType.IMPRESSION: 0.0,
    EventType.CLICK: 1.0,
    EventType.VIEW: 1.0,
    EventType.START: 2.0,
    EventType.PROGRESS: 2.5,
    EventType.COMPLETE: 4.0,
    EventType.LIKE: 3.0,
    EventType.DISLIKE: 0.0,
    EventType.BOOKMARK: 2.0,
    EventType.RATE: 1.0,
}
POSITIVE_EVENT_TYPES = frozenset(t for t, s in EVENT_STRENGTH.items() if s > 0)


class ContentFormat(StrEnum):
    COURSE = "course"
    LESSON = "lesson"
    EXERCISE = "exercise"
    VIDEO = "video"
    ARTICLE = "article"
    QUIZ = "quiz"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class ContentItem(_Strict):
    """A course, lesson or exercise that can be recommended.

    `tags` carries any further categorical features (for example knowledge-graph
    concepts); the item tower reads topics, tags, level and format, which is how an
    item that no learner has touched yet still gets an embedding.
    """

    content_id: Identifier
    title: Text = Field(default="", max_length=512)
    topics: list[Token] = Field(default_factory=list, max_length=64)
    tags: list[Token] = Field(default_factory=list, max_length=512)
    level: int | None = Field(default=None, ge=MIN_LEVEL, le=MAX_LEVEL)
    format: ContentFormat | None = None
    duration_minutes: float | None = Field(default=None, ge=0, le=100_000)
    prerequisites: list[Identifier] = Field(default_factory=list, max_length=64)

    @field_validator("prerequisites")
    @classmethod
    def _not_its_own_prerequisite(cls, prerequisites: list[str], info: ValidationInfo) -> list[str]:
        content_id = info.data.get("content_id")
        if content_id is not None and content_id in prerequisites:
            raise ValueError(f"item {content_id!r} lists itself as a prerequisite")
        return prerequisites


class Learner(_Strict):
    """A learner's declared profile: enough to personalise before any event arrives."""

    user_id: Identifier
    level: int | None = Field(default=None, ge=MIN_LEVEL, le=MAX_LEVEL)
    interests: list[Token] = Field(default_factory=list, max_length=64)
    goals: list[Token] = Field(default_factory=list, max_length=64)


class Event(_Strict):
    """One learning event, as producers send it to `POST /events` or to Kinesis."""

    user_id: Identifier
    content_id: Identifier
    event_type: EventType
    value: float | None = Field(default=None, ge=-1e6, le=1e6, allow_inf_nan=False)
    ts: datetime
    event_id: Identifier | None = None
    recommendation_id: Identifier | None = None
    session_id: Identifier | None = None
    context: dict[str, Any] | None = None

    @field_validator("ts")
    @classmethod
    def _utc_and_in_window(cls, ts: datetime, info: ValidationInfo) -> datetime:
        if ts.tzinfo is None:
            raise ValueError("ts must carry a timezone (ISO 8601 UTC, e.g. 2026-01-31T12:00:00Z)")
        window = (info.context or {}).get(WINDOW_CONTEXT)
        if not isinstance(window, EventWindow):  # a stored event: only the clock bounds it
            window = EventWindow(retention=timedelta.max - timedelta(days=1))
        # Compared before converting: aware datetimes compare across offsets without
        # arithmetic, while converting 0001-01-01T00:00+05:00 to UTC overflows.
        now = window.now or datetime.now(UTC)
        if ts > now + window.skew:
            raise ValueError(f"ts {ts.isoformat()} is in the future (more than the allowed skew)")
        if ts - now < -window.retention:
            raise ValueError(
                f"ts {ts.isoformat()} is older than the retention of {window.retention.days} days"
            )
        try:
            return ts.astimezone(UTC)
        except OverflowError:  # the first or last hours of year 1 or 9999
            raise ValueError(f"ts {ts.isoformat()} is out of range") from None

    @field_validator("context")
    @classmethod
    def _bounded_context(cls, context: dict[str, Any] | None) -> dict[str, Any] | None:
        if context is None:
            return None
        _check_json(context, 1)
        size = len(json.dumps(context, separators=(",", ":")).encode())
        if size > MAX_CONTEXT_BYTES:
            raise ValueError(f"context is {size} bytes; at most {MAX_CONTEXT_BYTES} are accepted")
        return context

    @property
    def strength(self) -> float:
        """How strongly this event says the learner wanted the item (0 = not at all)."""
        return EVENT_STRENGTH[self.event_type]


def _check_json(value: Any, depth: int) -> None:
    """Bound a free-form JSON value: depth, keys, numbers, and printable strings."""
    if depth > MAX_CONTEXT_DEPTH:
        raise ValueError(f"context is nested deeper than {MAX_CONTEXT_DEPTH} levels")
    if isinstance(value, dict):
        if len(value) > MAX_CONTEXT_KEYS:
            raise ValueError(f"context has an object of over {MAX_CONTEXT_KEYS} keys")
        for key, item in value.items():
            if not isinstance(key, str) or not 0 < len(key) <= MAX_CONTEXT_KEY_CHARS:
                raise ValueError(f"context keys must be 1 to {MAX_CONTEXT_KEY_CHARS} characters")
            _printable(key)
            _check_json(item, depth + 1)
    elif isinstance(value, list):
        if len(value) > MAX_CONTEXT_KEYS:
            raise ValueError(f"context has a list of over {MAX_CONTEXT_KEYS} items")
        for item in value:
            _check_json(item, depth + 1)
    elif isinstance(value, str):
        _printable(value)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if abs(value) > MAX_CONTEXT_INT:
            raise ValueError(f"context numbers must be within +-{MAX_CONTEXT_INT}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("context numbers must be finite")
    else:
        raise ValueError(f"context holds a {type(value).__name__}, which is not JSON")


class FieldError(BaseModel):
    """One thing wrong with one field, worded for the person who sent it."""

    field: str
    message: str


def field_errors(error: ValidationError) -> list[FieldError]:
    """Flatten pydantic's errors into `field: message` pairs a producer can act on."""
    out = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "(body)"
        out.append(FieldError(field=location, message=item["msg"]))
    return out


def describe_errors(error: ValidationError) -> str:
    """One line per bad field, for command-line tools and logs."""
    return "; ".join(f"{e.field}: {e.message}" for e in field_errors(error))
