"""One module owns the bundle layout: its names never change, and no other module spells them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from learnrec import bundle
from learnrec.bundle import BundleLayout
from learnrec.serving.catalog import index_path

RUNTIME = Path(__file__).resolve().parents[2] / "learnrec"
OWNER = RUNTIME / "bundle.py"

#: Every file name of the layout. Folder names ("faiss", "report") are left out of the
#: scan: as words they mean other things too (the vector index setting, a CLI command).
FILE_NAMES = {
    value
    for name, value in vars(bundle).items()
    if name.endswith("_FILE") and isinstance(value, str)
}

#: The same spelling for something that is not a bundle file.
NOT_BUNDLE_FILES = {
    # The generated sample's catalog: a data folder that training reads, not a bundle.
    ("learnrec/data/generator.py", "catalog.jsonl"),
    # The batch command's help, telling people what its output folder will hold.
    ("learnrec/serving/batch_cli.py", "manifest.json"),
}


def test_the_on_disk_layout_never_changes(tmp_path: Path) -> None:
    """Deployed bundles carry these paths: a renamed file leaves every version unloadable."""
    layout = BundleLayout(tmp_path)
    paths = {
        entry: getattr(layout, entry).relative_to(tmp_path).as_posix()
        for entry, value in vars(BundleLayout).items()
        if isinstance(value, type(BundleLayout.manifest))
    }
    assert paths == {
        "manifest": "manifest.json",
        "user_tower": "user_tower.onnx",
        "item_tower": "item_tower.onnx",
        "space": "feature_space.json",
        "embeddings": "item_embeddings.npy",
        "stats": "item_stats.npz",
        "catalog": "catalog.jsonl",
        "catalog_index": "catalog.index.npz",
        "retrieval_summary": "retrieval.json",
        "index_dir": "faiss",
        "ranker": "ranker.ubj",
        "ranker_meta": "ranker.json",
        "ranking_summary": "ranking.json",
        "evaluation": "evaluation.json",
        "report_dir": "report",
    }
    # The faiss index's own files, inside its folder.
    assert (bundle.INDEX_GRAPH_FILE, bundle.INDEX_META_FILE) == ("index.faiss", "meta.npz")
    files = {*paths.values(), "index.faiss", "meta.npz"} - {"faiss", "report"}
    assert files == FILE_NAMES


def test_the_catalog_index_is_named_as_the_layout_says(tmp_path: Path) -> None:
    # The serving catalog derives its line index's name from the catalog's.
    layout = BundleLayout(tmp_path)
    assert index_path(layout.catalog) == layout.catalog_index


def test_ranking_mode_keeps_only_what_the_retrieval_job_made() -> None:
    made_later = {"manifest.json", "ranker.ubj", "ranker.json", "ranking.json", "evaluation.json"}
    assert made_later == bundle.NOT_RETRIEVAL_FILES


def _docstrings(tree: ast.Module) -> set[int]:
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def spelled_names(source: Path) -> set[str]:
    """The layout's file names that string literals in ``source`` spell (docstrings aside)."""
    tree = ast.parse(source.read_text(), filename=str(source))
    docstrings = _docstrings(tree)
    return {
        name
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
        for name in FILE_NAMES
        if name in node.value
    }


def test_no_other_module_spells_a_bundle_file_name() -> None:
    offenders = {
        (path.relative_to(RUNTIME.parent).as_posix(), name)
        for path in sorted(RUNTIME.rglob("*.py"))
        if path != OWNER
        for name in spelled_names(path)
    }
    assert offenders - NOT_BUNDLE_FILES == set()


@pytest.mark.parametrize(
    "code",
    [
        'PATH = "ranker.ubj"\n',
        'def f(d):\n    """Reads feature_space.json."""\n    return d / f"{d}/ranker.ubj"\n',
    ],
)
def test_the_scan_sees_a_spelled_name(tmp_path: Path, code: str) -> None:
    module = tmp_path / "m.py"
    module.write_text(code)
    assert spelled_names(module) == {"ranker.ubj"}
