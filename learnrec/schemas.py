"""The domain model: content items, learners and learning events.

These are the contracts that the API, the event stream, the importers and the training
jobs share (see DESIGN.md, "Contracts"). Validation lives here, once, so that every
entry point rejects the same bad input with the same per-field message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]

MIN_LEVEL = 1
MAX_LEVEL = 5
# Producers' clocks drift; anything further ahead than this is a bug, not skew.
MAX_CLOCK_SKEW = timedelta(minutes=5)


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
    title: str = Field(default="", max_length=512)
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
    def _utc_and_not_in_future(cls, ts: datetime) -> datetime:
        if ts.tzinfo is None:
            raise ValueError("ts must carry a timezone (ISO 8601 UTC, e.g. 2026-01-31T12:00:00Z)")
        ts = ts.astimezone(UTC)
        if ts > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError(f"ts {ts.isoformat()} is in the future")
        return ts

    @property
    def strength(self) -> float:
        """How strongly this event says the learner wanted the item (0 = not at all)."""
        return EVENT_STRENGTH[self.event_type]


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
