"""The report must render whatever a (possibly partial) evaluation run hands it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from learnrec.evaluation.report import ScoreSamples, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics() -> dict[str, Any]:
    return {
        "dataset": "sample",
        "k": 10,
        "split": "stratified",
        "test_fraction": 0.25,
        "seed": 42,
        "n_users": 123,
        "n_items": 500,
        "models": {
            "popularity": {
                "precision@10": 0.1,
                "recall@10": 0.2,
                "ndcg@10": 0.15,
                "map@10": 0.08,
                "coverage@10": 0.02,
                "users": 100.0,
                "simulated_ctr": 0.2,
            },
            "two_tower": {
                "precision@10": 0.15,
                "recall@10": 0.25,
                "ndcg@10": 0.2,
                "map@10": 0.1,
                "coverage@10": 0.3,
            },
            "two_tower_ranker": {
                "precision@10": 0.18,
                "recall@10": 0.3,
                "ndcg@10": 0.25,
                "map@10": 0.12,
                "coverage@10": 0.25,
                "simulated_ctr": 0.3,
                "ctr_lift_vs_popularity": 0.5,
            },
        },
        "timings_s": {"train_retrieval": 12.3, "train_ranker": 4.5},
    }


def _row(text: str, model: str, table_index: int = 0) -> list[str]:
    """Cells of ``model``'s row in the n-th table that has one (0: metrics, 1: lift)."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {model} |")]
    return [cell.strip() for cell in rows[table_index].strip("|").split("|")]


def test_full_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples: ScoreSamples = {
        "popularity": rng.poisson(30, 200),  # integer counts are fine
        "two_tower": list(rng.normal(0, 1, 200)),
        "two_tower_ranker": rng.random(200),
    }
    out = tmp_path / "nested" / "report"
    path = write_report(out, _metrics(), samples, notes=["trained on CPU", "sample data"])

    assert path == out / "report.md"
    for png in ("metrics.png", "scores.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC

    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Offline evaluation: sample (stratified split, k=10)")
    for expected in ("**Split:** stratified", "**Users:** 123", "**Items:** 500"):
        assert expected in text
    assert "**Test fraction:** 25%" in text
    assert "**Seed:** 42" in text
    assert "| model | precision@10 | recall@10 | ndcg@10 | map@10 | coverage@10 |" in text

    # Best per metric in bold: the ranker wins accuracy, two_tower wins coverage.
    assert _row(text, "two_tower_ranker") == [
        "two_tower_ranker",
        "**0.1800**",
        "**0.3000**",
        "**0.2500**",
        "**0.1200**",
        "0.2500",
    ]
    assert _row(text, "two_tower")[5] == "**0.3000**"
    assert _row(text, "popularity")[1] == "0.1000"

    # Lift: (0.15 - 0.1) / 0.1 = +50%, (0.3 - 0.02) / 0.02 = +1400%
    assert "### Lift vs popularity" in text
    lift = _row(text, "two_tower", table_index=1)
    assert lift[1] == "+50.0%"
    assert lift[5] == "+1400.0%"

    # CTR section: lift as given (0.5 -> +50%), best CTR bold.
    assert "| two_tower_ranker | **0.3000** | +50.0% |" in text
    assert "| popularity | 0.2000 | — |" in text
    assert "| two_tower |" not in text.split("## Simulated clicks")[1].split("##")[0]

    assert "| train_retrieval | 12.30 |" in text
    assert "| **total** | **16.80** |" in text
    assert "![metrics](metrics.png)" in text
    assert "![scores](scores.png)" in text
    assert "- trained on CPU" in text
    assert "- sample data" in text
    # Bookkeeping keys are not metrics.
    assert "users |" not in text


def test_zero_popularity_shows_na(tmp_path: Path) -> None:
    metrics = _metrics()
    metrics["models"]["popularity"]["precision@10"] = 0.0
    metrics["models"]["popularity"]["simulated_ctr"] = 0.0
    del metrics["models"]["two_tower_ranker"]["ctr_lift_vs_popularity"]
    text = write_report(tmp_path, metrics).read_text(encoding="utf-8")
    assert _row(text, "two_tower", table_index=1)[1] == "n/a"
    assert _row(text, "two_tower", table_index=1)[2] == "+25.0%"
    # CTR lift computed from the CTRs when missing, and n/a against a zero baseline.
    assert "| two_tower_ranker | **0.3000** | n/a |" in text
    assert not (tmp_path / "scores.png").exists()


def test_missing_optional_keys(tmp_path: Path) -> None:
    metrics: dict[str, Any] = {
        "models": {
            "two_tower": {"precision@5": 0.2, "ndcg@5": float("nan"), "note": "x"},
            "other": {"precision@5": 0.1, "recall@5": 0.3},
        }
    }
    text = write_report(tmp_path, metrics, score_samples={"two_tower": []}).read_text("utf-8")
    assert "Offline evaluation: unknown dataset" in text
    assert "Lift vs popularity" not in text  # no baseline to compare with
    assert "Timings" not in text
    assert "Simulated clicks" not in text
    # NaN and missing values render as a dash, not as "nan" or a crash; a column with no
    # finite value anywhere (ndcg@5) and non-numeric keys (note) are left out.
    assert "| model | precision@5 | recall@5 |" in text
    assert _row(text, "two_tower") == ["two_tower", "**0.2000**", "—"]
    assert _row(text, "other") == ["other", "0.1000", "**0.3000**"]
    assert "nan" not in text.lower()
    assert (tmp_path / "metrics.png").read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "scores.png").exists()  # empty samples are skipped


@pytest.mark.parametrize("metrics", [{}, {"models": {}}, {"models": "broken", "k": 10}])
def test_no_models(tmp_path: Path, metrics: dict[str, Any]) -> None:
    text = write_report(tmp_path, metrics).read_text(encoding="utf-8")
    assert "No model metrics were recorded." in text
    assert not (tmp_path / "metrics.png").exists()


def test_pipes_in_names_do_not_break_the_table(tmp_path: Path) -> None:
    metrics = {"models": {"a|b": {"precision@1": 0.5}}}
    text = write_report(tmp_path, metrics).read_text(encoding="utf-8")
    assert "| a\\|b | **0.5000** |" in text


def test_the_ranker_is_shown_against_its_features_alone(tmp_path: Path) -> None:
    metrics = {
        "k": 10,
        "models": {"popularity": {"ndcg@10": 0.1}, "two_tower_ranker": {"ndcg@10": 0.5}},
        "ranker_features_alone": {
            "retrieval_score": {"ndcg@10": 0.42, "order": "highest first"},
            "regression_score": {"ndcg@10": 0.47, "order": "highest first"},
            "abs_level_gap": {"ndcg@10": 0.2, "order": "lowest first"},
        },
    }
    text = write_report(tmp_path, metrics).read_text()
    section = text.split("## The ranker against its features alone", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert rows[0].startswith("| **two_tower_ranker** | learned | **0.5000**")
    assert rows[1].startswith("| regression_score | highest first | 0.4700")
    assert rows[-1].startswith("| abs_level_gap | lowest first | 0.2000")
