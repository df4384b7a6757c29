"""The batch benchmark runs end to end on small synthetic data and reports its figures.

Speed is never asserted (it depends on the machine); that every learner was written,
through parts a reader can parse, is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learnrec.serving.batch import MANIFEST_FILE
from learnrec_dev.benchmark.batch import RESULT_FILE, run_batch_benchmark

pytestmark = pytest.mark.training  # builds (untrained) TensorFlow towers to export them


def test_batch_benchmark_on_small_data(tmp_path: Path) -> None:
    result = run_batch_benchmark(120, tmp_path, items=300, progress=False)
    assert json.loads((tmp_path / RESULT_FILE).read_text()) == result
    assert result["learners"] == result["written"] == 120 and result["degraded"] == 0
    assert result["learners_per_s"] > 0 and result["projected_100k_s"] > 0
    manifest = json.loads((tmp_path / "output" / MANIFEST_FILE).read_text())
    lines = (tmp_path / "output" / manifest["parts"][0]).read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 120 and all(len(row["items"]) == 10 for row in rows)
    assert all(row["fallback"] is None for row in rows)  # the full path, ranker included
