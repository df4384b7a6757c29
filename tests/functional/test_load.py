"""``learnrec benchmark load``, tiny: the whole path it runs, with a small bundle.

Five users for three seconds: enough to see that the stack comes up (gateway as a
subprocess on the local AWS), locust drives every task against it without a failure,
``load.json`` has its figures, and what the run started is stopped again.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from learnrec.data.generator import generate
from learnrec.stages import ResourceNames
from learnrec_dev.benchmark.load import RESULT_FILE, run_load
from learnrec_dev.local.aws import is_listening


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.training
def test_tiny_load_run_writes_figures_and_stops_its_gateway(
    quality_run: Path, aws_names: ResourceNames, tmp_path: Path
) -> None:
    bundle = shutil.copytree(quality_run / "bundle", tmp_path / "bundle")
    port = _free_port()
    out = tmp_path / "load"
    result = run_load(
        users=5,
        duration_s=3,
        out=out,
        port=port,
        bundle=bundle,
        spawn_rate=5,
        stage=aws_names.stage,
        progress=False,
        data=generate(users=160, items=60, events=3000, seed=5),  # quality_run's data
    )
    written = json.loads((out / RESULT_FILE).read_text())
    assert written == result
    for key in ("p50_ms", "p95_ms", "p99_ms", "requests", "failures", "rps"):
        assert isinstance(written[key], int | float), key
    assert written["users"] == 5 and written["duration_s"] == 3
    assert written["gateway"] == "started"
    assert written["requests"] > 0 and written["failures"] == 0, written["endpoints"]
    assert "GET /recommend/{user_id}" in written["endpoints"]
    assert written["p50_ms"] <= written["p95_ms"] <= written["p99_ms"]
    assert not is_listening("127.0.0.1", port), "the gateway it started is stopped"
