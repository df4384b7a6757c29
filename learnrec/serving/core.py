"""What serving a learner's list means, apart from HTTP: the API and batch jobs share it.

Which model serves a learner is the experiment's rule (:func:`pick_recommender`), and
their list comes from what the database holds of them (:func:`recommend_for_learner`).
Both live here, not in a route, so that a digest built by a batch job carries the list
the API would have shown, from the same variant.
"""

from __future__ import annotations

import logging

from learnrec.events.experiments import Experiment, PinnedModels
from learnrec.serving.model_store import ActiveModel
from learnrec.serving.recommender import (
    HistoryItem,
    Recommender,
    RecommendOptions,
    RecommendResult,
)
from learnrec.storage import LearnerContext

logger = logging.getLogger("learnrec.serving")

MAX_K = 100
"""The longest list a request may ask for."""

Assignment = tuple[Recommender | None, str | None, list[str]]
"""(recommender, variant, degraded notes) for one learner."""


def pick_recommender(
    model: ActiveModel,
    experiment: Experiment | None,
    pinned: PinnedModels | None,
    hashed_user_id: str,
) -> Assignment:
    """The experiment's rule for which model serves a learner.

    A variant whose model version cannot be loaded is served by the active model,
    and the response says so, rather than failing the request.
    """
    active: Recommender | None = model.get()
    if experiment is None:
        return active, None, []
    variant = experiment.assign(hashed_user_id)
    version = variant.model_version
    if version is None or version == model.version or pinned is None:
        return active, variant.name, []
    chosen: Recommender | None = pinned.get(version)
    if chosen is None:  # why (a path, an S3 error) is logged, not shown
        logger.warning("variant model %s unavailable: %s", version, pinned.error(version))
        return active, variant.name, [f"variant model {version} unavailable"]
    return chosen, variant.name, []


def recommend_for_learner(
    recommender: Recommender, key: str, learner: LearnerContext, options: RecommendOptions
) -> RecommendResult:
    """A learner's list from what the database holds of them (the database answered)."""
    history = [HistoryItem(h.content_id, h.weight) for h in reversed(learner.history)]
    if learner.opted_out:
        # Opted out of personalisation: their data shapes nothing but the filters.
        return recommender.non_personalised(history, options, "learner opted out")
    # An erased learner is served as a new one: nothing of theirs is left in the
    # database, and a model trained before the erasure must not recognise their id.
    return recommender.recommend(None if learner.erased else key, history, learner.profile, options)
