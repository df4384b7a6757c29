"""The api Lambda handler with X-Ray tracing on, as Lambda runs it: a separate process.

``python tests/functional/traced_api.py JOB RESULTS`` loads functions/api/handler.py with
``LAMBDA_TASK_ROOT`` and ``_X_AMZN_TRACE_ID`` set (so Powertools' Tracer is created and
the X-Ray SDK streams every finished subsegment to ``AWS_XRAY_DAEMON_ADDRESS`` over UDP,
as it does in Lambda), makes the calls listed in JOB and writes their answers to RESULTS.
A process of its own because the Tracer patches botocore, sqlite3 and http for the
life of the process: the test session's other tests must not run traced.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from learnrec.config import get_settings
from learnrec.serving.apigw import LambdaContext, rest_event
from learnrec.serving.auth import issue_token

REPO = Path(__file__).resolve().parents[2]


def main(job_path: str, results_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    get_settings.cache_clear()
    spec = importlib.util.spec_from_file_location(
        "api_handler_traced", REPO / "functions" / "api" / "handler.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results: list[dict[str, Any]] = []
    for call in job["calls"]:
        token = issue_token(job["private_pem"], call["subject"], call["roles"], ttl_seconds=600)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        body = None if call.get("body") is None else json.dumps(call["body"])
        event = rest_event(call["method"], call["path"], call.get("query"), headers, body)
        response = module.handler(event, LambdaContext())
        text = response["body"]
        results.append(
            {"status": response["statusCode"], "body": json.loads(text) if text else None}
        )
    Path(results_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
