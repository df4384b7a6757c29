"""Lambda entry point of the deploy-time schema migration (a CloudFormation custom resource).

Only adapts: :func:`learnrec.storage.migrate.on_stack_event` upgrades Aurora to the
newest revision on Create and Update and leaves it alone on Delete. The stack runs it
through the CDK provider framework before the functions that need the new schema are
updated; an exception here fails (and rolls back) the deployment. The database URL is
built from ``DATABASE_SECRET_ARN`` (or ``DATABASE_URL``) only when it is needed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from learnrec.config import get_settings
from learnrec.storage.migrate import on_stack_event
from learnrec.storage.url import database_url

logger = Logger(service="learnrec-migrate")
# Alembic's own lines ("Running upgrade 0001 -> 0002") and the adoption of a schema made
# before migrations go to the same structured log as the handler's.
copy_config_to_registered_loggers(source_logger=logger, include={"alembic", "learnrec"})


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    logger.info("schema migration requested", extra={"request": event.get("RequestType")})
    response = on_stack_event(event, lambda: database_url(get_settings()))
    logger.info("schema migration done", extra=response)
    return response
