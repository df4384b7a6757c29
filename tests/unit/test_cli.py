"""The command line: argument errors, data errors before any training, catalog loading.

Nothing here trains: every `benchmark quality` call fails in argument parsing or while
reading its input, before a model is built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from learnrec.config import get_settings
from learnrec.identity import hash_user_id
from learnrec.storage import CatalogStore, make_engine
from learnrec_dev.cli import build_parser, main


def _exit_code(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--dataset", "sample", "--sep", "TAB"], "go with --interactions", id="sep"),
        pytest.param(
            ["--dataset", "sample", "--columns", "user,item"], "go with --interactions", id="cols"
        ),
        pytest.param(
            ["--dataset", "sample", "--min-rating", "3"], "go with --interactions", id="min-rating"
        ),
        pytest.param(["--dataset", "sample", "--test-fraction", "1.5"], "test-fraction", id="tf"),
        pytest.param(["--dataset", "sample", "--test-fraction", "0"], "test-fraction", id="tf-0"),
        pytest.param(["--dataset", "sample", "--k", "0"], "--k", id="k-0"),
        pytest.param(
            ["--dataset", "sample", "--interactions", "x.tsv"], "not allowed with", id="both"
        ),
        pytest.param([], "one of the arguments", id="neither"),
        pytest.param(["--dataset", "netflix"], "invalid choice", id="unknown-dataset"),
        pytest.param(["--dataset", "sample", "--sep", "PIPE"], "invalid choice", id="bad-sep"),
        pytest.param(["--dataset", "sample", "--k", "ten"], "invalid int", id="k-text"),
    ],
)
def test_quality_argument_errors_exit_with_2(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _exit_code(["benchmark", "quality", *extra, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-command"),
        pytest.param(["data"], id="no-action"),
        pytest.param(["data", "generate"], id="no-out"),
        pytest.param(["data", "generate", "--users", "many", "--out", "x"], id="bad-int"),
        pytest.param(["catalog", "load"], id="no-data"),
        pytest.param(["benchmark", "quality", "--dataset", "sample"], id="no-out-quality"),
    ],
)
def test_other_argument_errors_exit_with_2(argv: list[str]) -> None:
    assert _exit_code(argv) == 2


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["--help"]) == 0
    assert "benchmark" in capsys.readouterr().out


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["benchmark", "quality", "--dataset", "sample", "--out", "x"])
    assert (args.split, args.test_fraction, args.k, args.seed) == ("stratified", 0.25, 10, 42)
    assert args.sep is None and args.columns is None and args.min_rating is None


def test_malformed_rating_is_reported_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("user\titem\trating\nu1\ti1\t5\nu2\ti2\tfive\nu3\ti3\t4\n", encoding="utf-8")
    out = tmp_path / "out"
    code = main(["benchmark", "quality", "--interactions", str(bad), "--out", str(out), "--quiet"])
    assert code == 2
    captured = capsys.readouterr()
    assert "bad.tsv:3" in captured.err
    assert "'five'" in captured.err
    assert captured.err.startswith("learnrec: ")
    assert captured.out == ""
    assert not out.exists()  # failed while reading, before anything was trained or written


def test_missing_interactions_file_returns_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.csv"
    code = main(["benchmark", "quality", "--interactions", str(missing), "--out", str(tmp_path)])
    assert code == 2
    assert "nope.csv" in capsys.readouterr().err


def test_catalog_load_fills_the_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USER_ID_HASH_KEY", "cli-test-key")
    get_settings.cache_clear()
    data = tmp_path / "sample"
    generate = ["data", "generate", "--users", "30", "--items", "25", "--events", "200"]
    assert main([*generate, "--seed", "5", "--out", str(data)]) == 0
    capsys.readouterr()

    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["catalog", "load", "--data", str(data), "--database-url", url]) == 0
    assert '"items": 25' in capsys.readouterr().out

    store = CatalogStore(make_engine(url))
    assert store.count_items() == 25
    learners = store.list_learners()
    assert len(learners) == 30
    # Stored under the keyed hash, never the raw id.
    assert {lr.user_id for lr in learners} == {
        hash_user_id(f"u{i:05d}", b"cli-test-key") for i in range(30)
    }
    item = store.get_item("c00000")
    assert item is not None and item.topics

    # Loading again updates in place rather than duplicating.
    assert main(["catalog", "load", "--data", str(data), "--database-url", url]) == 0
    assert store.count_items() == 25
    get_settings.cache_clear()


def test_catalog_load_without_a_hash_key_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("USER_ID_HASH_KEY", raising=False)
    monkeypatch.delenv("USER_ID_HASH_SECRET_ID", raising=False)
    get_settings.cache_clear()
    data = tmp_path / "sample"
    main(["data", "generate", "--users", "5", "--items", "5", "--events", "20", "--out", str(data)])
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["catalog", "load", "--data", str(data), "--database-url", url]) == 2
    assert "USER_ID_HASH_KEY" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()
    get_settings.cache_clear()


def test_catalog_load_reports_invalid_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "catalog.jsonl").write_text('{"content_id": "a", "level": 7}\n')
    (tmp_path / "learners.jsonl").write_text('{"user_id": "u"}\n')
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["catalog", "load", "--data", str(tmp_path), "--database-url", url]) == 2
    err = capsys.readouterr().err
    assert "invalid data" in err
    assert "level" in err


def test_catalog_load_of_a_missing_folder_returns_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    code = main(["catalog", "load", "--data", str(tmp_path / "none"), "--database-url", url])
    assert code == 2
    assert "catalog.jsonl" in capsys.readouterr().err
