"""``learnrec models``: list, show, promote, rollback on a folder store; the pipeline Lambda."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from learnrec.bundle import write_manifest
from learnrec.serving.model_store import LocalModelStore
from learnrec_dev.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    models = LocalModelStore(tmp_path / "models")
    for number, version in enumerate(("v1", "v2", "v3")):
        bundle = tmp_path / version
        bundle.mkdir()
        (bundle / "weights.bin").write_bytes(bytes([number]) * 10)
        write_manifest(
            bundle,
            version,
            parameters={},
            metrics={"primary_metric": "ndcg@10", "candidate": {"ndcg@10": 0.4 + number / 100}},
            data={},
            drift={"model_drift_score": 0.05 * number, "profile": {"score": {}}},
            commit="abc123",
        )
        models.publish(bundle, version)
    return tmp_path / "models"


def cli(store: Path, *args: str) -> int:
    return main(["models", *args, "--model-store", str(store)])


def test_promote_and_rollback_move_the_pointer(store: Path, capsys: Any) -> None:
    assert cli(store, "promote", "v1") == 0
    assert cli(store, "promote", "v3") == 0
    assert LocalModelStore(store).pointer().active == "v3"
    assert cli(store, "rollback") == 0
    pointer = LocalModelStore(store).pointer()
    assert (pointer.active, pointer.previous) == ("v1", ())
    capsys.readouterr()
    assert cli(store, "list") == 0
    out = capsys.readouterr().out
    assert "* v1" in out and "ndcg@10=0.4000" in out and "drift=0.100" in out
    assert "active: v1" in out


def test_show_prints_the_manifest_without_the_drift_tables(store: Path, capsys: Any) -> None:
    assert cli(store, "show", "v2") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == "v2" and shown["git_commit"] == "abc123"
    assert shown["drift"] == {"model_drift_score": 0.05}
    assert shown["files"] == 1 and shown["active"] is False


def test_mistakes_get_a_clear_message_and_change_nothing(store: Path, capsys: Any) -> None:
    assert cli(store, "rollback") == 2
    assert "no earlier active version" in capsys.readouterr().err
    assert cli(store, "promote", "v9") == 2
    assert "no model version 'v9'" in capsys.readouterr().err
    assert cli(store, "show", "v9") == 2
    assert LocalModelStore(store).pointer().active is None


def test_the_pipeline_function_refuses_unknown_steps_and_bad_runs() -> None:
    spec = importlib.util.spec_from_file_location(
        "pipeline_handler", REPO / "functions" / "pipeline" / "handler.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from learnrec.pipeline.functions import handle

    assert handle({"step": "deploy"}, clients={"s3": object()}) == {
        "step": "deploy",
        "ok": False,
        "error": "deploy: unknown function step: use start, register or promote",
    }
    bad = handle({"step": "register", "run": {"mode": "full"}}, clients={"s3": object()})
    assert bad["ok"] is False and "invalid run document" in bad["error"]
    assert callable(module.handler)
