"""The promotion gate: when a candidate may replace the active model.

A candidate must beat the popularity baseline on the run's validation data (a model
that cannot is not worth serving), must not be worse than the best tuned classic
baseline (EASE, implicit ALS: what anyone could serve instead) by more than
``baseline_tolerance``, and must not be worse than the active model on the same data by
more than a tolerance on the primary metric (ndcg@k). The tolerances keep
the pipeline from freezing on noise: two equally good models differ by a little on any
finite validation set, and refusing every such candidate would keep a model trained on
stale data forever. The first version has no active model to compare with. A baseline
that could not be fitted (its library missing) is named in the evaluation, not a reason
to refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from learnrec.pipeline.run import DEFAULT_BASELINE_TOLERANCE


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
    baselines: Mapping[str, Mapping[str, float]] | None = None,
    baseline_tolerance: float = DEFAULT_BASELINE_TOLERANCE,
) -> GateDecision:
    ours, baseline = candidate[metric], popularity[metric]
    if not ours > baseline:
        return GateDecision(
            False, f"candidate {metric} {ours:.4f} does not beat popularity {baseline:.4f}"
        )
    scored = {name: m[metric] for name, m in (baselines or {}).items() if metric in m}
    versus = ""
    if scored:
        best = max(scored, key=lambda name: scored[name])
        if ours < scored[best] - baseline_tolerance:
            return GateDecision(
                False,
                f"candidate {metric} {ours:.4f} is worse than the best baseline, {best} "
                f"({scored[best]:.4f}), by more than the baseline tolerance {baseline_tolerance:g}",
            )
        versus = f", is within {baseline_tolerance:g} of or better than {best} ({scored[best]:.4f})"
    if active is None:
        return GateDecision(
            True,
            f"candidate {metric} {ours:.4f} beats popularity {baseline:.4f}{versus}; "
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
        f"candidate {metric} {ours:.4f} beats popularity {baseline:.4f}{versus} and is within "
        f"{tolerance:g} of or better than {name} ({theirs:.4f})",
    )
