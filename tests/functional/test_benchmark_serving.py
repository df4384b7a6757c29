"""The serving benchmark runs end to end on a small catalog and reports sane figures.

Latency itself is never asserted: it depends on the machine. What must hold anywhere is
that every request went through the real handler and succeeded, and that the report
has the figures the CLI and the docs promise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learnrec_dev.benchmark.serving import RESULT_FILE, run_serving

pytestmark = pytest.mark.training  # builds (untrained) TensorFlow towers to export them

KEYS = {
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "requests",
    "errors",
    "fallbacks",
    "cold_start_s",
    "import_s",
    "load_s",
    "items",
    "package",
}


def test_serving_benchmark_on_a_small_catalog(tmp_path: Path) -> None:
    # package_dir=None: the venv estimate; building the real layers (pip downloads of
    # onnxruntime, faiss, ...) is the package benchmark's job, not this test's.
    result = run_serving(
        items=2000, requests=50, users=100, out=tmp_path, progress=False, package_dir=None
    )

    written = json.loads((tmp_path / RESULT_FILE).read_text())
    assert written == result
    missing = KEYS - set(result)
    assert not missing, missing
    assert result["requests"] == 50
    assert result["errors"] == 0, result["error_samples"]
    assert result["items"] == 2000
    assert 0 <= result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    assert result["cold_start_s"] == pytest.approx(result["import_s"] + result["load_s"], abs=0.002)
    package = result["package"]
    assert package["package_unzipped_mb"] > 0
    assert package["lambda_limit_mb"] == 250
    assert "this venv" in package["note"] and package["source"] == "estimated from this venv"
    # The serving path never loads what would not fit in (or would slow) the Lambda.
    assert result["heavy_modules_loaded"] == []
    # The bundle really carries what a trained one does: a full-size ranker, checked towers.
    assert result["bundle"]["ranker"]["trees"] == 200
    assert all(p["max_abs_diff"] <= 1e-4 for p in result["bundle"]["parity"])
