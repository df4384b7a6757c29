"""Lambda entry point of the stack's OpenSearch security custom resource.

CloudFormation invokes it with a custom resource request (``RequestType`` Create, Update
or Delete; ``ResourceProperties`` ``Endpoint``, ``AdminRoleArn``, ``IndexPattern``,
``Mappings``); it puts or deletes learnrec's OpenSearch roles and role mappings, signed
as the admin role, and answers on the request's ``ResponseURL`` (also on failure). The
logic lives in learnrec.search_security.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from learnrec.search_security import Desired, admin_client, handle, put_response

logger = Logger(service="learnrec-search-security")
REGION = os.environ.get("AWS_REGION", "us-east-1")


def client_for(desired: Desired) -> Any:
    return admin_client(desired, REGION)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    answer = handle(event, client_for, put_response)
    logger.info(
        "custom resource answered",
        extra={
            "request": event.get("RequestType"),
            "status": answer["Status"],
            "reason": answer["Reason"],
        },
    )
    return answer
