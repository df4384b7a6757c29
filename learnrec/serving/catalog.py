"""The catalog as serving sees it: ids, titles, topics, levels, prerequisites.

Serving needs these to apply business filters and to word reasons, without pandas or a
database round trip per request. The training job writes them into the bundle as JSON
lines (``catalog.jsonl``); admin upserts add to the in-memory copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter

from learnrec.schemas import ContentItem

_ITEMS = TypeAdapter(list[ContentItem])


def write_catalog(items: Iterable[ContentItem], path: Path) -> None:
    """Write catalog items as JSON lines, the form :meth:`ServingCatalog.load` reads."""
    with path.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(item.model_dump_json(exclude_none=True) + "\n")


@dataclass
class ServingCatalog:
    """Catalog items by content id, in a stable order."""

    items: dict[str, ContentItem]

    @classmethod
    def load(cls, path: Path) -> ServingCatalog:
        # One validation call over the whole file: per-line calls dominated cold starts.
        with path.open(encoding="utf-8") as handle:
            lines = [line.strip() for line in handle if line.strip()]
        items = _ITEMS.validate_json("[" + ",".join(lines) + "]")
        return cls({item.content_id: item for item in items})

    def __contains__(self, content_id: object) -> bool:
        return content_id in self.items

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ContentItem]:
        return iter(self.items.values())

    def get(self, content_id: str) -> ContentItem | None:
        return self.items.get(content_id)

    def title(self, content_id: str) -> str:
        item = self.items.get(content_id)
        return item.title if item and item.title else content_id

    def upsert(self, items: Iterable[ContentItem]) -> None:
        for item in items:
            self.items[item.content_id] = item

    def to_jsonl(self) -> str:
        return "".join(
            json.dumps(i.model_dump(mode="json", exclude_none=True)) + "\n" for i in self
        )
