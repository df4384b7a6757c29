"""Population stability index, drift reports and the CloudWatch metric."""

from __future__ import annotations

import boto3
import numpy as np
import pandas as pd
from moto import mock_aws

from learnrec.pipeline import drift
from learnrec.pipeline.gate import decide


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = drift.profile(rng.normal(0, 1, 5000))
    assert abs(sum(reference["fractions"]) - 1) < 1e-9
    same = drift.psi(reference, rng.normal(0, 1, 5000))
    shifted = drift.psi(reference, rng.normal(1, 1, 5000))
    assert same is not None and same < 0.02
    assert shifted is not None and shifted > 0.2


def test_constant_and_empty_values_do_not_break_the_profile() -> None:
    constant = drift.profile([3.0] * 50)
    assert drift.psi(constant, [3.0] * 10) == 0.0
    assert drift.psi(drift.profile([]), [1.0]) is None
    assert drift.psi(constant, [np.nan]) is None


def test_the_report_takes_the_largest_psi_and_says_when_there_is_nothing_to_compare() -> None:
    interactions = pd.DataFrame(
        {"user_id": list("aabbbc"), "content_id": list("xyxyzx"), "weight": [1, 2, 1, 3, 1, 1.0]}
    )
    features = drift.feature_values(interactions)
    first = drift.drift_report(None, [], features)
    assert first["model_drift_score"] is None and "first version" in first["note"]
    reference = drift.build_profile([0.1, 0.2, 0.3, 0.4], features)
    report = drift.drift_report(reference, [5.0, 6.0], features)
    assert report["psi"]["feature:engagement"] == 0.0
    assert report["model_drift_score"] == report["psi"]["score"] > 1.0


@mock_aws
def test_the_score_is_published_as_a_cloudwatch_metric() -> None:
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    drift.publish(cloudwatch, 0.25, "dev")
    (metric,) = cloudwatch.list_metrics(Namespace="learnrec")["Metrics"]
    assert metric["MetricName"] == "model_drift_score"
    assert {"Name": "stage", "Value": "dev"} in metric["Dimensions"]


def test_the_gate() -> None:
    pop = {"ndcg@10": 0.30}
    refused = decide("ndcg@10", {"ndcg@10": 0.29}, pop, None, 0.01)
    assert not refused.passed and "does not beat popularity 0.3000" in refused.reason
    assert decide("ndcg@10", {"ndcg@10": 0.35}, pop, None, 0.01).passed
    worse = decide("ndcg@10", {"ndcg@10": 0.35}, pop, {"ndcg@10": 0.40}, 0.01, "v1")
    assert not worse.passed and "worse than the active model v1 (0.4000)" in worse.reason
    assert decide("ndcg@10", {"ndcg@10": 0.395}, pop, {"ndcg@10": 0.40}, 0.01).passed
