"""A test collection (corpus, queries, qrels) and the checks every adapter's output passes.

Adapters collect records as dicts carrying a ``source`` locator ("file, line 7"); the
checks here use it so that a duplicate id, an empty text or a judgement of an unknown id
is reported at the record that caused it, whatever the input format.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from rerank_audit.errors import InputError


@dataclass
class Collection:
    corpus: pd.DataFrame  # doc_id, title, text
    queries: pd.DataFrame  # query_id, text
    qrels: pd.DataFrame  # query_id, doc_id, relevance[, label]


@dataclass(frozen=True)
class Record:
    """One input record with where it came from."""

    path: str
    where: str
    fields: dict


def _fail(record: Record, problem: str, fix: str) -> None:
    raise InputError(record.path, problem, record.where, fix)


def _unique(records: list[Record], key: str, kind: str) -> None:
    first: dict[str, Record] = {}
    for record in records:
        value = record.fields[key]
        if value in first:
            _fail(record, f"duplicate {kind} id '{value}' (first at {first[value].where})", f"give every {kind} a unique id")
        first[value] = record


def _non_empty(records: list[Record], key: str, kind: str, id_key: str) -> None:
    for record in records:
        if not str(record.fields[key] or "").strip():
            _fail(record, f"empty text for {kind} '{record.fields[id_key]}'", f"give the {kind} a text or remove it")


def build_collection(documents: list[Record], queries: list[Record], judgements: list[Record]) -> Collection:
    """Check records and assemble the data-model tables.

    documents: fields doc_id, title, text; queries: query_id, text;
    judgements: query_id, doc_id, relevance (int, 0 = judged non-relevant), optionally label
    (str: the source's own label of the judgement; the qrels get the column when any has it).
    """
    _unique(documents, "doc_id", "document")
    _unique(queries, "query_id", "query")
    _non_empty(documents, "text", "document", "doc_id")
    _non_empty(queries, "text", "query", "query_id")
    doc_ids = {r.fields["doc_id"] for r in documents}
    query_ids = {r.fields["query_id"] for r in queries}
    seen: dict[tuple[str, str], Record] = {}
    for record in judgements:
        query_id, doc_id = record.fields["query_id"], record.fields["doc_id"]
        if query_id not in query_ids:
            _fail(record, f"judgement names unknown query id '{query_id}'", "judge only queries of the topics file")
        if doc_id not in doc_ids:
            _fail(record, f"judgement names unknown document id '{doc_id}'", "judge only documents of the corpus")
        if (query_id, doc_id) in seen:
            _fail(record, f"duplicate judgement of ({query_id}, {doc_id}) (first at {seen[query_id, doc_id].where})", "keep one judgement per pair")
        seen[query_id, doc_id] = record
    table = lambda records, columns: pd.DataFrame([r.fields for r in records], columns=columns)  # noqa: E731
    corpus = table(documents, ["doc_id", "title", "text"]).astype(str)
    labelled = any("label" in r.fields for r in judgements)
    qrels = table(judgements, ["query_id", "doc_id", "relevance", *(["label"] if labelled else [])])
    qrels["relevance"] = qrels["relevance"].astype("int64")
    return Collection(corpus=corpus, queries=table(queries, ["query_id", "text"]).astype(str), qrels=qrels)


def parse_int(record_path: str, where: str, value: object, field: str, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within [low, high], or an InputError naming the field."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InputError(record_path, f"{field} '{value}' is not an integer", where, f"write {field} as a whole number") from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise InputError(record_path, f"{field} {number} is outside {low}..{high}", where, f"use a {field} in {low}..{high}")
    return number
