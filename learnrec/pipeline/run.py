"""One pipeline run's context: what every step needs to know, as plain JSON.

A run is created once (by :func:`new_run`: locally by ``learnrec pipeline run``, in AWS
by the pipeline function's ``start`` step) and then handed unchanged to every step: as
``$.run`` in the state machine, as the ``run`` input (``run.json``) of the processing
jobs, as the ``run`` of the function handler. Fixing the version, the data window and the active
version at the start is what makes the steps agree with each other and a run
reproducible: a rollback or a late event during the run changes nothing it compares.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from learnrec.bundle import new_version
from learnrec.pipeline.definition import Mode, artifact_prefix
from learnrec.stages import EVENTS_PREFIX, MODELS_PREFIX, ResourceNames

DEFAULT_WINDOW_DAYS = 28
DEFAULT_TOLERANCE = 0.01  # absolute ndcg@k the candidate may lose against the active model
# Absolute ndcg@k the candidate may lose against the best tuned classic baseline (EASE, ALS).
DEFAULT_BASELINE_TOLERANCE = 0.02
DEFAULT_VALIDATION_FRACTION = 0.2
PRIMARY_METRIC = "ndcg"


class RunError(ValueError):
    """A run request or a run document is invalid."""


@dataclass(frozen=True)
class RunContext:
    """Everything a step needs, fixed at the start of the run."""

    run_id: str
    version: str
    mode: Mode
    stage: str
    bucket: str
    window_start: datetime
    window_end: datetime
    active_version: str | None
    model_package_group: str
    models_prefix: str = MODELS_PREFIX.rstrip("/")
    hyperparameters: dict[str, dict[str, str]] = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE
    baseline_tolerance: float = DEFAULT_BASELINE_TOLERANCE
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    split: str = "temporal"
    k: int = 10
    seed: int = 42
    # Where the catalog comes from: None for the database at DATABASE_URL, else a
    # database URL or a sample folder (``learnrec data generate``).
    catalog: str | None = None

    @property
    def model_store_url(self) -> str:
        return f"s3://{self.bucket}/{self.models_prefix}"

    @property
    def primary_metric(self) -> str:
        return f"{PRIMARY_METRIC}@{self.k}"

    @property
    def window_label(self) -> str:
        return f"{_iso(self.window_start)}..{_iso(self.window_end)}"

    @property
    def events_uri(self) -> str:
        return f"s3://{self.bucket}/{EVENTS_PREFIX}"

    def artifact_key(self, artifact: str) -> str:
        return artifact_prefix(self.run_id, artifact)

    def artifact_uri(self, artifact: str) -> str:
        return f"s3://{self.bucket}/{self.artifact_key(artifact)}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["mode"] = self.mode.value
        data["window_start"] = _iso(self.window_start)
        data["window_end"] = _iso(self.window_end)
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> RunContext:
        raw: dict[str, Any] = dict(json.loads(data) if isinstance(data, str) else data)
        try:
            raw["mode"] = Mode(raw["mode"])
            raw["window_start"] = _parse_time(raw["window_start"])
            raw["window_end"] = _parse_time(raw["window_end"])
            raw["hyperparameters"] = {
                str(s): {str(k): str(v) for k, v in values.items()}
                for s, values in (raw.get("hyperparameters") or {}).items()
            }
            return cls(**raw)
        except (KeyError, TypeError, ValueError) as error:
            raise RunError(f"invalid run document: {error}") from error


@dataclass(frozen=True)
class RunRequest:
    """What starts a run: the schedule's or a person's input (``{"mode": "full", ...}``)."""

    mode: Mode = Mode.FULL
    stage: str = "dev"
    bucket: str | None = None
    window_days: float = DEFAULT_WINDOW_DAYS
    window_end: datetime | None = None
    hyperparameters: dict[str, dict[str, str]] = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE
    baseline_tolerance: float = DEFAULT_BASELINE_TOLERANCE
    k: int = 10
    seed: int = 42
    catalog: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRequest:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunError(f"unknown run request fields {unknown}; known: {sorted(known)}")
        raw = dict(data)
        try:
            if "hyperparameters" in raw:
                raw["hyperparameters"] = _hyperparameter_strings(raw["hyperparameters"])
            if "mode" in raw:
                raw["mode"] = Mode(raw["mode"])
            if raw.get("window_end"):
                raw["window_end"] = _parse_time(raw["window_end"])
            request = cls(**raw)
        except (TypeError, ValueError) as error:
            raise RunError(f"invalid run request: {error}") from error
        request.validate()
        return request

    def validate(self) -> None:
        if not self.window_days > 0:
            raise RunError(f"window_days must be positive, got {self.window_days}")
        if not 0 <= self.tolerance < 1:
            raise RunError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if not 0 <= self.baseline_tolerance < 1:
            raise RunError(f"baseline_tolerance must be in [0, 1), got {self.baseline_tolerance}")
        if self.k < 1:
            raise RunError(f"k must be at least 1, got {self.k}")
        from learnrec.pipeline.definition import PIPELINE, StepKind

        steps = {s.name: s for s in PIPELINE}
        for name, values in self.hyperparameters.items():
            if name not in steps:
                raise RunError(f"hyperparameters for unknown step {name!r}")
            if steps[name].kind is not StepKind.TRAINING:
                training = [s.name for s in PIPELINE if s.kind is StepKind.TRAINING]
                raise RunError(
                    f"step {name!r} takes no hyperparameters; training steps: {training}"
                )
            _check_hyperparameters(steps[name], values)


def _hyperparameter_strings(raw: Any) -> dict[str, dict[str, str]]:
    """Overrides as SageMaker passes them, strings: numbers are written as text, anything
    else (lists, objects, booleans, nulls) is refused rather than guessed at."""
    if not isinstance(raw, Mapping):
        raise ValueError("hyperparameters must be an object {step: {name: value}}")
    out: dict[str, dict[str, str]] = {}
    for step_name, values in raw.items():
        if not isinstance(values, Mapping):
            raise ValueError(f"hyperparameters of {step_name!r} must be an object")
        out[str(step_name)] = {}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError(f"hyperparameter {step_name}.{key} must be a string or number")
            out[str(step_name)][str(key)] = str(value)
    return out


def _check_hyperparameters(step: Any, values: Mapping[str, str]) -> None:
    """What SageMaker's CreateTrainingJob accepts, checked before a run starts."""
    from learnrec.pipeline.definition import (
        FRAMEWORK_HYPERPARAMETERS,
        MAX_HYPERPARAMETER_KEY,
        MAX_HYPERPARAMETER_VALUE,
        MAX_HYPERPARAMETERS,
    )

    fixed = set(FRAMEWORK_HYPERPARAMETERS) | set(step.run_hyperparameters)
    for key, value in values.items():
        if not isinstance(value, str):
            raise RunError(f"hyperparameter {step.name}.{key} must be a string")
        if key in fixed:
            raise RunError(f"hyperparameter {step.name}.{key} is set by the pipeline itself")
        if not 1 <= len(key) <= MAX_HYPERPARAMETER_KEY:
            raise RunError(
                f"hyperparameter names have 1 to {MAX_HYPERPARAMETER_KEY} characters: {key!r}"
            )
        if len(value) > MAX_HYPERPARAMETER_VALUE:
            raise RunError(
                f"hyperparameter {step.name}.{key} is longer than "
                f"{MAX_HYPERPARAMETER_VALUE} characters"
            )
    total = len(set(dict(step.hyperparameters)) | set(values) | fixed)
    if total > MAX_HYPERPARAMETERS:
        raise RunError(
            f"{step.name} would get {total} hyperparameters; SageMaker takes at most "
            f"{MAX_HYPERPARAMETERS}"
        )


def new_run(
    request: RunRequest,
    active_version: str | None,
    now: datetime | None = None,
    names: ResourceNames | None = None,
) -> RunContext:
    """A fresh run: a new version, the window ending now (or as asked)."""
    request.validate()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    names = names or ResourceNames(request.stage)
    version = new_version(now)
    end = (request.window_end or now).astimezone(UTC)
    return RunContext(
        run_id=f"{version}-{request.mode.value}",
        version=version,
        mode=request.mode,
        stage=request.stage,
        bucket=request.bucket or names.data_bucket,
        window_start=end - timedelta(days=request.window_days),
        window_end=end,
        active_version=active_version,
        model_package_group=names.model_package_group,
        hyperparameters={k: dict(v) for k, v in request.hyperparameters.items()},
        tolerance=request.tolerance,
        baseline_tolerance=request.baseline_tolerance,
        k=request.k,
        seed=request.seed,
        catalog=request.catalog,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone")
    return moment.astimezone(UTC)
