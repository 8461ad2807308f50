"""Reading raw files record by record, with errors that point at the record.

Every reader decodes strictly as UTF-8 (an undecodable byte is reported with its line,
never replaced), yields each record with a locator such as ``"line 7"`` and fails on a file
with no records.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from rerank_audit.errors import InputError


def existing_path(path: str | Path, what: str) -> Path:
    """Return ``path`` as a Path, or fail naming the missing ``what``."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{what} does not exist", fix="correct the path in the config or create the file")
    return path


def read_text(path: str | Path, what: str) -> str:
    """The whole file decoded as UTF-8; an undecodable byte fails with its line number."""
    data = existing_path(path, what).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(
            path, f"byte 0x{data[err.start]:02x} is not valid UTF-8", f"line {line}", "re-encode the file as UTF-8"
        ) from None


def _never_empty(reader: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """``reader(path, what, ...)``, failing at its end when it yielded no record (an empty file, or a header alone)."""

    @functools.wraps(reader)
    def read(path: str | Path, what: str, *args, **kwargs) -> Iterator:
        empty = True
        for record in reader(path, what, *args, **kwargs):
            empty = False
            yield record
        if empty:
            raise InputError(path, "the file has no records", fix=f"add records to the {what}, or correct its path in the config")

    return read


_JSON_KINDS = {dict: "a JSON object", list: "a JSON array", str: "a string", int: "a number", float: "a number", bool: "true or false", type(None): "null"}


def require_json(path: str | Path, where: str, value: object, what: str, kind: type[dict] | type[list]) -> None:
    """Fail unless ``value`` (``what`` of the record at ``where``) is a JSON object (dict) or array (list)."""
    if not isinstance(value, kind):
        raise InputError(path, f"{what} is {_JSON_KINDS[type(value)]}, not {_JSON_KINDS[kind]}", where, f"write {what} as {_JSON_KINDS[kind]}")


@_never_empty
def jsonl_records(path: str | Path, what: str) -> Iterator[tuple[str, dict]]:
    """Yield ``("line N", object)`` for each non-blank line of a JSON-lines file."""
    for number, line in enumerate(read_text(path, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(path, f"malformed JSON ({err.msg})", f"line {number}", "write one JSON object per line") from None
        require_json(path, f"line {number}", record, "the line", dict)
        yield f"line {number}", record


@_never_empty
def delimited_rows(path: str | Path, what: str, delimiter: str, header: tuple[str, ...] = ()) -> Iterator[tuple[str, list[str]]]:
    """Yield ``("line N", fields)`` for each non-blank row of a CSV/TSV file.

    The first row is skipped when it is ``header`` (ignoring case and surrounding spaces): a
    header is recognised by what it says, so a file without one loses no record.
    """
    reader = csv.reader(io.StringIO(read_text(path, what)), delimiter=delimiter)
    first = True
    for row in reader:
        if not any(field.strip() for field in row):
            continue
        if not (first and header and [field.strip().lower() for field in row] == list(header)):
            yield f"line {reader.line_num}", row
        first = False


@_never_empty
def table_records(path: str | Path, what: str, columns: list[str], optional: tuple[str, ...] = ()) -> Iterator[tuple[str, dict]]:
    """Yield ``(locator, record)`` from a CSV (with header) or Parquet table.

    Fails if one of ``columns`` is missing; ``optional`` columns are passed through when present.
    An empty cell, or a Parquet null, reads as "".
    """
    path = existing_path(path, what)
    read = _parquet_records if path.suffix == ".parquet" else _csv_records
    yield from read(path, what, columns, optional)


def _kept_columns(path: Path, where: str, found: list[str], columns: list[str], optional: tuple[str, ...]) -> list[str]:
    missing = [c for c in columns if c not in found]
    if missing:
        raise InputError(path, f"missing column(s) {missing}", where, f"add the column(s); found {found}")
    return columns + [c for c in optional if c in found]


def _csv_records(path: Path, what: str, columns: list[str], optional: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    rows = delimited_rows(path, what, ",")
    _, header = next(rows)
    keep = _kept_columns(path, "header", header, columns, optional)
    for where, row in rows:
        if len(row) != len(header):
            fix = "give every row the header's columns; quote a field that holds a comma"
            raise InputError(path, f"expected {len(header)} comma-separated fields, found {len(row)}", where, fix)
        record = dict(zip(header, row))
        yield where, {c: record[c] for c in keep}


# Arrow types that read as one text or number per cell (a dictionary is a categorical column).
_CELL_TYPES = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer, pa.types.is_floating, pa.types.is_dictionary, pa.types.is_null)


def _parquet_records(path: Path, what: str, columns: list[str], optional: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        reason = str(err).partition("': ")[2] or str(err)  # pyarrow's reason, without its own copy of the path
        fix = f"write the {what} again as Parquet, or as CSV in a file named *.csv"
        raise InputError(path, f"not a readable Parquet file ({reason})", fix=fix) from None
    table = table.select(_kept_columns(path, "schema", table.column_names, columns, optional))
    for field in table.schema:
        if not any(is_cell(field.type) for is_cell in _CELL_TYPES):
            fix = "store one text or number per cell: ids and texts as strings, ratings as integers"
            raise InputError(path, f"column '{field.name}' has type {field.type}", "schema", fix)
    frame = table.to_pandas()
    for index, record in enumerate(frame.astype(object).where(frame.notna(), "").to_dict("records")):
        yield f"row {index + 1}", record


def require_fields(path: str | Path, where: str, record: dict, fields: list[str]) -> None:
    """Fail if ``record`` lacks one of ``fields``."""
    for field in fields:
        if field not in record or record[field] is None:
            raise InputError(path, f"missing field '{field}'", where, f"every record needs {fields}")
