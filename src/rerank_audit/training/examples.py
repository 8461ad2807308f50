"""Training examples for the re-rankers, built from training queries, their qrels and the BM25 run.

Five tables, one per training signal (DESIGN.md, Stage 4):

- ``sft_examples``: pointwise prompt (query, document) -> the "relevant" / "not relevant"
  answer of ``prompts.pointwise_completions`` (``sft``).
- ``answer_pairs``: the same prompt, chosen = correct answer, rejected = wrong one (``dpo``).
- ``preference_pairs``: prompt = query, chosen = a relevant document, rejected = a negative
  (``dpo_pairs`` and ``reward``).
- ``query_examples``: prompt = the query-likelihood template with a relevant document,
  completion = " " + the query (``qlm_sft``); positives only, no negatives needed.
- ``lce_groups``: per relevant (query, document), a group of that document and the query's
  first negatives (``qlm_lce``, localized contrastive estimation; ``training.lce``).

A document is *relevant* to a query when its grade is at least ``relevance_threshold``.
Negatives only where non-relevance is known:

1. the query's *judged non-relevant* documents (grade <= 0), those in the query's BM25 run
   first by rank (the hard ones), then the others by doc_id;
2. only when ``unjudged_negatives`` is on: the query's *unjudged* BM25 candidates, by rank.

A document with a positive grade for *any* query is never a negative, not even one judged
non-relevant to this query: on collections of near-duplicate evidence (CLIMATE-FEVER) such a
document is usually on the topic, and a positive grade anywhere, even below the threshold,
is the evidence we have that the pool's judgements are incomplete around it (a control's
test copy of a document counts as that document: the same text). Documents
graded between 0 and the threshold for this query are neither positive nor negative: they
would teach the model a wrong lesson either way.

Everything is deterministic given ``seed``: the seed only breaks ties between positives of
the same grade when a query has more of them than are used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from rerank_audit.data.control import copied_from
from rerank_audit.text import prompts

SFT_COLUMNS = ["query_id", "doc_id", "prompt", "completion", "label"]
PAIR_COLUMNS = ["query_id", "prompt", "chosen", "rejected", "chosen_doc_id", "rejected_doc_id"]
QUERY_COLUMNS = ["query_id", "doc_id", "document", "prompt", "completion"]
GROUP_COLUMNS = ["group", "position", "query_id", "doc_id", "query", "document", "source"]
# Where a group member comes from (column ``source`` of ``lce_groups``).
RELEVANT, JUDGED_NON_RELEVANT, UNJUDGED = "relevant", "judged_non_relevant", "unjudged"


class NoNegativesError(ValueError):
    """No training query with a relevant document has a usable negative: nothing to contrast."""


@dataclass(frozen=True)
class _Candidates:
    """The training documents of one query: positives best first, then negatives in the order they are used."""

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
    unjudged_negatives: bool,
    require_negatives: bool = True,
) -> list[_Candidates]:
    """Positives and negatives of each training query, in ``train_query_ids`` order (duplicates dropped).

    Positives are ordered by grade (highest first), ties in a seeded random order; negatives as
    the module docstring says. Queries without a positive are left out (they yield no example).
    Raises NoNegativesError when some query has a positive but none has a negative
    (unless ``require_negatives`` is off: a table of positives only).
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
    relevant_anywhere = set(qrels.doc_id[qrels.relevance > 0].map(copied_from))
    result = []
    for query_id in dict.fromkeys(train_query_ids):
        judged = grades.get_group(query_id) if query_id in judged_ids else qrels.iloc[:0]
        relevant = judged[judged.relevance >= relevance_threshold]
        if relevant.empty:
            continue
        # Shuffle first, then a stable sort by grade: equal grades keep the seeded order.
        relevant = relevant.iloc[rng.permutation(len(relevant))].sort_values("relevance", ascending=False, kind="stable")
        candidates = list(dict.fromkeys(ranked.get_group(query_id).doc_id)) if query_id in ranked_ids else []
        rank = {doc_id: position for position, doc_id in enumerate(candidates)}
        judged_non_relevant = set(judged.doc_id[judged.relevance <= 0]) - relevant_anywhere
        negatives = sorted(judged_non_relevant, key=lambda doc_id: (rank.get(doc_id, len(rank)), doc_id))
        if unjudged_negatives:
            not_negative = set(judged.doc_id) | relevant_anywhere
            negatives += [doc_id for doc_id in candidates if doc_id not in not_negative]
        result.append(_Candidates(query_id, query_text[query_id], list(relevant.doc_id), negatives))
    if require_negatives and result and not any(query.negatives for query in result):
        fix = (
            "give the training queries judged non-relevant documents (grade 0) in the qrels"
            if unjudged_negatives
            else "give the training queries judged non-relevant documents (grade 0) in the qrels, or set "
            "train.unjudged_negatives: true to take their unjudged BM25 candidates as negatives"
        )
        raise NoNegativesError(
            f"none of the {len(result)} training queries with a relevant document has a usable negative "
            f"(a document judged non-relevant to it{' or an unjudged BM25 candidate' if unjudged_negatives else ''}, "
            f"relevant to no query); {fix}"
        )
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
    unjudged_negatives: bool = False,
) -> pd.DataFrame:
    """Pointwise yes/no examples of the training queries.

    In: the corpus (doc_id, title, text), queries (query_id, text), qrels (query_id, doc_id,
    relevance int), a BM25 run (query_id, doc_id, rank 1-based), the training query ids, and the
    tokenizer whose chat template renders the prompt. Per query: up to
    ``max_positives_per_query`` relevant documents (highest grade first) and
    ``negatives_per_positive`` negatives per positive used (in the order of the module
    docstring; fewer if the query has fewer; unjudged candidates only with
    ``unjudged_negatives``).

    Out: the ``sft examples`` table (query_id, doc_id, prompt, completion, label), rows ordered
    by query (``train_query_ids`` order), then positives, then negatives. ``prompt`` is
    ``prompts.pointwise_prompt``; ``completion`` is ``prompts.pointwise_completions(tokenizer)[0 if label else 1]``.
    Raises NoNegativesError when no training query has a negative.
    """
    rows = []
    for query in _training_candidates(queries, qrels, run, train_query_ids, relevance_threshold, seed, unjudged_negatives):
        positives = query.positives[:max_positives_per_query]
        negatives = query.negatives[: negatives_per_positive * len(positives)]
        rows += [(query.query_id, query.query, doc_id, 1) for doc_id in positives]
        rows += [(query.query_id, query.query, doc_id, 0) for doc_id in negatives]
    texts = _document_texts(corpus, {doc_id for _, _, doc_id, _ in rows})
    answers = prompts.pointwise_completions(tokenizer)
    return pd.DataFrame(
        [
            (
                query_id,
                doc_id,
                prompts.pointwise_prompt(tokenizer, query, texts[doc_id]),
                answers[0] if label else answers[1],
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
    unjudged_negatives: bool = False,
) -> pd.DataFrame:
    """Document preference pairs of the training queries: a relevant document over a negative.

    In: as for ``sft_examples``. Per query, pair i (i < ``pairs_per_query``) takes the i-th
    negative (in the order of the module docstring, so judged non-relevant BM25 candidates,
    the hardest, first; each negative used once) and the positives in turn (highest grade
    first, cycling when there are fewer positives than pairs). A query yields
    min(pairs_per_query, number of negatives) pairs. Raises NoNegativesError when no
    training query has a negative.

    Out: the ``preference pairs`` table (query_id, prompt, chosen, rejected, chosen_doc_id,
    rejected_doc_id). ``prompt`` is ``prompts.document_prompt(tokenizer, query)``; chosen and
    rejected are ``prompts.document_text`` of the documents.
    """
    rows = []
    for query in _training_candidates(queries, qrels, run, train_query_ids, relevance_threshold, seed, unjudged_negatives):
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


def query_examples(
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    run: pd.DataFrame,
    train_query_ids: Sequence[str],
    *,
    template: str,
    max_positives_per_query: int,
    relevance_threshold: int,
    seed: int,
) -> pd.DataFrame:
    """Query-likelihood examples (``qlm_sft``): a relevant document's prompt -> the query.

    In: as for ``sft_examples`` (no tokenizer: the template is plain text, no chat
    template) and ``template``, a ``models.scoring.likelihood`` template holding
    ``{document}``. Per training query, up to ``max_positives_per_query`` relevant
    documents (highest grade first, ties in seeded order), one row each; queries without a
    relevant document yield none; negatives are not used.

    Out: (query_id, doc_id, document, prompt, completion), rows in ``train_query_ids``
    order. ``document`` is ``prompts.document_text``; ``prompt`` the template with it
    filled in; ``completion`` " " + the query, the text the scorer reads after the prompt
    (TRL appends the EOS and trains on the completion only).
    """
    prompts.check_template(template)
    candidates = _training_candidates(
        queries, qrels, run, train_query_ids, relevance_threshold, seed, unjudged_negatives=False, require_negatives=False
    )
    rows = [(query.query_id, query.query, doc_id) for query in candidates for doc_id in query.positives[:max_positives_per_query]]
    texts = _document_texts(corpus, {doc_id for _, _, doc_id in rows})
    return pd.DataFrame(
        [
            (query_id, doc_id, texts[doc_id], prompts.qlm_prompt(template, texts[doc_id]), " " + query)
            for query_id, query, doc_id in rows
        ],
        columns=QUERY_COLUMNS,
    )


def lce_groups(
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    run: pd.DataFrame,
    train_query_ids: Sequence[str],
    *,
    negatives_per_group: int,
    max_positives_per_query: int,
    relevance_threshold: int,
    seed: int,
    unjudged_negatives: bool,
) -> pd.DataFrame:
    """Training groups of localized contrastive estimation (``qlm_lce``): a relevant document and its query's negatives.

    In: as for ``sft_examples`` (no tokenizer: the query-likelihood template is applied by
    the trainer, which tokenizes as the qlm scorer does). Per training query, up to
    ``max_positives_per_query`` relevant documents (highest grade first, ties in seeded
    order), one group each: the relevant document, then the query's first
    ``negatives_per_group`` negatives in the order of the module docstring, i.e. its judged
    non-relevant documents first (those in its BM25 run by rank, then the others by doc_id),
    then, with ``unjudged_negatives``, its unjudged BM25 candidates by rank. A document graded
    above 0 for any query is never a negative. Every group of a query holds the same
    negatives (the hardest); a query with fewer negatives gives smaller groups, one without
    any gives none (a group of one contrasts nothing). Raises NoNegativesError when no
    training query has a negative.

    Out: one row per group member, (group, position, query_id, doc_id, query, document,
    source) = ``GROUP_COLUMNS``: ``group`` numbers the groups 0, 1, ... in
    ``train_query_ids`` order; ``position`` 0 is the relevant document, 1.. the negatives in
    order; ``query`` the query's text; ``document`` ``prompts.document_text``; ``source`` is
    ``RELEVANT``, ``JUDGED_NON_RELEVANT`` or ``UNJUDGED``. Rows are sorted by (group, position).
    """
    if negatives_per_group < 1:
        raise ValueError(f"a group needs at least one negative, got negatives_per_group={negatives_per_group}")
    judged = set(zip(qrels.query_id, qrels.doc_id))
    rows, group = [], 0
    for query in _training_candidates(queries, qrels, run, train_query_ids, relevance_threshold, seed, unjudged_negatives):
        negatives = query.negatives[:negatives_per_group]
        if not negatives:
            continue
        sources = [JUDGED_NON_RELEVANT if (query.query_id, doc_id) in judged else UNJUDGED for doc_id in negatives]
        for positive in query.positives[:max_positives_per_query]:
            members = [(positive, RELEVANT)] + list(zip(negatives, sources))
            rows += [(group, position, query.query_id, doc_id, query.query, source) for position, (doc_id, source) in enumerate(members)]
            group += 1
    texts = _document_texts(corpus, {row[3] for row in rows})
    return pd.DataFrame(
        [(group, position, query_id, doc_id, query, texts[doc_id], source) for group, position, query_id, doc_id, query, source in rows],
        columns=GROUP_COLUMNS,
    ).astype({"group": "int64", "position": "int64"})


def answer_pairs(sft_examples: pd.DataFrame) -> pd.DataFrame:
    """The ``dpo`` method's pairs: each pointwise example with chosen = its correct answer, rejected = the other.

    In: an ``sft examples`` table. Out: a ``preference pairs`` table, one row per example in
    the same order, with chosen_doc_id = rejected_doc_id = the example's doc_id (both answers
    are about the same document). The wrong answer is the one the table gives the other label.
    """
    relevant = sft_examples.label.astype(bool).to_numpy()
    answers = dict(zip(relevant, sft_examples.completion))
    if len(answers) < 2:
        raise ValueError("answer pairs need examples of both labels, to know both answers")
    yes, no = answers[True], answers[False]
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


def negative_summary(table: pd.DataFrame, qrels: pd.DataFrame, train_query_ids: Sequence[str], relevance_threshold: int) -> dict[str, int]:
    """Where the negatives of a training table come from, for the log.

    In: an ``sft examples`` table (negatives: label 0) or a ``preference pairs`` table
    (negatives: rejected_doc_id), the qrels, the training query ids and the relevance threshold.
    Out: ``queries`` (distinct training queries), ``queries_without_positive`` (they yield no
    example), ``queries_without_negative`` (with a positive, but no negative in ``table``),
    ``judged_non_relevant`` and ``unjudged`` (negative rows whose (query, document) is / is not
    in the qrels).
    """
    if "label" in table.columns:
        negatives = table.loc[table.label == 0, ["query_id", "doc_id"]]
    else:
        negatives = table[["query_id", "rejected_doc_id"]].set_axis(["query_id", "doc_id"], axis=1)
    judged = negatives.merge(qrels[["query_id", "doc_id"]].drop_duplicates(), how="left", indicator=True)["_merge"] == "both"
    queries = set(train_query_ids)
    with_positive = set(qrels.query_id[(qrels.relevance >= relevance_threshold) & qrels.query_id.isin(queries)])
    return {
        "queries": len(queries),
        "queries_without_positive": len(queries - with_positive),
        "queries_without_negative": len(with_positive - set(negatives.query_id)),
        "judged_non_relevant": int(judged.sum()),
        "unjudged": int((~judged).sum()),
    }
