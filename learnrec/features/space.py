"""Vocabularies and the numeric encoding of learners and items for the towers.

The towers take only integer indices and dense float vectors (string lookups do not convert
to ONNX well: vocabularies stay outside the graph). This module is the one place that turns
ids, topics, levels and histories into those arrays, for training and serving alike, and
it is saved in the model bundle as JSON so serving encodes exactly as training did.

Index 0 of every id vocabulary is "unknown": a learner or item the model never saw is
encoded as 0 and gets its embedding from features (profile, history, topics) alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

UNKNOWN = 0
DEFAULT_HISTORY_LENGTH = 50


def item_tokens(
    topics: Iterable[str] = (),
    tags: Iterable[str] = (),
    level: float | None = None,
    fmt: str | None = None,
) -> list[str]:
    """Categorical features of an item, in the namespace that learner interests share."""
    tokens = [f"topic:{t}" for t in topics] + [f"tag:{t}" for t in tags]
    if level is not None and not math.isnan(level):
        tokens.append(f"level:{int(level)}")
    if isinstance(fmt, str) and fmt:
        tokens.append(f"format:{fmt}")
    return tokens


def learner_tokens(
    interests: Iterable[str] = (), goals: Iterable[str] = (), level: float | None = None
) -> list[str]:
    """Declared profile as tokens; interests reuse the items' `topic:` namespace."""
    tokens = [f"topic:{t}" for t in interests] + [f"goal:{g}" for g in goals]
    if level is not None and not math.isnan(level):
        tokens.append(f"ulevel:{int(level)}")
    return tokens


class Vocabulary:
    """Maps string keys to indices 1..n; anything else maps to 0 (unknown)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys: list[str] = list(dict.fromkeys(keys))
        self._index = {key: i + 1 for i, key in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def size(self) -> int:
        """Rows an embedding table needs: every key plus the unknown slot."""
        return len(self.keys) + 1

    def index(self, key: str) -> int:
        return self._index.get(key, UNKNOWN)

    def lookup(self, keys: Iterable[str]) -> np.ndarray:
        return np.fromiter((self._index.get(k, UNKNOWN) for k in keys), dtype=np.int64)

    def key(self, index: int) -> str:
        return self.keys[index - 1]


@dataclass
class FeatureSpace:
    """Everything needed to encode learners and items into tower inputs.

    Shapes: ``user_idx`` [B] int64, ``history`` [B, H] int64 (0 = padding),
    ``user_features`` [B, U] float32 multi-hot; ``item_idx`` [B] int64,
    ``item_features`` [B, I] float32 multi-hot.
    """

    users: Vocabulary
    items: Vocabulary
    user_tokens: Vocabulary
    item_tokens: Vocabulary
    history_length: int = DEFAULT_HISTORY_LENGTH

    @classmethod
    def build(
        cls,
        user_ids: Iterable[str],
        item_ids: Iterable[str],
        user_token_lists: Iterable[Sequence[str]],
        item_token_lists: Iterable[Sequence[str]],
        history_length: int = DEFAULT_HISTORY_LENGTH,
        min_token_count: int = 1,
    ) -> FeatureSpace:
        return cls(
            users=Vocabulary(user_ids),
            items=Vocabulary(item_ids),
            user_tokens=Vocabulary(_frequent(user_token_lists, min_token_count)),
            item_tokens=Vocabulary(_frequent(item_token_lists, min_token_count)),
            history_length=history_length,
        )

    def encode_tokens(
        self, vocabulary: Vocabulary, token_lists: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """Multi-hot rows, scaled to unit sum so a long tag list doesn't shout."""
        out = np.zeros((len(token_lists), len(vocabulary)), dtype=np.float32)
        for row, tokens in enumerate(token_lists):
            cols = [vocabulary.index(t) - 1 for t in tokens if vocabulary.index(t) != UNKNOWN]
            if cols:
                out[row, cols] = 1.0 / len(cols)
        return out

    def encode_user_features(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        return self.encode_tokens(self.user_tokens, token_lists)

    def encode_item_features(self, token_lists: Sequence[Sequence[str]]) -> np.ndarray:
        return self.encode_tokens(self.item_tokens, token_lists)

    def encode_histories(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Pad item-index histories (oldest first) to [B, H], keeping the most recent H."""
        out = np.zeros((len(histories), self.history_length), dtype=np.int64)
        for row, history in enumerate(histories):
            recent = [i for i in history if i != UNKNOWN][-self.history_length :]
            if recent:
                out[row, : len(recent)] = recent
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "users": self.users.keys,
            "items": self.items.keys,
            "user_tokens": self.user_tokens.keys,
            "item_tokens": self.item_tokens.keys,
            "history_length": self.history_length,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureSpace:
        return cls(
            users=Vocabulary(data["users"]),
            items=Vocabulary(data["items"]),
            user_tokens=Vocabulary(data["user_tokens"]),
            item_tokens=Vocabulary(data["item_tokens"]),
            history_length=int(data["history_length"]),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: Path) -> FeatureSpace:
        return cls.from_json(json.loads(path.read_text()))


def _frequent(token_lists: Iterable[Sequence[str]], min_count: int) -> list[str]:
    counts: dict[str, int] = {}
    for tokens in token_lists:
        for token in tokens:
            counts[token] = counts.get(token, 0) + 1
    return sorted(t for t, c in counts.items() if c >= min_count)


def encode_user_inputs(
    space: FeatureSpace,
    user_ids: Sequence[str],
    histories: Sequence[Sequence[str]],
    profile_tokens: Sequence[Sequence[str]],
) -> dict[str, np.ndarray]:
    """User-tower inputs for learners given by id, item-id history and profile tokens."""
    return {
        "user_idx": space.users.lookup(user_ids),
        "history": space.encode_histories([space.items.lookup(h).tolist() for h in histories]),
        "user_features": space.encode_user_features(profile_tokens),
    }
