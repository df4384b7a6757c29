"""The HTTP API's own shapes: parameter types and response bodies.

They are the public contract (the OpenAPI spec, docs/API.md and API Gateway's request
validation are generated from them), kept apart from the domain's models in
:mod:`learnrec.schemas`, which the API accepts as bodies as they are.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, Field

from learnrec.events.producer import MAX_RECORDS_PER_CALL
from learnrec.events.records import MAX_EVENT_BYTES
from learnrec.schemas import MAX_LEVEL, MIN_LEVEL, FieldError

UserId = Annotated[str, Path(min_length=1, max_length=128)]
Level = Annotated[int, Field(ge=MIN_LEVEL, le=MAX_LEVEL)]
Topic = Annotated[str, Field(min_length=1, max_length=64)]
ItemId = Annotated[str, Field(min_length=1, max_length=128)]
MAX_BODY_BYTES = MAX_RECORDS_PER_CALL * (MAX_EVENT_BYTES + 2)
"""A full batch of the largest events, with room for the list's brackets and commas."""


class ItemOut(BaseModel):
    content_id: str
    title: str = Field(default="", description="the catalog's title; empty when it has none")
    score: float
    rank: int
    reason: str


class RecommendationsOut(BaseModel):
    user_id: str
    recommendation_id: str = Field(
        description="echo it in impression/click events: it names the variant and model"
    )
    model_version: str | None
    variant: str | None = Field(default=None, description="the experiment variant served")
    fallback: str | None = Field(description="set when a degraded path served the response")
    degraded: list[str]
    items: list[ItemOut]


class SimilarOut(BaseModel):
    content_id: str
    model_version: str | None
    fallback: str | None
    degraded: list[str] = Field(default=[], description="why a fallback served it, if one did")
    items: list[ItemOut]


class TrendingOut(BaseModel):
    window_days: int
    source: str = Field(description="recent_engagement, or model_popularity when none")
    degraded: list[str] = Field(
        default=[], description="set when a failing dependency left model_popularity"
    )
    items: list[ItemOut]


class EventResultOut(BaseModel):
    index: int
    accepted: bool
    event_id: str | None = Field(
        default=None,
        description="the id the event is stored under: the keyed hash of the event_id sent "
        "(it may be built from the user id), or the id derived for an event sent without one",
        examples=["9f86d081884c7d659a2feaa0c55ad015"],
    )
    errors: list[FieldError] = []
    recorded: bool = Field(
        default=True,
        description="false for an accepted event that is not recorded because its learner "
        "opted out or was erased",
    )


class EventsOut(BaseModel):
    accepted: int
    rejected: int
    results: list[EventResultOut]


class VersionsOut(BaseModel):
    active: str | None
    previous: list[str]
    versions: list[str]
