"""Stream records in both shapes: raw events (hashed on ingest) and pseudonymised ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from learnrec.events.records import (
    Rejection,
    archived_event,
    read_stream_record,
    stream_record,
)
from learnrec.identity import UserIdHasher
from learnrec.schemas import Event

HASH = UserIdHasher(b"unit-key")
TS = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
RAW = {"user_id": "ada", "content_id": "c1", "event_type": "view", "ts": TS, "session_id": "ada-s1"}


def test_a_raw_event_is_hashed_and_a_stored_one_read_as_it_is() -> None:
    from_raw = read_stream_record(json.dumps(RAW).encode(), HASH)
    assert not isinstance(from_raw, Rejection)
    event, stored = from_raw
    assert event.user_id == "ada"  # the event as sent; only the stored form is hashed
    assert stored == archived_event(Event.model_validate(RAW), HASH)
    assert "ada" not in json.dumps(stored)

    record = stream_record(stored)
    assert record.startswith(b'{"stored":') and b"ada" not in record
    again = read_stream_record(record, HASH)
    assert not isinstance(again, Rejection)
    assert again[1] == stored  # not hashed a second time


def test_a_stored_record_without_its_event_id_or_with_more_is_refused() -> None:
    stored = archived_event(Event.model_validate(RAW), HASH)
    no_id = {k: v for k, v in stored.items() if k != "event_id"}
    for payload in (
        stream_record(no_id),
        b'{"stored":' + json.dumps(stored).encode() + b',"user_id":"ada"}',
        b'{"stored": [1, 2]}',
        b'{"stored":{' + b"[" * 10_000,
    ):
        assert isinstance(read_stream_record(payload, HASH), Rejection), payload[:40]
    bad_field = stream_record({**stored, "event_type": "teleport"})
    rejection = read_stream_record(bad_field, HASH)
    assert isinstance(rejection, Rejection) and rejection.errors[0].field == "event_type"
