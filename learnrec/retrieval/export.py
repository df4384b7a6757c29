"""Export the towers to ONNX with tf2onnx, and prove the export computes what TF does.

A conversion can succeed and still write a model onnxruntime cannot load, or one that
computes something else. So every exported tower is loaded
back into onnxruntime and run on real inputs next to TensorFlow; if any output differs
by more than the tolerance, the export fails and no bundle is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from learnrec.retrieval.onnx_runtime import ITEM_INPUTS, OUTPUT_NAME, USER_INPUTS
from learnrec.retrieval.tf_runtime import tf
from learnrec.retrieval.towers import ItemTower, UserTower

PARITY_TOLERANCE = 1e-4
ONNX_OPSET = 17


class ExportParityError(RuntimeError):
    """The ONNX tower does not load or does not compute what the TensorFlow tower does."""


@dataclass(frozen=True)
class ParityReport:
    tower: str
    max_abs_diff: float
    rows_checked: int


def _signature(inputs: dict[str, np.ndarray]) -> list[tf.TensorSpec]:
    return [
        tf.TensorSpec(shape=(None, *array.shape[1:]), dtype=tf.as_dtype(array.dtype), name=name)
        for name, array in inputs.items()
    ]


def export_tower(
    tower: UserTower | ItemTower,
    sample_inputs: dict[str, np.ndarray],
    path: Path,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityReport:
    """Convert one tower to ONNX at ``path`` and check it against TensorFlow.

    ``sample_inputs`` are real encoded rows (their order fixes the ONNX input order); the
    parity check runs on them. The file is removed again if the check fails.
    """
    # Imported here, after tf_runtime has configured TensorFlow: tf2onnx imports it too.
    import tf2onnx

    names = list(sample_inputs)

    @tf.function(input_signature=_signature(sample_inputs))  # type: ignore[untyped-decorator]
    def serve(*args: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: tower(dict(zip(names, args, strict=True)), training=False)}

    path.parent.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_function(
        serve, input_signature=_signature(sample_inputs), opset=ONNX_OPSET, output_path=str(path)
    )
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run([OUTPUT_NAME], sample_inputs)[0]
    except Exception as error:  # any load or run failure means the export is unusable
        path.unlink(missing_ok=True)
        raise ExportParityError(
            f"{tower.name}: onnxruntime cannot run the export: {error}"
        ) from error
    expected = tower({k: tf.constant(v) for k, v in sample_inputs.items()}, training=False).numpy()
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    if got.shape != expected.shape or not diff <= tolerance:
        path.unlink(missing_ok=True)
        raise ExportParityError(
            f"{tower.name}: ONNX output differs from TensorFlow by {diff:.3g} "
            f"(tolerance {tolerance:g}, shapes {got.shape} vs {expected.shape})"
        )
    return ParityReport(tower=tower.name, max_abs_diff=diff, rows_checked=len(expected))


def check_input_names(
    user_inputs: dict[str, np.ndarray], item_inputs: dict[str, np.ndarray]
) -> None:
    """The serving runtime feeds inputs by these names; training must export the same."""
    if tuple(user_inputs) != USER_INPUTS or tuple(item_inputs) != ITEM_INPUTS:
        raise ValueError(
            f"tower inputs must be {USER_INPUTS} and {ITEM_INPUTS}, "
            f"got {tuple(user_inputs)} and {tuple(item_inputs)}"
        )
