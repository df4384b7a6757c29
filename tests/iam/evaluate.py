"""Recorded calls against the roles of a synthesized template, through a real evaluator.

The evaluator is ``@cloud-copilot/iam-simulate`` (pinned in package.json), run once per
check by ``tests/iam/simulate.mjs`` on all requests: AWS's evaluation logic for identity
policies, with every condition operator, and validation that the action exists and the
resource ARN is of a type the action is authorized on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .actions import Request, Target, requests_for
from .recorder import Call
from .template import Template

SCRIPT = Path(__file__).resolve().parent / "simulate.mjs"
ALLOWED = "Allowed"


@dataclass(frozen=True)
class Decision:
    call: Call
    role: str
    request: Request
    result: str | None  # Allowed, ImplicitlyDenied, ExplicitlyDenied; None: invalid
    errors: Any

    @property
    def allowed(self) -> bool:
        return self.result == ALLOWED

    def describe(self) -> str:
        why = self.result or f"invalid request: {json.dumps(self.errors)[:300]}"
        return f"{self.request.describe()} by {self.role} [{why}] <- {self.call.describe()}"


def simulate(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the IAM evaluator runs on Node.js")
    completed = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        check=False,
        cwd=SCRIPT.parent,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} failed: {completed.stderr[-3000:]}")
    results: list[dict[str, Any]] = json.loads(completed.stdout)
    return results


def evaluate(
    template: Template,
    roles: Mapping[str, str],
    calls: Iterable[Call],
    target: Target,
) -> list[Decision]:
    """Each call's IAM requests, decided for the role of the principal that made it.

    ``roles`` maps a recorded principal to (part of) its role's logical id.
    """
    policies: dict[str, list[dict[str, Any]]] = {}
    pending: list[tuple[Call, str, Request]] = []
    seen: set[str] = set()
    for call in calls:
        role = template.role_id(roles[call.principal])
        if role not in policies:
            policies[role] = template.role_policies(role)
        for request in requests_for(call, target):
            # One decision per (role, action, resource, context): the same request made a
            # hundred times is decided, and reported, once.
            key = json.dumps(
                [role, request.action, request.resource, request.context], sort_keys=True
            )
            if key not in seen:
                seen.add(key)
                pending.append((call, role, request))
    cases = [
        {
            "principal": f"arn:aws:sts::{template.account}:assumed-role/{role}/session",
            "action": request.action,
            "resource": request.resource,
            "account": template.account,
            "context": request.context,
            "policies": policies[role],
        }
        for _, role, request in pending
    ]
    results = simulate(cases) if cases else []
    return [
        Decision(call, role, request, result["result"], result["errors"])
        for (call, role, request), result in zip(pending, results, strict=True)
    ]


def decide(
    template: Template, role_part: str, requests: Iterable[tuple[Call, Request]]
) -> list[Decision]:
    """Requests derived elsewhere (not from a recorded call's mapping), for one role."""
    role = template.role_id(role_part)
    policies = template.role_policies(role)
    pending = list(requests)
    results = simulate(
        [
            {
                "principal": f"arn:aws:sts::{template.account}:assumed-role/{role}/session",
                "action": request.action,
                "resource": request.resource,
                "account": template.account,
                "context": request.context,
                "policies": policies,
            }
            for _, request in pending
        ]
    )
    return [
        Decision(call, role, request, result["result"], result["errors"])
        for (call, request), result in zip(pending, results, strict=True)
    ]
