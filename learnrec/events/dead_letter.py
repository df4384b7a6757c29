"""The dead-letter queue: records the ingest function could not turn into events.

Nothing a producer sent is dropped silently: a record that fails validation is sent here
with the reason, the original payload and its place in the stream, so someone can fix
the producer and replay it. The message format is documented for operators in
docs/EVENTS.md; :func:`dead_letter_message` is its one definition.

SQS caps a message at 256 KiB, less than a Kinesis record's 1 MB; a payload too big for
a message is put in the data bucket and the message points at it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from learnrec.events.batching import calls
from learnrec.events.records import Rejection
from learnrec.events.stream import StreamRecord

SQS_BATCH = 10
# Below SQS's 256 KiB per message and per SendMessageBatch call, with room for the
# envelope and the attributes.
MAX_MESSAGE_BYTES = 200 * 1024
MAX_CALL_BYTES = 240 * 1024
DEAD_LETTER_PREFIX = "dead-letters/"


class DeadLetterError(RuntimeError):
    """Dead letters could not be delivered; the batch must be retried, not acknowledged."""


@dataclass(frozen=True)
class DeadLetter:
    """One rejected record and why."""

    record: StreamRecord
    rejection: Rejection
    stream: str = ""

    @property
    def position(self) -> str:
        return self.record.position


def payload_fields(record: StreamRecord) -> dict[str, Any]:
    """The original payload: text when it is UTF-8, base64 otherwise."""
    if record.data is None:
        return {"payload_base64": record.raw_data, "payload_encoding": "invalid-base64"}
    try:
        return {"payload": record.data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload_base64": base64.b64encode(record.data).decode()}


def dead_letter_message(letter: DeadLetter) -> dict[str, Any]:
    record = letter.record
    return {
        "reason": letter.rejection.reason,
        "detail": letter.rejection.describe(),
        "errors": [e.model_dump() for e in letter.rejection.errors],
        "stream": letter.stream,
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "partition_key": record.partition_key,
        "approximate_arrival": record.arrival.isoformat().replace("+00:00", "Z"),
        **payload_fields(record),
    }


def dead_letter_object_key(letter: DeadLetter) -> str:
    return f"{DEAD_LETTER_PREFIX}{letter.record.shard_id}/{letter.record.sequence_number}"


@dataclass
class DeadLetterQueue:
    """Sends dead letters in batches of ten; unsent ones are retried once, then raised.

    ``spill`` stores a payload too big for a message (key, bytes) and is given the key
    from :func:`dead_letter_object_key`, so a retried record overwrites its own object.
    """

    client: Any
    queue_url: str
    spill: Callable[[str, bytes], None] | None = None
    sent: int = field(default=0, init=False)

    def send(self, letters: Sequence[DeadLetter]) -> int:
        entries = [self._entry(i, letter) for i, letter in enumerate(letters)]
        for call in _calls(entries):
            self._send_call(call)
        self.sent += len(entries)
        return len(entries)

    def _entry(self, index: int, letter: DeadLetter) -> dict[str, Any]:
        message = dead_letter_message(letter)
        body = json.dumps(message, separators=(",", ":"))
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            if self.spill is None or letter.record.data is None:
                raise DeadLetterError("a dead letter is too big for SQS and nowhere to spill it")
            key = dead_letter_object_key(letter)
            self.spill(key, letter.record.data)
            message.pop("payload", None)
            message.pop("payload_base64", None)
            message["payload_s3_key"] = key
            message["payload_bytes"] = len(letter.record.data)
            body = json.dumps(message, separators=(",", ":"))
        return {
            "Id": str(index),
            "MessageBody": body,
            "MessageAttributes": {
                "reason": {"DataType": "String", "StringValue": letter.rejection.reason},
                "position": {"DataType": "String", "StringValue": letter.position},
            },
        }

    def _send_call(self, entries: list[dict[str, Any]]) -> None:
        pending = entries
        for _attempt in range(2):
            try:
                response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=pending)
            except Exception as error:
                raise DeadLetterError(f"dead-letter queue unavailable: {error}") from error
            failed = {f["Id"] for f in response.get("Failed", [])}
            pending = [e for e in pending if e["Id"] in failed]
            if not pending:
                return
        raise DeadLetterError(f"dead-letter queue refused {len(pending)} message(s)")


def _calls(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Entries grouped into SendMessageBatch calls: at most ten and 240 KiB each."""
    return calls(entries, lambda e: len(e["MessageBody"].encode()) + 256, SQS_BATCH, MAX_CALL_BYTES)
