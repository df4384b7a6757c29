"""User ids, hashed: the one keyed hash every stored or logged user id goes through.

Raw learner ids arrive at the edges (the API's path and token, the event stream, the
catalog loader) and are replaced there by :func:`hash_user_id`; everything behind the
edges (S3 archive, database history, profiles, opt-out flags, model vocabularies built
from archived events) only ever sees the hash. One function and one key source keep the
edges agreeing with each other: a learner whose id hashed differently in two places
would silently become two learners.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from learnrec.config import Settings

HASH_HEX_CHARS = 32
"""128 bits of HMAC-SHA256: collision-free for any realistic number of learners."""


def hash_user_id(user_id: str, key: bytes) -> str:
    """Keyed hash of a user id: the same everywhere ids are stored or logged."""
    return hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]


class UserIdHasher:
    """:func:`hash_user_id` with one key bound and recent ids cached.

    The ingest path hashes every event's id and the API every request's; learners repeat,
    so a small cache saves most of the HMAC work on a hot path.
    """

    def __init__(self, key: bytes, cache_size: int = 65_536) -> None:
        if not key:
            raise ValueError("the user id hash key must not be empty")
        self.key = key
        self._hash = lru_cache(maxsize=cache_size)(self._compute)

    def _compute(self, user_id: str) -> str:
        return hash_user_id(user_id, self.key)

    def __call__(self, user_id: str) -> str:
        return self._hash(user_id)


def user_id_hash_key(settings: Settings, secrets_client: Any = None) -> bytes:
    """The keyed-hash secret: ``USER_ID_HASH_KEY``, else Secrets Manager in AWS.

    There is no default: a made-up key would hash ids differently from every other part
    of the system, and no key at all would mean storing raw ids.
    """
    if settings.user_id_hash_key:
        return settings.user_id_hash_key.encode()
    if settings.user_id_hash_secret_id:
        import boto3

        client = secrets_client or boto3.client("secretsmanager")
        secret = client.get_secret_value(SecretId=settings.user_id_hash_secret_id)
        return str(secret["SecretString"]).encode()
    raise ValueError(
        "set USER_ID_HASH_KEY or USER_ID_HASH_SECRET_ID: user ids are never stored raw"
    )
