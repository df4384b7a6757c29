"""The dead-letter queue: records the ingest function could not turn into events.

Nothing a producer sent is dropped silently: a record that fails validation is sent here
with the reason, the per-field detail, its place in the stream and its payload, so
someone can fix the producer. Dead letters are kept for days, so they hold no raw id:
the payload's ``user_id``, ``event_id`` and ``session_id`` and the partition key are
replaced by their keyed hashes (:func:`redacted_payload`), exactly as an archived event
holds them, and a payload that is not a JSON object (where an id could be anywhere) is
withheld, its size kept. The message format is documented for operators in
docs/EVENTS.md; :func:`dead_letter_message` is its one definition.

SQS caps a message at 256 KiB, less than a Kinesis record's 1 MB; a payload too big for
a message is put in the data bucket and the message points at it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from learnrec.events.batching import calls
from learnrec.events.records import ID_FIELDS, STORED_ENVELOPE, Rejection
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


Hash = Callable[[str], str]


PLAIN_FIELDS = frozenset({"content_id", "event_type", "value", "ts", "recommendation_id"})
"""Event fields kept as sent in a dead letter: they name items, kinds and times, not people."""


def redacted_payload(data: bytes | None, hash_id: Hash) -> dict[str, Any] | None:
    """The payload as a JSON object with its ids hashed, or None when it is not one.

    Only a payload that parses as a JSON object can be checked for ids; any other
    (malformed JSON, an array, bytes that are not UTF-8 or not base64) might hold a raw
    id anywhere in it, so it is not kept. A string id is stripped first, as validation
    strips it, so a dead letter's hash matches the archive's; an id that is not a string
    (a number, say) is hashed in its JSON form: it is still the learner's id. Free-form
    values (``context``, fields an event does not have) may hold an id too: only their
    names and sizes are kept. A pseudonymised record's ids (``{"stored": {...}}``) are
    hashed already and kept as they are.
    """
    if data is None:
        return None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    inner = value.get(STORED_ENVELOPE)
    if len(value) == 1 and isinstance(inner, dict):
        return {STORED_ENVELOPE: _redacted(inner, None)}
    return _redacted(value, hash_id)


def _redacted(value: dict[str, Any], hash_id: Hash | None) -> dict[str, Any]:
    """``hash_id`` None: the ids are hashed already (only strings are kept as they are)."""
    out: dict[str, Any] = {}
    for name, item in value.items():
        if name in ID_FIELDS and item is not None:
            if hash_id is None and isinstance(item, str):
                out[name] = item
            else:
                hashed = hash_id or (lambda x: "(not a hashed id)")
                out[name] = hashed(item.strip() if isinstance(item, str) else _json(item))
        elif name in PLAIN_FIELDS and not isinstance(item, (dict, list)):
            out[name] = item
        else:
            out[name] = {"withheld": "free-form: it may hold a raw id", "bytes": len(_json(item))}
    return out


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def payload_fields(record: StreamRecord, hash_id: Hash) -> dict[str, Any]:
    """The payload with its ids hashed, or, when it cannot be checked, only its size."""
    payload = redacted_payload(record.data, hash_id)
    if payload is not None:
        return {"payload": payload}
    size = len(record.data) if record.data is not None else len(record.raw_data)
    return {"payload_withheld": "not a JSON object: it may hold a raw id", "payload_bytes": size}


def dead_letter_message(letter: DeadLetter, hash_id: Hash) -> dict[str, Any]:
    record = letter.record
    return {
        "reason": letter.rejection.reason,
        "detail": letter.rejection.describe(),
        "errors": [e.model_dump() for e in letter.rejection.errors],
        "stream": letter.stream,
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "partition_key": hash_id(record.partition_key),
        "approximate_arrival": record.arrival.isoformat().replace("+00:00", "Z"),
        **payload_fields(record, hash_id),
    }


def dead_letter_object_key(letter: DeadLetter) -> str:
    return f"{DEAD_LETTER_PREFIX}{letter.record.shard_id}/{letter.record.sequence_number}"


@dataclass
class DeadLetterQueue:
    """Sends dead letters in batches of ten; unsent ones are retried once, then raised.

    ``hash_id`` is the user id hasher (:class:`~learnrec.identity.UserIdHasher`), applied
    to the ids in the payload and to the partition key. ``spill`` stores a payload too
    big for a message (key, bytes: the redacted payload's JSON) and is given the key from
    :func:`dead_letter_object_key`, so a retried record overwrites its own object.
    """

    client: Any
    queue_url: str
    hash_id: Hash
    spill: Callable[[str, bytes], None] | None = None
    sent: int = field(default=0, init=False)

    def send(self, letters: Sequence[DeadLetter]) -> int:
        entries = [self._entry(i, letter) for i, letter in enumerate(letters)]
        for call in _calls(entries):
            self._send_call(call)
        self.sent += len(entries)
        return len(entries)

    def _entry(self, index: int, letter: DeadLetter) -> dict[str, Any]:
        message = dead_letter_message(letter, self.hash_id)
        body = json.dumps(message, separators=(",", ":"))
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            if self.spill is None or "payload" not in message:
                raise DeadLetterError("a dead letter is too big for SQS and nowhere to spill it")
            key = dead_letter_object_key(letter)
            payload = json.dumps(message.pop("payload"), separators=(",", ":")).encode()
            self.spill(key, payload)
            message["payload_s3_key"] = key
            message["payload_bytes"] = len(payload)
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
