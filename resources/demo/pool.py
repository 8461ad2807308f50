"""BM25 pooling for the demo rating collection.

Indexes ``title + " " + text`` of every record in documents.csv with bm25s
(English stopwords, Snowball English stemmer) and prints, for every query,
the top-k records as CSV on stdout:

    query_id,query,rank,doc_id,score,title

Queries are read from ratings.csv next to this file (unique query_id/query
pairs) unless ``--queries FILE`` names a CSV with columns query_id,query.
With ``--unrated`` only pooled records that have no rating yet are printed,
which is how the rating file was completed.

Usage:
    python resources/demo/pool.py [--queries FILE] [--k 20] [--unrated]
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import bm25s
import Stemmer

HERE = Path(__file__).resolve().parent


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--documents", type=Path, default=HERE / "documents.csv")
    ap.add_argument("--ratings", type=Path, default=HERE / "ratings.csv")
    ap.add_argument("--queries", type=Path, default=None,
                    help="CSV with query_id,query (default: taken from ratings.csv)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--unrated", action="store_true",
                    help="print only pooled records without a rating in ratings.csv")
    args = ap.parse_args(argv)

    docs = read_csv(args.documents)
    ids = [d["doc_id"] for d in docs]
    titles = [d["title"] for d in docs]
    corpus = [d["title"] + " " + d["text"] for d in docs]

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer,
                                   show_progress=False), show_progress=False)

    rated: set[tuple[str, str]] = set()
    if args.queries is not None:
        queries = [(r["query_id"], r["query"]) for r in read_csv(args.queries)]
    else:
        seen: dict[str, str] = {}
        for r in read_csv(args.ratings):
            seen.setdefault(r["query_id"], r["query"])
        queries = sorted(seen.items())
    if args.ratings.exists():
        rated = {(r["query_id"], r["doc_id"]) for r in read_csv(args.ratings)}

    k = min(args.k, len(docs))
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["query_id", "query", "rank", "doc_id", "score", "title"])
    for qid, query in queries:
        q_tokens = bm25s.tokenize([query], stopwords="en", stemmer=stemmer,
                                  show_progress=False)
        results, scores = retriever.retrieve(q_tokens, k=k, show_progress=False)
        for rank, (idx, score) in enumerate(zip(results[0], scores[0]), start=1):
            doc_id = ids[int(idx)]
            if args.unrated and (qid, doc_id) in rated:
                continue
            out.writerow([qid, query, rank, doc_id, f"{float(score):.3f}", titles[int(idx)]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
