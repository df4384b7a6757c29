"""A request validator that applies everything a botocore service model says.

botocore's own ``ParamValidator`` checks required members, types and minimum sizes, but
not maximum lengths, ``pattern``s, enums or maximum list/map sizes, which are the limits
the service itself enforces (SageMaker's 256 characters per container argument, 63 per
job name). :func:`strict_errors` walks the input shape and checks them all.

The models' patterns are Java regular expressions, matched against the whole value as
the services match them (Java's ``matches``). Python's ``re`` cannot read Unicode
property classes (``\\p{L}``); :func:`python_pattern` rewrites them into explicit
code-point ranges built from :mod:`unicodedata` (so they mean the same categories) and
refuses constructs it does not know rather than guessing.
"""

from __future__ import annotations

import datetime
import re
import sys
import unicodedata
from collections.abc import Iterator
from functools import cache
from typing import Any

from botocore.model import ListShape, MapShape, Shape, StructureShape

# Java's \p{X} for the general categories used in AWS models; \p{Lu} style names too.
_CATEGORY = re.compile(r"^(?:Is)?([LMNPSZC][a-z]?)$")
# POSIX-style classes Java knows under \p{...} (US-ASCII only, as in Java by default).
_POSIX = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7f",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    "Space": " \\t\\n\\x0b\\f\\r",
    "XDigit": "0-9a-fA-F",
}


_SURROGATE_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.IGNORECASE)


class PatternError(ValueError):
    """A model's pattern uses a construct this translation does not handle."""


@cache
def category_ranges(category: str) -> str:
    """The code points of a Unicode general category (``L`` or ``Lu``) as class ranges."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)).startswith(category):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))
    if not ranges:
        raise PatternError(f"no Unicode category {category!r}")
    return "".join(
        f"\\U{low:08x}" if low == high else f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges
    )


def _property(name: str) -> str:
    """The class body (no brackets) for Java's ``\\p{name}``."""
    if name in _POSIX:
        return _POSIX[name]
    match = _CATEGORY.match(name)
    if match is None:
        raise PatternError(f"unknown character property \\p{{{name}}}")
    return category_ranges(match.group(1))


def python_pattern(java: str) -> str:
    """A Python ``re`` pattern matching what the Java pattern ``java`` matches."""
    out: list[str] = []
    i, in_class, quantified = 0, False, False
    while i < len(java):
        char = java[i]
        if char == "\\" and i + 1 < len(java):
            nxt = java[i + 1]
            if nxt in "pP" and i + 2 < len(java) and java[i + 2] == "{":
                end = java.index("}", i + 3)
                body = _property(java[i + 3 : end])
                if nxt == "P":
                    if in_class:
                        raise PatternError(f"\\P inside a character class: {java!r}")
                    out.append(f"[^{body}]")
                else:
                    out.append(body if in_class else f"[{body}]")
                i, quantified = end + 1, False
                continue
            pair = _SURROGATE_PAIR.match(java, i)
            if pair is not None:
                # Java reads a UTF-16 surrogate pair as the one code point it encodes.
                high, low = (int(h, 16) for h in pair.groups())
                out.append(f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}")
                i = pair.end()
                continue
            if nxt in "hHRXzQEG" or nxt == "Z":
                if nxt == "z":
                    out.append("\\Z")  # Java's absolute end is Python's \Z
                    i += 2
                    continue
                raise PatternError(f"unsupported escape \\{nxt} in {java!r}")
            out.append(java[i : i + 2])
            i, quantified = i + 2, False
            continue
        if char == "[" and not in_class:
            in_class = True
            out.append(char)
            if java.startswith("[^]", i) or java.startswith("[]", i):
                raise PatternError(f"a literal ] opening a class: {java!r}")
        elif char == "[" and in_class:
            raise PatternError(f"nested character classes (Java union) in {java!r}")
        elif char == "]" and in_class:
            in_class = False
            out.append(char)
        elif char == "$" and not in_class and java.startswith("{", i + 1):
            # Java accepts a quantified end anchor (``...)${1,128}``), which still just
            # asserts the end; Python refuses to repeat it.
            out.append(char)
            i = java.index("}", i) + 1
            continue
        elif char == "+" and quantified and not in_class:
            raise PatternError(f"possessive quantifier in {java!r}")
        else:
            out.append(char)
        # A quantifier just ended (not inside a class): a "+" right after it is Java's
        # possessive form, which Python's re (before 3.11's support) reads differently.
        quantified = not in_class and char in "*+?}"
        i += 1
    if in_class:
        raise PatternError(f"unterminated character class in {java!r}")
    return "".join(out)


@cache
def compiled(java: str) -> re.Pattern[str]:
    return re.compile(python_pattern(java))


def _size(shape: Shape, value: Any, size: int, path: str) -> Iterator[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        yield f"{path}: size {size} is below the minimum {low} ({shape.name})"
    if high is not None and size > high:
        yield f"{path}: size {size} is above the maximum {high} ({shape.name})"


def strict_errors(shape: Shape, value: Any, path: str = "") -> list[str]:
    """Every way ``value`` breaks ``shape`` (types, required, enums, sizes, patterns)."""
    return list(_walk(shape, value, path or shape.name))


def _walk(shape: Shape, value: Any, path: str) -> Iterator[str]:
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            yield f"{path}: expected a structure, got {type(value).__name__}"
            return
        for name in shape.required_members:
            if name not in value:
                yield f"{path}: missing required member {name}"
        for name, member in value.items():
            if name not in shape.members:
                yield f"{path}: unknown member {name}"
                continue
            yield from _walk(shape.members[name], member, f"{path}.{name}")
    elif isinstance(shape, ListShape):
        if not isinstance(value, list):
            yield f"{path}: expected a list, got {type(value).__name__}"
            return
        yield from _size(shape, value, len(value), path)
        for index, item in enumerate(value):
            yield from _walk(shape.member, item, f"{path}[{index}]")
    elif isinstance(shape, MapShape):
        if not isinstance(value, dict):
            yield f"{path}: expected a map, got {type(value).__name__}"
            return
        yield from _size(shape, value, len(value), path)
        for key, item in value.items():
            yield from _walk(shape.key, key, f"{path} key {key!r}")
            yield from _walk(shape.value, item, f"{path}[{key!r}]")
    elif kind == "string":
        if not isinstance(value, str):
            yield f"{path}: expected a string, got {type(value).__name__}"
            return
        yield from _size(shape, value, len(value), path)
        enum = shape.enum
        if enum and value not in enum:
            yield f"{path}: {value!r} is not one of {sorted(enum)}"
        pattern = shape.metadata.get("pattern")
        if pattern is not None and compiled(pattern).fullmatch(value) is None:
            yield f"{path}: {value!r} does not match the pattern {pattern!r} ({shape.name})"
    elif kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            yield f"{path}: expected an integer, got {type(value).__name__}"
            return
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            yield f"{path}: {value} is below the minimum {low}"
        if high is not None and value > high:
            yield f"{path}: {value} is above the maximum {high}"
    elif kind in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            yield f"{path}: expected a number, got {type(value).__name__}"
    elif kind == "boolean":
        if not isinstance(value, bool):
            yield f"{path}: expected a boolean, got {type(value).__name__}"
    elif kind == "blob":
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, (bytes, bytearray)):
            yield f"{path}: expected bytes, got {type(value).__name__}"
            return
        yield from _size(shape, value, len(value), path)
    elif kind == "timestamp":
        if not isinstance(value, (datetime.datetime, str, int, float)):
            yield f"{path}: expected a timestamp, got {type(value).__name__}"
    else:
        yield f"{path}: no check for shape type {kind}"
