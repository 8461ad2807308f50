"""Training examples for the re-rankers, built from training queries, their qrels and BM25 hard negatives.

Three tables, one per training signal (DESIGN.md, Stage 4):

- ``sft_examples``: pointwise prompt (query, document) -> "yes" / "no" (``sft``).
- ``answer_pairs``: the same prompt, chosen = correct answer, rejected = wrong one (``dpo``).
- ``preference_pairs``: prompt = query, chosen = a relevant document, rejected = a BM25 hard
  negative (``dpo_pairs`` and ``reward``).

A document is *relevant* when its grade is at least ``relevance_threshold``; it is a
*negative* when it is judged non-relevant (grade 0) or unjudged. Documents graded between
the two (0 < grade < threshold) are neither: they would teach the model a wrong lesson
either way. Hard negatives are the highest-ranked BM25 candidates that are negatives.

Everything is deterministic given ``seed``: the seed only breaks ties between positives of
the same grade when a query has more of them than are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from rerank_audit.models import prompts

SFT_COLUMNS = ["query_id", "doc_id", "prompt", "completion", "label"]
PAIR_COLUMNS = ["query_id", "prompt", "chosen", "rejected", "chosen_doc_id", "rejected_doc_id"]


@dataclass(frozen=True)
class _Candidates:
    """The training documents of one query: positives best first, hard negatives by BM25 rank."""

    query_id: str
    query: str
    positives: list[str]
    negatives: list[str]


def _training_candidates(
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    run: pd.DataFrame,
    train_query_ids: Sequence[str],
    relevance_threshold: int,
    seed: int,
) -> list[_Candidates]:
    """Positives and hard negatives of each training query, in ``train_query_ids`` order (duplicates dropped).

    Positives are ordered by grade (highest first), ties in a seeded random order; negatives
    by BM25 rank. Queries without a positive are left out (they yield no example).
    """
    query_text = dict(zip(queries.query_id, queries.text))
    unknown = [query_id for query_id in train_query_ids if query_id not in query_text]
    if unknown:
        raise ValueError(f"training query ids not in the queries table: {unknown[:5]}")
    rng = np.random.default_rng(seed)
    grades = qrels.groupby("query_id")
    ranked = run.sort_values(["query_id", "rank", "doc_id"]).groupby("query_id")
    judged_ids = set(grades.groups)
    ranked_ids = set(ranked.groups)
    result = []
    for query_id in dict.fromkeys(train_query_ids):
        judged = grades.get_group(query_id) if query_id in judged_ids else qrels.iloc[:0]
        relevant = judged[judged.relevance >= relevance_threshold]
        if relevant.empty:
            continue
        # Shuffle first, then a stable sort by grade: equal grades keep the seeded order.
        relevant = relevant.iloc[rng.permutation(len(relevant))].sort_values("relevance", ascending=False, kind="stable")
        not_negative = set(judged.doc_id[judged.relevance > 0])
        candidates = ranked.get_group(query_id).doc_id if query_id in ranked_ids else []
        negatives = [doc_id for doc_id in dict.fromkeys(candidates) if doc_id not in not_negative]
        result.append(_Candidates(query_id, query_text[query_id], list(relevant.doc_id), negatives))
    return result


def _document_texts(corpus: pd.DataFrame, doc_ids: set[str]) -> dict[str, str]:
    """``prompts.document_text`` of each of ``doc_ids``; an error names the ids missing from the corpus."""
    rows = corpus[corpus.doc_id.isin(doc_ids)]
    missing = doc_ids - set(rows.doc_id)
    if missing:
        raise ValueError(f"documents not in the corpus: {sorted(missing)[:5]}")
    return {doc_id: prompts.document_text(title, text) for doc_id, title, text in zip(rows.doc_id, rows.title, rows.text)}


def sft_examples(
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    run: pd.DataFrame,
    train_query_ids: Sequence[str],
    tokenizer,
    *,
    negatives_per_positive: int,
    max_positives_per_query: int,
    relevance_threshold: int,
    seed: int,
) -> pd.DataFrame:
    """Pointwise yes/no examples of the training queries.

    In: the corpus (doc_id, title, text), queries (query_id, text), qrels (query_id, doc_id,
    relevance int), a BM25 run (query_id, doc_id, rank 1-based), the training query ids, and the
    tokenizer whose chat template renders the prompt. Per query: up to
    ``max_positives_per_query`` relevant documents (highest grade first) and
    ``negatives_per_positive`` hard negatives per positive used (the top non-relevant BM25
    candidates; fewer if the run has fewer).

    Out: the ``sft examples`` table (query_id, doc_id, prompt, completion, label), rows ordered
    by query (``train_query_ids`` order), then positives, then negatives by rank. ``prompt`` is
    ``prompts.pointwise_prompt``; ``completion`` is "yes" (label 1) or "no" (label 0).
    """
    rows = []
    for query in _training_candidates(queries, qrels, run, train_query_ids, relevance_threshold, seed):
        positives = query.positives[:max_positives_per_query]
        negatives = query.negatives[: negatives_per_positive * len(positives)]
        rows += [(query.query_id, query.query, doc_id, 1) for doc_id in positives]
        rows += [(query.query_id, query.query, doc_id, 0) for doc_id in negatives]
    texts = _document_texts(corpus, {doc_id for _, _, doc_id, _ in rows})
    return pd.DataFrame(
        [
            (
                query_id,
                doc_id,
                prompts.pointwise_prompt(tokenizer, query, texts[doc_id]),
                prompts.pointwise_completion(bool(label)),
                label,
            )
            for query_id, query, doc_id, label in rows
        ],
        columns=SFT_COLUMNS,
    ).astype({"label": "int64"})


def preference_pairs(
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    run: pd.DataFrame,
    train_query_ids: Sequence[str],
    tokenizer,
    *,
    pairs_per_query: int,
    relevance_threshold: int,
    seed: int,
) -> pd.DataFrame:
    """Document preference pairs of the training queries: a relevant document over a hard negative.

    In: as for ``sft_examples``. Per query, pair i (i < ``pairs_per_query``) takes the i-th
    hard negative (BM25 rank order, so the hardest first; each negative used once) and the
    positives in turn (highest grade first, cycling when there are fewer positives than pairs).
    A query yields min(pairs_per_query, number of hard negatives) pairs.

    Out: the ``preference pairs`` table (query_id, prompt, chosen, rejected, chosen_doc_id,
    rejected_doc_id). ``prompt`` is ``prompts.document_prompt(tokenizer, query)``; chosen and
    rejected are ``prompts.document_text`` of the documents.
    """
    rows = []
    for query in _training_candidates(queries, qrels, run, train_query_ids, relevance_threshold, seed):
        negatives = query.negatives[:pairs_per_query]
        rows += [
            (query.query_id, query.query, query.positives[i % len(query.positives)], rejected)
            for i, rejected in enumerate(negatives)
        ]
    texts = _document_texts(corpus, {doc_id for row in rows for doc_id in row[2:]})
    return pd.DataFrame(
        [
            (query_id, prompts.document_prompt(tokenizer, query), texts[chosen], texts[rejected], chosen, rejected)
            for query_id, query, chosen, rejected in rows
        ],
        columns=PAIR_COLUMNS,
    )


def answer_pairs(sft_examples: pd.DataFrame) -> pd.DataFrame:
    """The ``dpo`` method's pairs: each pointwise example with chosen = its correct answer, rejected = the other.

    In: an ``sft examples`` table. Out: a ``preference pairs`` table, one row per example in
    the same order, with chosen_doc_id = rejected_doc_id = the example's doc_id (both answers
    are about the same document).
    """
    yes, no = prompts.pointwise_completion(True), prompts.pointwise_completion(False)
    relevant = sft_examples.label.astype(bool).to_numpy()
    return pd.DataFrame(
        {
            "query_id": sft_examples.query_id.to_numpy(),
            "prompt": sft_examples.prompt.to_numpy(),
            "chosen": np.where(relevant, yes, no),
            "rejected": np.where(relevant, no, yes),
            "chosen_doc_id": sft_examples.doc_id.to_numpy(),
            "rejected_doc_id": sft_examples.doc_id.to_numpy(),
        },
        columns=PAIR_COLUMNS,
    )
