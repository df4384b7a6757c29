"""The local runner: every step of a run, in definition order, against the local AWS.

Each step runs the way its kind runs in AWS (see the step registry,
:mod:`learnrec.pipeline.definition`). Training steps run as SageMaker runs them: each
channel's S3 prefix downloaded into its own folder (``SM_CHANNEL_<NAME>``), an empty
``SM_MODEL_DIR``, hyperparameters as ``--name value``, the entry point started as a
child process, and the model folder uploaded as ``<job>/output/model.tar.gz`` under the
output artifact's prefix. Processing steps run ``training/pipeline_step.py`` as a child
process with the container arguments of the state machine, their input artifacts
downloaded (the run document among them, as ``start`` wrote it) and their output
folders uploaded afterwards. Function steps call their registered entry in process, as
the pipeline Lambda does. A step that fails stops the run with its reason
(:class:`StepError`); nothing after it runs, so the active pointer, which only
``promote`` moves, stays where it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from learnrec.bundle import EVALUATION_FILE
from learnrec.pipeline.artifacts import MODEL_TARBALL, download_prefix, pack, upload_folder
from learnrec.pipeline.definition import (
    RUN_FILE,
    Step,
    StepKind,
    job_name,
    processing_arguments,
    steps_for,
)
from learnrec.pipeline.errors import StepError
from learnrec.pipeline.functions import Clients, function_entry
from learnrec.pipeline.processing import FAILURE_MARKER
from learnrec.pipeline.run import RunContext

REPO = Path(__file__).resolve().parents[2]


def hyperparameters(step: Step, run: RunContext) -> dict[str, str]:
    """Defaults from the definition, the run's overrides, then values taken from the run."""
    values = dict(step.hyperparameters)
    values.update(run.hyperparameters.get(step.name, {}))
    document = run.to_json()
    for name in step.run_hyperparameters:
        values[name] = str(document[name])
    return values


def failure_reason(log: str, kind: str, code: int) -> str:
    """What a failed child's output says about why: the step's own reason if it gave
    one, else the job's exit code and its last error line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(FAILURE_MARKER):
            return line[len(FAILURE_MARKER) :]
    errors = [line for line in lines if "error" in line.lower()]
    last = errors[-1] if errors else (lines[-1] if lines else "no output")
    return f"{kind} job exited with code {code}: {last}"


@dataclass
class StepResult:
    name: str
    seconds: float
    summary: Any = None


@dataclass
class LocalRunner:
    run: RunContext
    s3: Any
    sagemaker: Any
    cloudwatch: Any
    workdir: Path
    out: TextIO = field(default_factory=lambda: sys.stdout)
    python: str = sys.executable
    verbose: bool = False
    results: list[StepResult] = field(default_factory=list)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run_all(self) -> list[StepResult]:
        steps = steps_for(self.run.mode)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / RUN_FILE).write_text(json.dumps(self.run.to_json(), indent=2))
        self.say(
            f"run {self.run.run_id}: {self.run.mode.value} retrain, "
            f"events {self.run.window_label}, active model {self.run.active_version or '(none)'}"
        )
        for number, step in enumerate(steps, 1):
            self.say(f"[{number}/{len(steps)}] {step.name} ({step.kind.value}) ...")
            started = time.perf_counter()
            try:
                summary = self.run_step(step)
            except StepError as error:
                self.say(f"[{number}/{len(steps)}] {step.name} FAILED: {error.reason}")
                raise
            seconds = time.perf_counter() - started
            self.results.append(StepResult(step.name, seconds, summary))
            self.say(f"[{number}/{len(steps)}] {step.name} done in {seconds:.1f}s")
        return self.results

    def run_step(self, step: Step) -> Any:
        """What the step's kind does in AWS, here (see the module's description)."""
        by_kind = {
            StepKind.TRAINING: self._training,
            StepKind.PROCESSING: self._processing,
            StepKind.FUNCTION: self._function,
        }
        return by_kind[step.kind](step)

    def _function(self, step: Step) -> Any:
        clients = {"s3": self.s3, "sagemaker": self.sagemaker, "cloudwatch": self.cloudwatch}
        return function_entry(step.name)(self.run, Clients(clients))

    def _child(self, step: Step, command: list[str], env: dict[str, str], log: Path) -> None:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **env}
        with log.open("w") as handle:
            process = subprocess.Popen(
                command,
                cwd=REPO,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert process.stdout is not None
            for line in process.stdout:
                handle.write(line)
                if self.verbose:
                    self.say(f"    {line.rstrip()}")
            code = process.wait()
        if code != 0:
            reason = failure_reason(log.read_text(), step.kind.value, code)
            raise StepError(step.name, f"{reason} (log: {log})")

    def _training(self, step: Step) -> Any:
        assert step.entry_point is not None
        root = self.workdir / step.name
        model_dir, env = root / "model", {}
        model_dir.mkdir(parents=True, exist_ok=True)
        for channel in step.channels:
            folder = root / "input" / "data" / channel.name
            if not download_prefix(
                self.s3, self.run.bucket, channel.prefix(self.run.run_id), folder
            ):
                raise StepError(
                    step.name,
                    f"channel {channel.name!r} is empty: nothing under "
                    f"s3://{self.run.bucket}/{channel.prefix(self.run.run_id)}",
                )
            env[channel.env] = str(folder)
        params = hyperparameters(step, self.run)
        env |= {
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
            "SM_CHANNELS": json.dumps([c.name for c in step.channels]),
            "SM_HPS": json.dumps(params),
            "SM_CURRENT_HOST": "algo-1",
        }
        command = [self.python, str(REPO / step.entry_point)]
        for name, value in params.items():
            command += [f"--{name}", value]
        self._child(step, command, env, root / "log.txt")
        if not any(model_dir.iterdir()):
            raise StepError(step.name, "the training job wrote nothing to SM_MODEL_DIR")
        job = job_name(self.run.run_id, step.name)
        tarball = pack(model_dir, root / "output" / MODEL_TARBALL)
        key = f"{self.run.artifact_key(step.outputs[0])}{job}/output/{MODEL_TARBALL}"
        self.s3.upload_file(str(tarball), self.run.bucket, key)
        return {"job": job, "model": f"s3://{self.run.bucket}/{key}", "hyperparameters": params}

    def _processing(self, step: Step) -> Any:
        assert step.entry_point is not None
        root = self.workdir / step.name
        command = [self.python, str(REPO / processing_arguments(step)[0])]
        command += processing_arguments(step)[1:]
        for artifact in step.artifact_inputs:
            folder = root / "input" / artifact
            if not download_prefix(
                self.s3, self.run.bucket, self.run.artifact_key(artifact), folder
            ):
                raise StepError(
                    step.name,
                    f"input {artifact!r} is empty: nothing at {self.run.artifact_uri(artifact)}",
                )
            command += ["--input", f"{artifact}={folder}"]
        outputs = {name: root / "output" / name for name in step.outputs_for(self.run.mode)}
        for name, folder in outputs.items():
            command += ["--output", f"{name}={folder}"]
        log = root / "log.txt"
        root.mkdir(parents=True, exist_ok=True)
        self._child(step, command, {}, log)
        for name, folder in outputs.items():
            upload_folder(self.s3, self.run.bucket, folder, self.run.artifact_key(name))
        last = [line for line in log.read_text().splitlines() if line.startswith('{"step"')]
        return json.loads(last[-1])["summary"] if last else None


@dataclass(frozen=True)
class RunOutcome:
    run: RunContext
    evaluation: dict[str, Any]
    promotion: dict[str, Any]
    steps: list[StepResult]


def aws_clients() -> dict[str, Any]:
    """boto3 clients for the runner (``AWS_ENDPOINT_URL`` points them at the local AWS)."""
    import boto3

    return {name: boto3.client(name) for name in ("s3", "sagemaker", "cloudwatch")}


def run_pipeline(
    request: Any,
    workdir: Path,
    out: TextIO | None = None,
    verbose: bool = False,
    clients: dict[str, Any] | None = None,
) -> RunOutcome:
    """Start a run for ``request`` (a :class:`RunRequest`) and run all its steps locally."""
    from learnrec.pipeline.functions import start_run

    clients = clients or aws_clients()
    run = start_run(request, clients["s3"])
    runner = LocalRunner(
        run,
        clients["s3"],
        clients["sagemaker"],
        clients["cloudwatch"],
        workdir / run.run_id,
        out=out or sys.stdout,
        verbose=verbose,
    )
    results = runner.run_all()
    by_name = {result.name: result.summary for result in results}
    evaluation_file = runner.workdir / "evaluate" / "output" / "evaluation" / EVALUATION_FILE
    evaluation = json.loads(evaluation_file.read_text())
    return RunOutcome(run, evaluation, dict(by_name["promote"]), results)
