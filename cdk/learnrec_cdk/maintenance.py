"""The scheduled maintenance: an EventBridge rule -> the maintenance Lambda -> the sweeps.

:func:`learnrec.privacy.maintenance.run_maintenance` removes erased learners from the
event archive, the spilled dead letters, the dead-letter queue and the model bundles,
then deletes what is past its retention (docs/MAINTENANCE.md). One run at a time
(reserved concurrency 1): two sweeps rewriting the same archive object would race, and
the second would only repeat the first's work. A run cut short by its time budget
leaves the erasures pending; the next scheduled run starts over.

The grants follow the calls the sweeps make (``tests/cdk/test_least_privilege_enough.py``
records them against the local AWS and evaluates them against this role):

- ``events/`` and ``dead-letters/``: read, rewrite without the learner's lines, delete
  the object and every older version of it (the bucket is versioned);
- ``models/``: read the active pointer and the bundles; under ``models/versions/`` only,
  rewrite a bundle's user vocabulary and manifest and delete versions (bundles past
  retention, the superseded vocabulary). The pointer itself is never written;
- ``pipeline/``: delete only the learner-level artifacts of finished runs;
- ``digests/``: delete batch recommendations a day after they were written;
- the dead-letter queue: receive, delete the learners' messages, release the others.

The database and user-id-hash secrets are granted by the stack, as to the other roles.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from learnrec.events.dead_letter import DEAD_LETTER_PREFIX
from learnrec.privacy.retention import LEARNER_ARTIFACTS
from learnrec.serving.model_store import VERSIONS
from learnrec.stages import DIGESTS_PREFIX, EVENTS_PREFIX, MODELS_PREFIX, PIPELINE_PREFIX

from .functions import FunctionPlatform
from .nag import acknowledge, acknowledge_prefix_grant, arn_ref

# Lambda's maximum: the erasure sweep reads every archive object; what does not fit is
# left for the next run (learnrec.privacy.erasure stops with time to spare).
TIMEOUT = Duration.minutes(15)
MEMORY_MB = 1024
# A failed run (a dependency unreachable) is retried once; after that the schedule brings
# the next one. A repeated sweep is harmless: objects already clean are skipped unchanged.
RETRY_ATTEMPTS = 1
# Lambda keeps an asynchronous event at most six hours.
MAX_EVENT_HOURS = 6


def learner_artifact_patterns() -> list[str]:
    """Keys of the pipeline's learner-level artifacts, of any run (``pipeline/*/dataset/*``)."""
    return [f"{PIPELINE_PREFIX}*/{name}/*" for name in LEARNER_ARTIFACTS]


class Maintenance(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform: FunctionPlatform,
        function_name: str,
        schedule_hours: int,
        bucket: s3.IBucket,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        maintenance = platform.function(
            self,
            "Maintenance",
            package="maintenance",
            function_name=function_name,
            description="learnrec maintenance: erasure sweep and retention, on a schedule",
            memory_mb=MEMORY_MB,
            timeout=TIMEOUT,
            environment=platform.environment("maintenance"),
        )
        self.function = maintenance.function
        self.role = maintenance.role
        # Reserved concurrency 1: never two sweeps at once (see the module doc).
        cfn_function = self.function.node.default_child
        assert isinstance(cfn_function, lambda_.CfnFunction)
        cfn_function.reserved_concurrent_executions = 1
        # An event still waiting (throttled behind a running sweep) when the next one is
        # due is dropped: the next run does the same work.
        self.function.configure_async_invoke(
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=Duration.hours(min(schedule_hours, MAX_EVENT_HOURS)),
        )
        self.schedule = events.Rule(
            self,
            "Schedule",
            description=f"learnrec maintenance every {schedule_hours} hours",
            schedule=events.Schedule.rate(Duration.hours(schedule_hours)),
            targets=[targets.LambdaFunction(self.function)],
        )

        archive = [f"{EVENTS_PREFIX}*", f"{DEAD_LETTER_PREFIX}*"]
        bundles = f"{MODELS_PREFIX}{VERSIONS}/*"
        reads = [*archive, f"{MODELS_PREFIX}*"]
        writes = [*archive, bundles]
        deletes = [*archive, bundles, *learner_artifact_patterns(), f"{DIGESTS_PREFIX}*"]
        for pattern in reads:
            bucket.grant_read(self.role, pattern)
        for pattern in writes:
            bucket.grant_put(self.role, pattern)
        for pattern in deletes:
            bucket.grant_delete(self.role, pattern)
        acknowledge_prefix_grant(self.role, bucket, "read", reads)
        acknowledge_prefix_grant(self.role, bucket, "put", writes)
        # CDK's grant_delete is s3:DeleteObject*: the object, its versions, their tags.
        acknowledge(
            self.role,
            "IAM5",
            f"delete limited to {', '.join(deletes)} of the data bucket",
            [
                "Action::s3:DeleteObject*",
                *(f"Resource::{arn_ref(bucket)}/{pattern}" for pattern in deletes),
            ],
        )
        dead_letter_queue.grant_consume_messages(self.role)
