"""Atomic writes of Parquet tables and TREC run files.

A crash mid-write must never leave a truncated file that Snakemake or a later stage takes
for a finished one, so every writer writes a temporary sibling and renames it into place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Field metadata of an optional column (data/schemas.py marks them): a table may lack it, and
# it is then written and read as nulls.
OPTIONAL = {"optional": "true"}

_UMASK = os.umask(0)
os.umask(_UMASK)


def optional_fields(schema: pa.Schema) -> list[pa.Field]:
    """The fields of ``schema`` marked ``OPTIONAL`` (a table may lack them: they read as null)."""
    return [field for field in schema if (field.metadata or {}).get(b"optional") == b"true"]


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs should read like any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_table(frame: pd.DataFrame, path: str | Path, schema: pa.Schema) -> None:
    """Write the columns of ``schema`` from ``frame`` as Parquet with exactly that schema.

    Columns outside the schema are left out; an optional column (marked ``OPTIONAL``) that
    ``frame`` lacks is written as nulls; any other missing column or a wrong type is an error.
    """
    absent = [field.name for field in optional_fields(schema) if field.name not in frame.columns]
    frame = frame.assign(**{name: None for name in absent})
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise ValueError(f"{path}: table lacks the column(s) {missing} of its schema")
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | Path, schema: pa.Schema | None = None) -> pd.DataFrame:
    """Read a Parquet table; with ``schema``, check its columns and types first.

    An optional column of ``schema`` that the file lacks (written before the column existed)
    is read as nulls; columns are read in the schema's order, whatever the file's.
    """
    table = pq.read_table(path)
    if schema is None:
        return table.to_pandas()
    for field in optional_fields(schema):
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(len(table), field.type))
    if set(table.column_names) == set(schema.names):
        table = table.select(schema.names)  # a file written with the columns in another order
    if not table.schema.equals(schema, check_metadata=False):
        raise ValueError(f"{path}: schema {table.schema} differs from the expected {schema}")
    return table.to_pandas()


def write_trec_run(run: pd.DataFrame, path: str | Path, tag: str) -> None:
    """Write a run (query_id, doc_id, score, rank) in the six-column TREC format."""
    ordered = run.sort_values(["query_id", "rank"])
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for query_id, doc_id, rank, score in zip(ordered.query_id, ordered.doc_id, ordered["rank"], ordered.score):
            out.write(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
