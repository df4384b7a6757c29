"""The pipeline definition is coherent, and the run document survives its round trips."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from learnrec.pipeline.definition import (
    EXTERNAL_INPUTS,
    PIPELINE,
    RUN_ARTIFACT,
    START_OUTPUTS,
    Mode,
    StepKind,
    job_name,
    processing_arguments,
    step,
    steps_for,
)
from learnrec.pipeline.local import failure_reason, hyperparameters
from learnrec.pipeline.processing import FAILURE_MARKER
from learnrec.pipeline.run import RunContext, RunError, RunRequest, new_run
from learnrec.stages import ResourceNames


def test_the_steps_and_their_order_are_the_contract() -> None:
    assert [s.name for s in PIPELINE] == [
        "build_dataset", "train_retrieval", "build_index", "train_ranking", "evaluate",
        "register", "promote",
    ]  # fmt: skip
    assert [s.name for s in steps_for(Mode.RANKING)] == [
        "build_dataset", "build_index", "train_ranking", "evaluate", "register", "promote",
    ]  # fmt: skip
    with pytest.raises(KeyError, match="no pipeline step named 'train'"):
        step("train")


@pytest.mark.parametrize("mode", list(Mode))
def test_every_input_is_made_by_an_earlier_step(mode: Mode) -> None:
    available = set(EXTERNAL_INPUTS) | set(START_OUTPUTS)
    for current in steps_for(mode):
        missing = set(current.inputs) - available
        assert not missing, f"{mode}: {current.name} needs {missing} before anyone makes it"
        available |= set(current.outputs_for(mode))


def test_training_steps_feed_channels_from_their_inputs() -> None:
    for current in PIPELINE:
        if current.kind is StepKind.TRAINING:
            assert current.channels and current.entry_point
            assert {c.artifact for c in current.channels} <= set(current.inputs)
        else:
            assert not current.channels


def test_processing_jobs_get_the_run_as_an_input_not_an_argument() -> None:
    for current in PIPELINE:
        if current.kind is StepKind.PROCESSING:
            assert current.artifact_inputs[0] == RUN_ARTIFACT
            arguments = processing_arguments(current)
            assert arguments == [current.entry_point, current.name]
            assert all(len(argument) <= 256 for argument in arguments)
        else:
            assert RUN_ARTIFACT not in current.inputs
            with pytest.raises(ValueError, match="not a processing step"):
                processing_arguments(current)


def test_job_names_fit_sagemaker() -> None:
    run_id = "20261126T031500Z-ranking"
    for current in PIPELINE:
        name = job_name(run_id, current.name)
        assert len(name) <= 63 and all(c.isalnum() or c == "-" for c in name)
    with pytest.raises(ValueError, match="63"):
        job_name("x" * 60, "train_ranking")


def _run() -> RunContext:
    request = RunRequest(
        mode=Mode.RANKING,
        stage="dev",
        window_days=7,
        window_end=datetime(2026, 11, 8, tzinfo=UTC),
        hyperparameters={"train_ranking": {"n-estimators": "5"}},
    )
    return new_run(request, "20261101T020000Z", now=datetime(2026, 11, 8, 2, tzinfo=UTC))


def test_a_run_round_trips_through_json() -> None:
    run = _run()
    assert run.run_id == "20261108T020000Z-ranking"
    assert run.window_label == "2026-11-01T00:00:00Z..2026-11-08T00:00:00Z"
    assert run.bucket == ResourceNames("dev").data_bucket
    assert RunContext.from_json(run.dumps()) == run
    assert run.artifact_uri("dataset").endswith("/pipeline/20261108T020000Z-ranking/dataset/")


def test_hyperparameters_merge_defaults_overrides_and_run_fields() -> None:
    assert hyperparameters(step("train_ranking"), _run()) == {
        "no-progress": "true",
        "n-estimators": "5",
        "version": "20261108T020000Z",
    }


@pytest.mark.parametrize(
    ("request_json", "message"),
    [
        ({"mode": "weekly"}, "invalid run request"),
        ({"window_days": 0}, "window_days must be positive"),
        ({"hyperparameters": {"train": {}}}, "unknown step 'train'"),
        ({"windowdays": 3}, "unknown run request fields"),
        ({"hyperparameters": {"evaluate": {"k": "5"}}}, "'evaluate' takes no hyperparameters"),
        ({"hyperparameters": {"train_ranking": {"version": "x"}}}, "set by the pipeline"),
        (
            {"hyperparameters": {"train_ranking": {"sagemaker_program": "x.py"}}},
            "set by the pipeline",
        ),
        ({"hyperparameters": {"train_ranking": {"k" * 257: "1"}}}, "1 to 256 characters"),
        ({"hyperparameters": {"train_ranking": {"notes": "x" * 2501}}}, "longer than 2500"),
        (
            {"hyperparameters": {"train_ranking": {f"h{i}": "1" for i in range(95)}}},
            "at most 100",
        ),
        ({"hyperparameters": {"train_ranking": {"depth": [3]}}}, "a string or number"),
        ({"hyperparameters": {"train_ranking": {"early": True}}}, "a string or number"),
        ({"hyperparameters": ["train_ranking"]}, "must be an object"),
    ],
)
def test_bad_run_requests_are_refused_with_a_reason(
    request_json: dict[str, object], message: str
) -> None:
    with pytest.raises(RunError, match=message):
        RunRequest.from_json(request_json)


def test_a_failed_child_is_explained_by_its_own_reason_or_its_last_error() -> None:
    log = "loading\n" + FAILURE_MARKER + "no events in the window\n"
    assert failure_reason(log, "processing", 1) == "no events in the window"
    argparse_log = "usage: x\ntrain.py: error: argument --epochs: invalid int value: 'x'\n"
    assert failure_reason(argparse_log, "training", 2) == (
        "training job exited with code 2: "
        "train.py: error: argument --epochs: invalid int value: 'x'"
    )


def test_numeric_hyperparameters_become_the_strings_sagemaker_takes() -> None:
    request = RunRequest.from_json(
        {"hyperparameters": {"train_retrieval": {"epochs": 3, "learning-rate": 0.05}}}
    )
    assert request.hyperparameters == {"train_retrieval": {"epochs": "3", "learning-rate": "0.05"}}
