"""Strong classic baselines for every report: EASE and implicit ALS, tuned on validation.

A learned model is only worth its cost if it beats what a user can install in a minute.
Both baselines see exactly what the candidate sees (the training interactions, all
positive, binary), and both choose their hyperparameters on a validation split carved
from that training part, never from the test or gate data:

- ``ease``: closed-form item regression (:mod:`learnrec.features.regression`), λ from
  a log grid.
- ``als``: implicit's alternating least squares (CPU build), a seeded, time-bounded
  coordinate search over factors, regularisation and confidence scaling; the number of
  iterations is read off the same fits (each configuration is checked at several).

Their choices travel with the metrics (``params``), so a report or a manifest says what
was compared with.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from learnrec.data.dataset import SplitName, split_interactions
from learnrec.features.regression import STRENGTH_GRID, fit_regression, ndcg_at_k, validation_rows

if TYPE_CHECKING:
    from scipy import sparse

BASELINES = ("ease", "als")
VALIDATION_FRACTION = 0.2
# The EASE baseline stays exact on larger catalogs than the ranker's feature (which is
# refitted per fold and served): a weaker baseline would flatter the models it checks.
EASE_EXACT_MAX_ITEMS = 8000
ALS_FACTORS = (16, 32, 64, 128, 256)
ALS_REGULARIZATION = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
ALS_ALPHA = (1.0, 4.0, 16.0, 64.0)
ALS_CHECKPOINTS = (5, 10, 15, 25)
ALS_BUDGET_S = 90.0
ALS_MIN_TRIALS = 4


@dataclass(frozen=True)
class Interactions:
    """Interactions as a binary user x item matrix with the ids of its rows and columns."""

    users: list[str]
    items: list[str]
    matrix: sparse.csr_matrix

    @classmethod
    def of(cls, frame: pd.DataFrame, users: list[str], items: list[str]) -> Interactions:
        from scipy import sparse

        user_index = pd.Index(users)
        item_index = pd.Index(items)
        rows = user_index.get_indexer(frame["user_id"])
        cols = item_index.get_indexer(frame["content_id"])
        ok = (rows >= 0) & (cols >= 0)
        matrix = sparse.csr_matrix(
            (np.ones(int(ok.sum()), np.float32), (rows[ok], cols[ok])),
            shape=(len(users), len(items)),
        )
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return cls(users, items, matrix)


@dataclass
class Baseline:
    """A fitted baseline: its name, chosen parameters and a scorer of user rows."""

    name: str
    params: dict[str, Any]
    score: Callable[[sparse.csr_matrix, np.ndarray], np.ndarray]
    search: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class BaselineResult:
    rankings: dict[str, dict[str, list[str]]]
    params: dict[str, dict[str, Any]]
    unavailable: dict[str, str]
    timings_s: dict[str, float]


def _carve(
    train: pd.DataFrame, split: SplitName, seed: int, users: list[str], items: list[str]
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    inner = split_interactions(train, split, VALIDATION_FRACTION, seed)
    return (
        Interactions.of(inner.train, users, items).matrix,
        Interactions.of(inner.test, users, items).matrix,
    )


def fit_ease(
    data: Interactions,
    validation: tuple[sparse.csr_matrix, sparse.csr_matrix],
    k: int,
    seed: int,
    strengths: Sequence[float] = STRENGTH_GRID,
) -> Baseline:
    regression = fit_regression(
        data.matrix, strengths, k, seed, exact_max_items=EASE_EXACT_MAX_ITEMS, validation=validation
    )
    summary = regression.summary()
    search = summary.pop("search")

    def score(rows: sparse.csr_matrix, _: np.ndarray) -> np.ndarray:
        return regression.scores(rows)

    return Baseline("ease", summary, score, search)


def _als_model(
    factors: int, regularization: float, alpha: float, iterations: int, seed: int
) -> Any:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    # implicit's own threads do the work; BLAS threads on top only contend with them
    # (implicit checks this when the model is made, hence the limit here too).
    with threadpool_limits(1, "blas"):
        return AlternatingLeastSquares(
            factors=factors,
            regularization=regularization,
            alpha=alpha,
            iterations=iterations,
            random_state=seed,
            num_threads=0,
        )


def _fit_als(model: Any, matrix: sparse.csr_matrix, callback: Any = None) -> None:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model.fit(matrix, show_progress=False, callback=callback)


def fit_als(
    data: Interactions,
    validation: tuple[sparse.csr_matrix, sparse.csr_matrix],
    k: int,
    seed: int,
    budget_s: float = ALS_BUDGET_S,
    axes: tuple[Sequence[int], Sequence[float], Sequence[float]] = (
        ALS_FACTORS,
        ALS_REGULARIZATION,
        ALS_ALPHA,
    ),
    checkpoints: Sequence[int] = ALS_CHECKPOINTS,
) -> Baseline:
    """implicit ALS tuned by coordinate search, the best refitted on all of ``data``.

    From the middle of each axis (factors, regularisation, alpha), every value of one
    axis is tried with the others held, the best kept, axis after axis, until a full
    pass changes nothing or ``budget_s`` is spent (after at least
    :data:`ALS_MIN_TRIALS` fits). It reaches the corners of the grid, where these
    datasets often want to be, in a fraction of the grid's fits.
    """
    fit, held = validation
    users = validation_rows(fit, held, seed)
    stops = sorted(set(checkpoints))
    started = time.perf_counter()
    search: list[dict[str, Any]] = []
    tried: dict[tuple[int, float, float], tuple[float, int]] = {}

    def trial(config: tuple[int, float, float]) -> tuple[float, int]:
        if config in tried:
            return tried[config]
        factors, regularization, alpha = config
        model = _als_model(factors, regularization, alpha, stops[-1], seed)
        found: dict[int, float] = {}

        def check(iteration: int, *_: Any) -> None:
            if iteration + 1 in stops and len(users):
                scores = model.user_factors[users] @ model.item_factors.T
                found[iteration + 1] = ndcg_at_k(scores, fit[users], held[users], k)

        _fit_als(model, fit, check)
        for iterations, ndcg in sorted(found.items()):
            search.append(
                {
                    "factors": factors,
                    "regularization": regularization,
                    "alpha": alpha,
                    "iterations": iterations,
                    f"ndcg@{k}": round(ndcg, 6),
                }
            )
        best_stop = max(found, key=lambda i: found[i]) if found else stops[-1]
        tried[config] = (found.get(best_stop, -1.0), best_stop)
        return tried[config]

    def out_of_time() -> bool:
        return len(tried) >= ALS_MIN_TRIALS and time.perf_counter() - started > budget_s

    current: tuple[int, float, float] = (
        axes[0][len(axes[0]) // 2],
        axes[1][len(axes[1]) // 2],
        axes[2][len(axes[2]) // 2],
    )
    trial(current)
    changed = True
    while changed and not out_of_time():
        changed = False
        for axis, values in enumerate(axes):
            for value in values:
                if out_of_time():
                    break
                candidate = list(current)
                candidate[axis] = value
                trial((int(candidate[0]), float(candidate[1]), float(candidate[2])))
            line = [c for c in tried if all(c[a] == current[a] for a in range(3) if a != axis)]
            best = max(line, key=lambda c: tried[c][0])
            if tried[best][0] > tried[current][0]:
                current, changed = best, True
    factors, regularization, alpha = current
    iterations = tried[current][1]
    final = _als_model(factors, regularization, alpha, iterations, seed)
    _fit_als(final, data.matrix)
    user_factors, item_factors = np.asarray(final.user_factors), np.asarray(final.item_factors)
    params = {
        "factors": factors,
        "regularization": regularization,
        "alpha": alpha,
        "iterations": iterations,
        "trials": len(tried),
    }

    def score(_: sparse.csr_matrix, rows: np.ndarray) -> np.ndarray:
        return np.asarray(user_factors[rows] @ item_factors.T)

    return Baseline("als", params, score, search)


def top_k(
    baseline: Baseline, data: Interactions, user_ids: Sequence[str], k: int
) -> dict[str, list[str]]:
    """Each learner's k best items they have not engaged with, in batches of learners."""
    index = {u: i for i, u in enumerate(data.users)}
    out: dict[str, list[str]] = {u: [] for u in user_ids}
    known = [u for u in user_ids if u in index]
    batch = max(1, 2_000_000 // max(1, len(data.items)))
    for start in range(0, len(known), batch):
        names = known[start : start + batch]
        rows = np.array([index[u] for u in names], dtype=np.int64)
        seen = data.matrix[rows]
        scores = np.array(baseline.score(seen, rows), dtype=np.float64, copy=True)
        coo = seen.tocoo()
        scores[coo.row, coo.col] = -np.inf
        n = min(k, scores.shape[1])
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        order = np.take_along_axis(-scores, top, axis=1).argsort(axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        for name, row, picks in zip(names, scores, top, strict=True):
            out[name] = [data.items[j] for j in picks if np.isfinite(row[j])]
    return out


def rank_baselines(
    train: pd.DataFrame,
    items: Sequence[str],
    user_ids: Sequence[str],
    k: int,
    split: SplitName = "stratified",
    seed: int = 42,
    names: Sequence[str] = BASELINES,
    als_budget_s: float = ALS_BUDGET_S,
) -> BaselineResult:
    """Fit each baseline on ``train`` (tuned on a split of it) and rank for ``user_ids``.

    A baseline whose library is missing is reported in ``unavailable`` with the reason,
    so a report says what it could not compare with instead of leaving a row out quietly.
    """
    users = sorted({str(u) for u in train["user_id"]})
    data = Interactions.of(train, users, list(items))
    validation = _carve(train, split, seed + 17, users, list(items))
    rankings: dict[str, dict[str, list[str]]] = {}
    params: dict[str, dict[str, Any]] = {}
    unavailable: dict[str, str] = {}
    timings: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        try:
            if name == "ease":
                baseline = fit_ease(data, validation, k, seed)
            elif name == "als":
                baseline = fit_als(data, validation, k, seed, als_budget_s)
            else:
                raise ValueError(f"unknown baseline {name!r}: use one of {BASELINES}")
        except ImportError as error:
            unavailable[name] = f"{name} needs {error.name or 'a missing library'}: {error}"
            continue
        rankings[name] = top_k(baseline, data, user_ids, k)
        params[name] = {**baseline.params, "search": baseline.search}
        timings[name] = round(time.perf_counter() - started, 3)
    return BaselineResult(rankings, params, unavailable, timings)
