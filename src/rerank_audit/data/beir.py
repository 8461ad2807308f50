"""BEIR folder: corpus.jsonl, queries.jsonl, qrels/{split}.tsv (with or without its header line)."""

from __future__ import annotations

from pathlib import Path

from rerank_audit.data.collection import Collection, Record, build_collection, parse_int
from rerank_audit.data.sources import delimited_rows, existing_path, jsonl_records, require_fields
from rerank_audit.errors import InputError

QRELS_HEADER = ("query-id", "corpus-id", "score")


def read_beir(folder: str | Path, qrels_split: str = "test") -> Collection:
    """Read a BEIR dataset folder; only queries judged in ``qrels/{qrels_split}.tsv`` are kept."""
    folder = existing_path(folder, "BEIR folder")
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{qrels_split}.tsv"
    documents = []
    for where, record in jsonl_records(corpus_path, "BEIR corpus"):
        require_fields(corpus_path, where, record, ["_id", "text"])
        fields = {"doc_id": str(record["_id"]), "title": record.get("title") or "", "text": record["text"]}
        documents.append(Record(str(corpus_path), where, fields))
    judgements = []
    for where, row in delimited_rows(qrels_path, "BEIR qrels", "\t", header=QRELS_HEADER):
        if len(row) != 3:
            fix = "write query-id<TAB>corpus-id<TAB>score; a header line, if any, reads exactly that"
            raise InputError(qrels_path, f"expected 3 tab-separated fields, found {len(row)}", where, fix)
        relevance = parse_int(str(qrels_path), where, row[2], "score")
        judgements.append(Record(str(qrels_path), where, {"query_id": row[0], "doc_id": row[1], "relevance": relevance}))
    judged = {r.fields["query_id"] for r in judgements}
    queries = []
    for where, record in jsonl_records(queries_path, "BEIR queries"):
        require_fields(queries_path, where, record, ["_id", "text"])
        if str(record["_id"]) in judged:
            queries.append(Record(str(queries_path), where, {"query_id": str(record["_id"]), "text": record["text"]}))
    return build_collection(documents, queries, judgements)
