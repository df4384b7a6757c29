"""Importers: every supported file shape, and an exact `file:line` for every bad row.

Line numbers are asserted exactly because they are the whole point of the error: a
person opens the file at that line to fix it. Lines count from 1 and include the header.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from learnrec.data.importers import (
    MOOCCUBE_ENV_VAR,
    DataFormatError,
    default_mooccube_root,
    load_mooccube,
    read_interactions_file,
)

REAL_MOOCCUBE = Path(__file__).parents[3] / "shared" / "datasets" / "mooccube"


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def pairs(path: Path, **kwargs: object) -> dict[tuple[str, str], float]:
    """(user, item) -> weight, the part of the result most tests care about."""
    frame = read_interactions_file(path, **kwargs).interactions  # type: ignore[arg-type]
    columns = (frame["user_id"], frame["content_id"], frame["weight"])
    return {(u, i): w for u, i, w in zip(*columns, strict=True)}


def error_of(path: Path, **kwargs: object) -> DataFormatError:
    with pytest.raises(DataFormatError) as caught:
        read_interactions_file(path, **kwargs)  # type: ignore[arg-type]
    return caught.value


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# --- shapes: separators, headers, aliases, positional columns -------------------------


def test_tsv_with_standard_header(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "user_id\titem_id\trating\ttimestamp\nu1\ti1\t4\t1700000000\nu2\ti1\t5\t1700000060\n",
        "ratings.tsv",
    )
    data = read_interactions_file(path)
    assert data.name == "ratings"
    frame = data.interactions
    assert list(frame.columns) == ["user_id", "content_id", "weight", "ts"]
    assert pairs(path) == {("u1", "i1"): 4.0, ("u2", "i1"): 5.0}
    assert sorted(frame["ts"]) == [utc("2023-11-14 22:13:20"), utc("2023-11-14 22:14:20")]
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert sorted(data.items["content_id"]) == ["i1"]
    assert sorted(data.learners["user_id"]) == ["u1", "u2"]


def test_csv_header_aliases_are_case_insensitive_in_any_order(tmp_path: Path) -> None:
    # Item first, an unknown column in the middle (ignored), names in odd case.
    path = write(
        tmp_path,
        " Course_ID ,notes,LEARNER,Score,Date\nc1,hello,alice,3,2024-01-31\nc2,,bob,1,2024-02-01\n",
    )
    data = read_interactions_file(path)
    assert pairs(path) == {("alice", "c1"): 3.0, ("bob", "c2"): 1.0}
    assert sorted(data.interactions["ts"]) == [utc("2024-01-31"), utc("2024-02-01")]


@pytest.mark.parametrize(
    ("user", "item"),
    [
        ("user", "item"),
        ("userid", "itemid"),
        ("uid", "iid"),
        ("learner_id", "content_id"),
        ("user_id", "course"),
        ("user_id", "movie_id"),
        ("user_id", "product_id"),
    ],
)
def test_every_id_alias_is_recognised(tmp_path: Path, user: str, item: str) -> None:
    path = write(tmp_path, f"{user},{item}\n7,42\n")
    assert pairs(path) == {("7", "42"): 1.0}


@pytest.mark.parametrize("rating", ["rating", "score", "value", "label"])
@pytest.mark.parametrize("stamp", ["timestamp", "ts", "time", "date", "datetime"])
def test_every_rating_and_time_alias_is_recognised(tmp_path: Path, rating: str, stamp: str) -> None:
    path = write(tmp_path, f"user,item,{rating},{stamp}\nu,i,2.5,0\n")
    frame = read_interactions_file(path).interactions
    assert frame["weight"].tolist() == [2.5]
    assert frame["ts"].tolist() == [utc("1970-01-01")]


@pytest.mark.parametrize(
    ("text", "weight", "has_ts"),
    [
        ("u1,i1\n", 1.0, False),
        ("u1,i1,3\n", 3.0, False),
        ("u1,i1,3,1700000000\n", 3.0, True),
        ("u1,i1,3,1700000000,extra,more\n", 3.0, True),  # trailing fields ignored
    ],
)
def test_without_header_columns_follow_the_field_count(
    tmp_path: Path, text: str, weight: float, has_ts: bool
) -> None:
    data = read_interactions_file(write(tmp_path, text))
    assert data.interactions["user_id"].tolist() == ["u1"]
    assert data.interactions["content_id"].tolist() == ["i1"]
    assert data.interactions["weight"].tolist() == [weight]
    assert data.has_timestamps is has_ts


def test_ids_stay_strings(tmp_path: Path) -> None:
    # Leading zeros are part of an id: "007" and "7" are different learners.
    path = write(tmp_path, "007,0042\n7,42\n")
    assert set(pairs(path)) == {("007", "0042"), ("7", "42")}


def test_explicit_columns_name_each_positional_role(tmp_path: Path) -> None:
    path = write(tmp_path, "i1\tu1\tjunk\t4\ni2\tu1\tjunk\t2\textra\n", "data.tsv")
    columns = ["item", "user", "skip", "rating"]
    assert pairs(path, columns=columns) == {("u1", "i1"): 4.0, ("u1", "i2"): 2.0}
    # Aliases work in the spec too, and a comma-separated string from a command line.
    assert pairs(path, columns=["course_id", "learner", "_", "score"]) == pairs(
        path, columns=columns
    )
    assert pairs(path, columns="item,user,-,rating") == pairs(path, columns=columns)


def test_explicit_columns_skip_a_header_line_rather_than_reading_it_as_data(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "user,item\nu1,i1\n")
    assert pairs(path, columns=["user", "item"]) == {("u1", "i1"): 1.0}


def test_explicit_columns_can_leave_out_a_rating_the_file_has(tmp_path: Path) -> None:
    path = write(tmp_path, "u1,i1,not-a-number\n")
    assert pairs(path, columns=["user", "item"]) == {("u1", "i1"): 1.0}


@pytest.mark.parametrize(
    ("columns", "complaint"),
    [
        (["user", "stars"], "unknown column 'stars'"),
        (["user", "item", "uid"], "name the user twice"),
        (["user", "rating"], "must include item"),
        (["skip", "rating"], "must include user and item"),
    ],
)
def test_bad_column_spec_is_an_argument_error(
    tmp_path: Path, columns: list[str], complaint: str
) -> None:
    path = write(tmp_path, "u1,i1,3\n")
    with pytest.raises(ValueError, match=complaint) as caught:
        read_interactions_file(path, columns=columns)
    assert not isinstance(caught.value, DataFormatError)


def test_bad_separator_is_an_argument_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="TAB or COMMA"):
        read_interactions_file(write(tmp_path, "u1;i1\n"), sep=";")


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "\nuser,item\n\nu1,i1\n  ,  \nu2,i2\n\n")
    assert set(pairs(path)) == {("u1", "i1"), ("u2", "i2")}


def test_quoted_csv_fields(tmp_path: Path) -> None:
    path = write(tmp_path, 'user,item\n"smith, j",i1\n')
    assert set(pairs(path)) == {("smith, j", "i1")}


def test_byte_order_mark_does_not_hide_the_header(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_text("user_id,item_id\nu1,i1\n", encoding="utf-8-sig")
    assert set(pairs(path)) == {("u1", "i1")}
    tsv = tmp_path / "excel.tsv"
    tsv.write_text("user_id\titem_id\nu1\ti1\n", encoding="utf-8-sig")
    assert set(pairs(tsv)) == {("u1", "i1")}


def test_repeated_pairs_collapse_to_the_strongest(tmp_path: Path) -> None:
    path = write(tmp_path, "u1,i1,2,200\nu1,i1,5,100\n")
    frame = read_interactions_file(path).interactions
    assert frame["weight"].tolist() == [5.0]
    assert frame["ts"].tolist() == [utc("1970-01-01 00:01:40")]


# --- separator sniffing --------------------------------------------------------------


def test_sniffs_tab_when_the_first_line_has_one(tmp_path: Path) -> None:
    # Commas inside a tab-separated file are part of the ids, not separators.
    path = write(tmp_path, "user\titem\nsmith, j\tintro, part 1\n", "data.txt")
    assert set(pairs(path)) == {("smith, j", "intro, part 1")}


def test_sniffs_comma_otherwise(tmp_path: Path) -> None:
    path = write(tmp_path, "u1,i1,4\nu2,i2,5\n", "data.txt")
    assert pairs(path) == {("u1", "i1"): 4.0, ("u2", "i2"): 5.0}


def test_explicit_separator_overrides_sniffing(tmp_path: Path) -> None:
    # The first line has no tab, so sniffing would pick comma and see 3 fields.
    path = write(tmp_path, "a,b\tc\nd,e\tf\n")
    assert set(pairs(path, sep="\t")) == {("a,b", "c"), ("d,e", "f")}
    assert set(pairs(path, sep="TAB")) == {("a,b", "c"), ("d,e", "f")}


def test_wrong_separator_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "u1\ti1\n", "data.tsv")
    error = error_of(path, sep=",")
    assert error.line == 1
    assert "separated by COMMA, found 1" in error.message


# --- ratings and min_rating ----------------------------------------------------------


def test_min_rating_keeps_only_positives(tmp_path: Path) -> None:
    path = write(tmp_path, "user,item,rating\nu1,i1,5\nu1,i2,3.5\nu2,i1,4\nu2,i3,1\n")
    assert pairs(path, min_rating=4) == {("u1", "i1"): 5.0, ("u2", "i1"): 4.0}
    data = read_interactions_file(path, min_rating=4)
    # Items and learners are those of the kept interactions only.
    assert sorted(data.items["content_id"]) == ["i1"]
    assert sorted(data.learners["user_id"]) == ["u1", "u2"]


def test_weight_is_one_for_non_positive_ratings(tmp_path: Path) -> None:
    path = write(tmp_path, "u1,i1,0\nu1,i2,-1\nu1,i3,0.5\n")
    assert pairs(path) == {("u1", "i1"): 1.0, ("u1", "i2"): 1.0, ("u1", "i3"): 0.5}


def test_min_rating_without_rating_column(tmp_path: Path) -> None:
    path = write(tmp_path, "user,item\nu1,i1\n")
    with pytest.raises(ValueError, match="min_rating needs a rating column"):
        read_interactions_file(path, columns=["user", "item"], min_rating=3)
    error = error_of(path, min_rating=3)
    assert error.line == 1
    assert "min_rating needs a rating column" in error.message


def test_min_rating_that_removes_everything(tmp_path: Path) -> None:
    path = write(tmp_path, "user,item,rating\nu1,i1,2\nu2,i1,3\n")
    error = error_of(path, min_rating=4)
    assert error.line == 3
    assert "none of the 2 rows has rating >= 4" in error.message


# --- timestamps -----------------------------------------------------------------------


def test_timestamp_forms(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "user,item,timestamp\n"
        "a,seconds,1700000000\n"
        "a,float-seconds,1700000000.5\n"
        "a,millis,1700000000123\n"
        "a,negative,-86400\n"
        "a,big-seconds,9000000000\n"
        "a,iso-z,2023-11-14T22:13:20Z\n"
        "a,iso-offset,2023-11-15T00:13:20+02:00\n"
        "a,iso-naive,2023-11-14 22:13:20\n"
        "a,iso-fraction,2023-11-14T22:13:20.250Z\n"
        "a,date,2023-11-14\n"
        "a,blank,\n",
    )
    frame = read_interactions_file(path).interactions
    got = dict(zip(frame["content_id"], frame["ts"], strict=True))
    assert got["seconds"] == utc("2023-11-14 22:13:20")
    assert got["float-seconds"] == utc("2023-11-14 22:13:20.5")
    assert got["millis"] == utc("2023-11-14 22:13:20.123")
    assert got["negative"] == utc("1969-12-31")
    assert got["big-seconds"] == utc("2255-03-14 16:00:00")
    assert got["iso-z"] == utc("2023-11-14 22:13:20")
    assert got["iso-offset"] == utc("2023-11-14 22:13:20")
    assert got["iso-naive"] == utc("2023-11-14 22:13:20")
    assert got["iso-fraction"] == utc("2023-11-14 22:13:20.25")
    assert got["date"] == utc("2023-11-14")
    assert pd.isna(got["blank"])
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"


def test_no_time_column_means_nat(tmp_path: Path) -> None:
    data = read_interactions_file(write(tmp_path, "u1,i1,4\n"))
    assert data.interactions["ts"].isna().all()
    assert not data.has_timestamps


# --- malformed rows: exact line numbers ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        # line 1 is the header
        ("user,item,rating\nu1,i1,4\nu2,i2\n", 3, "expected at least 3 fields"),
        ("user,item,rating\nu1,i1,4\nu2,i2,four\n", 3, "rating 'four' is not a number"),
        ("user,item,rating\nu1,i1,\n", 2, "empty rating"),
        ("user,item,rating\nu1,i1,nan\n", 2, "rating 'nan' is not a number"),
        ("user,item,rating\nu1,i1,4\n,i2,4\n", 3, "empty user id in field 1"),
        ("user,item,rating\nu1,i1,4\nu1, ,4\n", 3, "empty item id in field 2"),
        ("user,item,ts\nu1,i1,1\nu1,i2,2\nu1,i3,yesterday\n", 4, "'yesterday' is neither"),
        ("user,item,ts\nu1,i1,2024-02-30\n", 2, "'2024-02-30' is neither"),
        ("user,item,ts\nu1,i1,2024-01-01\nu1,i2,1e300\n", 3, "'1e300' is outside"),
        ("user,item,ts\nu1,i1,1\nu1,i2,1e300\n", 3, "'1e300' is outside"),
        ("user,item,ts\nu1,i1,2024-01-01\nu1,i2,inf\n", 3, "'inf' is neither"),
        ("user,item,ts\nu1,i1,1\nu1,i2,3000-01-01\n", 3, "'3000-01-01' is outside the years"),
        ("user,item,ts\nu1,i1,3000-01-01\n", 2, "'3000-01-01' is outside the years 1679..2260"),
        ("user,item,ts\nu1,i1,-1e10\n", 2, "'-1e10' is outside the years 1679..2260 (read as"),
        # blank lines still count
        ("user,item,rating\n\nu1,i1,4\n\n\nu2,i2,x\n", 6, "rating 'x' is not a number"),
        # positional files have no header: the first row is line 1
        ("u1,i1,x\n", 1, "rating 'x' is not a number"),
        ("u1,i1,4\nu2\n", 2, "expected at least 3 fields"),
        ("u1\n", 1, "expected at least 2 fields"),
        # the first bad row wins, whichever kind of problem it has
        ("u,i,r,t\nu1,i1,x,1\nu2,i2,4,y\n", 1, "rating 'r' is not a number"),
        ("user,item,rating,ts\nu1,i1,4,y\nu2,i2,x,1\n", 2, "'y' is neither"),
        ("user,item,rating,ts\nu1,i1,x,1\nu2,i2,4,y\n", 2, "rating 'x' is not a number"),
        ("user,item,rating\nu1,i1,x\nu2,i2\n", 2, "rating 'x' is not a number"),
        ("user,item,rating\nu1,i1,4\nu2,,4\nu3,i3,x\n", 3, "empty item id"),
    ],
)
def test_bad_rows_name_their_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, text)
    error = error_of(path)
    assert error.line == line
    assert message in error.message
    assert str(error) == f"{path}:{line}: {error.message}"


def test_bad_row_in_a_tsv_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "u1\ti1\t5\nu2\ti2\t4\nu3\ti3\t4,5\n", "data.tsv")
    error = error_of(path)
    assert (error.line, error.message) == (3, "rating '4,5' is not a number")


def test_a_quoted_field_spanning_lines_reports_where_its_row_starts(tmp_path: Path) -> None:
    path = write(tmp_path, 'user,item,rating\n"multi\nline",i1,4\nu2,i2,bad\n')
    error = error_of(path)
    assert error.line == 4
    path = write(tmp_path, 'user,item,rating\n"multi\nline",i1,bad\n')
    assert error_of(path).line == 2


def test_bad_row_found_in_a_filtered_out_row_is_still_reported(tmp_path: Path) -> None:
    # A malformed value means the file is not what we think it is, kept row or not.
    path = write(tmp_path, "user,item,rating,ts\nu1,i1,5,1\nu2,i2,1,never\n")
    assert error_of(path, min_rating=4).line == 3


def test_undecodable_bytes_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    # Enough good rows that the bad byte is decoded in a later block than line 1.
    good = "".join(f"u{n},i{n}\n" for n in range(5000))
    path.write_bytes(("user,item\n" + good).encode() + b"caf\xe9,i1\n")
    error = error_of(path)
    assert error.line == 5002
    assert "not UTF-8" in error.message


def test_header_problems(tmp_path: Path) -> None:
    error = error_of(write(tmp_path, "user,rating\nu1,4\n"))
    assert error.line == 1
    assert "has no item column" in error.message
    assert "course_id" in error.message  # tells the reader what would be accepted
    error = error_of(write(tmp_path, "\n\nuser_id,item,uid\n1,2,3\n"))
    assert error.line == 3
    assert "names the user twice: 'user_id' (field 1) and 'uid' (field 3)" in error.message


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, "")).line == 1
    assert "empty" in error_of(write(tmp_path, "\n\n")).message
    error = error_of(write(tmp_path, "user,item\n\n"))
    assert (error.line, error.message) == (2, "no interaction rows, only a header")


def test_data_format_error_is_a_value_error_that_survives_pickling() -> None:
    error = DataFormatError(Path("x.csv"), 7, "bad")
    assert isinstance(error, ValueError)
    assert str(error) == "x.csv:7: bad"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.line, copy.message, str(copy)) == (Path("x.csv"), 7, "bad", str(error))


def test_a_large_file_loads(tmp_path: Path) -> None:
    """100k rows in about a second: catches an accidental per-row pandas call."""
    rng = np.random.default_rng(0)
    n = 100_000
    users = rng.integers(0, 5000, n)
    items = rng.integers(0, 500, n)
    stamps = 1_600_000_000 + rng.integers(0, 10**7, n)
    path = tmp_path / "big.tsv"
    path.write_text(
        "".join(f"{u}\t{i}\t4\t{t}\n" for u, i, t in zip(users, items, stamps, strict=True))
    )
    data = read_interactions_file(path)
    assert len(data.interactions) == len(set(zip(users, items, strict=True)))


# --- MOOCCube -------------------------------------------------------------------------


def fake_mooccube(root: Path, ratings: str | None = None, kg: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ratings_final.txt").write_text(
        ratings
        if ratings is not None
        else "0\t4\t1\n0\t1\t0\n1\t0\t1\n1\t4\t1\n2\t1\t0\n",  # course 1: negatives only
        encoding="utf-8",
    )
    (root / "kg_final.txt").write_text(
        kg
        if kg is not None
        else "4\t0\t10\n4\t2\t11\n0\t0\t10\n4\t0\t10\n9\t1\t12\n",  # course 9: KG only
        encoding="utf-8",
    )
    return root


def test_mooccube_keeps_only_label_one(tmp_path: Path) -> None:
    data = load_mooccube(fake_mooccube(tmp_path / "mooccube"))
    frame = data.interactions
    assert data.name == "mooccube"
    assert sorted(zip(frame["user_id"], frame["content_id"], strict=True)) == [
        ("0", "4"),
        ("1", "0"),
        ("1", "4"),
    ]
    assert frame["weight"].tolist() == [1.0, 1.0, 1.0]
    assert frame["ts"].isna().all()
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    # Learner 2 only has a sampled negative: not a learner we know anything about.
    assert sorted(data.learners["user_id"]) == ["0", "1"]


def test_mooccube_items_carry_kg_concepts_as_tags(tmp_path: Path) -> None:
    data = load_mooccube(fake_mooccube(tmp_path / "mooccube"))
    items = data.items.set_index("content_id")
    # Every course either file mentions is in the catalog, enrolled in or not.
    assert sorted(items.index, key=int) == ["0", "1", "4", "9"]
    assert items.loc["4", "tags"] == ["r0:10", "r2:11"]  # file order, repeats dropped
    assert items.loc["0", "tags"] == ["r0:10"]
    assert items.loc["9", "tags"] == ["r1:12"]
    assert items.loc["1", "tags"] == []
    assert items.loc["4", "title"] == "course 4"
    assert items.loc["4", "topics"] == []
    assert np.isnan(items.loc["4", "level"])
    assert items.loc["4", "format"] is None


@pytest.mark.parametrize(
    ("ratings", "kg", "file", "line", "message"),
    [
        ("0\t1\t1\n0\t2\t2\n", None, "ratings_final.txt", 2, "label must be 0 or 1, got '2'"),
        ("0\t1\t1\n\n0\t2\n", None, "ratings_final.txt", 3, "expected 3 tab-separated fields"),
        ("0\t1\t1\n0 2 1\n", None, "ratings_final.txt", 2, "found 1"),
        ("0\t1\t1\n0\t\t1\n", None, "ratings_final.txt", 2, "empty course"),
        ("user\tcourse\tlabel\n", None, "ratings_final.txt", 1, "user 'user' is not"),
        ("0\t1\t0\n", None, "ratings_final.txt", 1, "no label=1 rows"),
        (None, "1\t0\t5\n1\t0\tx7\n", "kg_final.txt", 2, "tail 'x7' is not"),
        (None, "1\t0\t5\t9\n", "kg_final.txt", 1, "expected 3 tab-separated fields"),
    ],
)
def test_mooccube_bad_lines_name_their_line(
    tmp_path: Path, ratings: str | None, kg: str | None, file: str, line: int, message: str
) -> None:
    root = fake_mooccube(tmp_path / "mooccube", ratings=ratings, kg=kg)
    with pytest.raises(DataFormatError) as caught:
        load_mooccube(root)
    assert caught.value.path == root / file
    assert caught.value.line == line
    assert message in caught.value.message


def test_mooccube_missing_folder_says_how_to_point_at_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=MOOCCUBE_ENV_VAR):
        load_mooccube(tmp_path / "nowhere")


def test_mooccube_root_defaults_next_to_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MOOCCUBE_ENV_VAR, raising=False)
    assert default_mooccube_root() == REAL_MOOCCUBE.resolve()
    monkeypatch.setenv(MOOCCUBE_ENV_VAR, "/data/elsewhere")
    assert default_mooccube_root() == Path("/data/elsewhere")


@pytest.mark.skipif(not REAL_MOOCCUBE.is_dir(), reason="shared MOOCCube data not present")
def test_real_mooccube_counts() -> None:
    data = load_mooccube(REAL_MOOCCUBE)
    frame = data.interactions
    assert len(frame) == 32_086
    assert frame["user_id"].nunique() == 7_157
    assert frame["content_id"].nunique() == 215
    assert len(data.learners) == 7_157
    # The KG and the sampled negatives mention 219 courses, 4 of them never enrolled in.
    assert len(data.items) == 219
    assert data.items["tags"].map(len).min() > 0
