"""Reading raw files record by record, with errors that point at the record.

Every reader decodes strictly as UTF-8 (an undecodable byte is reported with its line,
never replaced) and yields each record with a locator such as ``"line 7"``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator

import pandas as pd

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


def jsonl_records(path: str | Path, what: str) -> Iterator[tuple[str, dict]]:
    """Yield ``("line N", object)`` for each non-blank line of a JSON-lines file."""
    for number, line in enumerate(read_text(path, what).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(path, f"malformed JSON ({err.msg})", f"line {number}", "write one JSON object per line") from None
        if not isinstance(record, dict):
            raise InputError(path, "expected a JSON object", f"line {number}", "write one JSON object per line")
        yield f"line {number}", record


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


def table_records(path: str | Path, what: str, columns: list[str], optional: tuple[str, ...] = ()) -> Iterator[tuple[str, dict]]:
    """Yield ``(locator, record)`` from a CSV (with header) or Parquet table.

    Fails if one of ``columns`` is missing; ``optional`` columns are passed through when present.
    """
    path = existing_path(path, what)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        locate = lambda i: f"row {i + 1}"  # noqa: E731
    else:
        rows = list(csv.reader(io.StringIO(read_text(path, what))))
        if not rows:
            raise InputError(path, "the file is empty", fix=f"write a header with the columns {columns}")
        frame = pd.DataFrame(rows[1:], columns=rows[0], dtype=str) if rows[1:] else pd.DataFrame(columns=rows[0])
        locate = lambda i: f"line {i + 2}"  # noqa: E731 (header is line 1)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(path, f"missing column(s) {missing}", "header", f"add the column(s); found {list(frame.columns)}")
    keep = columns + [c for c in optional if c in frame.columns]
    for index, record in enumerate(frame[keep].to_dict("records")):
        yield locate(index), record


def require_fields(path: str | Path, where: str, record: dict, fields: list[str]) -> None:
    """Fail if ``record`` lacks one of ``fields``."""
    for field in fields:
        if field not in record or record[field] is None:
            raise InputError(path, f"missing field '{field}'", where, f"every record needs {fields}")
