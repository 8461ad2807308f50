"""Word-level SHAP attributions of a scorer's own score f(query, document).

The game: the players are the words of the query followed by the words of the document
(see ``words``); a coalition is worth the score of the pair made of its words, the other
words being *removed*. Removal rather than a mask token: a causal LM reads "glacier lost
mass" naturally, while "... lost ..." or "[MASK]" is text it never saw in training whose
own effect would leak into the attributions; the empty coalition is the well-defined pair
("", ""). The attribution of a word is its Shapley value, so the attributions of a pair sum
to f(query, document) - f("", "").

The estimator is shap's ``PermutationExplainer`` (antithetic permutations, no hierarchy):
one permutation costs 2n + 1 evaluations for n words and is exact for scores with at most
pairwise word interactions; more permutations reduce the error for the rest.

Batching. A permutation's masks depend only on the random permutation, never on model
outputs, so each pair is explained in two passes with the same seed: the first records
every masked (query, document) text shap asks for, the texts of a whole chunk of pairs are
scored in *one* ``score_pairs`` call (through the score cache, so repeated texts and texts
seen before cost nothing), and the second pass reads the scores back from the cache.
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import shap
from tqdm.auto import tqdm

from rerank_audit.explain.score_cache import ScoreCache, cached_scores
from rerank_audit.explain.words import join_kept, split_words, word_segments
from rerank_audit.models.scorer import Scorer

PARTS = ("query", "document")
_DTYPES = {"query_id": object, "doc_id": object, "part": object, "position": "int64", "token": object, "attribution": "float64"}
ATTRIBUTION_COLUMNS = list(_DTYPES)


class PairWordMasker(shap.maskers.Masker):
    """A shap masker over the joint words of one (query, document) pair; masked words are removed.

    Called by shap as ``masker(mask, query, document)`` with a boolean mask over the query
    words followed by the document words; returns one masked query and one masked document.
    """

    clustering = None  # plain Shapley values: no hierarchy between words
    immutable_outputs = True

    def __init__(self) -> None:
        self._pair: tuple[str, str] | None = None
        self._segments: tuple[list[str], list[str]] = ([], [])

    def _split(self, query: str, document: str) -> tuple[list[str], list[str]]:
        if self._pair != (query, document):
            self._pair, self._segments = (query, document), (word_segments(query), word_segments(document))
        return self._segments

    def __call__(self, mask: np.ndarray, query: str, document: str) -> tuple[np.ndarray, np.ndarray]:
        query_words, document_words = self._split(query, document)
        mask = self._standardize_mask(mask, query, document)
        split = len(query_words)
        masked_query = join_kept(query_words, mask[:split])
        masked_document = join_kept(document_words, mask[split:])
        return np.array([masked_query], dtype=object), np.array([masked_document], dtype=object)

    def shape(self, query: str, document: str) -> tuple[int, int]:
        query_words, document_words = self._split(query, document)
        return 1, len(query_words) + len(document_words)

    def mask_shapes(self, query: str, document: str) -> list[tuple[int]]:
        query_words, document_words = self._split(query, document)
        return [(len(query_words),), (len(document_words),)]

    def feature_names(self, query: str, document: str) -> list[list[str]]:
        return [split_words(query), split_words(document)]


def pair_seed(seed: int, query: str, document: str) -> int:
    """The permutation seed of one pair: fixed by ``seed`` and the texts, not by the pair's position."""
    text_hash = zlib.crc32(f"{query}\x00{document}".encode("utf-8"))
    return int(np.random.SeedSequence([seed, text_hash]).generate_state(1)[0])


def _shapley_values(
    model: Callable[[np.ndarray, np.ndarray], np.ndarray], query: str, document: str, max_evals: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """shap's permutation estimate for one pair: (query word values, document word values)."""
    masker = PairWordMasker()
    n_words = masker.shape(query, document)[1]
    if n_words == 0:  # nothing to attribute (and shap cannot build a game without players)
        return np.zeros(0), np.zeros(0)
    evals = max(max_evals, 2 * n_words + 1)  # shap needs one full antithetic permutation at least
    state = np.random.get_state()  # shap seeds numpy's global generator; leave it as we found it
    try:
        explainer = shap.explainers.Permutation(model, masker, seed=pair_seed(seed, query, document))
        query_explanation, document_explanation = explainer([query], [document], max_evals=evals, batch_size=evals, silent=True)
    finally:
        np.random.set_state(state)
    return np.asarray(query_explanation.values[0], dtype=np.float64), np.asarray(document_explanation.values[0], dtype=np.float64)


def _recording_model(recorded: list[tuple[str, str]]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def model(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
        recorded.extend(zip(queries, documents))
        return np.zeros(len(queries))

    return model


def _cache_model(cache: ScoreCache) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def model(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
        try:
            return np.fromiter((cache[(q, d)] for q, d in zip(queries, documents)), dtype=np.float64, count=len(queries))
        except KeyError as missing:
            raise RuntimeError(f"shap asked for a masked pair its recording pass never saw: {missing}") from missing

    return model


def explain_pairs(
    scorer: Scorer,
    queries: Sequence[str],
    documents: Sequence[str],
    *,
    max_evals: int,
    seed: int,
    cache: ScoreCache | None = None,
    batch_size: int = 16,
    query_ids: Sequence[str] | None = None,
    doc_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """SHAP attributions of every word of each (query, document) pair to ``scorer``'s score.

    ``max_evals``: evaluations per pair requested from shap; the explainer runs
    max_evals // (2n + 1) antithetic permutations for a pair of n words, at least one.
    ``seed``: permutations are drawn from (seed, pair text), so a pair gets the same
    attributions whatever else is explained with it. ``cache``: a score cache of this
    scorer (see ``score_cache``) reused and filled; pass the same dict to ``faithfulness``.
    ``batch_size``: pairs whose masked texts go to the scorer in one ``score_pairs`` call.
    ``query_ids`` / ``doc_ids``: identifiers of the pairs (default: the pair index as str).

    Returns one row per word: query_id, doc_id, part ("query" | "document"), position
    (word index within its part), token (the word), attribution (float64, score units).
    """
    if len(queries) != len(documents):
        raise ValueError(f"{len(queries)} queries but {len(documents)} documents")
    if max_evals < 1 or batch_size < 1:
        raise ValueError(f"max_evals and batch_size must be positive, got {max_evals} and {batch_size}")
    query_ids = [str(i) for i in range(len(queries))] if query_ids is None else list(query_ids)
    doc_ids = [str(i) for i in range(len(documents))] if doc_ids is None else list(doc_ids)
    cache = {} if cache is None else cache
    frames = []
    with tqdm(total=len(queries), desc="SHAP attributions", unit="pair") as progress:
        for start in range(0, len(queries), batch_size):
            chunk = range(start, min(start + batch_size, len(queries)))
            recorded: list[tuple[str, str]] = []
            for i in chunk:
                _shapley_values(_recording_model(recorded), queries[i], documents[i], max_evals, seed)
            cached_scores(scorer, [q for q, _ in recorded], [d for _, d in recorded], cache)
            for i in chunk:
                values = _shapley_values(_cache_model(cache), queries[i], documents[i], max_evals, seed)
                frames.append(_pair_frame(query_ids[i], doc_ids[i], queries[i], documents[i], values))
            progress.update(len(chunk))
    empty = pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in _DTYPES.items()})
    return pd.concat([empty, *frames], ignore_index=True).astype(_DTYPES)



def _pair_frame(query_id: str, doc_id: str, query: str, document: str, values: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    tokens = [split_words(query), split_words(document)]
    return pd.DataFrame(
        {
            "query_id": query_id,
            "doc_id": doc_id,
            "part": [part for part, words in zip(PARTS, tokens) for _ in words],
            "position": np.concatenate([np.arange(len(words), dtype=np.int64) for words in tokens]),
            "token": tokens[0] + tokens[1],
            "attribution": np.concatenate(values),
        }
    ).astype(_DTYPES)


def top_keywords(attributions: pd.DataFrame, k: int, parts: Sequence[str] = PARTS) -> pd.DataFrame:
    """The ``k`` words of each (query_id, doc_id) with the largest |attribution|, sign kept.

    ``attributions`` as returned by ``explain_pairs`` (extra columns such as method are
    kept); ``parts`` restricts the candidates (e.g. ``("document",)``). Rows come grouped by
    pair in order of first appearance, most influential first; ties keep input order.
    """
    frame = attributions[attributions.part.isin(parts)].reset_index(drop=True)
    pair = frame.groupby(["query_id", "doc_id"], sort=False).ngroup().to_numpy()
    order = np.lexsort((np.arange(len(frame)), -frame.attribution.abs().to_numpy(), pair))
    return frame.iloc[order].groupby(["query_id", "doc_id"], sort=False).head(k).reset_index(drop=True)
