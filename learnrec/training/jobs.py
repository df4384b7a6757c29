"""Training jobs with SageMaker's conventions, runnable the same way on a laptop.

SageMaker starts a job as ``python train_x.py --hyper value ...`` with its data channels
in ``SM_CHANNEL_<NAME>`` folders and expects the model in ``SM_MODEL_DIR``. The local
pipeline sets the same variables, so one entry point serves both; an explicit
``--<channel>`` or ``--model-dir`` argument wins over the environment, for people
running a job by hand. Each script names its pipeline step, and :func:`main` runs the
entry the step registry holds for it (:mod:`learnrec.pipeline.definition`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from learnrec.bundle import BundleLayout, new_version, write_manifest
from learnrec.data.dataset import read_dataset
from learnrec.pipeline.definition import StepKind, load_entry, step
from learnrec.ranking.model import RankerParams
from learnrec.training.retrieval import RetrievalParams

P = TypeVar("P")
DEFAULT_MODEL_DIR = "/opt/ml/model"
#: What a training step's entry is called with (the job's arguments, None for the
#: process's own), and what it returns: the job's exit code.
TrainingEntry = Callable[[Sequence[str] | None], int]


def main(step_name: str, argv: Sequence[str] | None = None) -> int:
    """Run training step ``step_name``'s registered entry: what its script does."""
    definition = step(step_name)
    if definition.kind is not StepKind.TRAINING:
        raise ValueError(f"{step_name} is a {definition.kind.value} step, not a training step")
    entry: TrainingEntry = load_entry(definition)
    return entry(argv)


def _to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_params(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """One ``--flag`` per dataclass field, typed from the field's default."""
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind: Any = type(field.default)
        # Both spellings: people type dashes, SageMaker setups often use the field name.
        spellings = [flag] if "_" not in field.name else [flag, "--" + field.name]
        parser.add_argument(
            *spellings,
            dest=field.name,
            type=_to_bool if kind is bool else kind,
            default=field.default,
            help=f"(default {field.default})",
        )


def _params(cls: type[P], args: argparse.Namespace) -> P:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]


def _channel_argument(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    env = f"SM_CHANNEL_{name.upper()}"
    parser.add_argument(
        f"--{name}", type=Path, default=os.environ.get(env), help=f"{help_text} (env {env})"
    )


def _progress_argument(parser: argparse.ArgumentParser) -> None:
    # SageMaker passes every hyperparameter as "--name value": "--no-progress true" must
    # parse as well as the bare flag people type.
    parser.add_argument(
        "--no-progress", nargs="?", const=True, default=False, type=_to_bool, metavar="BOOL"
    )


def _channel(path: Path | None) -> Path | None:
    """A channel folder with any upstream training job's ``model.tar.gz`` unpacked."""
    if path is None:
        return None
    from learnrec.pipeline.artifacts import unpack

    return unpack(Path(path))


def _model_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path(os.environ.get("SM_MODEL_DIR", DEFAULT_MODEL_DIR)),
        help="where the model goes (env SM_MODEL_DIR)",
    )


def _require(parser: argparse.ArgumentParser, args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name) is None:
            parser.error(f"--{name} (or SM_CHANNEL_{name.upper()}) is required")


def retrieval_main(argv: Sequence[str] | None = None) -> int:
    """Train the two-tower on channel ``train`` and export it into the model folder."""
    from learnrec.training.retrieval import train_retrieval

    parser = argparse.ArgumentParser(description=retrieval_main.__doc__)
    _channel_argument(parser, "train", "dataset folder with the interactions to learn from")
    _model_dir_argument(parser)
    _progress_argument(parser)
    _add_params(parser, RetrievalParams)
    args = parser.parse_args(argv)
    _require(parser, args, "train")
    dataset = read_dataset(args.train)
    if dataset.interactions.empty:
        parser.exit(2, f"{parser.prog}: error: no interactions in {args.train}\n")
    summary = train_retrieval(
        dataset,
        dataset.interactions,
        args.model_dir,
        _params(RetrievalParams, args),
        progress=not args.no_progress,
    )
    print(json.dumps({"model_dir": str(args.model_dir), **summary["timings_s"]}))
    return 0


def ranking_main(argv: Sequence[str] | None = None) -> int:
    """Train the ranker and write the complete model bundle into the model folder.

    Channels: ``train`` (what the retrieval model learnt from), ``labels`` (dataset
    folder whose interactions the ranker learns to find), ``retrieval`` (the retrieval
    job's model folder, copied into the bundle) and, optionally, ``index`` (a freshly
    built ``faiss/`` index that replaces the retrieval folder's). A channel holding a
    SageMaker ``model.tar.gz`` is unpacked first.
    """
    from learnrec.training.ranking import train_ranking

    parser = argparse.ArgumentParser(description=ranking_main.__doc__)
    _channel_argument(parser, "train", "dataset folder the retrieval model was trained on")
    _channel_argument(parser, "labels", "dataset folder with the held-out interactions")
    _channel_argument(parser, "retrieval", "the retrieval job's model folder")
    _channel_argument(parser, "index", "folder with a rebuilt faiss/ index (optional)")
    _model_dir_argument(parser)
    parser.add_argument("--version", default=None, help="bundle version (default: a timestamp)")
    _progress_argument(parser)
    _add_params(parser, RankerParams)
    args = parser.parse_args(argv)
    _require(parser, args, "train", "labels", "retrieval")
    dataset = read_dataset(args.train)
    labels = read_dataset(args.labels).interactions
    retrieval_dir = Path(args.retrieval)
    _channel(retrieval_dir)
    index_dir = _channel(args.index)
    out: Path = args.model_dir
    if out.resolve() != Path(args.retrieval).resolve():
        shutil.copytree(retrieval_dir, out, dirs_exist_ok=True)
    bundle = BundleLayout(out)
    # The index artifact holds the bundle's index folder, as build_index wrote it.
    index = None if index_dir is None else BundleLayout(index_dir).index_dir
    if index is not None and index.is_dir():
        shutil.rmtree(bundle.index_dir, ignore_errors=True)
        shutil.copytree(index, bundle.index_dir)
    params = _params(RankerParams, args)
    summary = train_ranking(
        dataset, dataset.interactions, labels, out, out, params, progress=not args.no_progress
    )
    retrieval = json.loads(bundle.retrieval_summary.read_text())
    all_ts = [dataset.interactions["ts"], labels["ts"]]
    manifest = write_manifest(
        out,
        version=args.version or new_version(),
        parameters={
            "retrieval": retrieval["params"],
            "ranking": summary["params"],
            "item_regression": summary.get("regression", {}),
        },
        metrics={"ranker_candidate_recall": summary["candidate_recall"]},
        data={
            "dataset": dataset.name,
            "interactions": int(len(dataset.interactions) + len(labels)),
            "from": str(min(ts.min() for ts in all_ts)),
            "to": str(max(ts.max() for ts in all_ts)),
        },
    )
    print(json.dumps({"model_dir": str(out), "version": manifest["version"]}))
    return 0
