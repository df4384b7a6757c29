"""The local stand-in for Lambda's Kinesis event source mapping.

Reads every shard of a stream on the local AWS (GetShardIterator/GetRecords), hands the
records to the real ingest handler in batches of Lambda's event shape
(:func:`learnrec.events.stream.lambda_record`), and honours partial batch responses the
way the event source mapping does: the shard's checkpoint moves past the batch only if
no record failed; otherwise reading resumes at the first failed sequence number. A
handler that raises is treated like a batch whose records all failed.

Checkpoints live in memory, per poller: a new poller starts at the oldest record
(TRIM_HORIZON), like a new event source mapping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from learnrec.events.stream import lambda_event, lambda_record
from learnrec.serving.apigw import LambdaContext

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# Kinesis allows 10,000 records per GetRecords; the event source mapping's batch is <= 10,000.
MAX_BATCH = 10_000


class PollerError(RuntimeError):
    """A batch kept failing: :meth:`KinesisPoller.drain` gives up instead of spinning."""


@dataclass
class ShardState:
    """Where reading a shard resumes: after ``checkpoint``, or at its oldest record."""

    shard_id: str
    checkpoint: str | None = None
    failures: int = 0


class KinesisPoller:
    """Feeds a stream's records to a Kinesis-triggered Lambda handler, in order per shard.

    ``handled`` counts records acknowledged by the handler; ``invocations`` and
    ``handler_seconds`` (wall time inside the handler only) are for benchmarks.
    """

    def __init__(
        self,
        stream_name: str,
        handler: Handler,
        *,
        kinesis: Any | None = None,
        batch_size: int = 100,
        max_attempts: int = 5,
        retry_delay_s: float = 0.2,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        if kinesis is None:
            import boto3

            kinesis = boto3.client("kinesis")
        self.stream_name = stream_name
        self.handler = handler
        self.kinesis = kinesis
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self.shards: dict[str, ShardState] = {}
        self.handled = 0
        self.invocations = 0
        self.handler_seconds = 0.0
        self._lock = threading.Lock()

    # -- public --------------------------------------------------------------------

    def drain(self) -> int:
        """Process everything now in the stream; return the records acknowledged.

        A batch that still fails after ``max_attempts`` raises :class:`PollerError`.
        """
        with self._lock:
            before = self.handled
            self._refresh_shards()
            for state in self.shards.values():
                while self._poll_shard(state, raise_after=self.max_attempts):
                    pass
            return self.handled - before

    def run(self, stop: threading.Event, interval_s: float = 0.2) -> None:
        """Poll until ``stop`` is set; a failing batch is logged and retried, forever."""
        while not stop.is_set():
            busy = False
            try:
                with self._lock:
                    self._refresh_shards()
                    for state in self.shards.values():
                        busy |= self._poll_shard(state, raise_after=None)
            except Exception:  # the local AWS restarting must not end the loop
                logger.exception("polling %s failed; retrying", self.stream_name)
            if not busy:
                stop.wait(interval_s)

    # -- one shard -------------------------------------------------------------------

    def _refresh_shards(self) -> None:
        paginator = self.kinesis.get_paginator("list_shards")
        for page in paginator.paginate(StreamName=self.stream_name):
            for shard in page.get("Shards", []):
                self.shards.setdefault(shard["ShardId"], ShardState(shard["ShardId"]))

    def _iterator(self, state: ShardState) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": state.shard_id}
        if state.checkpoint is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["StartingSequenceNumber"] = state.checkpoint
        return str(self.kinesis.get_shard_iterator(**kwargs)["ShardIterator"])

    def _poll_shard(self, state: ShardState, raise_after: int | None) -> bool:
        """Hand the shard's next batch to the handler; False when there was none."""
        response = self.kinesis.get_records(
            ShardIterator=self._iterator(state), Limit=self.batch_size
        )
        records = response.get("Records", [])
        if not records:
            return False
        event = lambda_event(lambda_record(state.shard_id, r, self.stream_name) for r in records)
        failed = self._invoke(event, [str(r["SequenceNumber"]) for r in records])
        sequences = [str(r["SequenceNumber"]) for r in records]
        if failed is None:
            state.checkpoint = sequences[-1]
            state.failures = 0
            self.handled += len(records)
            return True
        # Resume at the first failed record: everything before it is acknowledged.
        first = min(sequences.index(s) for s in failed if s in sequences) if failed else 0
        if first:
            state.checkpoint = sequences[first - 1]
            self.handled += first
            state.failures = 0
            return True
        state.failures += 1
        if raise_after is not None and state.failures >= raise_after:
            raise PollerError(
                f"{self.stream_name}/{state.shard_id}: a batch failed {state.failures} times"
            )
        time.sleep(self.retry_delay_s * min(state.failures, 10))
        return True

    @staticmethod
    def _context() -> LambdaContext:
        return LambdaContext(
            function_name="learnrec-ingest",
            invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:learnrec-ingest",
        )

    def _invoke(self, event: dict[str, Any], sequences: list[str]) -> list[str] | None:
        """The failed sequence numbers, or None when the whole batch was acknowledged."""
        self.invocations += 1
        started = time.perf_counter()
        try:
            response = self.handler(event, self._context())
        except Exception:
            logger.exception("the handler raised; the batch will be retried")
            return sequences
        finally:
            self.handler_seconds += time.perf_counter() - started
        failures = (response or {}).get("batchItemFailures") or []
        failed = [str(f.get("itemIdentifier")) for f in failures]
        if not failed:
            return None
        known = [s for s in failed if s in sequences]
        # An identifier that is not in the batch fails it as a whole, as Lambda does.
        return known if len(known) == len(failed) else sequences
