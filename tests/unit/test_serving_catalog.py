"""The serving catalog maps its file and validates items on first use, with the same answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from learnrec.schemas import ContentFormat, ContentItem
from learnrec.serving.catalog import ServingCatalog, index_path, write_catalog

ITEMS = [
    ContentItem(
        content_id=f"c{i}",
        title=f"Course {i} – ü",  # non-ASCII: offsets are bytes, not characters
        topics=["python"] if i % 2 else ["sql", "data"],
        level=1 + i % 5,
        format=ContentFormat.COURSE,
        prerequisites=[f"c{i - 1}"] if i else [],
    )
    for i in range(50)
]


def _same(a: ServingCatalog, b: ServingCatalog) -> None:
    assert len(a) == len(b)
    assert [i.model_dump() for i in a] == [i.model_dump() for i in b]


def test_indexed_load_equals_full_validation(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    write_catalog(ITEMS, path)
    assert index_path(path).name == "catalog.index.npz"
    lazy = ServingCatalog.load(path)
    index_path(path).unlink()
    full = ServingCatalog.load(path)
    _same(lazy, full)
    assert lazy.get("c7") == ITEMS[7]
    assert lazy.title("c3") == "Course 3 – ü"
    assert lazy.title("nope") == "nope" and lazy.get("nope") is None
    assert "c49" in lazy and "c50" not in lazy


def test_upserts_replace_and_append_in_order(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    write_catalog(ITEMS, path)
    catalog = ServingCatalog.load(path)
    changed = ITEMS[4].model_copy(update={"title": "Renamed"})
    new = ContentItem(content_id="fresh", title="Fresh", topics=["ml"], level=2)
    catalog.upsert([changed, new])
    assert len(catalog) == 51
    assert catalog.title("c4") == "Renamed"
    ids = [item.content_id for item in catalog]
    assert ids[-1] == "fresh" and ids[4] == "c4"
    assert "Renamed" in catalog.to_jsonl()


def test_a_stale_index_falls_back_to_the_lines(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    write_catalog(ITEMS, path)
    stale = path.read_bytes()
    write_catalog(ITEMS[:10], tmp_path / "other.jsonl")
    index_path(tmp_path / "other.jsonl").replace(index_path(path))
    path.write_bytes(stale)
    catalog = ServingCatalog.load(path)
    assert len(catalog) == 50 and catalog.get("c42") == ITEMS[42]


def test_a_damaged_line_is_an_unknown_item_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    write_catalog(ITEMS[:3], path)
    data = path.read_bytes().replace(b'"level":2', b'"level":9')  # out of range
    path.write_bytes(data)
    catalog = ServingCatalog.load(path)
    assert catalog.get("c1") is None
    assert catalog.get("c2") == ITEMS[2]


def test_an_empty_catalog(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    write_catalog([], path)
    catalog = ServingCatalog.load(path)
    assert len(catalog) == 0 and list(catalog) == []
    with pytest.raises(FileNotFoundError):
        ServingCatalog.load(tmp_path / "missing.jsonl")
