"""Every synthesized S3 lifecycle rule, checked as S3 would check it at deploy time.

CloudFormation hands each bucket's ``LifecycleConfiguration`` to S3's
PutBucketLifecycleConfiguration; S3 rejects the whole bucket for one invalid rule. The
rules are translated to the API's names and validated against botocore's service model
(types, required members, enums, lengths, patterns) and against the rules S3 enforces
beyond the model (from the API reference of LifecycleRule and LifecycleExpiration).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.model import Shape
from botocore.session import get_session
from botocore.validate import ParamValidator

from .conftest import Synthesized

OPERATION = get_session().get_service_model("s3").operation_model("PutBucketLifecycleConfiguration")

# CloudFormation's Rule property -> the API's LifecycleRule member (nested where needed).
_PASS_THROUGH = {
    "Id": "ID",
    "Status": "Status",
    "NoncurrentVersionExpiration": "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload": "AbortIncompleteMultipartUpload",
}
_FILTER = {"Prefix", "TagFilters", "ObjectSizeGreaterThan", "ObjectSizeLessThan"}
_EXPIRATION = {
    "ExpirationInDays": "Days",
    "ExpirationDate": "Date",
    "ExpiredObjectDeleteMarker": "ExpiredObjectDeleteMarker",
}


def api_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """The API's LifecycleRule for a CloudFormation ``Rule``; unknown keys fail the test."""
    out: dict[str, Any] = {}
    expiration: dict[str, Any] = {}
    conditions: dict[str, Any] = {}
    for key, value in rule.items():
        if key in _PASS_THROUGH:
            out[_PASS_THROUGH[key]] = value
        elif key in _EXPIRATION:
            expiration[_EXPIRATION[key]] = value
        elif key in _FILTER:
            conditions[key] = value
        elif key == "NoncurrentVersionExpirationInDays":
            out["NoncurrentVersionExpiration"] = {"NoncurrentDays": value}
        elif key in ("Transitions", "NoncurrentVersionTransitions"):
            days = "Days" if key == "Transitions" else "NoncurrentDays"
            out[key] = [
                {
                    **({"StorageClass": t["StorageClass"]}),
                    **({days: t["TransitionInDays"]} if "TransitionInDays" in t else {}),
                    **({"Date": t["TransitionDate"]} if "TransitionDate" in t else {}),
                }
                for t in value
            ]
        else:
            raise AssertionError(f"no translation for the CloudFormation rule property {key}")
    if expiration:
        out["Expiration"] = expiration
    tags = [{"Key": t["Key"], "Value": t["Value"]} for t in conditions.pop("TagFilters", [])]
    if len(conditions) + len(tags) > 1:
        out["Filter"] = {"And": {**conditions, **({"Tags": tags} if tags else {})}}
    elif tags:
        out["Filter"] = {"Tag": tags[0]}
    else:
        out["Filter"] = conditions or {"Prefix": ""}
    return out


def s3_rule_errors(rules: list[dict[str, Any]]) -> list[str]:
    """What S3 would refuse in these API rules beyond the model's types."""
    errors: list[str] = []
    ids = [rule.get("ID") for rule in rules]
    if len(rules) > 1000:
        errors.append("more than 1000 rules")
    if len(set(ids)) != len(ids):
        errors.append(f"rule IDs are not unique: {ids}")
    for rule in rules:
        name = rule.get("ID", "?")
        expiration = rule.get("Expiration", {})
        if "ExpiredObjectDeleteMarker" in expiration and (
            "Days" in expiration or "Date" in expiration
        ):
            errors.append(f"{name}: ExpiredObjectDeleteMarker cannot be combined with Days/Date")
        if "Days" in expiration and "Date" in expiration:
            errors.append(f"{name}: Expiration takes Days or Date, not both")
        filters = rule.get("Filter", {})
        tagged = "Tag" in filters or "Tags" in filters.get("And", {})
        if tagged and expiration.get("ExpiredObjectDeleteMarker"):
            errors.append(f"{name}: ExpiredObjectDeleteMarker cannot be used with tag filters")
        if tagged and "AbortIncompleteMultipartUpload" in rule:
            errors.append(f"{name}: AbortIncompleteMultipartUpload cannot be used with tags")
        for path, value in (
            ("Expiration.Days", expiration.get("Days")),
            (
                "NoncurrentVersionExpiration.NoncurrentDays",
                rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays"),
            ),
            (
                "AbortIncompleteMultipartUpload.DaysAfterInitiation",
                rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation"),
            ),
        ):
            if value is not None and (not isinstance(value, int) or value <= 0):
                errors.append(f"{name}: {path} must be a positive integer, got {value!r}")
        actions = {
            "Expiration",
            "Transitions",
            "NoncurrentVersionExpiration",
            "NoncurrentVersionTransitions",
            "AbortIncompleteMultipartUpload",
        }
        if not actions & set(rule):
            errors.append(f"{name}: a rule needs at least one action")
        if len(str(name)) > 255:
            errors.append(f"{name[:20]}...: ID longer than 255 characters")
    return errors


def model_errors(value: Any, shape: Shape, path: str = "") -> list[str]:
    """Enums, lengths/ranges and patterns, which botocore's own validator skips."""
    errors: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure":
        for key, item in value.items():
            errors += model_errors(item, shape.members[key], f"{path}.{key}")
    elif shape.type_name == "list":
        errors += _bounds(len(value), meta, path)
        for index, item in enumerate(value):
            errors += model_errors(item, shape.member, f"{path}[{index}]")
    elif shape.type_name == "string":
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            errors.append(f"{path}: {value!r} not one of {enum}")
        errors += _bounds(len(value), meta, path)
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
    elif shape.type_name in ("integer", "long"):
        errors += _bounds(value, meta, path)
    return errors


def _bounds(size: int, meta: dict[str, Any], path: str) -> list[str]:
    low, high = meta.get("min"), meta.get("max")
    if (low is not None and size < low) or (high is not None and size > high):
        return [f"{path}: {size} outside [{low}, {high}]"]
    return []


def validate(rules: list[dict[str, Any]]) -> list[str]:
    params = {"Bucket": "learnrec-test-bucket", "LifecycleConfiguration": {"Rules": rules}}
    report = ParamValidator().validate(params, OPERATION.input_shape)
    errors = [report.generate_report()] if report.has_errors() else []
    errors += model_errors(params, OPERATION.input_shape)
    return errors + s3_rule_errors(rules)


def test_every_synthesized_lifecycle_rule_is_one_s3_accepts(each_stage: Synthesized) -> None:
    buckets = each_stage.resources("AWS::S3::Bucket")
    checked = 0
    for logical_id, bucket in buckets.items():
        rules = bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
        api_rules = [api_rule(rule) for rule in rules]
        assert validate(api_rules) == [], logical_id
        checked += len(api_rules)
    assert checked >= 6  # the data bucket's five rules and the access logs' one


def test_the_raw_events_rule_expires_without_a_delete_marker_flag(
    each_stage: Synthesized,
) -> None:
    rules = [
        rule
        for bucket in each_stage.resources("AWS::S3::Bucket").values()
        for rule in bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
        if rule.get("Id") == "raw-events-retention"
    ]
    assert len(rules) == 1
    assert rules[0]["ExpirationInDays"] == each_stage.config.event_retention_days
    assert "ExpiredObjectDeleteMarker" not in rules[0]


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        (  # what the stack used to send: S3 refuses it, even with false
            {
                "Id": "raw-events-retention",
                "Status": "Enabled",
                "Prefix": "events/",
                "ExpirationInDays": 90,
                "ExpiredObjectDeleteMarker": False,
            },
            "ExpiredObjectDeleteMarker cannot be combined with Days/Date",
        ),
        ({"Id": "x", "Status": "On", "ExpirationInDays": 1}, "'On' not one of"),
        ({"Id": "x", "Status": "Enabled", "ExpirationInDays": 0}, "positive integer"),
        ({"Id": "x", "Status": "Enabled", "Prefix": "a/"}, "at least one action"),
        (
            {
                "Id": "x",
                "Status": "Enabled",
                "TagFilters": [{"Key": "k", "Value": "v"}],
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            },
            "cannot be used with tags",
        ),
        ({"Id": "x", "Status": "Enabled", "ExpirationInDays": "90"}, "Invalid type"),
    ],
)
def test_the_checks_catch_what_s3_refuses(rule: dict[str, Any], error: str) -> None:
    errors = validate([api_rule(rule)])
    assert any(error in message for message in errors), errors
