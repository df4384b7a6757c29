"""The recommendation path: learner -> user tower -> k-NN candidates -> filters -> ranker.

Every stage that can fail degrades instead of failing the request:
no model or a broken user tower -> popular items; an index error -> an exact search over
the bundle's item vectors with the same filters (popular items if that fails too); a
ranker error -> retrieval order. The result says which fallback served it, so the API
can flag it and metrics can count it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import numpy as np

from learnrec.bundle import CATALOG_FILE, EMBEDDINGS_FILE, SPACE_FILE, STATS_FILE, read_manifest
from learnrec.features.ranking import (
    COMPLETION_STRENGTH,
    FEATURE_NAMES,
    ItemStats,
    LearnerState,
    ranking_features,
)
from learnrec.features.space import (
    FeatureSpace,
    encode_user_inputs,
    item_tokens,
    learner_tokens,
)
from learnrec.ranking.model import RANKER_FILE, Ranker
from learnrec.retrieval.candidates import ExactIndex
from learnrec.retrieval.index import (
    IndexedItem,
    ItemFilter,
    SearchHit,
    VectorIndex,
    VectorIndexError,
)
from learnrec.retrieval.onnx_runtime import OnnxTowers
from learnrec.schemas import ContentItem, Learner
from learnrec.serving import exposure
from learnrec.serving.bundle_index import load_exact_index
from learnrec.serving.catalog import ServingCatalog

logger = logging.getLogger(__name__)

TOP_K_RETRIEVAL = 100
# New items in the learner's topics and near their level scored per request.
MAX_NEW_SCORED = 500
MAX_NEW_CHECKED = 200  # of those, the best checked against the request's filters
PREREQUISITES_FIRST = " (complete its prerequisites first)"
_INTEREST_MATCH = FEATURE_NAMES.index("interest_match")


class Fallback(StrEnum):
    """Which degraded path served a response (None when the full path did)."""

    POPULARITY = "popularity"
    RETRIEVAL_ORDER = "retrieval_order"
    # The index failed; an exact search over the bundle's item vectors stood in.
    EXACT_RETRIEVAL = "exact_retrieval"


@dataclass(frozen=True)
class HistoryItem:
    """One item in a learner's recent history, with their strongest engagement."""

    content_id: str
    strength: float


@dataclass(frozen=True)
class RecommendOptions:
    k: int = 10
    include_consumed: bool = False
    include_topics: frozenset[str] = frozenset()
    exclude_topics: frozenset[str] = frozenset()
    levels: frozenset[int] = frozenset()
    exclude_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Recommendation:
    content_id: str
    score: float
    rank: int
    reason: str
    title: str = ""  # the catalog's title, for people; empty when the item has none


@dataclass
class RecommendResult:
    items: list[Recommendation]
    model_version: str | None
    fallback: Fallback | None = None
    degraded: list[str] = field(default_factory=list)
    filled_from_popular: int = 0


class ModelBundle:
    """One model version, loaded once per container (its files: :mod:`learnrec.bundle`)."""

    def __init__(self, directory: Path, verify: bool = True) -> None:
        """Load every part; the checksums are verified meanwhile, on another thread.

        Hashing a 100k-item bundle takes ~0.1 s of a cold start and releases the GIL, so
        it overlaps the loading; a mismatch still fails the load (and the model store
        keeps serving the version it has).
        """
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-verify") as pool:
            manifest = pool.submit(read_manifest, directory, verify)
            self.directory = directory
            self.space = FeatureSpace.load(directory / SPACE_FILE)
            self.towers = OnnxTowers(directory)
            self.stats = ItemStats.load(directory / STATS_FILE)
            self.catalog = ServingCatalog.load(directory / CATALOG_FILE)
            # Only rare paths read it; mapped, it costs nothing until they do.
            self.item_vectors = np.load(directory / EMBEDDINGS_FILE, mmap_mode="r")
            self.ranker = Ranker.load(directory) if (directory / RANKER_FILE).exists() else None
            self.version: str = manifest.result()["version"]
        order = np.argsort(-self.stats.popularity[1:], kind="stable")
        keys = self.space.items.keys
        self.popular: list[str] = [keys[i] for i in order.tolist()]

    def user_vector(
        self, user_id: str | None, history: Sequence[HistoryItem], profile: Learner | None
    ) -> np.ndarray:
        """The learner's unit vector [D] from their id, recent history and profile.

        ``user_id`` None: a learner the model must not recognise (new, or erased after
        it was trained), encoded like any id outside the vocabulary.
        """
        tokens = learner_tokens(profile.interests, profile.goals, profile.level) if profile else []
        inputs = encode_user_inputs(
            self.space, [user_id or ""], [[h.content_id for h in history]], [tokens]
        )
        vector: np.ndarray = self.towers.user(**inputs)[0]
        return vector

    def ranking_features(
        self,
        history: Sequence[HistoryItem],
        profile: Learner | None,
        candidate_ids: Sequence[str],
        retrieval_scores: np.ndarray,
    ) -> np.ndarray:
        """The ranker's input [C, F] for the learner's candidates, in the order given:
        the same features training computed (:mod:`learnrec.features.ranking`)."""
        state = LearnerState.of(
            self.space,
            [h.content_id for h in history],
            [h.strength for h in history],
            profile.level if profile else None,
            profile.interests if profile else (),
        )
        candidates = self.space.items.lookup(candidate_ids)
        return ranking_features(self.stats, state, candidates, retrieval_scores)

    def item_vectors_for(self, items: Sequence[ContentItem]) -> np.ndarray:
        """Vectors [N, D] for catalog items, new ones included, from the item tower."""
        tokens = [
            item_tokens(i.topics, i.tags, i.level, i.format.value if i.format else None)
            for i in items
        ]
        return self.towers.item(
            self.space.items.lookup(i.content_id for i in items),
            self.space.encode_item_features(tokens),
        )


class Recommender:
    """Serves recommendations from a bundle and a vector index over its items."""

    def __init__(
        self,
        bundle: ModelBundle | None,
        index: VectorIndex | None,
        top_k_retrieval: int = TOP_K_RETRIEVAL,
        new_item_slots: int = exposure.DEFAULT_NEW_ITEM_SLOTS,
    ) -> None:
        self.bundle = bundle
        self.index = index
        self.top_k_retrieval = top_k_retrieval
        self.new_item_slots = new_item_slots
        # Items without training engagement and their vectors; built on first use.
        self._new: exposure.NewItemPool | None = None
        # The bundle's items for exact search when the index fails; built on first use,
        # with the items added since the bundle loaded (kept until then).
        self._exact: ExactIndex | None = None
        self._added: list[IndexedItem] = []

    def recommend(
        self,
        user_id: str | None,
        history: Sequence[HistoryItem],
        profile: Learner | None,
        options: RecommendOptions,
    ) -> RecommendResult:
        bundle = self.bundle
        item_filter = self._filter(history, options)
        if bundle is None or self.index is None:
            return self._popular(None, item_filter, options, ["no model is loaded"])
        # Notes in ``degraded`` reach clients: fixed texts; the exception goes to the log.
        try:
            vector = bundle.user_vector(user_id, history, profile)
        except Exception:  # a broken tower must not fail the request
            logger.exception("user tower failed")
            return self._popular(bundle, item_filter, options, ["user tower failed"])
        index_failed = False
        try:
            hits = self.index.search(vector, self.top_k_retrieval, item_filter)
        except Exception as error:  # VectorIndexError, or any client bug or outage
            logger.warning("index failed; searching the bundle's items exactly", exc_info=error)
            try:
                hits = self._exact_index(bundle).search(vector, self.top_k_retrieval, item_filter)
            except Exception:
                logger.exception("exact search failed")
                return self._popular(bundle, item_filter, options, ["index failed"])
            index_failed = True
        if not hits:
            return self._popular(bundle, item_filter, options, ["no candidates passed the filters"])
        result = self._rank(bundle, user_id, history, profile, hits, options)
        if index_failed:
            result.fallback = result.fallback or Fallback.EXACT_RETRIEVAL
            result.degraded.insert(0, "index failed")
        try:
            self._expose_new(bundle, result, vector, history, profile, item_filter, options)
        except Exception:  # exposure is a bonus: the ranked list stands without it
            logger.exception("new-item exposure failed")
            result.degraded.append("new-item exposure failed")
        self._fill(bundle, result, item_filter, options)
        return result

    def non_personalised(
        self, history: Sequence[HistoryItem], options: RecommendOptions, why: str
    ) -> RecommendResult:
        """Popular items through the same filters, for learners who opted out."""
        return self._popular(self.bundle, self._filter(history, options), options, [why])

    def similar(self, content_id: str, k: int) -> RecommendResult | None:
        """Items closest to ``content_id`` in the item tower's space (None: unknown item).

        Falls back to an exact search over the bundle's items when the index fails, and
        to co-engagement similarity when that fails too.
        """
        bundle = self.bundle
        if bundle is None:
            return None
        item = bundle.catalog.get(content_id)
        if item is None:
            return None
        result = RecommendResult(items=[], model_version=bundle.version)
        others = ItemFilter(exclude_ids=frozenset({content_id}))
        try:
            query = bundle.item_vectors_for([item])[0]
            try:
                if self.index is None:
                    raise VectorIndexError("no index is loaded")
                hits = self.index.search(query, k, others)
            except Exception as error:
                logger.warning("similar-items search failed; searching exactly", exc_info=error)
                hits = self._exact_index(bundle).search(query, k, others)
                result.fallback = Fallback.EXACT_RETRIEVAL
                result.degraded.append("index failed")
            pairs = [(h.content_id, h.score) for h in hits]
            reason = f"Similar content to {bundle.catalog.title(content_id)}"
        except Exception:  # degrade to what learners co-engaged with
            logger.exception("similar-items search failed")
            result.fallback = Fallback.POPULARITY
            result.degraded[:] = ["index failed"]
            columns, values = bundle.stats.similarity.row(bundle.space.items.index(content_id))
            order = np.argsort(-values, kind="stable")[:k]
            pairs = [(bundle.space.items.key(int(columns[i])), float(values[i])) for i in order]
            reason = f"Learners who took {bundle.catalog.title(content_id)} also took this"
        result.items = [
            Recommendation(cid, score, rank, reason, _title(bundle, cid))
            for rank, (cid, score) in enumerate(pairs, start=1)
        ]
        return result

    def popular(self, k: int) -> list[Recommendation]:
        """The all-time most engaged-with items of the model's training data."""
        if self.bundle is None:
            return []
        result = RecommendResult(items=[], model_version=self.bundle.version)
        self._fill(
            self.bundle, result, ItemFilter(), RecommendOptions(k=k), "Popular with learners"
        )
        return result.items

    def add_items(self, items: Sequence[ContentItem]) -> int:
        """Make new or changed catalog items recommendable now, from their features."""
        if self.bundle is None or self.index is None or not items:
            return 0
        vectors = self.bundle.item_vectors_for(items)
        indexed = [
            IndexedItem(i.content_id, v, tuple(i.topics), i.level)
            for i, v in zip(items, vectors, strict=True)
        ]
        self.index.upsert(indexed)
        if self._exact is None:
            self._added.extend(indexed)
        else:
            self._exact.upsert(indexed)
        self.bundle.catalog.upsert(items)
        new = self._new_items(self.bundle)
        for item, vector in zip(items, vectors, strict=True):
            if new.is_new(item.content_id):
                new.add(item.content_id, vector, item.topics)
        return len(items)

    def _exact_index(self, bundle: ModelBundle) -> ExactIndex:
        """The bundle's items (plus those added since) for exact search; built on first use.

        Only an index failure needs it, so a healthy container never pays for it (~25 MB
        of vectors and some tens of milliseconds at 100k items).
        """
        if self._exact is None:
            exact = load_exact_index(bundle.directory, bundle.space, bundle.item_vectors)
            exact.upsert(self._added)
            self._exact, self._added = exact, []
        return self._exact

    def _new_items(self, bundle: ModelBundle) -> exposure.NewItemPool:
        """The items without training engagement; built once per container, on first use."""
        if self._new is None:
            self._new = exposure.NewItemPool(
                bundle.stats.popularity,
                bundle.stats.level,
                bundle.stats.tokens,
                bundle.stats.token_keys,
                bundle.space.items.keys,
                bundle.space.items.index,
                bundle.item_vectors,
            )
        return self._new

    @staticmethod
    def _as_new(bundle: ModelBundle, pick: Recommendation, topics: set[str]) -> Recommendation:
        item = bundle.catalog.get(pick.content_id)
        item_topics = item.topics if item else []
        topic = exposure.matching_topic(item_topics, topics) or next(iter(item_topics), None)
        text = exposure.reason(topic) if topic else "New in the catalog"
        if pick.reason.endswith(PREREQUISITES_FIRST):
            text += PREREQUISITES_FIRST
        return replace(pick, reason=text)

    def _expose_new(
        self,
        bundle: ModelBundle,
        result: RecommendResult,
        vector: np.ndarray,
        history: Sequence[HistoryItem],
        profile: Learner | None,
        item_filter: ItemFilter,
        options: RecommendOptions,
    ) -> None:
        """Give up to ``new_item_slots`` of the list (at most half) to new items that fit.

        New items the model already ranked count toward the share. The others are the
        closest to the learner in the towers' space among those that pass the request's
        filters, share a topic with the learner's interests or history and sit near
        their level; they replace the lowest-ranked picks. Items whose prerequisites are
        not completed still go after all others.
        """
        slots = min(self.new_item_slots, options.k // 2)  # never most of a list
        new = self._new_items(bundle)
        if slots <= 0 or not new:
            return
        past = [bundle.catalog.get(h.content_id) for h in history]
        topics = exposure.learner_topics(
            profile.interests if profile else (), (i.topics for i in past if i)
        )
        # A new item the model ranked on its own is new all the same: it says so.
        result.items = [
            self._as_new(bundle, r, topics) if new.is_new(r.content_id) else r for r in result.items
        ]
        wanted = slots - sum(1 for r in result.items if new.is_new(r.content_id))
        if wanted <= 0 or not topics:
            return
        level = exposure.learner_level(
            profile.level if profile else None, [i.level for i in past if i]
        )
        ids, matrix = new.candidates(topics, level, MAX_NEW_SCORED)
        if not ids:
            return
        scores = matrix @ np.asarray(vector, dtype=np.float32)
        order = np.argsort(-scores, kind="stable")[:MAX_NEW_CHECKED]
        taken = {r.content_id for r in result.items}
        picks: list[Recommendation] = []
        for position in order.tolist():
            cid = ids[position]
            item = bundle.catalog.get(cid)
            if item is None or cid in taken:
                continue
            if not item_filter.allows(cid, item.topics, item.level):
                continue
            topic = exposure.matching_topic(item.topics, topics)
            if topic is None or not exposure.level_fits(item.level, level):
                continue
            picks.append(
                Recommendation(cid, float(scores[position]), 0, exposure.reason(topic), item.title)
            )
            if len(picks) == wanted:
                break
        if not picks:
            return
        ranked = [r.content_id for r in result.items]
        kept = exposure.make_room(ranked, new.is_new, len(picks), options.k)
        items = [result.items[p] for p in kept] + picks
        completed = {h.content_id for h in history if h.strength >= COMPLETION_STRENGTH}
        blocked = [self._missing_prerequisites(bundle, r.content_id, completed) for r in items]
        picked = {r.content_id for r in picks}
        items = [
            replace(r, reason=r.reason + PREREQUISITES_FIRST) if b and r.content_id in picked else r
            for r, b in zip(items, blocked, strict=True)
        ]
        order_by_block = sorted(range(len(items)), key=lambda i: blocked[i])
        result.items = [
            replace(items[i], rank=rank) for rank, i in enumerate(order_by_block, start=1)
        ]

    @staticmethod
    def _filter(history: Sequence[HistoryItem], options: RecommendOptions) -> ItemFilter:
        consumed = (
            frozenset() if options.include_consumed else frozenset(h.content_id for h in history)
        )
        return ItemFilter(
            exclude_ids=consumed | options.exclude_ids,
            include_topics=options.include_topics,
            exclude_topics=options.exclude_topics,
            levels=options.levels,
        )

    def _rank(
        self,
        bundle: ModelBundle,
        user_id: str | None,
        history: Sequence[HistoryItem],
        profile: Learner | None,
        hits: list[SearchHit],
        options: RecommendOptions,
    ) -> RecommendResult:
        ids = [h.content_id for h in hits]
        retrieval = np.array([h.score for h in hits], dtype=np.float32)
        completed = {h.content_id for h in history if h.strength >= COMPLETION_STRENGTH}
        result = RecommendResult(items=[], model_version=bundle.version)
        features: np.ndarray | None = None
        scores = retrieval
        if bundle.ranker is not None:
            try:
                features = bundle.ranking_features(history, profile, ids, retrieval)
                scores = bundle.ranker.score(features)
            except Exception:  # the ranker is an improvement, not a dependency
                logger.exception("ranker failed")
                result.fallback = Fallback.RETRIEVAL_ORDER
                result.degraded.append("ranker failed")
                scores = retrieval
        else:
            result.fallback = Fallback.RETRIEVAL_ORDER
            result.degraded.append("the model has no ranker")
        # Items whose prerequisites the learner has not completed go after all others.
        blocked = np.array(
            [self._missing_prerequisites(bundle, cid, completed) for cid in ids], dtype=bool
        )
        order = np.lexsort((-scores, blocked))[: options.k]
        similar_to = self._closest_history(bundle, [ids[p] for p in order], history)
        for rank, position in enumerate(order, start=1):
            cid = ids[position]
            matches_interest = features is not None and features[position, _INTEREST_MATCH] > 0
            reason = self._reason(
                bundle, cid, completed, profile, matches_interest, similar_to[rank - 1]
            )
            if blocked[position]:
                reason += PREREQUISITES_FIRST
            result.items.append(
                Recommendation(cid, float(scores[position]), rank, reason, _title(bundle, cid))
            )
        return result

    @staticmethod
    def _missing_prerequisites(bundle: ModelBundle, content_id: str, completed: set[str]) -> bool:
        item = bundle.catalog.get(content_id)
        return bool(item and any(p not in completed for p in item.prerequisites))

    @staticmethod
    def _closest_history(
        bundle: ModelBundle, picks: list[str], history: Sequence[HistoryItem]
    ) -> list[str | None]:
        """Per pick, the history item learners most often took with it (None if none)."""
        if not history or not picks:
            return [None] * len(picks)
        hist = bundle.space.items.lookup(h.content_id for h in history)
        block = bundle.stats.similarity.block(bundle.space.items.lookup(picks), hist)
        best = block.argmax(axis=1)
        return [
            history[int(best[row])].content_id if block[row, best[row]] > 0 else None
            for row in range(len(picks))
        ]

    @staticmethod
    def _reason(
        bundle: ModelBundle,
        content_id: str,
        completed: set[str],
        profile: Learner | None,
        matches_interest: bool,
        similar_to: str | None,
    ) -> str:
        """A sentence a learner can read, from the strongest signal behind the pick."""
        item = bundle.catalog.get(content_id)
        if item and item.prerequisites and all(p in completed for p in item.prerequisites):
            return f"Next step after {bundle.catalog.title(item.prerequisites[0])}"
        if profile and item and item.topics and matches_interest:
            topic = next((t for t in item.topics if t in profile.interests), item.topics[0])
            return f"Matches your interest in {topic}"
        if similar_to is not None:
            return f"Learners who took {bundle.catalog.title(similar_to)} also took this"
        if item and item.topics:
            return f"Recommended for you in {item.topics[0]}"
        return "Recommended for you"

    def _popular(
        self,
        bundle: ModelBundle | None,
        item_filter: ItemFilter,
        options: RecommendOptions,
        why: list[str],
    ) -> RecommendResult:
        result = RecommendResult(
            items=[],
            model_version=bundle.version if bundle else None,
            fallback=Fallback.POPULARITY,
            degraded=why,
        )
        if bundle is not None:
            self._fill(bundle, result, item_filter, options, reason="Popular with learners")
        return result

    @staticmethod
    def _fill(
        bundle: ModelBundle,
        result: RecommendResult,
        item_filter: ItemFilter,
        options: RecommendOptions,
        reason: str = "Popular with learners (filters left fewer personalised picks)",
    ) -> None:
        """Top up to k with popular items that pass the same filters."""
        taken = {r.content_id for r in result.items}
        added = 0
        for cid in bundle.popular:
            if len(result.items) >= options.k:
                break
            item = bundle.catalog.get(cid)
            topics, level = (item.topics, item.level) if item else ((), None)
            if cid in taken or not item_filter.allows(cid, topics, level):
                continue
            idx = bundle.space.items.index(cid)
            result.items.append(
                Recommendation(
                    cid,
                    float(bundle.stats.popularity[idx]),
                    len(result.items) + 1,
                    reason,
                    item.title if item else "",
                )
            )
            added += 1
        result.filled_from_popular = added


def _title(bundle: ModelBundle, content_id: str) -> str:
    item = bundle.catalog.get(content_id)
    return item.title if item else ""
