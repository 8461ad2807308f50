"""CLIMATE-FEVER jsonl as a re-ranking collection (see shared/data/README.md).

query = claim; corpus = the distinct evidence sentences titled by their article;
SUPPORTS / REFUTES evidence is relevant (1), NOT_ENOUGH_INFO judged non-relevant (0); the
qrels keep the evidence label itself in their optional ``label`` column (the stance probe).
TREC files cannot carry spaces, so doc_id = evidence_id with spaces replaced by "_".
"""

from __future__ import annotations

from pathlib import Path

from rerank_audit.data.collection import Collection, Record, build_collection
from rerank_audit.data.sources import jsonl_records, require_fields, require_json
from rerank_audit.errors import InputError

RELEVANT_LABELS = {"SUPPORTS": 1, "REFUTES": 1, "NOT_ENOUGH_INFO": 0}


def doc_id_of(evidence_id: str) -> str:
    return evidence_id.replace(" ", "_")


def read_climate_fever(claims: str | Path) -> Collection:
    """Read ``climate-fever.jsonl`` (claim_id, claim, evidences[...])."""
    path = str(claims)
    documents: dict[str, Record] = {}
    queries, judgements = [], []
    for where, record in jsonl_records(path, "CLIMATE-FEVER claims file"):
        require_fields(path, where, record, ["claim_id", "claim", "evidences"])
        query_id = str(record["claim_id"])
        queries.append(Record(path, where, {"query_id": query_id, "text": record["claim"]}))
        require_json(path, where, record["evidences"], "'evidences'", list)
        for number, evidence in enumerate(record["evidences"], start=1):
            require_json(path, where, evidence, f"evidence {number}", dict)
            require_fields(path, where, evidence, ["evidence_id", "evidence_label", "article", "evidence"])
            doc_id = doc_id_of(evidence["evidence_id"])
            fields = {"doc_id": doc_id, "title": evidence["article"], "text": evidence["evidence"]}
            # The same sentence is evidence for many claims: one document, unless texts disagree.
            known = documents.get(doc_id)
            if known is not None and known.fields != fields:
                raise InputError(path, f"evidence '{doc_id}' has a different text than at {known.where}", where, "give each evidence id one text")
            documents.setdefault(doc_id, Record(path, where, fields))
            label = evidence["evidence_label"]
            if label not in RELEVANT_LABELS:
                raise InputError(path, f"unknown evidence_label '{label}'", where, f"use one of {sorted(RELEVANT_LABELS)}")
            judgements.append(Record(path, where, {"query_id": query_id, "doc_id": doc_id, "relevance": RELEVANT_LABELS[label], "label": label}))
    return build_collection(list(documents.values()), queries, judgements)
