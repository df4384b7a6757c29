"""Synthetic learning-platform data with structure a recommender can learn.

The generative story
--------------------
1. **Topics** have unequal appeal (a Zipf prior): a few subjects draw most learners,
   which is all that a popularity baseline can exploit.
2. **Items** belong to one main topic (sometimes a second one), have a difficulty level
   1-5, a format and a duration. Within a topic, items form **tracks**: prerequisite
   chains of rising level (item k of a track requires item k-1). Each item also has a
   hidden *appeal* drawn from a log-normal, which gives the catalog its long tail.
3. **Learners** have a hidden skill (1-5, continuous) and hidden topic interests that
   concentrate on one main topic with a little spread over the rest. What they declare
   in their profile (level, interests, goals) is that truth seen through noise: levels
   off by one, interests missing or partial, goals that carry no signal.
4. **Activity** has a long tail too, as on real MOOC platforms: most registered learners
   never engage or only look at one thing; about a third are active, with a log-normal
   number of events.
5. **Choices**: an active learner repeatedly picks the next item by a softmax over the
   utility ``u(l, i)`` (interest in the item's topics, appeal, the distance between item
   level and learner skill, and a penalty for missing prerequisites). With probability
   ``NOISE`` the pick is instead a random popular item: noise.
6. **Progress sequences**: the learner views the item, and with a probability that grows
   with ``u`` starts it, progresses and completes it; completions at or above their
   skill make learners better (skill grows over time). Sometimes they bookmark, like,
   rate, or dislike a poor pick.

``truth.json`` keeps the hidden parameters, so evaluation can simulate how a learner
would respond to a recommendation list (:func:`click_probability`): the quality
benchmark's simulated CTR lift is measured against the generator's own preference model.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learnrec.data.dataset import (
    Dataset,
    empty_interactions,
    interactions_from_events,
    items_frame,
    learners_frame,
    make_dataset,
)
from learnrec.schemas import ContentFormat, ContentItem, Event, EventType, Learner

TOPIC_NAMES = [
    "python",
    "data-analysis",
    "machine-learning",
    "web-development",
    "databases",
    "statistics",
    "algorithms",
    "cloud",
    "security",
    "design",
    "mathematics",
    "writing",
    "project-management",
    "networking",
    "mobile",
    "devops",
    "english",
    "economics",
    "physics",
    "biology",
]
GOALS = ["career-change", "exam-prep", "upskill", "hobby", "certification"]
DEFAULT_END = datetime(2026, 9, 1, tzinfo=UTC)

# Utility weights of the hidden preference model.
W_INTEREST = 4.0
W_SECOND_TOPIC = 0.5
W_APPEAL = 0.8
W_LEVEL_GAP = 1.1
W_MISSING_PREREQ = 1.5
CHOICE_TEMPERATURE = 0.6
NOISE = 0.1
ACTIVE_FRACTION = 0.3
VISITOR_ONE_EVENT = 0.5
# Click model used by the simulation: p = sigmoid(CLICK_SLOPE * (u - CLICK_OFFSET)).
CLICK_SLOPE = 1.2
CLICK_OFFSET = 2.5


@dataclass(frozen=True)
class GeneratedData:
    items: list[ContentItem]
    learners: list[Learner]
    events: list[Event]
    truth: dict[str, Any] | None


def _sigmoid(x: float | np.ndarray) -> Any:
    return 1.0 / (1.0 + np.exp(-x))


def _make_items(
    rng: np.random.Generator, n_items: int, topics: list[str]
) -> tuple[list[ContentItem], np.ndarray, np.ndarray, np.ndarray]:
    """Items in prerequisite tracks; returns items, main topic, second topic, appeal."""
    n_topics = len(topics)
    main_topic = rng.integers(0, n_topics, size=n_items)
    main_topic.sort(kind="stable")
    second_topic = np.where(rng.random(n_items) < 0.25, rng.integers(0, n_topics, size=n_items), -1)
    second_topic = np.where(second_topic == main_topic, -1, second_topic)
    appeal = rng.lognormal(mean=0.0, sigma=0.8, size=n_items)
    appeal = np.log(appeal / appeal.mean())  # centred log-appeal: long-tailed popularity
    levels = np.zeros(n_items, dtype=int)
    prereqs: list[list[int]] = [[] for _ in range(n_items)]
    for t in range(n_topics):
        members = np.flatnonzero(main_topic == t)
        rng.shuffle(members)
        start = 0
        while start < len(members):
            length = int(rng.integers(2, 6))
            track = members[start : start + length]
            first_level = int(rng.integers(1, 6 - min(len(track), 5) + 1))
            for k, idx in enumerate(track):
                levels[idx] = min(5, first_level + k)
                if k > 0:
                    prereqs[idx] = [int(track[k - 1])]
            start += length
    formats = list(ContentFormat)
    items = []
    for i in range(n_items):
        item_topics = [topics[main_topic[i]]]
        if second_topic[i] >= 0:
            item_topics.append(topics[second_topic[i]])
        fmt = formats[int(rng.integers(0, len(formats)))]
        items.append(
            ContentItem(
                content_id=f"c{i:05d}",
                title=f"{topics[main_topic[i]].replace('-', ' ').title()} {fmt.value} {i}",
                topics=item_topics,
                level=int(levels[i]),
                format=fmt,
                duration_minutes=float(np.round(rng.lognormal(3.3, 0.7), 1)),
                prerequisites=[f"c{p:05d}" for p in prereqs[i]],
            )
        )
    return items, main_topic, second_topic, appeal


def _utility(
    interest: np.ndarray,
    skill: float,
    main_topic: np.ndarray,
    second_topic: np.ndarray,
    appeal: np.ndarray,
    levels: np.ndarray,
    missing_prereq: np.ndarray,
) -> np.ndarray:
    """The hidden utility u(l, i) of every item for one learner (shape [n_items])."""
    second = np.where(second_topic >= 0, interest[np.maximum(second_topic, 0)], 0.0)
    utility: np.ndarray = (
        W_INTEREST * interest[main_topic]
        + W_SECOND_TOPIC * W_INTEREST * second
        + W_APPEAL * appeal
        - W_LEVEL_GAP * np.abs(levels - skill)
        - W_MISSING_PREREQ * missing_prereq
    )
    return utility


def generate(
    users: int = 1000,
    items: int = 500,
    events: int = 10_000,
    seed: int = 42,
    end: datetime = DEFAULT_END,
) -> GeneratedData:
    """Generate a catalog, learner profiles and an event log (see the module docstring)."""
    if users < 1 or items < 2 or events < 1:
        raise ValueError("need at least 1 user, 2 items and 1 event")
    rng = np.random.default_rng(seed)
    n_topics = int(min(len(TOPIC_NAMES), max(4, round(items / 50))))
    topics = TOPIC_NAMES[:n_topics]
    catalog, main_topic, second_topic, appeal = _make_items(rng, items, topics)
    levels = np.array([item.level for item in catalog], dtype=float)
    prereq_index = [[int(p[1:]) for p in item.prerequisites] for item in catalog]
    # Tracks are chains, so an item has at most one prerequisite: -1 where none.
    prereq_of = np.array([p[0] if p else -1 for p in prereq_index])

    topic_prior = 1.0 / np.arange(1, n_topics + 1) ** 0.8
    topic_prior /= topic_prior.sum()
    topic_prior = topic_prior[rng.permutation(n_topics)]

    learners: list[Learner] = []
    interests = np.zeros((users, n_topics))
    skills = np.zeros(users)
    for u in range(users):
        main = int(rng.choice(n_topics, p=topic_prior))
        spread = rng.dirichlet(np.full(n_topics, 0.3))
        interests[u] = 0.8 * np.eye(n_topics)[main] + 0.2 * spread
        skills[u] = float(np.clip(rng.normal(2.6, 1.1), 1.0, 5.0))
        declared_level = int(np.clip(round(skills[u]) + rng.choice([-1, 0, 0, 0, 1]), 1, 5))
        declared: list[str] = []
        if rng.random() < 0.75:
            declared.append(topics[main])
            second_best = int(np.argsort(interests[u])[-2])
            if rng.random() < 0.3:
                declared.append(topics[second_best])
        learners.append(
            Learner(
                user_id=f"u{u:05d}",
                level=declared_level if rng.random() < 0.85 else None,
                interests=declared,
                goals=[GOALS[int(rng.integers(0, len(GOALS)))]] if rng.random() < 0.6 else [],
            )
        )
    initial_skills = skills.copy()

    budget = _event_budget(rng, users, events)
    popular = np.exp(W_APPEAL * appeal)
    popular /= popular.sum()
    log: list[Event] = []
    for active_user in np.flatnonzero(budget > 0):
        u = int(active_user)
        log.extend(
            _learner_events(
                rng,
                u,
                int(budget[u]),
                interests[u],
                skills,
                main_topic,
                second_topic,
                appeal,
                levels,
                prereq_of,
                popular,
                end,
            )
        )
    log.sort(key=lambda e: (e.ts, e.user_id, e.content_id))
    log = _with_ids(log, seed)
    truth = {
        "topics": topics,
        "weights": {
            "interest": W_INTEREST,
            "second_topic": W_SECOND_TOPIC,
            "appeal": W_APPEAL,
            "level_gap": W_LEVEL_GAP,
            "missing_prereq": W_MISSING_PREREQ,
            "click_slope": CLICK_SLOPE,
            "click_offset": CLICK_OFFSET,
        },
        "items": {
            "content_id": [item.content_id for item in catalog],
            "main_topic": main_topic.tolist(),
            "second_topic": second_topic.tolist(),
            "appeal": np.round(appeal, 6).tolist(),
            "level": levels.tolist(),
            "prerequisites": prereq_index,
        },
        "learners": {
            "user_id": [learner.user_id for learner in learners],
            "interest": np.round(interests, 6).tolist(),
            "skill": np.round(skills, 6).tolist(),
            "initial_skill": np.round(initial_skills, 6).tolist(),
        },
    }
    return GeneratedData(catalog, learners, log, truth)


def _event_budget(rng: np.random.Generator, users: int, events: int) -> np.ndarray:
    """How many events each learner produces: visitors 0-1, active learners a long tail."""
    active = rng.random(users) < ACTIVE_FRACTION
    if not active.any():
        active[int(rng.integers(0, users))] = True
    budget = np.zeros(users, dtype=int)
    visitors = np.flatnonzero(~active)
    one_event = visitors[rng.random(len(visitors)) < VISITOR_ONE_EVENT]
    budget[one_event] = 1
    remaining = max(0, events - int(budget.sum()))
    weights = rng.lognormal(0.0, 0.7, size=int(active.sum()))
    budget[active] = rng.multinomial(remaining, weights / weights.sum())
    overflow = int(budget.sum()) - events
    if overflow > 0:  # fewer events than visitors: trim the visitors' single events
        budget[one_event[:overflow]] = 0
    return budget


def _with_ids(log: list[Event], seed: int) -> list[Event]:
    """Random event ids, and one random session id per learner and day.

    Built from a generator of their own (the same ids for the same seed, and the
    behaviour's random draws unchanged), never from the user id: an id like
    ``u00042-00007`` would carry the raw learner id into every store that keeps it.
    """
    rng = np.random.default_rng([seed, 0x1D5])

    def new_id() -> str:
        return str(uuid.UUID(bytes=rng.bytes(16), version=4))

    sessions: dict[tuple[str, int], str] = {}
    out = []
    for event in log:
        key = (event.user_id, int(event.ts.timestamp()) // 86400)
        if key not in sessions:
            sessions[key] = new_id()
        out.append(event.model_copy(update={"event_id": new_id(), "session_id": sessions[key]}))
    return out


def _learner_events(
    rng: np.random.Generator,
    u: int,
    budget: int,
    interest: np.ndarray,
    skills: np.ndarray,
    main_topic: np.ndarray,
    second_topic: np.ndarray,
    appeal: np.ndarray,
    levels: np.ndarray,
    prereq_of: np.ndarray,
    popular: np.ndarray,
    end: datetime,
) -> list[Event]:
    n_items = len(levels)
    user_id = f"u{u:05d}"
    completed = np.zeros(n_items, dtype=bool)
    touched = np.zeros(n_items, dtype=bool)
    clock = end - timedelta(days=float(rng.uniform(30, 180)))
    out: list[Event] = []

    def emit(item: int, kind: EventType, value: float | None = None) -> None:
        nonlocal clock
        clock += timedelta(minutes=float(rng.exponential(25.0)) + 1.0)
        out.append(
            Event(
                user_id=user_id,
                content_id=f"c{item:05d}",
                event_type=kind,
                value=value,
                ts=min(clock, end),
            )
        )

    while len(out) < budget and not touched.all():
        missing = ((prereq_of >= 0) & ~completed[np.maximum(prereq_of, 0)]).astype(float)
        utility = _utility(interest, skills[u], main_topic, second_topic, appeal, levels, missing)
        if rng.random() < NOISE:
            weights = np.where(touched, 0.0, popular)
        else:
            logits = np.where(touched, -np.inf, utility / CHOICE_TEMPERATURE)
            weights = np.exp(logits - logits[~touched].max())
        item = int(rng.choice(n_items, p=weights / weights.sum()))
        touched[item] = True
        u_item = float(utility[item])
        clock += timedelta(hours=float(rng.exponential(36.0)))
        emit(item, EventType.VIEW)
        if rng.random() < 0.05:
            emit(item, EventType.BOOKMARK)
        if u_item < 0.0 and rng.random() < 0.1:
            emit(item, EventType.DISLIKE)
            continue
        # Most views go no further (a MOOC funnel); those who start mostly carry on,
        # and the better the fit, the further they get.
        start_chance = float(_sigmoid(u_item - 3.6))
        carry_on_chance = float(_sigmoid(u_item - 2.0))
        steps = [EventType.START, EventType.PROGRESS, EventType.COMPLETE]
        for step in steps:
            chance = start_chance if step is EventType.START else carry_on_chance
            if len(out) >= budget or rng.random() > chance:
                break
            if step is EventType.PROGRESS:
                emit(item, step, value=float(np.round(rng.uniform(0.2, 0.9), 2)))
            else:
                emit(item, step, value=1.0 if step is EventType.COMPLETE else None)
            if step is EventType.COMPLETE:
                completed[item] = True
                if levels[item] >= skills[u] - 0.5:
                    skills[u] = min(5.0, skills[u] + 0.25)
                if rng.random() < 0.2:
                    rating = float(np.clip(round(3 + u_item / 2 + rng.normal(0, 0.7)), 1, 5))
                    emit(item, EventType.RATE, value=rating)
                elif rng.random() < 0.1:
                    emit(item, EventType.LIKE)
    return out[:budget]


def click_probability(
    truth: dict[str, Any], user_id: str, content_ids: Sequence[str], completed: Iterable[str] = ()
) -> np.ndarray:
    """Chance that the learner clicks each item, by the generator's own preferences.

    Uses the learner's final skill and treats the given items as completed for the
    prerequisite penalty, so a list that respects the learner's path scores higher.
    """
    items = truth["items"]
    learners = truth["learners"]
    weights = truth["weights"]
    index = {cid: i for i, cid in enumerate(items["content_id"])}
    row = learners["user_id"].index(user_id)
    interest = np.asarray(learners["interest"][row])
    skill = float(learners["skill"][row])
    done = {index[c] for c in completed if c in index}
    rows = np.array([index[c] for c in content_ids], dtype=int)
    main = np.asarray(items["main_topic"])[rows]
    second = np.asarray(items["second_topic"])[rows]
    missing = np.array(
        [
            sum(p not in done for p in items["prerequisites"][r])
            / max(1, len(items["prerequisites"][r]))
            for r in rows
        ]
    )
    second_interest = np.where(second >= 0, interest[np.maximum(second, 0)], 0.0)
    utility = (
        weights["interest"] * interest[main]
        + weights["second_topic"] * weights["interest"] * second_interest
        + weights["appeal"] * np.asarray(items["appeal"])[rows]
        - weights["level_gap"] * np.abs(np.asarray(items["level"])[rows] - skill)
        - weights["missing_prereq"] * missing
    )
    return np.asarray(_sigmoid(weights["click_slope"] * (utility - weights["click_offset"])))


def write_sample(data: GeneratedData, out: Path) -> dict[str, Path]:
    """Write catalog, learners and events as JSON lines, plus the hidden truth."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "catalog": out / "catalog.jsonl",
        "learners": out / "learners.jsonl",
        "events": out / "events.jsonl",
        "truth": out / "truth.json",
    }
    _write_jsonl(
        paths["catalog"], (item.model_dump(mode="json", exclude_none=True) for item in data.items)
    )
    _write_jsonl(
        paths["learners"], (lr.model_dump(mode="json", exclude_none=True) for lr in data.learners)
    )
    _write_jsonl(
        paths["events"], (ev.model_dump(mode="json", exclude_none=True) for ev in data.events)
    )
    if data.truth is not None:
        paths["truth"].write_text(json.dumps(data.truth, separators=(",", ":")))
    return paths


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            if "ts" in row:
                row["ts"] = row["ts"].replace("+00:00", "Z")
            handle.write(json.dumps(row, separators=(",", ":"), sort_keys=True) + "\n")


def to_dataset(data: GeneratedData, name: str = "sample") -> Dataset:
    """The generated data as a :class:`Dataset` (events become interactions)."""
    events = pd.DataFrame([e.model_dump() for e in data.events])
    return make_dataset(
        name,
        interactions_from_events(events) if len(events) else empty_interactions(),
        items=items_frame(data.items),
        learners=learners_frame(data.learners),
        truth=data.truth,
    )


def read_sample_models(directory: Path) -> tuple[list[ContentItem], list[Learner]]:
    """The catalog and learner profiles of a sample folder, validated."""
    items = [ContentItem.model_validate_json(line) for line in _lines(directory / "catalog.jsonl")]
    learners = [Learner.model_validate_json(line) for line in _lines(directory / "learners.jsonl")]
    return items, learners


def read_sample(directory: Path, name: str = "sample") -> Dataset:
    """Read what :func:`write_sample` wrote, validating every row on the way in."""
    items, learners = read_sample_models(directory)
    events = [Event.model_validate_json(line) for line in _lines(directory / "events.jsonl")]
    truth_path = directory / "truth.json"
    truth = json.loads(truth_path.read_text()) if truth_path.exists() else None
    return to_dataset(GeneratedData(items, learners, events, truth), name)


def _lines(path: Path) -> Iterable[str]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield line


SAMPLE_RECENT_DAYS = 80.0
"""How far back a sample sent through the API reaches: inside the default 90-day event
retention (events older than a stage's retention are refused), with a margin."""


def recent(data: GeneratedData, end: datetime, days: float = SAMPLE_RECENT_DAYS) -> GeneratedData:
    """The same data on a timeline that ends at ``end`` and spans at most ``days``.

    Generated learners start up to half a year before the end; a sample seeded into a
    stage through ``POST /events`` must fall within the stage's retention, so its
    timeline is moved and, when longer, scaled (order and relative spacing kept).
    """
    if not data.events:
        return data
    first = min(e.ts for e in data.events)
    last = max(e.ts for e in data.events)
    span = last - first
    scale = min(1.0, timedelta(days=days) / span) if span else 1.0
    events = [e.model_copy(update={"ts": end - (last - e.ts) * scale}) for e in data.events]
    return GeneratedData(data.items, data.learners, events, data.truth)
