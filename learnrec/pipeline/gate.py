"""The promotion gate: when a candidate may replace the active model.

A candidate must beat the popularity baseline on the run's validation data (a model
that cannot is not worth serving), and must not be worse than the active model on the
same data by more than a tolerance on the primary metric (ndcg@k). The tolerance keeps
the pipeline from freezing on noise: two equally good models differ by a little on any
finite validation set, and refusing every such candidate would keep a model trained on
stale data forever. The first version only has to beat popularity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    metric: str,
    candidate: Mapping[str, float],
    popularity: Mapping[str, float],
    active: Mapping[str, float] | None,
    tolerance: float,
    active_version: str | None = None,
) -> GateDecision:
    ours, baseline = candidate[metric], popularity[metric]
    if not ours > baseline:
        return GateDecision(
            False, f"candidate {metric} {ours:.4f} does not beat popularity {baseline:.4f}"
        )
    if active is None:
        return GateDecision(
            True,
            f"candidate {metric} {ours:.4f} beats popularity {baseline:.4f}; "
            "no active model to compare with",
        )
    theirs = active[metric]
    name = f"the active model {active_version}" if active_version else "the active model"
    if ours < theirs - tolerance:
        return GateDecision(
            False,
            f"candidate {metric} {ours:.4f} is worse than {name} ({theirs:.4f}) "
            f"by more than the tolerance {tolerance:g}",
        )
    return GateDecision(
        True,
        f"candidate {metric} {ours:.4f} beats popularity {baseline:.4f} and is within "
        f"{tolerance:g} of or better than {name} ({theirs:.4f})",
    )
