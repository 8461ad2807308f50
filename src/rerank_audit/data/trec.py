"""TREC: topics (TREC XML-ish SGML or tsv), qrels (qid 0 docno rel), collection tsv."""

from __future__ import annotations

import re
from pathlib import Path

from rerank_audit.data.collection import Collection, Record, build_collection, parse_int
from rerank_audit.data.sources import delimited_rows, read_text
from rerank_audit.errors import InputError

_TOP = re.compile(r"<top>(.*?)</top>", re.S | re.I)
_NUM = re.compile(r"<num>\s*(?:Number:)?\s*(\S+)", re.I)
_TITLE = re.compile(r"<title>\s*(?:Topic:)?\s*(.*?)\s*(?=<|\Z)", re.S | re.I)


def read_topics(path: str | Path) -> list[Record]:
    """Topics as ``<top><num>…<title>…</top>`` blocks, or ``qid<TAB>text`` lines."""
    text = read_text(path, "TREC topics file")
    if "<top>" not in text.lower():
        return [
            Record(str(path), where, {"query_id": row[0].strip(), "text": row[1] if len(row) > 1 else ""})
            for where, row in delimited_rows(path, "TREC topics file", "\t")
        ]
    topics = []
    for block in _TOP.finditer(text):
        where = f"line {text[: block.start()].count(chr(10)) + 1}"
        number, title = _NUM.search(block.group(1)), _TITLE.search(block.group(1))
        if number is None or title is None:
            missing = "<num>" if number is None else "<title>"
            raise InputError(path, f"topic without {missing}", where, "give every <top> a <num> and a <title>")
        topics.append(Record(str(path), where, {"query_id": number.group(1), "text": " ".join(title.group(1).split())}))
    return topics


def read_trec(topics: str | Path, qrels: str | Path, collection: str | Path) -> Collection:
    """Read a TREC-style test collection; the collection tsv is ``docno<TAB>text`` or ``docno<TAB>title<TAB>text``."""
    documents = []
    for where, row in delimited_rows(collection, "TREC collection", "\t"):
        if len(row) not in (2, 3):
            raise InputError(collection, f"expected 2 or 3 tab-separated fields, found {len(row)}", where, "write docno<TAB>[title<TAB>]text")
        title, text = (row[1], row[2]) if len(row) == 3 else ("", row[1])
        documents.append(Record(str(collection), where, {"doc_id": row[0].strip(), "title": title, "text": text}))
    judgements = []
    for where, line in delimited_rows(qrels, "TREC qrels", "\t"):
        fields = " ".join(line).split()
        if len(fields) != 4:
            raise InputError(qrels, f"expected 4 fields 'qid iter docno rel', found {len(fields)}", where, "write one judgement per line")
        relevance = parse_int(str(qrels), where, fields[3], "relevance")
        judgements.append(Record(str(qrels), where, {"query_id": fields[0], "doc_id": fields[2], "relevance": relevance}))
    return build_collection(documents, read_topics(topics), judgements)
