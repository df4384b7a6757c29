"""``POST /events``: learners' engagement, checked as the ingest function checks it,
onto the stream."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pydantic_core
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from learnrec.events.producer import MAX_RECORDS_PER_CALL, KinesisEventSink
from learnrec.events.records import Rejection, stored_event_id, validate_event
from learnrec.schemas import Event, FieldError
from learnrec.serving.auth import authorize_events
from learnrec.serving.deps import EventsCaller, EventSink, Store, UserKeys, Window
from learnrec.serving.readiness import DATABASE_DOWN, DependencyUnavailableError, unavailable
from learnrec.serving.schemas_http import MAX_BODY_BYTES, EventResultOut, EventsOut
from learnrec.storage import CatalogStore

logger = logging.getLogger("learnrec.serving")
router = APIRouter()

STREAM_UNAVAILABLE = "the event stream is unavailable; send the events again"
STREAM_REFUSED = "the event stream did not take this event; send it again"

Valid = list[tuple[int, Event, str]]
"""(index in the request, the event, the id it is stored under)."""


@router.post("/events", status_code=202, response_model=EventsOut)
async def post_events(
    request: Request,
    caller: EventsCaller,
    store: Store,
    sink: EventSink,
    user_key: UserKeys,
    window: Window,
) -> JSONResponse:
    data = await request.body()
    if len(data) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes; send fewer events")
    try:  # jiter stops at depth 200, where json.loads would exhaust the stack
        body = pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError:
        raise HTTPException(400, "the body is not valid JSON") from None
    raw = body if isinstance(body, list) else [body]
    if not raw or len(raw) > MAX_RECORDS_PER_CALL:
        raise HTTPException(400, f"send 1 to {MAX_RECORDS_PER_CALL} events per request")
    results: list[EventResultOut] = []
    valid: Valid = []
    for index, item in enumerate(raw):
        # The same checks, and messages, as the ingest function applies to the stream.
        checked = validate_event(item, window)
        if isinstance(checked, Rejection):
            results.append(EventResultOut(index=index, accepted=False, errors=list(checked.errors)))
            continue
        # Tell the producer the id its event is stored under: the ingest function
        # hashes a sent id and derives the same id for an event sent without one.
        valid.append((index, checked, stored_event_id(checked, user_key)))
    # Which learners the events are for is known only now: a batch is all or nothing.
    authorize_events(caller, {e.user_id for _, e, _ in valid})
    untracked = _untracked(store, user_key, {e.user_id for _, e, _ in valid})
    results.extend(
        EventResultOut(index=index, accepted=True, event_id=event_id, recorded=False)
        for index, event, event_id in valid
        if event.user_id in untracked
    )
    results.extend(_send_events(sink, [v for v in valid if v[1].user_id not in untracked]))
    results.sort(key=lambda r: r.index)
    accepted = sum(r.accepted for r in results)
    out = EventsOut(accepted=accepted, rejected=len(results) - accepted, results=results)
    status = 202 if accepted else 400
    return JSONResponse(out.model_dump(mode="json"), status_code=status)


def _untracked(store: CatalogStore, user_key: Callable[[str], str], user_ids: set[str]) -> set[str]:
    """The raw ids among ``user_ids`` of learners who opted out or were erased.

    Their events never reach the stream. Without the database the ingest function, which
    checks again, drops them instead: accepting events must not depend on it.
    """
    keys = {user_key(user_id): user_id for user_id in user_ids}
    try:
        untracked = store.untracked_among(keys)
    except DATABASE_DOWN as error:
        logger.warning("events sent without the tombstone check: %s", type(error).__name__)
        return set()
    return {keys[key] for key in untracked}


def _send_events(sink: KinesisEventSink | None, valid: Valid) -> list[EventResultOut]:
    """Put the valid events on the stream; one result each.

    When the stream took none of them (down, throttled, misconfigured) the whole request
    is a 503 with ``Retry-After``, so producers retry rather than drop events as
    "rejected". Kinesis's own messages name the stream's endpoint and account, so a
    refused event's error is a fixed text and the detail goes to the log.
    """
    if not valid:
        return []
    if sink is None:
        raise DependencyUnavailableError("event_stream", "the event stream is not configured")
    try:
        sent = sink.put([e for _, e, _ in valid])
    except Exception as error:
        unavailable("event_stream", STREAM_UNAVAILABLE, error)
    refused = [outcome.error for outcome in sent if not outcome.accepted]
    if refused:
        logger.warning(
            "event stream refused %d of %d events: %s", len(refused), len(sent), refused[0]
        )
    if len(refused) == len(sent):
        raise DependencyUnavailableError("event_stream", STREAM_UNAVAILABLE)
    return [
        EventResultOut(
            index=index,
            accepted=outcome.accepted,
            event_id=event_id,
            errors=[]
            if outcome.accepted
            else [FieldError(field="(stream)", message=STREAM_REFUSED)],
        )
        for (index, _, event_id), outcome in zip(valid, sent, strict=True)
    ]
