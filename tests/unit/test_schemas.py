"""The domain contracts: valid input round-trips, bad input names the bad field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from learnrec.schemas import (
    EVENT_STRENGTH,
    MAX_CLOCK_SKEW,
    POSITIVE_EVENT_TYPES,
    ContentFormat,
    ContentItem,
    Event,
    EventType,
    Learner,
    describe_errors,
    field_errors,
)

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

ITEM = {
    "content_id": "py-101",
    "title": "Python basics",
    "topics": ["python", "programming"],
    "tags": ["concept:loops"],
    "level": 2,
    "format": "course",
    "duration_minutes": 95.5,
    "prerequisites": ["intro-cs"],
}
LEARNER = {"user_id": "u-1", "level": 3, "interests": ["python"], "goals": ["upskill"]}
EVENT = {
    "user_id": "u-1",
    "content_id": "py-101",
    "event_type": "progress",
    "value": 0.5,
    "ts": "2026-01-15T12:00:00Z",
    "event_id": "e-1",
    "recommendation_id": "r-1",
    "session_id": "s-1",
    "context": {"surface": "home", "position": 3},
}


def _error(model: type[BaseModel], data: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return info.value


def _fields(error: ValidationError) -> list[str]:
    return [e.field for e in field_errors(error)]


# --- valid input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "data"), [(ContentItem, ITEM), (Learner, LEARNER), (Event, EVENT)]
)
def test_valid_models_round_trip_through_json(model: type[BaseModel], data: dict[str, Any]) -> None:
    parsed = model.model_validate(data)
    assert model.model_validate_json(parsed.model_dump_json()) == parsed
    assert model.model_validate(parsed.model_dump(mode="json")) == parsed


def test_valid_item_fields_are_typed() -> None:
    item = ContentItem.model_validate(ITEM)
    assert item.format is ContentFormat.COURSE
    assert item.level == 2
    assert item.prerequisites == ["intro-cs"]


def test_minimal_models_take_defaults() -> None:
    item = ContentItem(content_id="a")
    assert (item.title, item.topics, item.tags, item.prerequisites) == ("", [], [], [])
    assert item.level is None and item.format is None and item.duration_minutes is None
    learner = Learner(user_id="u")
    assert learner.level is None and learner.interests == [] and learner.goals == []


def test_identifiers_are_stripped() -> None:
    assert Learner(user_id="  u-1 ").user_id == "u-1"
    assert ContentItem(content_id=" a ", topics=[" x "]).topics == ["x"]


def test_event_ts_is_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = Event.model_validate(EVENT | {"ts": datetime(2026, 1, 15, 14, 0, tzinfo=plus_two)})
    assert event.ts == T0
    assert event.ts.utcoffset() == timedelta(0)


def test_event_ts_within_clock_skew_is_accepted() -> None:
    ts = datetime.now(UTC) + MAX_CLOCK_SKEW - timedelta(minutes=1)
    assert Event.model_validate(EVENT | {"ts": ts}).ts == ts


def test_event_strength_follows_event_type() -> None:
    assert Event.model_validate(EVENT | {"event_type": "complete"}).strength == 4.0
    assert Event.model_validate(EVENT | {"event_type": "impression"}).strength == 0.0


def test_models_are_frozen() -> None:
    learner = Learner(user_id="u")
    with pytest.raises(ValidationError):
        learner.user_id = "v"


# --- bad input: each error names its field ----------------------------------------------


@pytest.mark.parametrize(
    ("model", "data", "field"),
    [
        pytest.param(ContentItem, ITEM | {"level": 7}, "level", id="item-level-7"),
        pytest.param(ContentItem, ITEM | {"level": 0}, "level", id="item-level-0"),
        pytest.param(Learner, LEARNER | {"level": 7}, "level", id="learner-level-7"),
        pytest.param(Event, EVENT | {"event_type": "watch"}, "event_type", id="event-type-watch"),
        pytest.param(Event, EVENT | {"ts": "2026-01-15T12:00:00"}, "ts", id="naive-ts-text"),
        pytest.param(Event, EVENT | {"ts": datetime(2026, 1, 15, 12)}, "ts", id="naive-ts"),
        pytest.param(Learner, LEARNER | {"user_id": ""}, "user_id", id="empty-user-id"),
        pytest.param(Learner, LEARNER | {"user_id": "   "}, "user_id", id="blank-user-id"),
        pytest.param(Event, EVENT | {"user_id": ""}, "user_id", id="event-empty-user-id"),
        pytest.param(ContentItem, ITEM | {"content_id": "x" * 129}, "content_id", id="long-id"),
        pytest.param(ContentItem, ITEM | {"format": "podcast"}, "format", id="unknown-format"),
        pytest.param(ContentItem, ITEM | {"duration_minutes": -1}, "duration_minutes", id="neg"),
        pytest.param(ContentItem, ITEM | {"topics": ["ok", ""]}, "topics.1", id="empty-topic"),
        pytest.param(Learner, LEARNER | {"favourite": "x"}, "favourite", id="extra-learner"),
        pytest.param(ContentItem, ITEM | {"author": "x"}, "author", id="extra-item"),
        pytest.param(Event, EVENT | {"device": "ios"}, "device", id="extra-event"),
        pytest.param(Event, EVENT | {"value": float("nan")}, "value", id="nan-value"),
        pytest.param(Event, EVENT | {"value": float("inf")}, "value", id="inf-value"),
        pytest.param(Event, EVENT | {"value": 1e7}, "value", id="huge-value"),
        pytest.param(Event, {k: v for k, v in EVENT.items() if k != "ts"}, "ts", id="no-ts"),
    ],
)
def test_bad_field_is_named(model: type[BaseModel], data: dict[str, Any], field: str) -> None:
    error = _error(model, data)
    assert _fields(error) == [field]
    assert describe_errors(error).startswith(f"{field}: ")


def test_future_ts_is_rejected_and_named() -> None:
    error = _error(Event, EVENT | {"ts": datetime.now(UTC) + timedelta(days=1)})
    assert _fields(error) == ["ts"]
    assert "in the future" in describe_errors(error)


def test_naive_ts_message_asks_for_a_timezone() -> None:
    error = _error(Event, EVENT | {"ts": "2026-01-15T12:00:00"})
    assert "timezone" in describe_errors(error)


def test_nan_value_in_json_is_rejected() -> None:
    raw = (
        '{"user_id":"u","content_id":"c","event_type":"rate","value":NaN,'
        '"ts":"2026-01-15T12:00:00Z"}'
    )
    with pytest.raises(ValidationError) as info:
        Event.model_validate_json(raw)
    assert _fields(info.value) == ["value"]


def test_item_listing_itself_as_prerequisite_is_rejected() -> None:
    error = _error(ContentItem, ITEM | {"prerequisites": ["intro-cs", "py-101"]})
    text = describe_errors(error)
    assert "py-101" in text
    assert "prerequisite" in text


def test_self_prerequisite_is_caught_after_stripping() -> None:
    error = _error(ContentItem, {"content_id": "a", "prerequisites": [" a "]})
    assert "prerequisite" in describe_errors(error)


def test_self_prerequisite_error_names_the_prerequisites_field() -> None:
    error = _error(ContentItem, ITEM | {"prerequisites": ["py-101"]})
    assert _fields(error) == ["prerequisites"]


def test_several_bad_fields_are_all_reported() -> None:
    error = _error(Event, EVENT | {"user_id": "", "event_type": "watch", "value": float("nan")})
    assert sorted(_fields(error)) == ["event_type", "user_id", "value"]
    text = describe_errors(error)
    assert text.count("; ") == 2
    for name in ("user_id: ", "event_type: ", "value: "):
        assert name in text


def test_field_errors_carry_plain_messages() -> None:
    error = _error(ContentItem, ITEM | {"level": 7})
    (only,) = field_errors(error)
    assert only.field == "level"
    assert "5" in only.message
    assert "http" not in only.message


# --- event strengths --------------------------------------------------------------------


def test_event_strength_covers_every_event_type() -> None:
    assert set(EVENT_STRENGTH) == set(EventType)
    assert all(strength >= 0 for strength in EVENT_STRENGTH.values())


def test_positive_event_types_exclude_impression_and_dislike() -> None:
    assert EventType.IMPRESSION not in POSITIVE_EVENT_TYPES
    assert EventType.DISLIKE not in POSITIVE_EVENT_TYPES
    assert set(EventType) - POSITIVE_EVENT_TYPES == {EventType.IMPRESSION, EventType.DISLIKE}


def test_completion_is_stronger_than_a_view() -> None:
    assert EVENT_STRENGTH[EventType.COMPLETE] > EVENT_STRENGTH[EventType.START]
    assert EVENT_STRENGTH[EventType.START] > EVENT_STRENGTH[EventType.VIEW]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ts": "0001-01-01T00:00:00+05:00"}, "ts"),
        ({"ts": "9999-12-31T23:00:00-05:00"}, "ts"),
        ({"content_id": "a\x00b"}, "content_id"),
        ({"event_id": "\x1b[0m"}, "event_id"),
        ({"context": {"a": {"b": {"c": {"d": 1}}}}}, "context"),
        ({"context": {"x": "\x00"}}, "context"),
        ({"context": {"n": float("inf")}}, "context"),
        ({"context": {"blob": "x" * 5000}}, "context"),
    ],
)
def test_every_event_field_is_bounded(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        Event.model_validate(EVENT | change)
    assert error.value.errors()[0]["loc"][0] == field


def test_the_window_bounds_timestamps_by_the_callers_clock() -> None:
    from learnrec.schemas import EventWindow

    now = datetime(2026, 6, 1, tzinfo=UTC)
    window = EventWindow(retention=timedelta(days=90), now=now).context()
    inside = EVENT | {"ts": (now - timedelta(days=89)).isoformat()}
    assert Event.model_validate(inside, context=window).ts == now - timedelta(days=89)
    with pytest.raises(ValidationError, match="retention of 90 days"):
        Event.model_validate(EVENT | {"ts": (now - timedelta(days=91)).isoformat()}, context=window)
    with pytest.raises(ValidationError, match="future"):
        Event.model_validate(
            EVENT | {"ts": (now + timedelta(minutes=6)).isoformat()}, context=window
        )
