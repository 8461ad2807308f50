"""User ratings (query, doc, rating 0–10): the sparse feedback of a new search service.

A rating at or above the first grade threshold is relevant; each further threshold reached
adds one relevance grade (default thresholds 5, 7, 9 give grades 0–3). Queries whose texts
differ only in case or spacing are one query; its text is the first spelling.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from rerank_audit.data.collection import Collection, Record, build_collection, parse_int
from rerank_audit.data.sources import table_records
from rerank_audit.errors import InputError

DEFAULT_GRADES = (5, 7, 9)


def relevance_of(rating: int, grades: tuple[int, ...] = DEFAULT_GRADES) -> int:
    """Graded relevance: the number of thresholds ``rating`` reaches (0 = not relevant)."""
    return sum(rating >= g for g in grades)


def normalised(text: str) -> str:
    """A query's text as compared: lower case, runs of white space as one space."""
    return " ".join(text.lower().split())


def query_id_of(text: str) -> str:
    """A stable id for a query logged without one: a hash of its normalised text."""
    return "q" + hashlib.sha1(normalised(text).encode()).hexdigest()[:10]


def read_ratings(documents: str | Path, ratings: str | Path, grades: tuple[int, ...] = DEFAULT_GRADES) -> Collection:
    """Read documents (doc_id, title, text) and ratings (query, doc_id, rating[, query_id]), CSV or Parquet."""
    docs = [Record(str(documents), where, {k: str(v) for k, v in r.items()}) for where, r in table_records(documents, "documents table", ["doc_id", "title", "text"])]
    queries: dict[str, Record] = {}
    judgements = []
    for where, r in table_records(ratings, "ratings table", ["query", "doc_id", "rating"], optional=("query_id",)):
        text = str(r["query"])
        query_id = str(r.get("query_id") or query_id_of(text))
        known = queries.setdefault(query_id, Record(str(ratings), where, {"query_id": query_id, "text": text}))
        if normalised(known.fields["text"]) != normalised(text):
            raise InputError(ratings, f"query id '{query_id}' has a different text than at {known.where}", where, "give each query id one text")
        rating = parse_int(str(ratings), where, r["rating"], "rating", 0, 10)
        fields = {"query_id": query_id, "doc_id": str(r["doc_id"]), "relevance": relevance_of(rating, tuple(grades))}
        judgements.append(Record(str(ratings), where, fields))
    return build_collection(docs, list(queries.values()), judgements)
