"""Step ``build_index``: the item vectors of the run's retrieval model, made searchable.

Always writes the faiss index (``faiss/`` in the ``index`` artifact; the ranking job puts
it into the bundle, where serving loads it). With ``VECTOR_INDEX=opensearch`` it also
creates the version's own OpenSearch index (``<alias>-<version>``) and fills it, through
a client signed with the job's role (:func:`learnrec.retrieval.opensearch_index.open_index`,
with a timeout long enough for ``_bulk``). The alias is not moved here but when the
version is promoted (:mod:`learnrec.pipeline.lifecycle`), so the index that serving
queries always matches the towers of the active model, even when the gate turns this
candidate down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from learnrec.bundle import INDEX_DIR, BundleLayout
from learnrec.config import Settings, get_settings
from learnrec.pipeline.errors import StepError
from learnrec.pipeline.run import RunContext
from learnrec.retrieval.faiss_index import FaissIndex
from learnrec.retrieval.index import VectorIndexError
from learnrec.serving.bundle_index import indexed_items

STEP = "build_index"


def run_step(run: RunContext, inputs: dict[str, Path], outputs: dict[str, Path]) -> dict[str, Any]:
    """The step's registered entry (in a processing job, or as one locally)."""
    return build_index(run, inputs["retrieval"], outputs["index"])


def build_index(
    run: RunContext,
    retrieval: Path,
    out: Path,
    settings: Settings | None = None,
    opensearch_client: Any = None,
) -> dict[str, Any]:
    settings = settings or get_settings()
    try:
        items = indexed_items(retrieval)
    except (OSError, ValueError, KeyError) as error:
        raise StepError(STEP, f"the retrieval artifact is incomplete: {error}") from error
    if not items:
        raise StepError(STEP, "the retrieval model has no item vectors to index")
    FaissIndex.build(items).save(BundleLayout(out).index_dir)
    summary: dict[str, Any] = {
        "items": len(items),
        "dimension": len(items[0].vector),
        "faiss": INDEX_DIR,
        "opensearch_index": None,
    }
    if settings.vector_index == "opensearch":
        from learnrec.retrieval.opensearch_index import BULK_TIMEOUT_S, open_index

        try:
            index = open_index(
                settings.opensearch_endpoint,
                settings.opensearch_alias,
                opensearch_client,
                timeout=BULK_TIMEOUT_S,
            )
            # A retried job finds its own index from the failed attempt: refill it.
            name = index.create_version_index(run.version, summary["dimension"], exist_ok=True)
            index.bulk_load(run.version, items)
        except VectorIndexError as error:
            raise StepError(STEP, str(error)) from error
        summary["opensearch_index"] = name
    return summary
