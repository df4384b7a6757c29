"""The local API gateway: HTTP on 127.0.0.1 -> API Gateway REST proxy events -> the real handler.

Without an AWS account there is no API Gateway, yet the API must be run and clicked
through as it runs in AWS. This server turns each HTTP request into the REST proxy event
API Gateway would send (:func:`learnrec.serving.apigw.rest_event`: resource matching,
path parameters, multi-value headers and query strings, base64 for non-UTF-8 bodies),
invokes ``functions/api/handler.py:handler`` with it, and writes the proxy response back
the way API Gateway does (merged headers, decoded base64 bodies, 502 for a malformed
response or a failing function, 504 after the 29 s integration timeout, 413 above the
10 MB payload limit). Its routes are the REST API's (:func:`learnrec.serving.apigw.
api_routes`, from the app's OpenAPI spec, as the stack builds them): a method and path
API Gateway has no route for is answered as API Gateway answers it, without invoking the
function, so nothing works here that would not work there (``/docs`` and ``/redoc``
included: the function serves them where ``Settings.docs_enabled`` says so).

Concurrency: a threading HTTP server (one thread per connection, so keep-alive clients
and slow uploads never block each other) in front of *one* function container that runs
one invocation at a time, queued, like a Lambda execution environment. One container,
not a pool, because several copies of the handler in one process would not be separate:
Powertools' ``Metrics`` keeps its metric set in class attributes shared by every
instance, so concurrent invocations would flush each other's metrics, and the GIL means
extra copies would add no CPU parallelism anyway. The container has its own thread and
event loop (Mangum runs the ASGI app on the calling thread's loop).

Also, for local use only (none of this exists in the Lambda): the static ``frontend/``
folder under ``/ui/``, and ``/ui/config.json`` listing demo learners with bearer tokens
signed by a development private key the caller passes in. The handler itself gets no
such switch: it verifies every token with the public key from its own configuration.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import mimetypes
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from learnrec.serving.apigw import (
    NO_ROUTE_BODY,
    NO_ROUTE_STATUS,
    LambdaContext,
    ProxyResponseError,
    api_routes,
    http_response,
    resolve_resource,
    rest_event,
    route_methods,
)
from learnrec.serving.openapi_doc import Route

HOST = "127.0.0.1"
DEFAULT_PORT = 8000
UI_PREFIX = "/ui/"
CONFIG_PATH = "/ui/config.json"
MAX_PAYLOAD_BYTES = 10 * 2**20  # API Gateway's request payload limit
INTEGRATION_TIMEOUT_S = 29.0  # API Gateway's maximum integration timeout
DEMO_TOKEN_TTL_S = 12 * 3600
IDLE_CONNECTION_TIMEOUT_S = 60.0
REPO = Path(__file__).resolve().parents[2]
# Connection-level headers belong to this hop; the server sets its own.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}

Handler = Callable[[dict[str, Any], Any], Any]


def default_handler_path() -> Path:
    return REPO / "functions" / "api" / "handler.py"


def default_frontend() -> Path | None:
    folder = REPO / "frontend"
    return folder if (folder / "index.html").is_file() else None


def load_handler(path: Path, attribute: str = "handler") -> Handler:
    """Import a Lambda handler file by path, as Lambda does (it is not in a package).

    Each call makes a fresh module object, i.e. a fresh container's globals.
    """
    if not path.is_file():
        raise FileNotFoundError(f"handler file {path} not found")
    spec = importlib.util.spec_from_file_location(f"lambda_{uuid.uuid4().hex[:8]}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise ValueError(f"{path} has no callable {attribute!r}")
    return handler  # type: ignore[no-any-return]


def _own_event_loop() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


class Container:
    """One execution environment: invocations run one at a time on one thread."""

    def __init__(
        self,
        handler: Handler,
        function_name: str = "learnrec-api",
        timeout_s: float = INTEGRATION_TIMEOUT_S,
    ) -> None:
        self.handler = handler
        self.function_name = function_name
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lambda", initializer=_own_event_loop
        )

    def invoke(self, event: dict[str, Any]) -> Any:
        """The handler's return value; raises ``TimeoutError`` past ``timeout_s``.

        A timed-out invocation keeps running (a thread cannot be killed) and delays the
        ones queued behind it, which is what a stuck single container does too.
        """
        context = LambdaContext(function_name=self.function_name)
        future = self._executor.submit(self.handler, event, context)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"no response within {self.timeout_s:g} s") from None

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class DemoConfig:
    """``/ui/config.json``: demo learners and their tokens, re-minted before they expire."""

    private_pem: str
    learners: Sequence[str]
    ttl_s: int = DEMO_TOKEN_TTL_S
    _cached: bytes = b""
    _minted: float = -1.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.render()  # a bad key fails at start-up, not at the first page load

    def render(self) -> bytes:
        from learnrec.serving.auth import issue_token, key_id, public_pem_of

        with self._lock:
            if self._cached and time.monotonic() - self._minted < self.ttl_s / 2:
                return self._cached
            kid = key_id(public_pem_of(self.private_pem))
            expires = datetime.now(UTC) + timedelta(seconds=self.ttl_s)
            learners = [
                {
                    "user_id": user_id,
                    "token": issue_token(
                        self.private_pem, user_id, ["learner"], self.ttl_s, kid=kid
                    ),
                }
                for user_id in self.learners
            ]
            document = {"learners": learners, "expires": expires.isoformat(timespec="seconds")}
            self._cached = json.dumps(document).encode()
            self._minted = time.monotonic()
            return self._cached


def _json(status: int, document: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json")], json.dumps(document).encode()


class _UnreadableBodyError(Exception):
    """The request body cannot be read: answered with ``status`` before the function."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of new connections beyond that
    # has its SYNs dropped, and each client retries after TCP's 1 s timeout.
    request_queue_size = 1024
    gateway: Gateway


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: load tests reuse connections
    # Headers and body go out as separate writes; with Nagle's algorithm the body then
    # waits for the client's delayed ACK, adding ~40 ms to every response.
    disable_nagle_algorithm = True
    timeout = IDLE_CONNECTION_TIMEOUT_S
    server: _Server
    server_version = "learnrec-gateway"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        gateway = self.server.gateway
        try:
            status, headers, body = gateway.respond(
                self.command, self.path, self.headers.items(), self._read_body()
            )
        except _UnreadableBodyError as error:
            self.close_connection = True  # the unread body cannot be skipped safely
            status, headers, body = _json(error.status, {"message": error.message})
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise _UnreadableBodyError(411, "send the body with a Content-Length")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _UnreadableBodyError(400, "Content-Length is not a number") from None
        if length > MAX_PAYLOAD_BYTES:
            raise _UnreadableBodyError(413, "Request Too Long")
        return self.rfile.read(length) if length > 0 else b""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """API Gateway's access log names the resource, not the path: paths hold learner ids."""
        path = urlsplit(self.path).path
        shown = path if path.startswith(UI_PREFIX) else self.server.gateway.resource_of(path)
        status = getattr(code, "value", code)
        self.log_message(
            '"%s %s %s" %s %s', self.command, shown, self.request_version, status, size
        )

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.gateway.access_log:
            sys.stderr.write(f"{self.log_date_time_string()} {format % args}\n")


class Gateway:
    """The HTTP server; :meth:`start` serves on a background thread, :meth:`stop` ends it.

    ``port=0`` picks a free port (tests); :attr:`port` is the one bound.
    """

    def __init__(
        self,
        handler: Handler,
        port: int = DEFAULT_PORT,
        frontend: Path | None = None,
        demo: DemoConfig | None = None,
        access_log: bool = False,
        timeout_s: float = INTEGRATION_TIMEOUT_S,
        stage: str = "local",
        routes: Sequence[Route] | None = None,
    ) -> None:
        if frontend is not None and not (frontend / "index.html").is_file():
            raise FileNotFoundError(f"{frontend} has no index.html")
        self.container = Container(handler, timeout_s=timeout_s)
        self.frontend = frontend.resolve() if frontend else None
        self.demo = demo
        self.access_log = access_log
        self.stage = stage
        # The REST API's routes unless a test gives its own: resource -> methods.
        self.methods = route_methods(api_routes() if routes is None else routes)
        self._server = _Server((HOST, port), _RequestHandler)
        self._server.gateway = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Gateway:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gateway", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop accepting, let the running invocation finish, release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.container.close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ requests

    def resource_of(self, path: str) -> str:
        """The REST API resource ``path`` matches (``/{proxy+}`` when none does)."""
        return resolve_resource(path, self.methods)[0]

    def respond(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body for one request (no sockets: unit tests call this)."""
        parts = urlsplit(target)
        path = parts.path or "/"
        if path == UI_PREFIX.rstrip("/") or path.startswith(UI_PREFIX):
            return self._local(method, path)
        payload: bytes | str | None = None
        if body:
            try:
                payload = body.decode("utf-8")  # what API Gateway passes for text bodies
            except UnicodeDecodeError:
                payload = body  # base64 with isBase64Encoded, as for binary media types
        resource = self.resource_of(path)
        if method.upper() not in self.methods.get(resource, ()):
            return _json(NO_ROUTE_STATUS, NO_ROUTE_BODY)
        event = rest_event(
            method, path, parts.query, headers, payload, stage=self.stage, resources=self.methods
        )
        try:
            result = self.container.invoke(event)
        except TimeoutError:
            return _json(504, {"message": "Endpoint request timed out"})
        except Exception:  # the function failed: API Gateway says 502, the log says why
            traceback.print_exc()
            return _json(502, {"message": "Internal server error"})
        try:
            response = http_response(result)
        except ProxyResponseError as error:
            print(f"gateway: malformed Lambda proxy response: {error}", file=sys.stderr)
            return _json(502, {"message": "Malformed Lambda proxy response"})
        return response.status, response.headers, response.body

    def _local(self, method: str, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if method not in ("GET", "HEAD"):
            return _json(405, {"message": f"{method} is not allowed on {path}"})
        if path == UI_PREFIX.rstrip("/"):
            return 301, [("Location", UI_PREFIX)], b""
        if path == CONFIG_PATH:
            if self.demo is None:
                message = "start the gateway with --dev-private-key to get demo learner tokens"
                return _json(404, {"message": message})
            return 200, [("Content-Type", "application/json"), _NO_STORE], self.demo.render()
        if self.frontend is None:
            return _json(404, {"message": "the gateway was started without a frontend folder"})
        relative = unquote(path[len(UI_PREFIX) :]) or "index.html"
        file = (self.frontend / relative).resolve()
        if not file.is_relative_to(self.frontend) or not file.is_file():
            return _json(404, {"message": f"{path} not found"})
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
            kind += "; charset=utf-8"
        return 200, [("Content-Type", kind), _NO_STORE], file.read_bytes()


_NO_STORE = ("Cache-Control", "no-store")  # edits to the page show on the next reload
