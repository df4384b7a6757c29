"""The pool of items without training engagement: found by topic and level, bounded."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from learnrec.features.csr import CsrMatrix
from learnrec.serving.exposure import NewItemPool

KEYS = ["trained", "py-1", "py-5", "js-2", "py-none"]
TOKEN_KEYS = ["topic:python", "topic:js", "tag:python"]


def pool() -> NewItemPool:
    # Row 0 is padding; row i is KEYS[i - 1]. Only "trained" has engagement.
    popularity = np.array([0, 7, 0, 0, 0, 0], dtype=np.float32)
    levels = np.array([np.nan, 1, 1, 5, 2, np.nan])
    tokens = sparse.csr_matrix(
        np.array(
            [[0, 0, 0], [1, 0, 0], [1, 0, 1], [1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=np.float32
        )
    )
    index = {k: i + 1 for i, k in enumerate(KEYS)}
    vectors = np.arange(6 * 2, dtype=np.float32).reshape(6, 2)
    return NewItemPool(
        popularity,
        levels,
        CsrMatrix.from_scipy(tokens),
        TOKEN_KEYS,
        KEYS,
        lambda key: index.get(key, 0),
        vectors,
    )


def test_untrained_items_of_the_learners_topics_near_their_level() -> None:
    new = pool()
    ids, vectors = new.candidates({"python"}, 1.0, 10)
    assert ids == ["py-1", "py-none"]  # py-5 is too far; "trained" is not new
    assert vectors.tolist() == [[4, 5], [10, 11]]
    assert new.candidates({"python"}, None, 10)[0] == ["py-1", "py-5", "py-none"]
    assert new.candidates({"js"}, 2.0, 10)[0] == ["js-2"]
    assert new.candidates({"rust"}, 2.0, 10)[0] == []
    assert new.is_new("py-1") and new.is_new("unknown") and not new.is_new("trained")


def test_items_added_since_come_first_and_the_count_is_bounded() -> None:
    new = pool()
    new.add("later", np.array([1.0, 1.0]), ["python"])
    new.add("py-5", np.array([2.0, 2.0]), ["python"])  # changed: its new copy counts once
    new.add("elsewhere", np.array([3.0, 3.0]), ["go"])
    ids, vectors = new.candidates({"python"}, 1.0, 10)
    assert ids == ["py-5", "later", "py-1", "py-none"]
    assert vectors[:2].tolist() == [[2, 2], [1, 1]]
    assert new.candidates({"python"}, 1.0, 3)[0] == ["py-5", "later", "py-1"]
    assert new.is_new("later")
