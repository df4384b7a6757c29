"""Lists of items: a learner's recommendations, items like one item, what is trending."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request

from learnrec import metric_names
from learnrec.config import Settings
from learnrec.events.experiments import new_recommendation_id
from learnrec.schemas import MAX_LEVEL
from learnrec.serving.core import MAX_K, recommend_for_learner
from learnrec.serving.deps import (
    AppSettings,
    Assign,
    LearnerCaller,
    MetricsSink,
    Model,
    ReaderCaller,
    Store,
)
from learnrec.serving.readiness import DATABASE_DOWN
from learnrec.serving.recommender import HistoryItem, Recommender, RecommendOptions
from learnrec.serving.schemas_http import (
    ItemId,
    ItemOut,
    Level,
    RecommendationsOut,
    SimilarOut,
    Topic,
    TrendingOut,
)
from learnrec.storage import LearnerContext

logger = logging.getLogger("learnrec.serving")
router = APIRouter()

DEFAULT_K: int = Settings.model_fields["top_k_ranking"].default
"""What the spec states as ``k``'s default; a request without ``k`` gets the settings'
``TOP_K_RANKING``, which is this unless the deployment sets it."""


@router.get("/recommend/{user_id}", response_model=RecommendationsOut)
async def recommend(
    request: Request,
    learner: LearnerCaller,
    store: Store,
    assign: Assign,
    metrics: MetricsSink,
    settings: AppSettings,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = DEFAULT_K,
    include_consumed: bool = False,
    include_topics: Annotated[list[Topic] | None, Query(max_length=50)] = None,
    exclude_topics: Annotated[list[Topic] | None, Query(max_length=50)] = None,
    levels: Annotated[list[Level] | None, Query(max_length=MAX_LEVEL)] = None,
    exclude_ids: Annotated[list[ItemId] | None, Query(max_length=500)] = None,
) -> RecommendationsOut:
    started = time.perf_counter()
    key = learner.key
    recommender, variant, notes = assign(key)
    database_down: Exception | None = None
    try:
        context = store.learner_context(key)
    except DATABASE_DOWN as error:
        # Popular items from the bundle use nothing of the learner's, so they are a
        # safe answer for anyone, opted out or erased included.
        logger.warning("recommend without the database: %s", error)
        context, database_down = LearnerContext(None, None, []), error
    opted_out = context.opted_out
    options = RecommendOptions(
        k=k if "k" in request.query_params else settings.top_k_ranking,
        include_consumed=include_consumed,
        include_topics=frozenset(include_topics or ()),
        exclude_topics=frozenset(exclude_topics or ()),
        levels=frozenset(levels or ()),
        exclude_ids=frozenset(exclude_ids or ()),
    )
    recommender = recommender or Recommender(None, None)
    if database_down is not None:
        why = "the database is unavailable: popular items, without the learner's history"
        history = [HistoryItem(h.content_id, h.weight) for h in reversed(context.history)]
        result = recommender.non_personalised(history, options, why)
        if not result.items:  # no model either: nothing useful, the database's 503
            raise database_down
    else:
        result = recommend_for_learner(recommender, key, context, options)
    result.degraded.extend(notes)
    metrics(metric_names.LATENCY, time.perf_counter() - started, "Seconds")
    metrics(metric_names.SUCCESS, 1, "Count")
    if opted_out:  # popular items by the learner's choice: not a degraded service
        metrics(metric_names.OPTED_OUT, 1, "Count")
    elif result.fallback:
        metrics(metric_names.fallback_metric(result.fallback), 1, "Count")
    if result.items:
        mean = sum(i.score for i in result.items) / len(result.items)
        metrics(metric_names.SCORE_MEAN, mean, "None")
    return RecommendationsOut(
        user_id=learner.user_id,
        recommendation_id=new_recommendation_id(variant, result.model_version),
        model_version=result.model_version,
        variant=variant,
        fallback=result.fallback.value if result.fallback else None,
        degraded=result.degraded,
        items=[ItemOut(**vars(i)) for i in result.items],
    )


@router.get("/similar/{content_id}", response_model=SimilarOut)
async def similar(
    content_id: Annotated[str, Path(min_length=1, max_length=128)],
    model: Model,
    caller: ReaderCaller,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
) -> SimilarOut:
    recommender: Recommender | None = model.get()
    if recommender is None:
        raise HTTPException(503, "no model is loaded yet")
    result = recommender.similar(content_id, k)
    if result is None:
        raise HTTPException(404, f"unknown content id {content_id!r}")
    return SimilarOut(
        content_id=content_id,
        model_version=result.model_version,
        fallback=result.fallback.value if result.fallback else None,
        degraded=result.degraded,
        items=[ItemOut(**vars(i)) for i in result.items],
    )


@router.get("/trending", response_model=TrendingOut)
async def trending(
    store: Store,
    model: Model,
    caller: ReaderCaller,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    days: Annotated[int, Query(ge=1, le=90)] = 7,
) -> TrendingOut:
    """Most learners over the last ``days``; the model's all-time popular if none."""
    since = datetime.now(UTC) - timedelta(days=days)
    degraded: list[str] = []
    database_down: Exception | None = None
    try:
        counts = store.trending(since, k)
    except DATABASE_DOWN as error:
        logger.warning("trending without the database: %s", error)
        counts, database_down = [], error
        degraded = ["the database is unavailable: the model's popular items"]
    if counts:
        items = [
            ItemOut(content_id=cid, score=float(n), rank=r, reason=f"{n} learners recently")
            for r, (cid, n) in enumerate(counts, start=1)
        ]
        return TrendingOut(window_days=days, source="recent_engagement", items=items)
    recommender: Recommender | None = model.get()
    popular = recommender.popular(k) if recommender else []
    if database_down is not None and not popular:  # no model either: the 503
        raise database_down
    return TrendingOut(
        window_days=days,
        source="model_popularity",
        degraded=degraded,
        items=[ItemOut(**vars(i)) for i in popular],
    )
