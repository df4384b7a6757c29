"""Where model bundles live, and which one is active.

A store keeps one folder (or S3 prefix) per version under ``versions/`` and a small
``active.json`` pointer naming the active version plus the versions active before it,
so a rollback is one pointer write and serving picks it up at its next check, with no
redeploy. Two stores share this contract: a local folder (development, tests) and S3.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from learnrec.bundle import MANIFEST_FILE, BundleLayout, read_manifest

POINTER_FILE = "active.json"
ROLLBACK_DEPTH = 5
"""Versions the pointer remembers to go back to; older inactive bundles are deleted by
the retention sweep (learnrec.privacy.retention), since their models learned from
learners' data."""
VERSIONS = "versions"


class ModelStoreError(RuntimeError):
    """A version or pointer is missing or cannot be read."""


@dataclass(frozen=True)
class Pointer:
    """The active version and, newest first, the versions that were active before."""

    active: str | None
    previous: tuple[str, ...] = ()
    updated: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"active": self.active, "previous": list(self.previous), "updated": self.updated}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pointer:
        return cls(data.get("active"), tuple(data.get("previous", [])), data.get("updated"))


class ModelStore(Protocol):
    def versions(self) -> list[str]: ...
    def pointer(self) -> Pointer: ...
    def write_pointer(self, pointer: Pointer) -> None: ...
    def fetch(self, version: str) -> Path: ...
    def publish(self, bundle: Path, version: str) -> None: ...


def promote(store: ModelStore, version: str) -> Pointer:
    """Make ``version`` active, remembering the one it replaces."""
    if version not in store.versions():
        raise ModelStoreError(f"no model version {version!r} in the store")
    current = store.pointer()
    if current.active == version:
        return current
    previous = (current.active, *current.previous) if current.active else current.previous
    pointer = Pointer(version, previous[:ROLLBACK_DEPTH], _now())
    store.write_pointer(pointer)
    return pointer


def rollback(store: ModelStore) -> Pointer:
    """Go back to the version that was active before the current one."""
    current = store.pointer()
    if not current.previous:
        raise ModelStoreError("there is no earlier active version to roll back to")
    pointer = Pointer(current.previous[0], current.previous[1:], _now())
    store.write_pointer(pointer)
    return pointer


def _check_version(bundle: Path, version: str) -> None:
    """A bundle is published under the version its manifest names, and no other."""
    named = read_manifest(bundle)["version"]
    if named != version:
        raise ModelStoreError(f"bundle {bundle} is version {named!r}, not {version!r}")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class LocalModelStore:
    """Bundles in ``root/versions/<version>/``, the pointer in ``root/active.json``."""

    root: Path

    def versions(self) -> list[str]:
        folder = self.root / VERSIONS
        if not folder.exists():
            return []
        return sorted(p.name for p in folder.iterdir() if BundleLayout(p).manifest.exists())

    def pointer(self) -> Pointer:
        path = self.root / POINTER_FILE
        if not path.exists():
            return Pointer(None)
        try:
            return Pointer.from_json(json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            raise ModelStoreError(f"cannot read {path}: {error}") from error

    def write_pointer(self, pointer: Pointer) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / (POINTER_FILE + ".tmp")
        tmp.write_text(json.dumps(pointer.to_json()))
        tmp.replace(self.root / POINTER_FILE)  # atomic: readers never see half a pointer

    def fetch(self, version: str) -> Path:
        path = self.root / VERSIONS / version
        if not BundleLayout(path).manifest.exists():
            raise ModelStoreError(f"no model version {version!r} in {self.root}")
        return path

    def publish(self, bundle: Path, version: str) -> None:
        _check_version(bundle, version)
        target = self.root / VERSIONS / version
        if target.exists():
            raise ModelStoreError(f"version {version!r} already exists")
        shutil.copytree(bundle, target)


@dataclass
class S3ModelStore:
    """Bundles under ``s3://bucket/prefix/versions/<version>/``; downloads are cached."""

    bucket: str
    prefix: str
    client: Any
    cache: Path = field(default_factory=lambda: Path("/tmp/learnrec-models"))

    def _key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p)

    def versions(self) -> list[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        found: set[str] = set()
        root = self._key(VERSIONS) + "/"
        for page in paginator.paginate(Bucket=self.bucket, Prefix=root):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(root) :]
                version, _, name = rest.partition("/")
                if name == MANIFEST_FILE:
                    found.add(version)
        return sorted(found)

    def pointer(self) -> Pointer:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(POINTER_FILE))["Body"]
        except self.client.exceptions.NoSuchKey:
            return Pointer(None)
        return Pointer.from_json(json.loads(body.read()))

    def write_pointer(self, pointer: Pointer) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(POINTER_FILE),
            Body=json.dumps(pointer.to_json()).encode(),
            ContentType="application/json",
        )

    def fetch(self, version: str) -> Path:
        # Keyed by bucket and prefix too: two stores may hold different bundles that
        # carry the same version name.
        cache = self.cache / self.bucket / self._key()
        target = cache / version
        if BundleLayout(target).manifest.exists():
            return target
        root = self._key(VERSIONS, version) + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        partial = cache / f".{version}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        count = 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=root):
            for obj in page.get("Contents", []):
                path = partial / obj["Key"][len(root) :]
                path.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, obj["Key"], str(path))
                count += 1
        if not count or not BundleLayout(partial).manifest.exists():
            raise ModelStoreError(f"no model version {version!r} at s3://{self.bucket}/{root}")
        partial.replace(target)
        return target

    def publish(self, bundle: Path, version: str) -> None:
        _check_version(bundle, version)
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                key = self._key(VERSIONS, version, str(path.relative_to(bundle)))
                self.client.upload_file(str(path), self.bucket, key)


def store_from_url(url: str, s3_client: Any = None) -> ModelStore:
    """``s3://bucket/prefix`` (boto3 honours ``AWS_ENDPOINT_URL``) or a local folder."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ModelStoreError(f"no bucket in model store URL {url!r}")
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        return S3ModelStore(bucket, prefix.strip("/"), s3_client)
    return LocalModelStore(Path(url))


class ActiveModel:
    """The active bundle of a container, re-checked at most every ``check_interval_s``.

    The new version is loaded completely before it replaces the old one, so requests in
    between keep being served by the old model and none waits for a cold start.
    """

    def __init__(
        self,
        store: ModelStore,
        loader: Callable[[Path], Any],
        check_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.loader = loader
        self.check_interval_s = check_interval_s
        self.clock = clock
        self.version: str | None = None
        self.value: Any = None
        self.error: str | None = None
        self._checked_at: float | None = None

    def get(self) -> Any:
        now = self.clock()
        if self._checked_at is None or now - self._checked_at >= self.check_interval_s:
            self._checked_at = now
            self.refresh()
        return self.value

    def refresh(self) -> None:
        try:
            active = self.store.pointer().active
            if active is None or active == self.version:
                self.error = None if active else "no active model version"
                return
            loaded = self.loader(self.store.fetch(active))
        except Exception as error:  # keep serving the model we have
            self.error = f"could not load the active model: {error}"
            return
        self.value, self.version, self.error = loaded, active, None
