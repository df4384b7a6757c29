"""The runner of the processing steps behind ``training/pipeline_step.py``.

It calls the step's registered entry (:mod:`learnrec.pipeline.definition`) as
``entry(run, inputs, outputs)``, with a folder per artifact. SageMaker processing
conventions: each input artifact is a folder under ``/opt/ml/processing/input/<artifact>``,
each output a folder under ``/opt/ml/processing/output/<artifact>`` that the job uploads
when it ends. The local runner passes other folders with ``--input``/``--output``; the
code is the same. The run document is the ``run`` input's ``run.json``, as for every
processing step.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from learnrec.pipeline.artifacts import unpack
from learnrec.pipeline.definition import (
    RUN_ARTIFACT,
    RUN_FILE,
    StepKind,
    load_entry,
    step,
    steps_of,
)
from learnrec.pipeline.errors import StepError
from learnrec.pipeline.run import RunContext, RunError

INPUT_ROOT = Path("/opt/ml/processing/input")
OUTPUT_ROOT = Path("/opt/ml/processing/output")
#: Printed before the message of a failed step, so a runner can find it in the log.
FAILURE_MARKER = "learnrec-step-failed: "


#: What a processing step's entry is called with: the run, a folder per input
#: artifact, a folder per output artifact; it returns the step's summary.
ProcessingEntry = Callable[[RunContext, dict[str, Path], dict[str, Path]], Any]


def folders(names: tuple[str, ...], root: Path, given: dict[str, Path] | None) -> dict[str, Path]:
    given = given or {}
    return {name: Path(given.get(name, root / name)) for name in names}


def read_run(folder: Path) -> RunContext:
    """The run document from the job's ``run`` input (written by the ``start`` step)."""
    path = folder / RUN_FILE
    try:
        text = path.read_text()
    except OSError as error:
        raise RunError(f"no run document at {path}: {error}") from error
    return RunContext.from_json(text)


def run_processing(
    name: str,
    inputs: dict[str, Path] | None = None,
    outputs: dict[str, Path] | None = None,
) -> Any:
    """Run processing step ``name``; missing folders default to SageMaker's paths.

    The run comes from the step's ``run`` input like any other artifact, so the state
    machine and the local runner hand it over the same way.
    """
    definition = step(name)
    if definition.kind is not StepKind.PROCESSING:
        raise StepError(name, "not a processing step")
    input_dirs = folders(definition.artifact_inputs, INPUT_ROOT, inputs)
    for artifact, folder in input_dirs.items():
        if not folder.is_dir():
            raise StepError(name, f"input {artifact!r} is missing: no folder {folder}")
        unpack(folder)
    run = read_run(input_dirs[RUN_ARTIFACT])
    output_dirs = folders(definition.outputs_for(run.mode), OUTPUT_ROOT, outputs)
    for folder in output_dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    entry: ProcessingEntry = load_entry(definition)
    return entry(run, input_dirs, output_dirs)


def _pair(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    return name, Path(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``training/pipeline_step.py``."""
    parser = argparse.ArgumentParser(description="run one processing step of the pipeline")
    parser.add_argument("step", choices=[s.name for s in steps_of(StepKind.PROCESSING)])
    parser.add_argument("--input", type=_pair, action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--output", type=_pair, action="append", default=[], metavar="NAME=DIR")
    args = parser.parse_args(argv)
    try:
        summary = run_processing(args.step, dict(args.input), dict(args.output))
    except (StepError, RunError) as error:
        reason = error.reason if isinstance(error, StepError) else str(error)
        print(FAILURE_MARKER + reason, file=sys.stderr)
        return 1
    print(json.dumps({"step": args.step, "summary": summary}, default=str))
    return 0
