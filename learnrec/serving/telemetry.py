"""How the api function publishes its CloudWatch metrics (names: :mod:`learnrec.metric_names`).

The api function (``functions/api/handler.py``) emits them as CloudWatch EMF through
Powertools, in namespace ``learnrec``, under two dimension sets: ``service`` (what the
dashboard and the service-wide alarms read) and ``service`` + ``function_version`` (the
Lambda version that served the request), so that a canary deployment is judged on the new
version's own responses rather than on the mix of old and new.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from learnrec.metric_names import (
    RESPONSES,
    SERVICE_DIMENSION,
    VERSION_DIMENSION,
    status_class_metric,
)

#: Lambda's own variable: ``$LATEST`` or the published version number behind an alias.
VERSION_ENV = "AWS_LAMBDA_FUNCTION_VERSION"


def status_class(status: int) -> str:
    """The class of an HTTP status; anything outside 100-599 counts as a server error."""
    if not 100 <= status <= 599:
        return "5xx"
    return f"{status // 100}xx"


class MetricsSink(Protocol):
    """The two calls of Powertools' ``Metrics`` used here (it ships no stubs to name)."""

    def add_metric(self, name: str, unit: Any, value: float) -> None: ...

    def add_dimensions(self, **dimensions: str) -> None: ...


def add_version_dimensions(
    metrics: MetricsSink, service: str, environ: Mapping[str, str]
) -> dict[str, str] | None:
    """Publish this invocation's metrics per function version too, besides per service.

    Powertools keeps extra dimension sets until the next flush, so call this once per
    invocation, before the first metric. Outside Lambda (no version) nothing is added.
    """
    version = environ.get(VERSION_ENV, "").strip()
    if not version:
        return None
    dimensions = {SERVICE_DIMENSION: service, VERSION_DIMENSION: version}
    metrics.add_dimensions(**dimensions)
    return dimensions


def count_response(metrics: MetricsSink, status: int) -> None:
    """One response, in the total and in its status class."""
    metrics.add_metric(name=RESPONSES, unit="Count", value=1)
    metrics.add_metric(name=status_class_metric(status_class(status)), unit="Count", value=1)
