"""The retraining pipeline as data: ordered steps with their inputs and outputs.

Both runners read this one tuple: the CDK app turns it into the Step Functions state
machine (``cdk/``), and ``learnrec pipeline run`` runs it locally. A step's ``kind``
says where it runs in AWS:

- ``training``: a SageMaker training job (``.sync``) running ``entry_point`` from the
  uploaded source in the TensorFlow training container, with SageMaker's conventions
  (``SM_CHANNEL_<NAME>`` per input, ``SM_MODEL_DIR`` for the output, hyperparameters);
- ``processing``: a SageMaker processing job (``.sync``) running ``entry_point`` with the
  step's name, in the same container, for steps that need pandas or TensorFlow;
- ``function``: the pipeline Lambda (``functions/pipeline/``), for short control-plane
  steps that only need boto3.

Locally, training and processing steps run as child processes with the same conventions,
and function steps run in-process. Artifacts move between steps as S3 prefixes under
``pipeline/<run id>/<artifact>/`` in the data bucket; the names in ``inputs`` and
``outputs`` are those artifact names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StepKind(StrEnum):
    TRAINING = "training"
    PROCESSING = "processing"
    FUNCTION = "function"


class Mode(StrEnum):
    """``full``: weekly, retrains everything. ``ranking``: daily, keeps the active
    model's towers, rebuilds the index and retrains the ranker."""

    FULL = "full"
    RANKING = "ranking"


@dataclass(frozen=True)
class Step:
    name: str
    kind: StepKind
    description: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    entry_point: str | None = None
    modes: frozenset[Mode] = frozenset(Mode)

    def runs_in(self, mode: Mode) -> bool:
        return mode in self.modes


PIPELINE_STEP_ENTRY = "training/pipeline_step.py"

PIPELINE: tuple[Step, ...] = (
    Step(
        "build_dataset",
        StepKind.PROCESSING,
        "events in S3 over the data window, joined with the catalog, split into "
        "train and validation",
        inputs=("events", "catalog"),
        outputs=("dataset",),
        entry_point=PIPELINE_STEP_ENTRY,
    ),
    Step(
        "train_retrieval",
        StepKind.TRAINING,
        "two-tower model trained with TFRS, exported to ONNX and checked against TensorFlow",
        inputs=("dataset",),
        outputs=("retrieval",),
        entry_point="training/train_retrieval.py",
        modes=frozenset({Mode.FULL}),
    ),
    Step(
        "build_index",
        StepKind.PROCESSING,
        "item embeddings into a new OpenSearch index per version plus the alias swap, "
        "and the faiss index in the bundle",
        inputs=("retrieval",),
        outputs=("index",),
        entry_point=PIPELINE_STEP_ENTRY,
    ),
    Step(
        "train_ranking",
        StepKind.TRAINING,
        "XGBoost ranker on the retrieval model's candidates; writes the candidate bundle",
        inputs=("dataset", "retrieval", "index"),
        outputs=("bundle",),
        entry_point="training/train_ranking.py",
    ),
    Step(
        "evaluate",
        StepKind.PROCESSING,
        "candidate against popularity and the active model on the same validation data; "
        "drift of scores and features against the active model",
        inputs=("dataset", "bundle"),
        outputs=("evaluation",),
        entry_point=PIPELINE_STEP_ENTRY,
    ),
    Step(
        "register",
        StepKind.FUNCTION,
        "bundle to its S3 prefix with the manifest, and a SageMaker Model Registry package",
        inputs=("bundle", "evaluation"),
        outputs=("version",),
    ),
    Step(
        "promote",
        StepKind.FUNCTION,
        "move the active-version pointer if the gate passed; otherwise keep the active "
        "model and say why",
        inputs=("version", "evaluation"),
        outputs=("active",),
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
