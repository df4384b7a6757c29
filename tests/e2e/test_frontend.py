"""The demo page in headless Chromium against the whole local stack.

Pick a learner, see recommendations with reasons, open one: the page posts an
impression for every item shown, a click carrying the list's recommendation id and a
view, the poller hands them to the ingest handler, and the next list no longer offers
the item the learner just opened.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.conftest import Stack
from learnrec.config import Settings
from learnrec.identity import hash_user_id, user_id_hash_key

# Waiting for the page is bounded, never a pass condition: generous, so a busy machine
# only makes the test slower.
WAIT_MS = 25_000


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _stream_events(stack: Stack) -> list[dict[str, Any]]:
    """Every event on the stream, read back from its oldest record."""
    events: list[dict[str, Any]] = []
    for shard in stack.kinesis.list_shards(StreamName=stack.names.events_stream)["Shards"]:
        iterator = stack.kinesis.get_shard_iterator(
            StreamName=stack.names.events_stream,
            ShardId=shard["ShardId"],
            ShardIteratorType="TRIM_HORIZON",
        )["ShardIterator"]
        while iterator:
            response = stack.kinesis.get_records(ShardIterator=iterator, Limit=1000)
            # The API streams events as they are archived: {"stored": {...}}, ids hashed.
            events.extend(json.loads(record["Data"])["stored"] for record in response["Records"])
            if not response["Records"]:
                break
            iterator = response.get("NextShardIterator")
    return events


def _shown(page: Any) -> list[str]:
    return [
        str(item.get_attribute("data-content-id"))
        for item in page.get_by_test_id("recommendation").all()
    ]


def test_pick_a_learner_open_a_recommendation_and_see_the_list_change(
    stack: Stack, page: Any
) -> None:
    from playwright.sync_api import expect

    page.goto(f"{stack.gateway.url}/ui/")
    select = page.get_by_label("Learner")
    expect(select.locator("option")).to_have_count(len(stack.learners))
    learner = stack.learners[1]
    select.select_option(learner)
    status = page.get_by_test_id("status")
    expect(status).to_contain_text(f"recommendations for {learner}.")

    items = page.get_by_test_id("recommendation")
    expect(items.first).to_be_visible()
    assert items.count() >= 2
    for reason in page.get_by_test_id("reason").all():
        assert reason.inner_text().strip(), "every recommendation says why"
    ranks = [r.inner_text() for r in page.get_by_test_id("rank").all()]
    assert ranks == [f"#{i}" for i in range(1, len(ranks) + 1)]
    expect(page.get_by_test_id("served-by")).to_contain_text("Personalised by model")
    before = _shown(page)
    recommendation_id = page.get_by_test_id("recommendations").get_attribute(
        "data-recommendation-id"
    )
    assert recommendation_id

    clicked = before[0]
    title = items.first.get_by_test_id("title").inner_text().strip()
    assert title and title != clicked, "items are shown by their catalog title"
    items.first.get_by_role("button", name=f"Open {title}").click()
    expect(status).to_contain_text("Updated", timeout=WAIT_MS)

    after = _shown(page)
    assert after and after != before
    assert clicked not in after, "an item the learner opened is not offered again"
    new_id = page.get_by_test_id("recommendations").get_attribute("data-recommendation-id")
    assert new_id and new_id != recommendation_id

    echoed = [e for e in _stream_events(stack) if e.get("recommendation_id") == recommendation_id]
    kinds = {(e["event_type"], e["content_id"]) for e in echoed}
    assert {("impression", cid) for cid in before} <= kinds
    assert ("click", clicked) in kinds and ("view", clicked) in kinds
    key = user_id_hash_key(Settings(user_id_hash_secret_id=stack.names.user_id_hash_secret))
    assert {e["user_id"] for e in echoed} == {hash_user_id(learner, key)}
    assert stack.poller.handled >= len(echoed)
