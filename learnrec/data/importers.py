"""Importers: turn interaction files and the MOOCCube course data into a :class:`Dataset`.

Whatever a platform exports (a CSV from a database, a MovieLens-style TSV, the KGAN
release of MOOCCube) ends up as the same three frames, so training and evaluation never
care where the data came from.

Files are read with the ``csv`` module line by line rather than ``pandas.read_csv``:
a bad row must be reported as ``file:line: what is wrong`` (a person fixes the file
from that message) and pandas' parser errors neither name the offending value nor,
after skipped blank lines, the right line. Ratings and timestamps are collected as
text and parsed in one vectorised pass afterwards (the first bad value is mapped back
to its line), so the per-row Python work is only splitting and appending: about 3 s
per million rows here, of which the csv module itself takes 0.5 s.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from learnrec.data.dataset import Dataset, make_dataset

Role = Literal["user", "item", "rating", "timestamp"]

# Header names that identify each column, compared case-insensitively after stripping.
COLUMN_ALIASES: dict[Role, tuple[str, ...]] = {
    "user": ("user", "user_id", "userid", "uid", "learner", "learner_id"),
    "item": (
        "item",
        "item_id",
        "itemid",
        "content_id",
        "course",
        "course_id",
        "movie_id",
        "product_id",
        "iid",
    ),
    "rating": ("rating", "score", "value", "label"),
    "timestamp": ("timestamp", "ts", "time", "date", "datetime"),
}
_ROLE_OF_NAME: dict[str, Role] = {
    name: role for role, names in COLUMN_ALIASES.items() for name in names
}
# In a `columns` spec these mark a column to ignore, so roles need not be contiguous.
_SKIP_NAMES = frozenset({"", "-", "_", "skip", "ignore"})
# When there is neither a spec nor a header, the field count decides what is present.
_POSITIONAL_ROLES: tuple[Role, ...] = ("user", "item", "rating", "timestamp")

_SEPARATORS = {"\t": "\t", ",": ",", "tab": "\t", "comma": ","}
_SEPARATOR_NAMES = {"\t": "TAB", ",": "COMMA"}

# Epoch values above this are milliseconds: as seconds they would be past the year 5000.
_EPOCH_MILLIS_THRESHOLD = 1e11
# datetime64[ns] covers 1677-09-21 .. 2262-04-11; a little inside that, so that no
# conversion can overflow. A timestamp outside it is a typo, not a learning event.
_MIN_EPOCH_SECONDS = -9_200_000_000
_MAX_EPOCH_SECONDS = 9_200_000_000
_MIN_TIMESTAMP = pd.Timestamp(_MIN_EPOCH_SECONDS, unit="s", tz="UTC")
_MAX_TIMESTAMP = pd.Timestamp(_MAX_EPOCH_SECONDS, unit="s", tz="UTC")
_YEARS = f"{_MIN_TIMESTAMP.year + 1}..{_MAX_TIMESTAMP.year - 1}"

MOOCCUBE_ENV_VAR = "LEARNREC_MOOCCUBE_DIR"
MOOCCUBE_RATINGS_FILE = "ratings_final.txt"
MOOCCUBE_KG_FILE = "kg_final.txt"
# The repository root is the parent of the `learnrec` package directory.
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_mooccube_root() -> Path:
    """Where MOOCCube lives: $LEARNREC_MOOCCUBE_DIR, else ../shared/datasets/mooccube.

    The data is shared read-only next to the repository and must never be copied into
    it, so the default is resolved relative to the checkout; the environment variable
    covers installed packages and other machines. Read at call time, so a test or a
    CLI that sets the variable after import still gets it.
    """
    override = os.environ.get(MOOCCUBE_ENV_VAR)
    if override:
        return Path(override).expanduser().resolve()
    return (REPO_ROOT / ".." / "shared" / "datasets" / "mooccube").resolve()


class DataFormatError(ValueError):
    """A problem in an input file, located so that a person can go and fix it.

    ``line`` is 1-based and counts the header as line 1; for problems with the file as
    a whole (empty, nothing left after filtering) it is the last line read.
    """

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"

    def __reduce__(self) -> tuple[type[DataFormatError], tuple[Path, int, str]]:
        # The default pickling would call __init__ with the formatted text only, which
        # breaks the error crossing a process boundary (multiprocessing, joblib).
        return (type(self), (self.path, self.line, self.message))


@dataclass(frozen=True)
class _Layout:
    """Which field holds which role, and whether line `header_line` is a header to skip."""

    positions: dict[Role, int]
    header_line: int | None
    source: str  # how the layout was decided, for error messages

    @property
    def min_fields(self) -> int:
        return max(self.positions.values()) + 1


def read_interactions_file(
    path: Path,
    sep: str | None = None,
    columns: Sequence[str] | None = None,
    min_rating: float | None = None,
) -> Dataset:
    """Read a CSV or TSV of (user, item[, rating][, timestamp]) rows into a dataset.

    - ``sep``: ``"\\t"`` or ``","``; None sniffs the first line (tab if it has one).
    - ``columns``: the role of each positional column, e.g. ``["user", "item",
      "rating"]`` (aliases and ``"skip"`` accepted); the file then has no header and
      trailing extra columns are ignored. None detects a header by its column names,
      or, without one, takes user, item[, rating[, timestamp]] by field count.
    - ``min_rating``: keep only rows rated at least this (explicit ratings turned into
      implicit positives); needs a rating column. Without it every row is a positive,
      weighted by its rating when that is positive, else 1.0.

    Timestamps may be epoch seconds, epoch milliseconds or ISO 8601 (naive = UTC); a
    blank timestamp is missing (NaT). Raises :class:`DataFormatError` naming the line
    for any malformed row, and ``ValueError`` for bad arguments.
    """
    path = Path(path)
    delimiter = _parse_separator(sep)
    spec = _parse_columns_spec(columns) if columns is not None else None
    if min_rating is not None:
        if not np.isfinite(min_rating):
            raise ValueError(f"min_rating must be a finite number, got {min_rating!r}")
        if spec is not None and "rating" not in spec:
            raise ValueError("min_rating needs a rating column, but columns names none")

    users: list[str] = []
    items: list[str] = []
    ratings: list[str] = []
    stamps: list[str] = []
    lines: list[int] = []
    # Bound once: this loop runs per row, and attribute lookups are a third of its time.
    add_user, add_item, add_rating, add_stamp, add_line = (
        users.append,
        items.append,
        ratings.append,
        stamps.append,
        lines.append,
    )
    layout: _Layout | None = None
    # A structural problem stops the scan, but is reported only if no earlier line has
    # a bad rating or timestamp (those are parsed in bulk afterwards): the reader always
    # hears about the first bad line in the file.
    problem: DataFormatError | None = None
    last_line = 0
    with path.open(encoding="utf-8-sig", newline="") as handle:
        if delimiter is None:
            delimiter = "\t" if "\t" in handle.readline() else ","
            handle.seek(0)
        # TSV exports are not quoted; a stray quote must not swallow the lines after it.
        reader = (
            csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
            if delimiter == "\t"
            else csv.reader(handle, delimiter=",", strict=True)
        )
        try:
            for row in reader:
                line = last_line + 1  # where this row starts, even if a quote spans lines
                last_line = reader.line_num
                if not row:
                    continue
                if layout is None:
                    if _is_blank(row):
                        continue
                    layout = _decide_layout(path, line, row, spec, delimiter)
                    if min_rating is not None and "rating" not in layout.positions:
                        raise DataFormatError(
                            path, line, f"min_rating needs a rating column; {layout.source}"
                        )
                    user_at = layout.positions["user"]
                    item_at = layout.positions["item"]
                    rating_at = layout.positions.get("rating")
                    stamp_at = layout.positions.get("timestamp")
                    min_fields = layout.min_fields
                    if layout.header_line == line:
                        continue
                if len(row) < min_fields:
                    if _is_blank(row):
                        continue
                    problem = DataFormatError(
                        path,
                        line,
                        f"expected at least {min_fields} fields separated by "
                        f"{_SEPARATOR_NAMES[delimiter]}, found {len(row)}: {row!r}",
                    )
                    break
                user = row[user_at].strip()
                item = row[item_at].strip()
                if not user or not item:
                    if _is_blank(row):
                        continue
                    role: Role = "user" if not user else "item"
                    problem = DataFormatError(
                        path, line, f"empty {role} id in field {layout.positions[role] + 1}"
                    )
                    break
                add_user(user)
                add_item(item)
                if rating_at is not None:
                    add_rating(row[rating_at].strip())
                if stamp_at is not None:
                    add_stamp(row[stamp_at].strip())
                add_line(line)
        except csv.Error as error:
            problem = DataFormatError(path, reader.line_num, f"unreadable row: {error}")
            problem.__cause__ = error
        except UnicodeDecodeError as error:
            problem = _undecodable(path)
            problem.__cause__ = error

    problems = [problem] if problem is not None else []
    rating_values: npt.NDArray[np.float64] | None = None
    timestamps = pd.Series(pd.NaT, index=range(len(users)), dtype="datetime64[ns, UTC]")
    try:
        if ratings:
            rating_values = _parse_ratings(path, ratings, lines)
    except DataFormatError as error:
        problems.append(error)
    try:
        if stamps:
            timestamps = _parse_timestamps(path, stamps, lines)
    except DataFormatError as error:
        problems.append(error)
    if problems:
        raise min(problems, key=lambda error: error.line)
    if layout is None:
        raise DataFormatError(path, max(last_line, 1), "the file is empty")
    if not users:
        raise DataFormatError(path, last_line, "no interaction rows, only a header")

    weights = (
        np.where(rating_values > 0, rating_values, 1.0)
        if rating_values is not None
        else np.ones(len(users))
    )
    frame = pd.DataFrame(
        {"user_id": users, "content_id": items, "weight": weights, "ts": timestamps}
    )
    if min_rating is not None:
        assert rating_values is not None  # guaranteed by the layout check above
        frame = frame[rating_values >= min_rating]
        if frame.empty:
            raise DataFormatError(
                path,
                last_line,
                f"no rows left: none of the {len(users)} rows has rating >= {min_rating:g} "
                f"(ratings range {rating_values.min():g}..{rating_values.max():g})",
            )
    return make_dataset(name=path.stem, interactions=frame)


def load_mooccube(root: Path) -> Dataset:
    """Load MOOCCube course enrolments (the KGAN release) with KG concepts as item tags.

    Only ``label=1`` rows of ``ratings_final.txt`` are interactions: the ``label=0``
    rows are negatives the publishers sampled, not anything a learner did, and counting
    them would teach the model noise. Each course's knowledge-graph triples become tags
    ``r{relation}:{tail}``, so that the item tower sees what a course is about and a
    course nobody has enrolled in yet still gets an embedding. The catalog holds every
    course seen in either file; there are no timestamps.
    """
    root = Path(root)
    ratings_path = root / MOOCCUBE_RATINGS_FILE
    kg_path = root / MOOCCUBE_KG_FILE
    for required in (ratings_path, kg_path):
        if not required.is_file():
            raise FileNotFoundError(
                f"MOOCCube file {required} not found; point {MOOCCUBE_ENV_VAR} at the "
                f"folder holding {MOOCCUBE_RATINGS_FILE} and {MOOCCUBE_KG_FILE}"
            )

    users: list[str] = []
    courses: list[str] = []
    catalog: set[str] = set()
    last_line = 0
    for line, (user, course, label) in _read_id_triples(ratings_path, ("user", "course", "label")):
        last_line = line
        if label not in ("0", "1"):
            raise DataFormatError(ratings_path, line, f"label must be 0 or 1, got {label!r}")
        catalog.add(course)
        if label == "1":
            users.append(user)
            courses.append(course)
    if not users:
        raise DataFormatError(
            ratings_path, max(last_line, 1), "no label=1 rows: no enrolments to learn from"
        )

    tags: dict[str, dict[str, None]] = {}  # a dict keeps first-seen order and drops repeats
    for _, (head, relation, tail) in _read_id_triples(kg_path, ("head", "relation", "tail")):
        tags.setdefault(head, {})[f"r{relation}:{tail}"] = None
    catalog.update(tags)

    content_ids = sorted(catalog, key=int)
    items = pd.DataFrame(
        {
            "content_id": content_ids,
            "title": [f"course {c}" for c in content_ids],
            "tags": [list(tags.get(c, {})) for c in content_ids],
        }
    )
    interactions = pd.DataFrame(
        {
            "user_id": users,
            "content_id": courses,
            "weight": np.ones(len(users)),
            "ts": pd.Series(pd.NaT, index=range(len(users)), dtype="datetime64[ns, UTC]"),
        }
    )
    return make_dataset(name="mooccube", interactions=interactions, items=items)


def _parse_separator(sep: str | None) -> str | None:
    if sep is None:
        return None
    try:
        return _SEPARATORS[sep if sep in _SEPARATORS else sep.lower()]
    except KeyError:
        raise ValueError(f"separator must be TAB or COMMA ('\\t' or ','), got {sep!r}") from None


def _parse_columns_spec(columns: Sequence[str]) -> dict[Role, int]:
    """Map each role to its field index; reject specs that cannot describe a file."""
    if isinstance(columns, str):  # "user,item,rating" from a command line
        columns = columns.split(",")
    positions: dict[Role, int] = {}
    for index, name in enumerate(columns):
        key = name.strip().lower()
        if key in _SKIP_NAMES:
            continue
        role = _ROLE_OF_NAME.get(key)
        if role is None:
            raise ValueError(
                f"unknown column {name!r} in columns {list(columns)}: use user, item, "
                "rating, timestamp (or skip for a column to ignore)"
            )
        if role in positions:
            raise ValueError(
                f"columns {list(columns)} name the {role} twice "
                f"(positions {positions[role] + 1} and {index + 1})"
            )
        positions[role] = index
    missing = [role for role in ("user", "item") if role not in positions]
    if missing:
        raise ValueError(f"columns {list(columns)} must include {' and '.join(missing)}")
    return positions


def _decide_layout(
    path: Path, line: int, row: list[str], spec: dict[Role, int] | None, delimiter: str
) -> _Layout:
    """Work out from the first row (and the spec, if any) which field holds what."""
    names = [field.strip().lower() for field in row]
    if spec is not None:
        # A header line in front of a positional spec is skipped rather than read as an
        # interaction between a learner called "user" and an item called "item".
        is_header = all(
            index < len(names) and names[index] in _ROLE_OF_NAME for index in spec.values()
        )
        return _Layout(spec, line if is_header else None, "columns given explicitly")
    roles = [_ROLE_OF_NAME.get(name) for name in names]
    if any(roles):
        positions: dict[Role, int] = {}
        for index, role in enumerate(roles):
            if role is None:
                continue
            if role in positions:
                raise DataFormatError(
                    path,
                    line,
                    f"header names the {role} twice: {row[positions[role]].strip()!r} "
                    f"(field {positions[role] + 1}) and {row[index].strip()!r} "
                    f"(field {index + 1})",
                )
            positions[role] = index
        missing: list[Role] = [role for role in ("user", "item") if role not in positions]
        if missing:
            accepted = "; ".join(f"{role}: {', '.join(COLUMN_ALIASES[role])}" for role in missing)
            raise DataFormatError(
                path, line, f"header {row!r} has no {' or '.join(missing)} column ({accepted})"
            )
        return _Layout(positions, line, f"header {row!r}")
    if len(row) < 2:
        raise DataFormatError(
            path,
            line,
            f"expected at least 2 fields (user, item) separated by "
            f"{_SEPARATOR_NAMES[delimiter]}, found {len(row)}: {row!r}",
        )
    roles_present = _POSITIONAL_ROLES[: min(len(row), len(_POSITIONAL_ROLES))]
    return _Layout(
        {role: index for index, role in enumerate(roles_present)},
        None,
        f"no header, so by field count the columns are {', '.join(roles_present)}",
    )


def _is_blank(row: list[str]) -> bool:
    return not any(field.strip() for field in row)


def _parse_ratings(path: Path, raw: list[str], lines: list[int]) -> npt.NDArray[np.float64]:
    """Parse all ratings at once; the first non-number is reported with its line."""
    try:
        values = np.array(raw, dtype=np.float64)  # fast path: numpy calls float() in C
    except ValueError:
        values = np.array([_float_or_nan(text) for text in raw], dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        at = int(np.argmax(bad))
        what = "empty rating" if not raw[at] else f"rating {raw[at]!r} is not a number"
        raise DataFormatError(path, lines[at], what)
    return values


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _parse_timestamps(path: Path, raw: list[str], lines: list[int]) -> pd.Series:
    """Epoch seconds, epoch milliseconds or ISO 8601 text, to UTC nanoseconds.

    Each value is tried as a number first and as ISO 8601 otherwise, so one file may
    mix the two; naive ISO times are taken as UTC and blanks become NaT. The first bad
    value (by line) is reported.
    """
    try:
        numbers = np.array(raw, dtype=np.float64)  # fast path: all epoch numbers
    except ValueError:
        numbers = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(
            dtype=np.float64
        )
    is_number = np.isfinite(numbers)  # "nan" and "inf" go on to fail as ISO text
    is_millis = numbers > _EPOCH_MILLIS_THRESHOLD
    seconds = np.where(is_millis, numbers / 1000.0, numbers)
    in_range = (seconds > _MIN_EPOCH_SECONDS) & (seconds < _MAX_EPOCH_SECONDS)
    out_of_range = is_number & ~in_range

    nanos = np.full(len(raw), np.iinfo(np.int64).min, dtype=np.int64)  # the NaT value
    ok = is_number & in_range
    # Whole units in integer arithmetic so that integer epochs stay exact (a float
    # product would be off by up to 128 ns); the fraction, which a float parsed from
    # text only carries to about a microsecond anyway, is rounded to microseconds.
    unit_ns = np.where(is_millis[ok], 1_000_000, 1_000_000_000)
    whole = np.floor(numbers[ok])
    micros = np.round((numbers[ok] - whole) * (unit_ns // 1000)).astype(np.int64)
    nanos[ok] = whole.astype(np.int64) * unit_ns + micros * 1000
    unparsed = np.zeros(len(raw), dtype=bool)
    is_text = ~is_number
    if is_text.any():
        is_text &= np.array([bool(text) for text in raw])  # blank = missing, not an error
        text = pd.Series(raw, dtype=object)[is_text]
        # Resolution is inferred from the text (dates alone parse at 1 s), so a year
        # like 3000 parses here and is caught by the bounds below, not by `as_unit`.
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        failed = parsed.isna().to_numpy()
        outside = ((parsed < _MIN_TIMESTAMP) | (parsed > _MAX_TIMESTAMP)).to_numpy()
        unparsed[is_text] = failed
        out_of_range[is_text] = outside
        usable = ~failed & ~outside
        is_iso = is_text.copy()
        is_iso[is_text] = usable
        nanos[is_iso] = parsed[usable].dt.as_unit("ns").astype("int64").to_numpy()

    bad = out_of_range | unparsed
    if bad.any():
        at = int(np.argmax(bad))
        what = (
            f"timestamp {raw[at]!r} is outside the years {_YEARS}"
            + (" (read as epoch seconds, or milliseconds above 1e11)" if is_number[at] else "")
            if out_of_range[at]
            else f"timestamp {raw[at]!r} is neither epoch seconds nor ISO 8601"
        )
        raise DataFormatError(path, lines[at], what)
    return pd.Series(nanos.view("datetime64[ns]")).dt.tz_localize("UTC")


def _read_id_triples(
    path: Path, names: tuple[str, str, str]
) -> Iterator[tuple[int, tuple[str, str, str]]]:
    """Yield (line number, three integer ids as canonical strings) from a KGAN TSV.

    The KGAN files are bare integer ids joined by tabs, no header and no quoting, so a
    plain split is both exact about line numbers and fast. Ids are canonicalised
    (``"007"`` -> ``"7"``) so that the ratings and the knowledge graph agree on them.
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        try:
            for line, text in enumerate(handle, start=1):
                stripped = text.rstrip("\r\n")
                if not stripped.strip():
                    continue
                fields = stripped.split("\t")
                if len(fields) != 3:
                    raise DataFormatError(
                        path,
                        line,
                        f"expected 3 tab-separated fields ({', '.join(names)}), "
                        f"found {len(fields)}: {stripped!r}",
                    )
                ids: list[str] = []
                for name, field in zip(names, fields, strict=True):
                    value = field.strip()
                    if not value:
                        raise DataFormatError(path, line, f"empty {name}")
                    if not (value.isascii() and value.isdigit()):
                        raise DataFormatError(
                            path, line, f"{name} {value!r} is not a non-negative integer id"
                        )
                    ids.append(str(int(value)))
                yield line, (ids[0], ids[1], ids[2])
        except UnicodeDecodeError as error:
            raise _undecodable(path) from error


def _undecodable(path: Path) -> DataFormatError:
    """Locate the first line that is not UTF-8.

    The text layer decodes in blocks, so the line being parsed when decoding fails is
    not the bad one; a second, binary pass (only on this error path) finds it exactly.
    """
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                return DataFormatError(
                    path,
                    line,
                    f"not UTF-8 text: byte {raw[error.start]:#04x} at column "
                    f"{error.start + 1} ({error.reason})",
                )
    return DataFormatError(path, 1, "not UTF-8 text")
