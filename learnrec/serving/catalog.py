"""The catalog as serving sees it: ids, titles, topics, levels, prerequisites.

Serving needs these to apply business filters and to word reasons, without pandas or a
database round trip per request. The training job writes them into the bundle as JSON
lines (``catalog.jsonl``); admin upserts add to the in-memory copy.

Validating every line at load took most of a 100k-item cold start (~1.3 s), while a
request reads a few hundred items at most. So :func:`write_catalog` also writes a small
index beside the lines (``catalog.index.npz``: content ids and byte offsets), and a
loaded catalog maps the file and validates an item the first time it is asked for
(~3 µs), keeping it from then on. Bundles without the index load the old way.
"""

from __future__ import annotations

import json
import logging
import mmap
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from pydantic import TypeAdapter, ValidationError

from learnrec.schemas import ContentItem

logger = logging.getLogger(__name__)

_ITEM = TypeAdapter(ContentItem)
_ITEMS = TypeAdapter(list[ContentItem])
INDEX_SUFFIX = ".index.npz"  # catalog.jsonl -> catalog.index.npz (bundle.CATALOG_INDEX_FILE)


def index_path(path: Path) -> Path:
    """The line index of a catalog file: ``catalog.jsonl`` -> ``catalog.index.npz``."""
    return path.with_suffix(INDEX_SUFFIX)


def write_catalog(items: Iterable[ContentItem], path: Path) -> None:
    """Write catalog items as JSON lines plus their line index (see the module doc)."""
    ids: list[str] = []
    offsets = [0]
    with path.open("wb") as handle:
        for item in items:
            line = item.model_dump_json(exclude_none=True).encode() + b"\n"
            handle.write(line)
            ids.append(item.content_id)
            offsets.append(offsets[-1] + len(line))
    with index_path(path).open("wb") as handle:
        np.savez(
            handle,
            content_ids=np.asarray(ids, dtype=np.str_),
            offsets=np.asarray(offsets, dtype=np.int64),
        )


class ServingCatalog:
    """Catalog items by content id, in a stable order (file order, then new items)."""

    def __init__(self, items: Iterable[ContentItem] = ()) -> None:
        self._parsed: dict[str, ContentItem] = {}
        self._order: list[str] = []
        self._rows: dict[str, int] = {}  # content id -> line of the mapped file
        self._offsets: list[int] = [0]
        self._buffer: mmap.mmap | bytes = b""
        self.upsert(items)

    @classmethod
    def load(cls, path: Path) -> ServingCatalog:
        """Map ``path`` through its line index, or validate it whole if there is none."""
        lazy = cls._load_indexed(path)
        if lazy is not None:
            return lazy
        # One validation call over the whole file: per-line calls were slower still.
        with path.open(encoding="utf-8") as handle:
            lines = [line.strip() for line in handle if line.strip()]
        return cls(_ITEMS.validate_json("[" + ",".join(lines) + "]"))

    @classmethod
    def _load_indexed(cls, path: Path) -> ServingCatalog | None:
        index = index_path(path)
        if not index.is_file():
            return None
        with np.load(index, allow_pickle=False) as arrays:
            ids: list[str] = arrays["content_ids"].tolist()
            offsets: list[int] = arrays["offsets"].tolist()
        size = path.stat().st_size
        if len(offsets) != len(ids) + 1 or offsets[-1] != size:
            # The lines were rewritten without their index: trust the lines.
            logger.warning("%s does not match %s; validating every line", index, path)
            return None
        catalog = cls()
        if size:
            with path.open("rb") as handle:
                catalog._buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        catalog._offsets = offsets
        catalog._rows = {content_id: row for row, content_id in enumerate(ids)}
        catalog._order = list(catalog._rows) if len(catalog._rows) != len(ids) else ids
        return catalog

    def __contains__(self, content_id: object) -> bool:
        return content_id in self._parsed or content_id in self._rows

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self) -> Iterator[ContentItem]:
        for content_id in list(self._order):
            item = self.get(content_id)
            if item is not None:
                yield item

    def get(self, content_id: str) -> ContentItem | None:
        item = self._parsed.get(content_id)
        if item is not None:
            return item
        row = self._rows.get(content_id)
        if row is None:
            return None
        line = self._buffer[self._offsets[row] : self._offsets[row + 1]]
        try:
            item = _ITEM.validate_json(line)
        except ValidationError:
            # Checksummed and validated when written, so this means a damaged file:
            # the item is served as unknown rather than failing the request.
            logger.exception("catalog line %d (%s) is not a valid item", row, content_id)
            return None
        self._parsed[content_id] = item
        return item

    def title(self, content_id: str) -> str:
        item = self.get(content_id)
        return item.title if item and item.title else content_id

    def upsert(self, items: Iterable[ContentItem]) -> None:
        for item in items:
            if item.content_id not in self:
                self._order.append(item.content_id)
            self._parsed[item.content_id] = item

    def to_jsonl(self) -> str:
        return "".join(
            json.dumps(i.model_dump(mode="json", exclude_none=True)) + "\n" for i in self
        )
