"""The few HTTP calls the command line makes to a learnrec API (deployed or local).

``learnrec deploy smoke`` and ``seed`` and the local demo all speak JSON to the same
routes; standard library only, so none of them needs an HTTP client package.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

#: ``POST /events`` takes at most this many events per request.
EVENTS_PER_REQUEST = 500

T = TypeVar("T")


def request_json(
    method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 30.0
) -> tuple[int, dict[str, str], Any]:
    """Status, headers (lower-case names) and the parsed JSON body of one request.

    An error status is an answer, not an exception; a body that is not JSON comes back
    as its first 200 characters. Raises :class:`OSError` (``URLError``) when nothing
    answers.
    """
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, got = response.read(), response.status, response.headers.items()
    except urllib.error.HTTPError as error:
        raw, status, got = error.read(), error.code, error.headers.items()
    try:
        document = json.loads(raw) if raw else None
    except ValueError:
        document = raw[:200].decode("utf-8", "replace")
    return status, {name.lower(): value for name, value in got}, document


def batches(rows: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``rows`` in order, ``size`` at a time (the last batch may be shorter)."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
