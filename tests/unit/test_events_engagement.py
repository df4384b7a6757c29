"""Experiment assignment, recommendation ids and the engagement report's arithmetic."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from learnrec.events.engagement import engagement, wilson_interval
from learnrec.events.experiments import (
    Experiment,
    ExperimentConfigError,
    PinnedModels,
    new_recommendation_id,
    parse_recommendation_id,
)
from learnrec_dev.cli import main


def test_assignment_is_stable_and_follows_the_weights() -> None:
    experiment = Experiment.parse(
        '{"control": {"model_version": "v1", "weight": 3}, "treatment": "v2"}'
    )
    assert experiment is not None
    users = [f"user-hash-{i}" for i in range(8000)]
    first = [experiment.assign(u).name for u in users]
    assert first == [experiment.assign(u).name for u in users]
    share = Counter(first)["control"] / len(users)
    assert 0.72 < share < 0.78  # 3:1
    renamed = Experiment("another", experiment.variants)
    moved = sum(a != renamed.assign(u).name for a, u in zip(first, users, strict=True))
    assert moved > 1000  # a new experiment reshuffles learners


@pytest.mark.parametrize(
    "text",
    [
        "[1]",
        "{}",
        "not json",
        '{"bad name!": "v1"}',
        '{"a": {"weight": -1}}',
        '{"a": {"weight": 0}}',
    ],
)
def test_bad_variant_configuration_is_refused(text: str) -> None:
    with pytest.raises(ExperimentConfigError):
        Experiment.parse(text)


def test_no_configuration_means_no_experiment() -> None:
    assert Experiment.parse(None) is None and Experiment.parse("  ") is None


def test_recommendation_ids_carry_variant_and_model() -> None:
    rid = new_recommendation_id("treatment", "20260101T020000Z")
    attribution = parse_recommendation_id(rid)
    assert attribution and attribution.variant == "treatment"
    assert attribution.model_version == "20260101T020000Z"
    plain = parse_recommendation_id(new_recommendation_id(None, None))
    assert plain and plain.variant is None and plain.model_version is None
    assert parse_recommendation_id("some-uuid-from-elsewhere") is None
    assert len(new_recommendation_id("x" * 32, "v" * 60)) <= 128  # fits an Identifier


def test_pinned_models_load_once_and_remember_failures() -> None:
    loads: list[str] = []
    clock = [0.0]

    def fetch(version: str) -> Path:
        if version == "missing":
            raise FileNotFoundError("no such version")
        return Path(version)

    def load(path: Path) -> str:
        loads.append(str(path))
        return str(path)

    pinned = PinnedModels(fetch, load, 60, lambda: clock[0])
    assert pinned.get("v2") == "v2" and pinned.get("v2") == "v2" and loads == ["v2"]
    assert pinned.get("missing") is None and "no such version" in (pinned.error("missing") or "")


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.05523, abs=1e-4) and high == pytest.approx(0.17437, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and 0 < high < 0.08


def _events(rid_a: str, rid_b: str) -> list[dict[str, Any]]:
    def e(kind: str, user: str, item: str, ts: str, rid: str | None = None) -> dict[str, Any]:
        out = {"event_type": kind, "user_id": user, "content_id": item, "ts": ts}
        return out if rid is None else {**out, "recommendation_id": rid}

    return [
        e("impression", "u1", "i1", "2026-01-01T10:00:00Z", rid_a),
        e("impression", "u1", "i2", "2026-01-01T10:00:00Z", rid_a),
        e("click", "u1", "i1", "2026-01-01T10:01:00Z", rid_a),
        e("click", "u1", "i1", "2026-01-01T10:02:00Z", rid_a),  # a double click counts once
        e("complete", "u1", "i1", "2026-01-03T09:00:00Z"),  # later, without the id
        e("impression", "u2", "i1", "2026-01-01T10:00:00.500000Z", rid_b),
        e("click", "u2", "i9", "2026-01-01T10:01:00Z", rid_b),  # not an impressed item
        e("click", "u3", "i1", "2026-01-01T10:01:00Z"),  # no recommendation id
    ]


def test_ctr_and_completion_by_variant() -> None:
    rid_a = new_recommendation_id("control", "v1")
    rid_b = new_recommendation_id("treatment", "v2")
    groups = {g.name: g for g in engagement(_events(rid_a, rid_b))}
    assert groups["control"].ctr.successes == 1 and groups["control"].ctr.trials == 2
    assert groups["control"].completion_rate.successes == 1
    assert groups["treatment"].ctr.successes == 0 and groups["treatment"].ctr.trials == 1
    by_model = {g.name for g in engagement(_events(rid_a, rid_b), by="model_version")}
    assert by_model == {"v1", "v2"}


def test_report_command_prints_rates_with_intervals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rid_a = new_recommendation_id("control", "v1")
    rid_b = new_recommendation_id("treatment", "v2")
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in _events(rid_a, rid_b)))
    assert main(["report", "engagement", "--events", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    control = report["groups"]["control"]
    assert control["ctr"]["rate"] == 0.5 and control["ctr"]["low"] < 0.5 < control["ctr"]["high"]
    assert main(["report", "engagement", "--events", str(path)]) == 0
    table = capsys.readouterr().out
    assert "control" in table and "50.00%" in table and "treatment" in table
