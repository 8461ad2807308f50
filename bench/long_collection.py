"""A BEIR folder of long questions over report-length paragraphs, built from CLIMATE-FEVER.

The workload that ran a query-likelihood ``explain`` job out of memory (issue 32): questions
of 20–30 words over paragraphs of 100–300 words. Questions are the claims of that length;
paragraphs are each Wikipedia article's evidence sentences in article order, cut into
paragraphs of at least 100 words; a paragraph is judged relevant (1) to a claim when it
holds one of the claim's SUPPORTS/REFUTES evidence sentences, non-relevant (0) when it holds
only NOT_ENOUGH_INFO ones.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

PARAGRAPH_WORDS = (100, 300)
QUESTION_WORDS = (20, 30)


def _paragraphs(sentences: list[str]) -> list[list[str]]:
    """Consecutive sentences joined while a paragraph has fewer than 100 words, none past 300."""
    out, current, words = [], [], 0
    for sentence in sentences:
        n = len(sentence.split())
        if current and words + n > PARAGRAPH_WORDS[1]:
            out.append(current)
            current, words = [], 0
        current.append(sentence)
        words += n
        if words >= PARAGRAPH_WORDS[0]:
            out.append(current)
            current, words = [], 0
    if current and words >= PARAGRAPH_WORDS[0] // 2:
        out.append(current)
    return out


def build_long_beir(claims_file: Path, folder: Path, n_queries: int = 24) -> Path:
    """Write corpus.jsonl, queries.jsonl and qrels/test.tsv of ``n_queries`` long claims into ``folder``."""
    claims = [json.loads(line) for line in Path(claims_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    by_article: dict[str, dict[int, str]] = defaultdict(dict)
    for claim in claims:
        for e in claim["evidences"]:
            by_article[e["article"]][int(re.sub(r".*:", "", e["evidence_id"]))] = e["evidence"]
    paragraph_of: dict[str, str] = {}  # evidence sentence -> paragraph id
    corpus = []
    for article, sentences in sorted(by_article.items()):
        for k, paragraph in enumerate(_paragraphs([sentences[i] for i in sorted(sentences)])):
            doc_id = f"{article}#{k}"
            corpus.append({"_id": doc_id, "title": article, "text": " ".join(paragraph)})
            paragraph_of.update({sentence: doc_id for sentence in paragraph})
    queries, qrels = [], {}
    for claim in claims:
        if not QUESTION_WORDS[0] <= len(claim["claim"].split()) <= QUESTION_WORDS[1]:
            continue
        grades: dict[str, int] = {}
        for e in claim["evidences"]:
            if e["evidence"] in paragraph_of:
                doc_id = paragraph_of[e["evidence"]]
                grades[doc_id] = max(grades.get(doc_id, 0), int(e["evidence_label"] != "NOT_ENOUGH_INFO"))
        if not any(grades.values()):
            continue
        queries.append({"_id": f"c{claim['claim_id']}", "text": claim["claim"]})
        qrels.update({(f"c{claim['claim_id']}", d): g for d, g in grades.items()})
        if len(queries) == n_queries:
            break
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{g}" for (q, d), g in qrels.items()]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


if __name__ == "__main__":
    import sys

    build_long_beir(Path(sys.argv[1]), Path(sys.argv[2]))
