"""The names of learnrec's CloudWatch metrics, for what emits them and what watches them.

The functions publish these (EMF through Powertools; the pipeline's drift score with
``PutMetricData``) and the CDK app builds its alarms and dashboard from the same
constants, so a renamed metric cannot leave an alarm watching nothing
(``tests/cdk/test_observability.py`` checks every metric the stack reads against
:func:`emitted`). All are in :data:`NAMESPACE`, with a :data:`SERVICE_DIMENSION` saying
which function published them; the api function publishes each of its metrics a second
time with :data:`VERSION_DIMENSION` added, so a canary is judged on its own responses.
"""

from __future__ import annotations

NAMESPACE = "learnrec"
SERVICE_DIMENSION = "service"
VERSION_DIMENSION = "function_version"

# The service dimension's values: one per function that publishes metrics.
API = "api"
INGEST = "ingest"
PIPELINE = "pipeline"
MAINTENANCE = "maintenance"

# api (learnrec.serving.routes.recommend, learnrec.serving.telemetry)
LATENCY = "recommend_request_duration_seconds"
SUCCESS = "recommend_success_total"  # every recommend response, degraded or not
SCORE_MEAN = "model_score_mean"
OPTED_OUT = "recommend_opted_out_total"  # popular items by the learner's choice, not a fault
RESPONSES = "http_responses_total"
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx")
# learnrec.serving.recommender.Fallback's values (a unit test holds them equal): spelled
# here so that importing the names costs every function nothing but this module.
FALLBACKS = ("popularity", "retrieval_order", "exact_retrieval")

# ingest (learnrec.events.ingest.BatchOutcome.metrics)
EVENTS_RECEIVED = "events_received"
EVENTS_WRITTEN = "events_written"
EVENTS_DUPLICATE = "events_duplicate"
EVENTS_DEAD_LETTERED = "events_dead_lettered"
EVENTS_OPTED_OUT_DROPPED = "events_opted_out_dropped"
EVENTS_FAILED = "events_failed"
# CTR inputs: impressions served and clicks that echo a recommendation id.
IMPRESSIONS = "recommendation_impressions_total"
CLICKS = "recommendation_clicks_total"

# maintenance (functions/maintenance): one count per report entry, and whether the
# erasure sweep finished within the run.
ERASURE_INCOMPLETE = "erasure_incomplete"
MAINTENANCE_SECTIONS = ("erasure", "retention")

# pipeline (learnrec.pipeline.drift), with a ``stage`` dimension besides the service.
DRIFT = "model_drift_score"

# API Gateway's throttled requests (429), counted by a metric filter on the stage's access
# log (cdk/learnrec_cdk/serving.py): filters take dimension values from log fields only,
# so the API's name is in the metric's name.
THROTTLED_NAMESPACE = "learnrec/ApiGateway"


def fallback_metric(fallback: str) -> str:
    """Responses a degraded path served, by which one (``popularity``, ...; a
    ``Fallback`` member is its value)."""
    return f"recommend_fallback_{fallback}_total"


def status_class_metric(status_class: str) -> str:
    """Responses of one status class (``5xx``: app errors and unhandled exceptions)."""
    return f"http_responses_{status_class}_total"


def maintenance_metric(section: str, entry: str) -> str:
    """A count from the maintenance report: ``erasure_<entry>`` or ``retention_<entry>``."""
    if section not in MAINTENANCE_SECTIONS:
        raise ValueError(f"unknown maintenance report section {section!r}")
    return f"{section}_{entry}"


def throttled_metric(api_name: str) -> str:
    """The 429 count of the REST API ``api_name`` (in :data:`THROTTLED_NAMESPACE`)."""
    return f"{api_name}-429"


def emitted() -> dict[str, frozenset[str]]:
    """Service -> the fixed metric names it publishes (the maintenance report's per-entry
    counts, named by :func:`maintenance_metric`, vary with the report and are left out)."""
    return {
        API: frozenset(
            {
                LATENCY,
                SUCCESS,
                SCORE_MEAN,
                OPTED_OUT,
                RESPONSES,
                *(status_class_metric(c) for c in STATUS_CLASSES),
                *(fallback_metric(f) for f in FALLBACKS),
            }
        ),
        INGEST: frozenset(
            {
                EVENTS_RECEIVED,
                EVENTS_WRITTEN,
                EVENTS_DUPLICATE,
                EVENTS_DEAD_LETTERED,
                EVENTS_OPTED_OUT_DROPPED,
                EVENTS_FAILED,
                IMPRESSIONS,
                CLICKS,
            }
        ),
        MAINTENANCE: frozenset({ERASURE_INCOMPLETE}),
        PIPELINE: frozenset({DRIFT}),
    }
