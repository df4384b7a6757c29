"""Each step is registered once, and every runner reaches a step through the registry.

The tests replace a step's registered entry in its module and check that the runner of
its kind calls the replacement: a runner with its own table of steps would not.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import runpy
import sys
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from learnrec.pipeline import processing
from learnrec.pipeline.definition import (
    PIPELINE,
    RUN_ARTIFACT,
    RUN_FILE,
    Mode,
    Step,
    StepKind,
    load_entry,
    steps_of,
)
from learnrec.pipeline.errors import StepError
from learnrec.pipeline.functions import Clients, handle
from learnrec.pipeline.local import LocalRunner
from learnrec.pipeline.run import RunContext, RunRequest, new_run
from learnrec.training import jobs

REPO = Path(__file__).resolve().parents[2]

#: What each kind's runner passes to an entry (placeholders, for the signature check).
RUNNER_ARGUMENTS: dict[StepKind, tuple[Any, ...]] = {
    StepKind.TRAINING: (None,),
    StepKind.PROCESSING: ("run", {}, {}),
    StepKind.FUNCTION: ("run", Clients()),
}


class Recorder:
    """Stands in for an entry: remembers its calls, answers ``answer``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.answer


def replace_entry(monkeypatch: pytest.MonkeyPatch, step: Step, answer: Any) -> Recorder:
    module, _, attribute = step.entry.partition(":")
    recorder = Recorder(answer)
    monkeypatch.setattr(importlib.import_module(module), attribute, recorder)
    return recorder


def _run(mode: Mode = Mode.FULL) -> RunContext:
    request = RunRequest(mode=mode, stage="dev", window_end=datetime(2026, 11, 8, tzinfo=UTC))
    return new_run(request, None, now=datetime(2026, 11, 8, 2, tzinfo=UTC))


def test_every_step_is_registered_with_one_kind_and_an_entry_its_runner_can_call() -> None:
    by_kind = [s.name for kind in StepKind for s in steps_of(kind)]
    assert sorted(by_kind) == sorted(s.name for s in PIPELINE)
    for step in PIPELINE:
        entry = load_entry(step)
        inspect.signature(entry).bind(*RUNNER_ARGUMENTS[step.kind])  # TypeError if not
        if step.kind is StepKind.FUNCTION:
            assert step.entry_point is None, step.name
        else:  # a SageMaker job runs a script from the source archive
            assert step.entry_point and (REPO / step.entry_point).is_file(), step.name


@pytest.mark.parametrize("step", steps_of(StepKind.PROCESSING), ids=lambda s: s.name)
def test_the_processing_job_runs_the_registered_entry(
    step: Step, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run(Mode.RANKING)
    recorder = replace_entry(monkeypatch, step, {"step": step.name})
    arguments = [step.name]
    for artifact in step.artifact_inputs:
        (tmp_path / "in" / artifact).mkdir(parents=True)
        arguments += ["--input", f"{artifact}={tmp_path / 'in' / artifact}"]
    (tmp_path / "in" / RUN_ARTIFACT / RUN_FILE).write_text(run.dumps())
    outputs = {name: tmp_path / "out" / name for name in step.outputs_for(run.mode)}
    arguments += [f"--output={name}={folder}" for name, folder in outputs.items()]
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert processing.main(arguments) == 0
    ((given_run, inputs, given_outputs),) = recorder.calls
    assert given_run == run
    assert inputs == {a: tmp_path / "in" / a for a in step.artifact_inputs}
    assert given_outputs == outputs and all(folder.is_dir() for folder in outputs.values())
    assert json.loads(printed.getvalue()) == {"step": step.name, "summary": {"step": step.name}}


def test_the_processing_job_runs_nothing_but_processing_steps() -> None:
    with pytest.raises(SystemExit), redirect_stdout(io.StringIO()):
        processing.main(["register"])
    with pytest.raises(StepError, match="not a processing step"):
        processing.run_processing("train_ranking")


@pytest.mark.parametrize("step", steps_of(StepKind.TRAINING), ids=lambda s: s.name)
def test_the_training_script_runs_the_registered_entry(
    step: Step, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = replace_entry(monkeypatch, step, 3)
    assert step.entry_point is not None
    monkeypatch.setattr(sys, "argv", [step.entry_point, "--no-progress", "true"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(REPO / step.entry_point), run_name="__main__")
    assert exited.value.code == 3
    assert recorder.calls == [(None,)]  # the job's own arguments, as SageMaker gave them


def test_a_training_job_runs_nothing_but_training_steps() -> None:
    with pytest.raises(ValueError, match="build_index is a processing step"):
        jobs.main("build_index", [])


@pytest.mark.parametrize("step", steps_of(StepKind.FUNCTION), ids=lambda s: s.name)
def test_the_pipeline_function_runs_the_registered_entry(
    step: Step, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run()
    recorder = replace_entry(monkeypatch, step, {"version": run.version})
    s3, sagemaker = object(), object()
    answer = handle({"step": step.name, "run": run.to_json()}, {"s3": s3, "sagemaker": sagemaker})
    assert answer == {"step": step.name, "ok": True, "version": run.version}
    ((given_run, clients),) = recorder.calls
    assert given_run == run
    assert clients["s3"] is s3 and clients["sagemaker"] is sagemaker


def test_the_pipeline_function_refuses_steps_it_does_not_run() -> None:
    answer = handle({"step": "build_index", "run": _run().to_json()})
    assert answer == {
        "step": "build_index",
        "ok": False,
        "error": "build_index: unknown function step: use start, register or promote",
    }


def test_the_local_runner_runs_each_step_as_its_kind_runs_in_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run()
    jobs_started: list[tuple[str, str]] = []
    for kind in (StepKind.TRAINING, StepKind.PROCESSING):

        def job(runner: LocalRunner, step: Step, kind: StepKind = kind) -> str:
            jobs_started.append((kind.value, step.name))
            return step.name

        monkeypatch.setattr(LocalRunner, f"_{kind.value}", job)
    entries = {
        s.name: replace_entry(monkeypatch, s, {"ok": s.name}) for s in steps_of(StepKind.FUNCTION)
    }
    s3, sagemaker, cloudwatch = object(), object(), object()
    runner = LocalRunner(run, s3, sagemaker, cloudwatch, tmp_path)
    for step in PIPELINE:
        runner.run_step(step)
    assert jobs_started == [
        (s.kind.value, s.name) for s in PIPELINE if s.kind is not StepKind.FUNCTION
    ]
    for name, recorder in entries.items():
        ((given_run, clients),) = recorder.calls
        assert given_run == run, name
        assert (clients["s3"], clients["sagemaker"], clients["cloudwatch"]) == (
            s3,
            sagemaker,
            cloudwatch,
        )
