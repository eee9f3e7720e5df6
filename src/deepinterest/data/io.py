"""Line readers shared by every data format, with errors that name file and line.

Files may be plain or gzip-compressed (by the ``.gz`` suffix). Lines are
decoded one at a time so a bad byte is reported with its line number rather
than as an anonymous ``UnicodeDecodeError`` from deep inside a parser.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import DataError


def _open_binary(path: Path) -> BinaryIO:
    if not path.is_file():
        raise DataError(path, "file not found", hint="check the path")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without newline), skipping blank lines.

    Raises :class:`DataError` for a missing, empty, corrupt-gzip or non-UTF-8 file.
    """
    path = Path(path)
    seen = False
    for number, text in _iter_raw(path):
        if text.strip():
            seen = True
            yield number, text
    if not seen:
        raise DataError(path, "the file is empty", hint="point to a file with data")


def parse_json_line(path: Path, number: int, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"malformed JSON: {exc.msg} at column {exc.colno}", line=number,
                        hint="each line must be one JSON object") from exc
    if not isinstance(value, dict):
        raise DataError(path, "expected a JSON object", line=number)
    return value


def parse_literal_line(path: Path, number: int, text: str) -> dict[str, Any]:
    """A line that is a JSON object or a Python dict literal (the 2014 Amazon meta files)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        try:
            return parse_json_line(path, number, text)
        except DataError:
            raise DataError(path, "malformed line: neither a Python dict literal nor JSON",
                            line=number, hint="the 2014 meta files hold one dict per line") from exc
    if not isinstance(value, dict):
        raise DataError(path, "expected a dict literal", line=number)
    return value


def iter_json_records(path: str | Path, *, literal: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for a JSON-lines (or Python-literal lines) file."""
    path = Path(path)
    parse = parse_literal_line if literal else parse_json_line
    for number, text in iter_lines(path):
        yield number, parse(path, number, text)


def read_tsv_with_header(path: str | Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Read a tab-separated file with CSV quoting (quoted fields may hold newlines).

    Returns the header names and an iterator of (line number where the row
    starts, fields). Rows with the wrong number of fields raise DataError.
    """
    path = Path(path)
    lines = [t for _, t in _iter_raw(path)]
    # Item descriptions can be long; the csv module's default cap (128 KiB a field)
    # would turn one long field into an anonymous _csv.Error.
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter="\t", quotechar='"')
    header = next(reader, None)
    if not header:
        raise DataError(path, "the file is empty", hint="point to a file with a header line")

    def rows() -> Iterator[tuple[int, list[str]]]:
        start, last = reader.line_num + 1, None
        for row in reader:
            if row and len(row) != len(header):
                raise DataError(path, f"expected {len(header)} tab-separated fields, found "
                                f"{len(row)}", line=start, hint="check quoting and tabs")
            if row:
                last = (start, row)
                yield start, row
            start = reader.line_num + 1
        if last is not None and any("\n" in field for field in last[1]):
            _check_closed_quote(path, lines, last[0])

    return header, rows()


def _check_closed_quote(path: Path, lines: list[str], start: int) -> None:
    """Raise when the row starting at ``start`` runs to the end inside an open quote.

    The lenient reader takes an unclosed quote as a field holding every later
    line, so the rows after it vanish and the error would surface far away (an
    "unknown item" in another file). Strict parsing of that one row tells.
    """
    segment = io.StringIO("\n".join(lines[start - 1:]))
    try:
        list(csv.reader(segment, delimiter="\t", quotechar='"', strict=True))
    except csv.Error as exc:
        if "end of data" in str(exc):
            raise DataError(path, "a quote opened in this row is never closed, so every line "
                            "after it was read as one field", line=start,
                            hint="close the quote or remove it") from None


def _iter_raw(path: Path) -> Iterator[tuple[int, str]]:
    """Every line (blank ones too: they may sit inside quoted fields), decoded."""
    number = 0
    with _open_binary(path) as handle:
        try:
            for number, raw in enumerate(handle, start=1):
                # utf-8-sig on the first line: a byte-order mark is not part of the first id.
                codec = "utf-8-sig" if number == 1 else "utf-8"
                try:
                    yield number, raw.decode(codec).rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise DataError(path, f"not UTF-8 text (byte {exc.start} of the line)",
                                    line=number, hint="re-encode the file as UTF-8") from exc
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise DataError(path, f"cannot read the file: {exc}", line=number + 1,
                            hint="is the download complete?") from exc
