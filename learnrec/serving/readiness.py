"""Readiness: what the API answers while a dependency it needs is not there yet.

A fresh deployment starts with secrets the operator has not filled (an empty JWKS until
``learnrec deploy bootstrap`` runs), and a database may be unreachable for a while. Such
a state is not a bug in a request, so it is never a 500: every route, ``/health``
included, answers 503 with ``Retry-After`` and a message that names what is missing and
how to fix it. The messages are fixed texts per dependency, never exception text or
paths, because they reach clients; the details go to the log.

Building the serving context costs secrets reads, a database connection and a model
download, so a failed build is not repeated per request: :class:`ContextLoader` waits a
bounded, growing interval between attempts, and the same process starts serving once the
dependency is fixed, without a restart.

A dependency that fails after start-up, mid-request, is answered the same way when no
useful answer exists without it: :class:`DependencyUnavailableError` (raised through
:func:`unavailable`) is a 503 naming the dependency, and the database's own errors
(:data:`DATABASE_DOWN`) are the database's 503.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NoReturn, TypeVar

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

logger = logging.getLogger("learnrec.serving")

T = TypeVar("T")

RETRY_MIN_S = 5.0
"""First wait after a failed build: short, so a just-bootstrapped stage serves quickly."""
RETRY_MAX_S = 60.0
"""Longest wait: a stage that stays unconfigured costs one attempt a minute per container."""

RETRY_AFTER_S = 5
"""What a 503 for a dependency that failed mid-flight asks clients to wait."""
DATABASE_RETRY_AFTER_S = 5
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeoutError)
"""What SQLAlchemy raises when the database cannot be reached, or no connection is free."""
DATABASE_UNAVAILABLE = "the database cannot be reached; retrying"
SCHEMA_NOT_READY = "the database schema is missing or older than this code needs: run the migration"


@dataclass(frozen=True)
class Unready:
    """One dependency that is not ready; ``message`` is safe to show to any client."""

    dependency: str
    message: str


class NotReadyError(Exception):
    """The serving context cannot be built yet; carries what is missing, for the 503."""

    def __init__(self, problems: Sequence[Unready]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems))

    @property
    def detail(self) -> str:
        return "; ".join(p.message for p in self.problems)


STARTING = Unready("startup", "the service could not start; the API function's log says why")


class ContextLoader(Generic[T]):
    """Builds the context once; after a failure, tries again at most every few seconds.

    The wait doubles from ``retry_min_s`` to ``retry_max_s`` while the build keeps
    failing. Between attempts every caller gets the last :class:`NotReadyError` at once,
    with the seconds until the next attempt (``Retry-After``). Only one thread builds at
    a time; ``clock`` is injectable so the schedule can be tested without waiting.
    """

    def __init__(
        self,
        factory: Callable[[], T],
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retry_min_s <= 0 or retry_max_s < retry_min_s:
            raise ValueError("need 0 < retry_min_s <= retry_max_s")
        self.factory = factory
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.clock = clock
        self.attempts = 0
        self._value: T | None = None
        self._error: NotReadyError | None = None
        self._next_attempt = 0.0
        self._wait = retry_min_s
        self._lock = threading.Lock()

    @property
    def loaded(self) -> T | None:
        return self._value

    def retry_after_s(self) -> int:
        """Whole seconds until the next build attempt (at least 1)."""
        return max(1, math.ceil(self._next_attempt - self.clock()))

    def get(self) -> T:
        """The context, or :class:`NotReadyError` (the last one until the next attempt)."""
        if self._value is not None:
            return self._value
        with self._lock:
            if self._value is not None:
                return self._value
            if self._error is not None and self.clock() < self._next_attempt:
                raise self._error
            self.attempts += 1
            try:
                self._value = self.factory()
            except NotReadyError as error:
                self._failed(error)
                logger.warning("serving context not ready: %s", error.detail)
                raise
            except Exception as error:
                self._failed(NotReadyError([STARTING]))
                logger.exception("serving context build failed")
                raise NotReadyError([STARTING]) from error
            self._error = None
            return self._value

    def _failed(self, error: NotReadyError) -> None:
        self._error = error
        self._next_attempt = self.clock() + self._wait
        self._wait = min(self._wait * 2, self.retry_max_s)


class DependencyUnavailableError(Exception):
    """A dependency failed and no useful answer exists without it: a 503.

    ``message`` goes to the client as it is, so it is a fixed text; the cause is chained
    and logged, never shown.
    """

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency
        self.message = message


def unavailable(dependency: str, message: str, error: BaseException) -> NoReturn:
    """Log ``error`` in full, then raise the 503 that names only the dependency."""
    logger.warning("%s unavailable: %s", dependency, message, exc_info=error)
    raise DependencyUnavailableError(dependency, message) from error
