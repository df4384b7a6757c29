"""The retraining pipeline as data: ordered steps with their inputs and outputs.

:data:`PIPELINE` is also the step registry: each step is registered there once, with
where it runs (``kind``, and for SageMaker jobs the ``entry_point`` script) and the
function that does its work (``entry``, ``"module:function"``, imported only when the
step runs, so the CDK app reads this module without the step's dependencies). Every
runner dispatches through it: the CDK app turns the tuple into the Step Functions state
machine (``cdk/``), the SageMaker scripts and the pipeline Lambda call the entry of the
step they are given (:func:`load_entry`), and ``learnrec pipeline run`` runs it locally
(:mod:`learnrec.pipeline.local`). Adding a step is one entry here plus its function.

A step's ``kind`` says where it runs in AWS, how the local runner runs it, and the
signature of its entry:

- ``training``: a SageMaker training job (``.sync``) running ``entry_point`` from the
  uploaded source in the TensorFlow training container, with SageMaker's conventions
  (``SM_CHANNEL_<NAME>`` per entry of ``channels``, ``SM_MODEL_DIR`` for the output,
  hyperparameters as ``--name value``). The script hands its step's name to
  :func:`learnrec.training.jobs.main`, which calls ``entry(argv) -> exit code``.
  Locally: the script as a child process with the same conventions.
- ``processing``: a SageMaker processing job (``.sync``) running ``entry_point`` with the
  step's name, in the same container, for steps that need pandas, onnxruntime or faiss;
  :mod:`learnrec.pipeline.processing` calls ``entry(run, inputs, outputs) -> summary``
  with a folder per artifact. Locally: the same script as a child process.
- ``function``: the pipeline Lambda (``functions/pipeline/``), for short control-plane
  steps that only need boto3; :func:`learnrec.pipeline.functions.handle` calls
  ``entry(run, clients) -> result``. Locally: the same entry, in process.

Artifacts. Every name in ``inputs`` and ``outputs`` is an artifact: an S3 prefix
``pipeline/<run id>/<artifact>/`` in the data bucket (:func:`artifact_prefix`), except
the :data:`EXTERNAL_INPUTS`, which a step reads itself (events from the archive over the
run's window, the catalog from the database). A training job's model folder reaches S3
the way SageMaker uploads it, as ``<S3OutputPath>/<job name>/output/model.tar.gz`` with
``S3OutputPath = s3://<bucket>/pipeline/<run id>/<artifact>/``; consumers unpack any
``model.tar.gz`` found in an input folder (:func:`learnrec.pipeline.artifacts.unpack`),
so a prefix holding plain files or a tarball reads the same.

Training steps (state machine: ``CreateTrainingJob.sync``):

- ``InputDataConfig``: one channel per :class:`Channel`, ``S3Prefix`` =
  ``s3://<bucket>/pipeline/<run id>/<channel.artifact>/<channel.path>``
  (:meth:`Channel.prefix`), ``S3DataDistributionType=FullyReplicated``.
- ``OutputDataConfig.S3OutputPath``: ``s3://<bucket>/pipeline/<run id>/<outputs[0]>/``.
- ``HyperParameters``: ``step.hyperparameters`` (strings), then the run's overrides
  ``$.run.hyperparameters.<step name>`` (``States.JsonMerge``), then for each name in
  ``run_hyperparameters`` the run field of that name (``version`` -> ``$.run.version``),
  and the :data:`FRAMEWORK_HYPERPARAMETERS` (a run request may override none of these).
- Training job name: :func:`job_name` (``learnrec-<run id>-<step, dashes>``).
- Result: ``{"job": <name>, "status": <TrainingJobStatus>}`` at ``$.results.<step name>``
  (the same for processing steps), so the run document stays where it is.

Processing steps (state machine: ``CreateProcessingJob.sync``): container arguments
:func:`processing_arguments` (``[<entry_point>, <step name>]``: fixed and short, since
SageMaker takes at most 256 characters per argument); each artifact in ``inputs`` is a
``ProcessingInput`` from its prefix to ``/opt/ml/processing/input/<artifact>``, each
artifact in ``outputs_for(mode)`` a ``ProcessingOutput`` from
``/opt/ml/processing/output/<artifact>`` to its prefix (``S3UploadMode=EndOfJob``).
Every processing step has the :data:`RUN_ARTIFACT` among its inputs: the run document
reaches the job as the file ``run/run.json`` (:data:`RUN_FILE`) of that input, never as
an argument. The job needs read access to ``events/`` and ``models/``, write access to
``pipeline/`` and ``DATABASE_URL`` in its environment (the catalog); in AWS also
``VECTOR_INDEX=opensearch`` with ``OPENSEARCH_ENDPOINT``/``OPENSEARCH_ALIAS``, with which
``build_index`` fills the version's own index (``promote`` later moves the alias onto
it). See ``training/pipeline_step.py``.

Function steps (state machine: ``lambda:invoke`` of the pipeline function): payload
``{"step": <name>, "run": $.run}``; the result (``ResultPath`` ``$.results.<name>``) is
described in ``functions/pipeline/handler.py``. The run itself (``$.run``) is made by
the same function with ``{"step": "start", "request": {...}}`` before the first step;
``start`` also writes it as the run's first artifact, ``pipeline/<run id>/run/run.json``
(:data:`START_OUTPUTS`).

Limits. Whatever a run document carries into a SageMaker request stays within
SageMaker's limits for any valid run request: job names (:func:`job_name`, 63
characters), hyperparameters (:data:`MAX_HYPERPARAMETERS` entries, keys and values
checked by :func:`learnrec.pipeline.run.RunRequest.validate`), S3 URIs built from the
bucket and the run id.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

from learnrec.stages import PIPELINE_PREFIX


class StepKind(StrEnum):
    TRAINING = "training"
    PROCESSING = "processing"
    FUNCTION = "function"


class Mode(StrEnum):
    """``full``: weekly, retrains everything. ``ranking``: daily, keeps the active
    model's towers, rebuilds the index and retrains the ranker."""

    FULL = "full"
    RANKING = "ranking"


#: The artifact holding the run document (made by ``start``), and its one file.
RUN_ARTIFACT = "run"
RUN_FILE = "run.json"
#: What ``start`` makes before the first step runs.
START_OUTPUTS: tuple[str, ...] = (RUN_ARTIFACT,)

# SageMaker's limits on what a run puts into a training job (CreateTrainingJob):
# HyperParameters holds at most 100 entries, keys up to 256 characters, values up to 2500.
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_KEY = 256
MAX_HYPERPARAMETER_VALUE = 2500
#: Hyperparameters every training job gets from the pipeline (SageMaker's framework
#: container: the bootstrap, the source archive, the region; the script to run).
FRAMEWORK_HYPERPARAMETERS = (
    "sagemaker_program",
    "sagemaker_submit_directory",
    "sagemaker_region",
    "learnrec_entry_point",
)

#: Inputs a step reads from their source rather than from the run's artifacts.
EXTERNAL_INPUTS: dict[str, str] = {
    "events": "raw events in s3://<bucket>/events/ that arrived in the run's window",
    "catalog": "catalog items and learner profiles from the database (DATABASE_URL)",
}


@dataclass(frozen=True)
class Channel:
    """A SageMaker data channel of a training step: ``SM_CHANNEL_<NAME>``.

    ``path`` is a folder inside the artifact (``dataset`` holds ``fit/``, ``labels/``,
    ``validation/``), so one artifact can feed several channels.
    """

    name: str
    artifact: str
    path: str = ""

    @property
    def env(self) -> str:
        return f"SM_CHANNEL_{self.name.upper()}"

    def prefix(self, run_id: str) -> str:
        """The channel's S3 key prefix (in the data bucket), ending in ``/``."""
        base = artifact_prefix(run_id, self.artifact)
        return f"{base}{self.path.strip('/')}/" if self.path else base


@dataclass(frozen=True)
class Step:
    name: str
    kind: StepKind
    description: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # The function that does the step's work, "module:function" (signature per kind).
    entry: str
    # The script a SageMaker job runs (training and processing steps).
    entry_point: str | None = None
    modes: frozenset[Mode] = frozenset(Mode)
    channels: tuple[Channel, ...] = ()
    # Default hyperparameters (training steps), as SageMaker passes them: strings.
    hyperparameters: tuple[tuple[str, str], ...] = ()
    # Hyperparameters whose value is the run's field of the same name.
    run_hyperparameters: tuple[str, ...] = ()
    # Extra outputs in some modes (ranking mode's build_dataset also provides "retrieval").
    mode_outputs: tuple[tuple[Mode, str], ...] = field(default=())

    def runs_in(self, mode: Mode) -> bool:
        return mode in self.modes

    def outputs_for(self, mode: Mode) -> tuple[str, ...]:
        return self.outputs + tuple(name for m, name in self.mode_outputs if m == mode)

    @property
    def artifact_inputs(self) -> tuple[str, ...]:
        return tuple(name for name in self.inputs if name not in EXTERNAL_INPUTS)


PIPELINE_STEP_ENTRY = "training/pipeline_step.py"
# Progress bars in a job's log are noise; SageMaker passes every hyperparameter with a
# value, hence "true" rather than a bare flag.
_QUIET = ("no-progress", "true")

PIPELINE: tuple[Step, ...] = (
    Step(
        "build_dataset",
        StepKind.PROCESSING,
        "events in S3 over the data window, joined with the catalog, split into "
        "train and validation",
        inputs=(RUN_ARTIFACT, "events", "catalog"),
        outputs=("dataset",),
        entry="learnrec.pipeline.build_dataset:run_step",
        entry_point=PIPELINE_STEP_ENTRY,
        mode_outputs=((Mode.RANKING, "retrieval"),),
    ),
    Step(
        "train_retrieval",
        StepKind.TRAINING,
        "two-tower model trained with TFRS, exported to ONNX and checked against TensorFlow",
        inputs=("dataset",),
        outputs=("retrieval",),
        entry="learnrec.training.jobs:retrieval_main",
        entry_point="training/train_retrieval.py",
        modes=frozenset({Mode.FULL}),
        channels=(Channel("train", "dataset", "fit"),),
        hyperparameters=(_QUIET,),
    ),
    Step(
        "build_index",
        StepKind.PROCESSING,
        "item embeddings into a new OpenSearch index per version (the alias moves when "
        "the version is promoted), and the faiss index in the bundle",
        inputs=(RUN_ARTIFACT, "retrieval"),
        outputs=("index",),
        entry="learnrec.pipeline.build_index:run_step",
        entry_point=PIPELINE_STEP_ENTRY,
    ),
    Step(
        "train_ranking",
        StepKind.TRAINING,
        "XGBoost ranker on the retrieval model's candidates; writes the candidate bundle",
        inputs=("dataset", "retrieval", "index"),
        outputs=("bundle",),
        entry="learnrec.training.jobs:ranking_main",
        entry_point="training/train_ranking.py",
        channels=(
            Channel("train", "dataset", "fit"),
            Channel("labels", "dataset", "labels"),
            Channel("retrieval", "retrieval"),
            Channel("index", "index"),
        ),
        hyperparameters=(_QUIET,),
        run_hyperparameters=("version",),
    ),
    Step(
        "evaluate",
        StepKind.PROCESSING,
        "candidate against popularity and the active model on the same validation data; "
        "drift of scores and features against the active model",
        inputs=(RUN_ARTIFACT, "dataset", "bundle"),
        outputs=("evaluation",),
        entry="learnrec.pipeline.evaluate:run_step",
        entry_point=PIPELINE_STEP_ENTRY,
    ),
    Step(
        "register",
        StepKind.FUNCTION,
        "bundle to its S3 prefix with the manifest, and a SageMaker Model Registry package",
        inputs=("bundle", "evaluation"),
        outputs=("version",),
        entry="learnrec.pipeline.functions:run_register",
    ),
    Step(
        "promote",
        StepKind.FUNCTION,
        "move the active-version pointer if the gate passed; otherwise keep the active "
        "model and say why",
        inputs=("version", "evaluation"),
        outputs=("active",),
        entry="learnrec.pipeline.functions:run_promote",
    ),
)


def steps_for(mode: Mode) -> list[Step]:
    """The steps one run executes, in order."""
    return [step for step in PIPELINE if step.runs_in(mode)]


def step(name: str) -> Step:
    for candidate in PIPELINE:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no pipeline step named {name!r}; steps: {[s.name for s in PIPELINE]}")


def steps_of(kind: StepKind) -> tuple[Step, ...]:
    """The steps one kind of runner runs, in pipeline order."""
    return tuple(candidate for candidate in PIPELINE if candidate.kind is kind)


def load_entry(step: Step) -> Callable[..., Any]:
    """The function registered to do ``step``'s work, imported now.

    Not when the definition is read: the CDK app and the pipeline Lambda import this
    module, and neither has the processing and training steps' dependencies (pandas,
    faiss, TensorFlow).
    """
    module_name, _, attribute = step.entry.partition(":")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"the entry of step {step.name}, {step.entry}, is not a function")
    return cast(Callable[..., Any], function)


def artifact_prefix(run_id: str, artifact: str) -> str:
    """Key prefix of a run's artifact in the data bucket, ending in ``/``."""
    return f"{PIPELINE_PREFIX}{run_id}/{artifact}/"


def processing_arguments(step: Step) -> list[str]:
    """A processing job's container arguments: the script and the step, nothing per run.

    The run document is the job's ``run`` input (:data:`RUN_ARTIFACT`), not an argument:
    SageMaker caps each argument at 256 characters, and a run document is longer.
    """
    if step.kind is not StepKind.PROCESSING or step.entry_point is None:
        raise ValueError(f"{step.name} is not a processing step")
    if RUN_ARTIFACT not in step.inputs:
        raise ValueError(f"processing step {step.name} must have the {RUN_ARTIFACT!r} input")
    return [step.entry_point, step.name]


def job_name(run_id: str, step_name: str) -> str:
    """SageMaker job name of a step in a run (at most 63 characters, letters, digits, -)."""
    name = f"learnrec-{run_id}-{step_name.replace('_', '-')}"
    if len(name) > 63:
        raise ValueError(f"job name {name!r} is longer than SageMaker's 63 characters")
    return name
