"""The small trained model every test that needs one shares: its data and its settings.

Training it takes tens of seconds, so the session trains it once (``quality_run`` in
tests/conftest.py) for every folder's tests; tests that train models of their own use
these settings to stay as small.
"""

from __future__ import annotations

from pathlib import Path

from learnrec.data.dataset import Dataset
from learnrec.data.generator import generate, to_dataset
from learnrec.ranking.model import RankerParams
from learnrec.training.retrieval import RetrievalParams

SMALL_RETRIEVAL = RetrievalParams(
    epochs=4, batch_size=128, embedding_dim=16, hidden_dim=32, validation_fraction=0.0
)
SMALL_RANKER = RankerParams(n_estimators=20, candidates=30)


def small_sample() -> Dataset:
    return to_dataset(generate(users=160, items=60, events=3000, seed=5), name="sample")


def train_quality_run(dataset: Dataset, out: Path) -> Path:
    """The quality benchmark on ``dataset`` into ``out``: metrics, report and ``bundle/``."""
    from learnrec_dev.benchmark.quality import run_quality

    run_quality(
        dataset,
        out,
        k=5,
        progress=False,
        retrieval_params=SMALL_RETRIEVAL,
        ranker_params=SMALL_RANKER,
    )
    return out
