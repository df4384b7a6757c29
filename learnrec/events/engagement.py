"""Engagement by experiment variant and model version: CTR and completion rate.

The unit is an impression: one item shown to one learner in one recommendation
(``recommendation_id``, learner, item). It is *clicked* when a click echoes the same
recommendation id for that item, and *completed* when the learner completes the item
afterwards: a ``complete`` event either echoes the recommendation id or, as completions
usually come days later from another screen, is credited to the learner's latest earlier
impression of that item. Repeated clicks or completions count once, so both rates are
proportions of impressions and get Wilson score intervals (good at small counts and at
rates near 0, where the normal approximation is not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from learnrec.events.experiments import parse_recommendation_id

Z_95 = 1.959963984540054
GroupBy = Literal["variant", "model_version"]
_Impression = tuple[str, str, str]  # (recommendation id, hashed user id, content id)


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion; (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends, no float
    high = 1.0 if successes == trials else min(1.0, centre + half)  # dust
    return low, high


@dataclass(frozen=True)
class Rate:
    successes: int
    trials: int

    @property
    def value(self) -> float | None:
        return self.successes / self.trials if self.trials else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.trials)

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval
        return {"rate": self.value, "low": round(low, 6), "high": round(high, 6)}


@dataclass
class GroupEngagement:
    """One variant's (or model version's) impressions and what came of them."""

    name: str
    impressions: set[_Impression] = field(default_factory=set)
    clicked: set[_Impression] = field(default_factory=set)
    completed: set[_Impression] = field(default_factory=set)

    @property
    def ctr(self) -> Rate:
        return Rate(len(self.clicked), len(self.impressions))

    @property
    def completion_rate(self) -> Rate:
        return Rate(len(self.completed), len(self.impressions))

    def to_json(self) -> dict[str, Any]:
        return {
            "impressions": len(self.impressions),
            "clicks": len(self.clicked),
            "completions": len(self.completed),
            "ctr": self.ctr.to_json(),
            "completion_rate": self.completion_rate.to_json(),
        }


def engagement(
    events: Iterable[Mapping[str, Any]], by: GroupBy = "variant"
) -> list[GroupEngagement]:
    """Per group, sorted by name; events without an attributable recommendation are skipped."""
    ordered = sorted(events, key=_order)
    groups: dict[str, GroupEngagement] = {}
    group_of: dict[str, str] = {}  # recommendation id -> group name
    latest: dict[tuple[str, str], _Impression] = {}  # (user, item) -> latest impression
    for event in ordered:
        kind = event.get("event_type")
        user, item = str(event.get("user_id", "")), str(event.get("content_id", ""))
        rid = event.get("recommendation_id")
        if kind == "impression" and isinstance(rid, str):
            attribution = parse_recommendation_id(rid)
            if attribution is None:
                continue
            name = getattr(attribution, by) or "(none)"
            group_of[rid] = name
            impression = (rid, user, item)
            groups.setdefault(name, GroupEngagement(name)).impressions.add(impression)
            latest[(user, item)] = impression
        elif kind == "click" and isinstance(rid, str) and rid in group_of:
            impression = (rid, user, item)
            group = groups[group_of[rid]]
            if impression in group.impressions:
                group.clicked.add(impression)
        elif kind == "complete":
            echoed = (str(rid), user, item)
            credited: _Impression | None = latest.get((user, item))
            if rid in group_of and echoed in groups[group_of[str(rid)]].impressions:
                credited = echoed
            if credited is not None:
                groups[group_of[credited[0]]].completed.add(credited)
    return [groups[name] for name in sorted(groups)]


def _order(event: Mapping[str, Any]) -> tuple[datetime, bool]:
    """By time; at equal times the impression first (a click cannot precede its showing)."""
    try:
        ts = datetime.fromisoformat(str(event.get("ts")))
    except ValueError:
        ts = datetime.min
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts, event.get("event_type") != "impression"


def report_json(
    groups: list[GroupEngagement], by: GroupBy, window: tuple[datetime, datetime] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"by": by, "groups": {g.name: g.to_json() for g in groups}}
    if window:
        out["window"] = {"start": window[0].isoformat(), "end": window[1].isoformat()}
    return out


def format_table(groups: list[GroupEngagement], by: GroupBy) -> str:
    """A fixed-width table: rates in percent with their 95% intervals."""
    if not groups:
        return "no impressions with a recommendation_id in the window"
    header = (
        f"{by:<20} {'impressions':>11} {'clicks':>7} {'CTR (95% CI)':>26} "
        f"{'completed':>9} {'completion (95% CI)':>26}"
    )
    lines = [header, "-" * len(header)]
    for g in groups:
        lines.append(
            f"{g.name:<20} {len(g.impressions):>11} {len(g.clicked):>7} {_pct(g.ctr):>26} "
            f"{len(g.completed):>9} {_pct(g.completion_rate):>26}"
        )
    return "\n".join(lines)


def _pct(rate: Rate) -> str:
    if rate.value is None:
        return "-"
    low, high = rate.interval
    return f"{100 * rate.value:5.2f}% [{100 * low:5.2f}, {100 * high:5.2f}]"
