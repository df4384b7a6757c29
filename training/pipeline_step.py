"""SageMaker processing entry point for the pipeline's processing steps.

``python training/pipeline_step.py <step> [--input NAME=DIR ...] [--output NAME=DIR ...]``
with ``<step>`` one of the processing steps of learnrec/pipeline/definition.py
(``build_dataset``, ``build_index``, ``evaluate``). The run document is the file
``run.json`` of the ``run`` input (the artifact the ``start`` step writes; SageMaker caps
container arguments at 256 characters, so it is never passed as one). Inputs and outputs
default to SageMaker's ``/opt/ml/processing/input/<artifact>`` and
``/opt/ml/processing/output/<artifact>`` (artifact names from the same definition).
Prints the step's summary as JSON; on failure prints ``learnrec-step-failed: <reason>``
to stderr and exits 1. learnrec.pipeline.processing runs the entry the step registry
holds for the step.
"""

import sys

from learnrec.pipeline.processing import main

if __name__ == "__main__":
    sys.exit(main())
