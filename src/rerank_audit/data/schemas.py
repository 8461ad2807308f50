"""Arrow schemas of the data model (DESIGN.md); every Parquet table is checked on write."""

import pyarrow as pa

CORPUS = pa.schema([("doc_id", pa.string()), ("title", pa.string()), ("text", pa.string())])
QUERIES = pa.schema([("query_id", pa.string()), ("text", pa.string())])
QRELS = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("relevance", pa.int64())])
# position orders queries inside a split: training budgets take the first b train queries,
# so smaller budgets are nested in larger ones.
SPLITS = pa.schema([("query_id", pa.string()), ("split", pa.string()), ("position", pa.int64())])
RUN = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("score", pa.float64()),
        ("rank", pa.int64()),
        ("method", pa.string()),
        ("budget", pa.string()),
    ]
)
PER_QUERY_METRICS = pa.schema(
    [
        ("dataset", pa.string()),
        ("method", pa.string()),
        ("budget", pa.string()),
        ("split", pa.string()),
        ("query_id", pa.string()),
        ("measure", pa.string()),
        ("value", pa.float64()),
    ]
)
AGGREGATE_METRICS = pa.schema(
    [
        ("dataset", pa.string()),
        ("method", pa.string()),
        ("budget", pa.string()),
        ("split", pa.string()),
        ("measure", pa.string()),
        ("value", pa.float64()),
        ("queries", pa.int64()),
    ]
)
