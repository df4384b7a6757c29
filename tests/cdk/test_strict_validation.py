"""The strict validator and the state machine evaluator can fail, and fail for the right
reasons (no synthesis needed)."""

from __future__ import annotations

import re
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from .asl import AslError, Execution, TaskCall, choice_matches, intrinsic, put_result, template
from .strict_validation import (
    PatternError,
    category_ranges,
    compiled,
    python_pattern,
    strict_errors,
)

SAGEMAKER = botocore.session.get_session().get_service_model("sagemaker")


def processing_job(**changes: Any) -> dict[str, Any]:
    """A valid CreateProcessingJob request (the shape the state machine sends)."""
    request: dict[str, Any] = {
        "ProcessingJobName": "learnrec-20261108T020000Z-ranking-build-dataset",
        "RoleArn": "arn:aws:iam::123456789012:role/JobsRole-AbCdEf123456",
        "AppSpecification": {
            "ImageUri": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/tensorflow-training:2.19",
            "ContainerEntrypoint": ["bash", "-c", "exec python3 sagemaker_entry.py"],
            "ContainerArguments": ["training/pipeline_step.py", "build_dataset"],
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 30,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 10800},
        "Environment": {"VECTOR_INDEX": "opensearch"},
    }
    request.update(changes)
    return request


def errors(operation: str, request: dict[str, Any]) -> list[str]:
    shape = SAGEMAKER.operation_model(operation).input_shape
    return strict_errors(shape, request)


def botocore_accepts(operation: str, request: dict[str, Any]) -> bool:
    shape = SAGEMAKER.operation_model(operation).input_shape
    return not ParamValidator().validate(request, shape).has_errors()


def test_a_valid_request_passes() -> None:
    assert errors("CreateProcessingJob", processing_job()) == []


def test_a_container_argument_over_256_characters_is_refused() -> None:
    """The defect this validator exists for: botocore's own check lets it through."""
    app = processing_job()["AppSpecification"]
    fits = processing_job(AppSpecification={**app, "ContainerArguments": ["x" * 256]})
    assert errors("CreateProcessingJob", fits) == []
    long = processing_job(AppSpecification={**app, "ContainerArguments": ["x" * 257]})
    assert botocore_accepts("CreateProcessingJob", long)
    found = errors("CreateProcessingJob", long)
    assert len(found) == 1
    assert "ContainerArguments[0]: size 257 is above the maximum 256" in found[0]


def test_a_job_name_over_63_characters_or_with_underscores_is_refused() -> None:
    long = processing_job(ProcessingJobName="learnrec-" + "a" * 55)
    assert len(long["ProcessingJobName"]) == 64
    assert botocore_accepts("CreateProcessingJob", long)
    assert any("above the maximum 63" in e for e in errors("CreateProcessingJob", long))
    underscore = processing_job(ProcessingJobName="learnrec-run-build_dataset")
    assert any("does not match the pattern" in e for e in errors("CreateProcessingJob", underscore))


def test_enums_sizes_ranges_and_types_are_checked() -> None:
    app = processing_job()["AppSpecification"]
    cases = {
        "not one of": processing_job(
            ProcessingResources={
                "ClusterConfig": {
                    "InstanceCount": 1,
                    "InstanceType": "ml.nonexistent",
                    "VolumeSizeInGB": 30,
                }
            }
        ),
        "below the minimum 1": processing_job(StoppingCondition={"MaxRuntimeInSeconds": 0}),
        "size 101 is above the maximum 100": processing_job(
            Environment={f"K{i}": "v" for i in range(101)}
        ),
        "expected a string": processing_job(AppSpecification={**app, "ImageUri": 5}),
        "missing required member RoleArn": {
            k: v for k, v in processing_job().items() if k != "RoleArn"
        },
        "unknown member Arguments": {**processing_job(), "Arguments": []},
    }
    for expected, request in cases.items():
        found = errors("CreateProcessingJob", request)
        assert any(expected in e for e in found), (expected, found)


def test_hyperparameter_limits_of_training_jobs() -> None:
    shape = SAGEMAKER.operation_model("CreateTrainingJob").input_shape.members["HyperParameters"]
    assert strict_errors(shape, {"k" * 256: "v" * 2500}) == []
    assert strict_errors(shape, {"k" * 257: "v"})
    assert strict_errors(shape, {"k": "v" * 2501})
    assert strict_errors(shape, {"k": 3})  # values are strings


def test_java_unicode_classes_are_translated_by_category() -> None:
    letters = compiled(r"[\p{L}\p{N}]*")
    assert letters.fullmatch("Éte9") and letters.fullmatch("日本")
    assert not letters.fullmatch("a!")
    punctuation = compiled(r"\p{P}+")
    assert punctuation.fullmatch("!?,") and not punctuation.fullmatch("a")
    assert compiled(r"[\p{L}\p{M}\p{Z}\p{S}\p{N}\p{P}]*").fullmatch("learnrec 2026-11 (ok) €")
    assert not compiled(r"[\p{L}\p{M}\p{Z}\p{S}\p{N}\p{P}]*").fullmatch("tab\there")
    assert compiled(r"\P{L}+").fullmatch("123") and not compiled(r"\P{L}+").fullmatch("a")
    assert compiled(r"arn:[\p{Alnum}\-]+:lambda").fullmatch("arn:aws-cn:lambda")
    assert not compiled(r"\p{ASCII}*").fullmatch("é")
    # Java's UTF-16 surrogate pair in a class is the code point range it encodes.
    assert compiled(r"[\u0020-\uD7FF\uD800\uDC00-\uDBFF\uDFFF]*").fullmatch("a\U0001f600")
    # A quantified end anchor, as some models write it, still only asserts the end.
    assert compiled(r"([\p{L}_]*)${1,128}").fullmatch("abc_é")
    for category in ("L", "Lu", "N", "P", "S", "Z", "M"):
        ranges = re.compile(f"[{category_ranges(category)}]")
        assert ranges.fullmatch({"L": "a", "Lu": "A", "N": "7", "P": "!"}.get(category, "a")) or (
            category in "SZM"
        )


def test_untranslatable_patterns_fail_loudly() -> None:
    for pattern in (r"\p{Greek}", r"a*+", r"[a[b]]", r"\h", r"[\P{L}]"):
        with pytest.raises(PatternError):
            python_pattern(pattern)


def test_every_pattern_of_the_target_apis_translates() -> None:
    session = botocore.session.get_session()
    count = 0
    for service in ("sagemaker", "lambda", "stepfunctions"):
        model = session.get_service_model(service)
        for name in model.shape_names:
            pattern = model.shape_for(name).metadata.get("pattern")
            if pattern:
                compiled(pattern)
                count += 1
    assert count > 100


def test_intrinsic_functions_and_paths_evaluate_as_step_functions_does() -> None:
    data = {"run": {"run_id": "r1", "mode": "full"}, "x": {"b": 2}}
    assert intrinsic("States.Format('s3://b/pipeline/{}/run/', $.run.run_id)", data) == (
        "s3://b/pipeline/r1/run/"
    )
    merged = intrinsic(
        'States.JsonMerge(States.StringToJson(\'\\{"a":1,"b":1\\}\'), $.x, false)', data
    )
    assert merged == {"a": 1, "b": 2}
    assert intrinsic("States.Array('a', States.JsonToString($.x))", data) == ["a", '{"b":2}']
    assert template({"run.$": "$.run", "n": 1, "nested": {"m.$": "$.run.mode"}}, data) == {
        "run": data["run"],
        "n": 1,
        "nested": {"m": "full"},
    }
    assert put_result(data, "$.results.start", {"ok": True})["results"] == {"start": {"ok": True}}
    assert put_result(data, None, {"ignored": 1}) == data
    assert choice_matches({"Variable": "$.run.mode", "StringEquals": "full"}, data)
    assert choice_matches({"Variable": "$.missing", "IsPresent": False}, data)
    with pytest.raises(AslError, match="not in the state's input"):
        choice_matches({"Variable": "$.missing", "BooleanEquals": True}, data)


def test_the_walk_follows_choices_and_records_tasks() -> None:
    definition = {
        "StartAt": "work",
        "States": {
            "work": {
                "Type": "Task",
                "Resource": "arn:aws:states:::x",
                "Parameters": {"id.$": "$.id"},
                "ResultPath": "$.out",
                "Next": "ok?",
            },
            "ok?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.out.ok", "BooleanEquals": True, "Next": "yes"}],
                "Default": "no",
            },
            "yes": {"Type": "Succeed"},
            "no": {"Type": "Fail"},
        },
    }

    def answer(call: TaskCall) -> Any:
        return {"ok": call.request["id"] == 1}

    good = Execution(definition, answer)
    assert good.run({"id": 1}) == {"id": 1, "out": {"ok": True}}
    assert good.outcome == "Succeed: yes"
    assert good.calls == [TaskCall("work", "arn:aws:states:::x", {"id": 1})]
    bad = Execution(definition, answer)
    bad.run({"id": 2})
    assert bad.outcome == "Fail: no"
