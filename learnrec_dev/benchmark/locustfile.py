"""locust tasks for ``learnrec benchmark load``: learners using the demo page's API.

Each simulated user is one demo learner (from the gateway's ``/ui/config.json``, with
their own bearer token) and behaves like the page: mostly asking for recommendations,
sometimes opening one (an impression, a click carrying the list's recommendation id and
a view go to ``POST /events``), looking at similar items or at what is trending. Think
time between actions is 1-3 s, so 100 users make about 50 requests a second.

This file runs inside locust's process only (gevent-patched); nothing else imports it.
"""

from __future__ import annotations

import json
import random
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.env import Environment

K = 10
_learners: list[dict[str, str]] = []


def _load_learners(environment: Environment, **_: Any) -> None:
    """Once per run: the demo learners and tokens the gateway minted."""
    with urllib.request.urlopen(f"{environment.host}/ui/config.json", timeout=30) as response:
        config = json.loads(response.read())
    _learners[:] = config["learners"]
    if not _learners:
        raise RuntimeError("the gateway's /ui/config.json lists no demo learners")


events.test_start.add_listener(_load_learners)  # type: ignore[no-untyped-call]


class Learner(FastHttpUser):
    wait_time = between(1, 3)

    def on_start(self) -> None:
        learner = random.choice(_learners)
        self.user_id = learner["user_id"]
        self.headers = {"Authorization": f"Bearer {learner['token']}"}
        self.last: dict[str, Any] | None = None

    @task(10)
    def recommend(self) -> None:
        with self.client.get(
            f"/recommend/{self.user_id}?k={K}",
            headers=self.headers,
            name="/recommend/{user_id}",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            body = response.json()
            if not body.get("recommendation_id"):
                response.failure("no recommendation_id in the response")
                return
            self.last = body

    @task(2)
    def open_one(self) -> None:
        if not self.last or not self.last["items"]:
            return
        shown = self.last
        clicked = random.choice(shown["items"])
        now = datetime.now(UTC).isoformat()
        base = {"user_id": self.user_id, "recommendation_id": shown["recommendation_id"], "ts": now}
        kinds = [(item["content_id"], "impression") for item in shown["items"]]
        kinds += [(clicked["content_id"], "click"), (clicked["content_id"], "view")]
        batch = [
            {**base, "event_id": str(uuid.uuid4()), "content_id": cid, "event_type": kind}
            for cid, kind in kinds
        ]
        with self.client.post(
            "/events", json=batch, headers=self.headers, name="/events", catch_response=True
        ) as response:
            if response.status_code != 202:
                response.failure(f"{response.status_code}: {response.text[:200]}")
            elif response.json().get("rejected"):
                response.failure(f"events rejected: {response.text[:200]}")

    @task(2)
    def similar(self) -> None:
        if not self.last or not self.last["items"]:
            return
        content_id = random.choice(self.last["items"])["content_id"]
        self.client.get(
            f"/similar/{content_id}?k={K}", headers=self.headers, name="/similar/{content_id}"
        )

    @task(1)
    def trending(self) -> None:
        self.client.get(f"/trending?k={K}", headers=self.headers, name="/trending")
