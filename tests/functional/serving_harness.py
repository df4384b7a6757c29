"""Drives the real API Lambda handler with API Gateway REST proxy events."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from learnrec.identity import hash_user_id
from learnrec.serving.apigw import LambdaContext, rest_event
from learnrec.serving.auth import issue_token
from learnrec.storage import CatalogStore

REPO = Path(__file__).resolve().parents[2]
STREAM = "learnrec-events"
HASH_KEY = "test-hash-key"


class Api:
    """Calls the handler as API Gateway would, with tokens made by a test key pair."""

    def __init__(self, module: ModuleType, private_pem: str, store: CatalogStore) -> None:
        self.module = module
        self.private_pem = private_pem
        self.store = store

    def hashed(self, user_id: str) -> str:
        """The id the API stores ``user_id`` under."""
        return hash_user_id(user_id, HASH_KEY.encode())

    def token(self, subject: str, *roles: str, ttl: int = 600) -> str:
        return issue_token(self.private_pem, subject, list(roles) or ["learner"], ttl_seconds=ttl)

    def call(
        self,
        method: str,
        path: str,
        query: Any = None,
        body: Any = None,
        token: str | None = None,
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        raw = None if body is None else body if isinstance(body, str) else json.dumps(body)
        event = rest_event(method, path, query, headers, raw)
        response = self.module.handler(event, LambdaContext())
        text = response["body"]
        if response.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        return response["statusCode"], json.loads(text) if text else None

    @property
    def context(self) -> Any:
        """The handler's serving context, built now if no request has built it yet."""
        return self.module.app.state.context_loader.get()
