"""A/B experiments: which variant (and so which model version) serves a learner.

Configuration is one JSON setting, ``EXPERIMENT_VARIANTS``: variant name -> model version
(equal weights), or -> ``{"model_version": ..., "weight": ...}``. A variant without a
model version serves the active one. Learners are assigned by a stable hash of their
*hashed* id and the experiment's name, so a learner stays in one variant across requests
and containers, and a new experiment name reshuffles everyone.

The variant and model version travel inside the ``recommendation_id`` (see
:func:`new_recommendation_id`), so crediting a click to a variant needs no write on the
recommendation path and no lookup table: the events that echo the id carry both.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_VERSION = re.compile(r"^[A-Za-z0-9_.:-]{1,60}$")  # the id stays within 128 characters


class ExperimentConfigError(ValueError):
    """``EXPERIMENT_VARIANTS`` cannot be used; raised at start-up, never per request."""


@dataclass(frozen=True)
class Variant:
    name: str
    model_version: str | None
    weight: float = 1.0


@dataclass(frozen=True)
class Experiment:
    name: str
    variants: tuple[Variant, ...]

    @classmethod
    def parse(cls, text: str | None, name: str = "default") -> Experiment | None:
        """The experiment in ``EXPERIMENT_VARIANTS``, or None when there is none."""
        if not text or not text.strip():
            return None
        try:
            raw = json.loads(text)
        except ValueError as error:
            raise ExperimentConfigError(f"EXPERIMENT_VARIANTS is not JSON: {error}") from None
        if not isinstance(raw, dict) or not raw:
            raise ExperimentConfigError("EXPERIMENT_VARIANTS must be a non-empty JSON object")
        variants = tuple(_variant(key, value) for key, value in raw.items())
        if sum(v.weight for v in variants) <= 0:
            raise ExperimentConfigError("the variants' weights add up to zero")
        return cls(name, variants)

    def assign(self, hashed_user_id: str) -> Variant:
        """The learner's variant: stable, and in proportion to the weights."""
        digest = hashlib.sha256(f"{self.name}\x1f{hashed_user_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in self.variants)
        for variant in self.variants:
            if point < variant.weight:
                return variant
            point -= variant.weight
        return self.variants[-1]  # floating-point edge: the last bucket's upper end


def _variant(name: Any, value: Any) -> Variant:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ExperimentConfigError(f"variant name {name!r}: use 1-32 of A-Z a-z 0-9 _ -")
    if isinstance(value, dict):
        version, weight = value.get("model_version"), value.get("weight", 1.0)
    else:
        version, weight = value, 1.0
    if version is not None and (not isinstance(version, str) or not _VERSION.match(version)):
        raise ExperimentConfigError(f"variant {name}: model version {version!r} is not valid")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
        raise ExperimentConfigError(f"variant {name}: weight must be a number >= 0")
    return Variant(name, version, float(weight))


def new_recommendation_id(variant: str | None, model_version: str | None) -> str:
    """``<uuid hex>.<variant>.<model version>`` (either part may be empty)."""
    return f"{uuid.uuid4().hex}.{variant or ''}.{model_version or ''}"


@dataclass(frozen=True)
class Attribution:
    variant: str | None
    model_version: str | None


def parse_recommendation_id(recommendation_id: str) -> Attribution | None:
    """The variant and model version a recommendation id carries (None: not one of ours)."""
    parts = recommendation_id.split(".", 2)
    if len(parts) != 3 or len(parts[0]) != 32:
        return None
    return Attribution(parts[1] or None, parts[2] or None)


class PinnedModels:
    """Model versions other than the active one, loaded once each, for variants.

    A version that cannot be loaded is remembered as failed (with the reason) for
    ``retry_s`` so that a missing bundle does not cost a download attempt per request.
    """

    def __init__(
        self,
        fetch: Callable[[str], Path],
        loader: Callable[[Path], Any],
        retry_s: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.fetch = fetch
        self.loader = loader
        self.retry_s = retry_s
        self.clock = clock or time.monotonic
        self.loaded: dict[str, Any] = {}
        self.errors: dict[str, tuple[float, str]] = {}

    def get(self, version: str) -> Any | None:
        if version in self.loaded:
            return self.loaded[version]
        failed = self.errors.get(version)
        if failed is not None and self.clock() - failed[0] < self.retry_s:
            return None
        try:
            self.loaded[version] = self.loader(self.fetch(version))
        except Exception as error:  # serve the active model instead; say so
            self.errors[version] = (self.clock(), str(error))
            return None
        self.errors.pop(version, None)
        return self.loaded[version]

    def error(self, version: str) -> str | None:
        failed = self.errors.get(version)
        return failed[1] if failed else None
