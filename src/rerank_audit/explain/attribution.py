"""Word-level SHAP attributions of a scorer's own score f(query, document).

The game: the players are the words of the query followed by the words of the document
(see ``words``); a coalition is worth the score of the pair made of its words, the other
words being *removed*. Removal rather than a mask token: a causal LM reads "glacier lost
mass" naturally, while "... lost ..." or "[MASK]" is text it never saw in training whose
own effect would leak into the attributions; the empty coalition is the well-defined pair
("", "").

The attribution of a word is its *Owen value* for a hierarchy of the words, as shap's
``PartitionExplainer`` defines it: the query and the document are the two top groups, and
each group splits into its first and second half, recursively, down to single words
(text structure, like the hierarchy shap's Text masker builds). A word's Owen value
averages its marginal contribution over its ancestors' sibling groups being present or
absent (each with probability 1/2); the values of a pair sum to f(query, document) - f("", "").

Players. ``players="pair"`` (above) explains the score of the pair: the query's words are
players too, and a document word's value averages its effect with the query present and with
it absent. ``players="document"`` explains the re-ranker's *decision*, the order of one
query's candidates: the query is the same for all of them, so it stays whole in every
coalition and only the document's words are players (the game v(S) = f(query, S); the values
sum to f(query, document) - f(query, "")); ``exact_levels`` then counts from the document's
top, so at level 0 it costs about 2n evaluations for n document words, half of what level 1
of the pair game costs; the query is whole in every removal the faithfulness measures make,
as in this game (with ``siblings="present"``, below, the rest of the document too).

Siblings below the exact levels. A word's value there is read in one context, its
ancestors' sibling groups either all *absent* (``siblings="absent"``, shap's
``fixed_context=0``: a word is valued as it is added to little else) or all *present*
(``"present"``, ``fixed_context=1``: a word is valued as it is removed from the rest of its
group, what a deletion from the whole text does; the interaction a split leaves is taken back
evenly from its words, so the values stay efficient). Exact levels average both, so the
choice matters only below them, and most at level 0.

Exact Owen values cost about n² evaluations for n words (``owen_values``, shap's
``fixed_context=None`` with an unlimited budget: the bench's reference). ``explain_pairs``
keeps both contexts in the top ``exact_levels`` levels of the hierarchy only: for every
group at that depth and every presence pattern of its ancestors' siblings, shap's
``PartitionExplainer`` with a fixed context explains the group's words (below that depth,
siblings absent or present, see above: 2 evaluations per inner node), and the patterns are
averaged. So
the cost is about 2^levels · 2n evaluations, the values stay efficient (they sum as above),
the query–document interaction is split by the exact rule from ``exact_levels=1`` on, and
deep enough levels give the exact Owen values. ``max_evaluations`` caps the model
evaluations (distinct masked pairs) of each explanation instead: a pair gets the deepest
level up to ``exact_levels`` whose evaluations fit, so short pairs can be explained exactly
while long ones stay affordable (level 0, about 2n evaluations, is the floor).

Batching. With the whole tree expanded, the masks shap asks for depend only on the
hierarchy, never on model outputs, so each pair is explained in two passes: the first
records every masked (query, document) text, the texts of a whole chunk of pairs are
scored in *one* ``score_pairs`` call (through the score cache, so repeated texts and texts
seen before cost nothing), and the second pass reads the scores back from the cache.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import shap
from tqdm.auto import tqdm

from rerank_audit.explain.score_cache import PAIRS_PER_CALL, ScoreCache, cached_scores
from rerank_audit.text.words import join_kept, split_words, word_segments
from rerank_audit.models.scorer import Scorer

PARTS = ("query", "document")
PLAYERS = ("pair", "document")  # whose words are players: the pair's, or the document's with the query kept
SIBLINGS = ("absent", "present")  # the one context below the exact levels: shap's fixed_context 0 or 1
_DTYPES = {"query_id": object, "doc_id": object, "part": object, "position": "int64", "token": object, "attribution": "float64"}
ATTRIBUTION_COLUMNS = list(_DTYPES)
PairModel = Callable[[np.ndarray, np.ndarray], np.ndarray]

logger = logging.getLogger(__name__)


class WordHierarchy:
    """The words of one pair and their hierarchy: query | document, then halves down to words.

    Word indices run over the query words followed by the document words; a group is a
    contiguous span [start, stop) of them.
    """

    def __init__(self, query: str, document: str) -> None:
        self.query_segments, self.document_segments = word_segments(query), word_segments(document)
        self.n_query = len(self.query_segments)
        self.n_words = self.n_query + len(self.document_segments)

    def split(self, start: int, stop: int) -> int:
        """Where the group [start, stop) splits: between query and document, else in half."""
        return self.n_query if start < self.n_query < stop else start + (stop - start) // 2

    def players_span(self, players: str) -> tuple[int, int]:
        """The [start, stop) of the words that are players: all of them, or the document's."""
        if players not in PLAYERS:
            raise ValueError(f"unknown players {players!r}; choose one of {PLAYERS}")
        return (0 if players == "pair" else self.n_query), self.n_words

    def kept_context(self, players: str) -> np.ndarray:
        """The words present in every coalition: none, or the query's when only the document's words play."""
        kept = np.zeros(self.n_words, dtype=bool)
        kept[: self.players_span(players)[0]] = True
        return kept

    def depth(self, start: int = 0, stop: int | None = None) -> int:
        """Levels of inner nodes above the deepest word of [start, stop) (0 for a single word)."""
        stop = self.n_words if stop is None else stop
        if stop - start <= 1:
            return 0
        mid = self.split(start, stop)
        return 1 + max(self.depth(start, mid), self.depth(mid, stop))

    def linkage(self, start: int, stop: int) -> np.ndarray:
        """The hierarchy of the words in [start, stop) as shap's clustering matrix (scipy linkage rows)."""
        rows: list[list[float]] = []
        size = stop - start
        if size < 2:
            return np.zeros((0, 4))

        def node(lo: int, hi: int) -> int:
            if hi - lo == 1:
                return lo - start
            mid = self.split(lo, hi)
            left, right = node(lo, mid), node(mid, hi)
            rows.append([left, right, float(hi - lo), float(hi - lo)])
            return size + len(rows) - 1

        node(start, stop)
        return np.array(rows, dtype=np.float64).reshape(-1, 4)

    def texts(self, keep: np.ndarray) -> tuple[str, str]:
        """The (query, document) made of the words whose ``keep`` flag is set."""
        return join_kept(self.query_segments, keep[: self.n_query]), join_kept(self.document_segments, keep[self.n_query :])

    def contexts(self, exact_levels: int, players: str = "pair") -> Iterator[tuple[int, int, list[np.ndarray]]]:
        """(start, stop, contexts) of every group at depth ``exact_levels`` (or a shallower single word)
        of the players' tree (``players``: see the module docstring).

        ``contexts`` are the 2^depth presence patterns of the group's ancestors' siblings, as
        boolean masks over all words (the words that are not players always present); an Owen
        value averages over them with equal weight.
        """

        def visit(start: int, stop: int, depth: int, contexts: list[np.ndarray]) -> Iterator[tuple[int, int, list[np.ndarray]]]:
            if depth == exact_levels or stop - start == 1:
                yield start, stop, contexts
                return
            mid = self.split(start, stop)
            for (lo, hi), (sib_lo, sib_hi) in (((start, mid), (mid, stop)), ((mid, stop), (start, mid))):
                with_sibling = []
                for context in contexts:
                    present = context.copy()
                    present[sib_lo:sib_hi] = True
                    with_sibling.append(present)
                yield from visit(lo, hi, depth + 1, contexts + with_sibling)

        start, stop = self.players_span(players)
        if stop > start:
            yield from visit(start, stop, 0, [self.kept_context(players)])


class GroupMasker(shap.maskers.Masker):
    """A shap masker whose players are the words of one group; the ``context`` words are always kept.

    Masked words are removed. Called by shap as ``masker(mask, key)`` (``key`` is a
    placeholder row: the masker holds its pair); returns one masked query and one masked
    document. ``clustering`` is the group's part of the word hierarchy.
    """

    immutable_outputs = True

    def __init__(self, words: WordHierarchy, start: int, stop: int, context: np.ndarray) -> None:
        self.words, self.start, self.stop, self.context = words, start, stop, context
        self.clustering = words.linkage(start, stop)

    def __call__(self, mask: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
        keep = self.context.copy()
        keep[self.start : self.stop] = self._standardize_mask(mask, key)
        query, document = self.words.texts(keep)
        return np.array([query], dtype=object), np.array([document], dtype=object)

    def shape(self, key: str) -> tuple[int, int]:
        return 1, self.stop - self.start

    def mask_shapes(self, key: str) -> list[tuple[int]]:
        return [(self.stop - self.start,)]

    def feature_names(self, key: str) -> list[list[str]]:
        segments = self.words.query_segments + self.words.document_segments
        return [[segment.rstrip() for segment in segments[self.start : self.stop]]]


def _partition_values(model: PairModel, masker: GroupMasker, fixed_context: int | None, max_evals: int) -> np.ndarray:
    """shap's PartitionExplainer on one group game: the values of the group's words."""
    size = masker.stop - masker.start
    if size == 0:
        return np.zeros(0)
    if size == 1:  # shap needs two players; a single word's value is its marginal contribution
        with_word = masker.context.copy()
        with_word[masker.start] = True
        queries, documents = zip(masker.words.texts(masker.context), masker.words.texts(with_word))
        scores = model(np.array(queries, dtype=object), np.array(documents, dtype=object))
        return np.array([scores[1] - scores[0]])
    state = np.random.get_state()  # shap breaks priority ties with numpy's global generator
    try:
        explanation = shap.explainers.Partition(model, masker)(
            ["pair"], max_evals=max_evals, fixed_context=fixed_context, batch_size=max_evals, silent=True
        )
    finally:
        np.random.set_state(state)
    return np.asarray(explanation.values[0], dtype=np.float64)


def _owen_estimate(model: PairModel, words: WordHierarchy, exact_levels: int, players: str = "pair", siblings: str = "absent") -> np.ndarray:
    """The players' word values (0 for the others): both contexts in the top ``exact_levels`` levels, ``siblings``
    absent or present below (shap's fixed_context 0 or 1, whole tree expanded: 2 evaluations per inner node and both ends)."""
    values = np.zeros(words.n_words)
    fixed_context = SIBLINGS.index(siblings)
    for start, stop, contexts in words.contexts(exact_levels, players):
        for context in contexts:
            masker = GroupMasker(words, start, stop, context)
            values[start:stop] += _partition_values(model, masker, fixed_context, max_evals=2 * (stop - start) + 2) / len(contexts)
    return values


def levels_within(
    words: WordHierarchy, exact_levels: int, max_evaluations: int | None, players: str = "pair", siblings: str = "absent"
) -> int:
    """The deepest level up to ``exact_levels`` whose explanation of ``words`` (``players``, ``siblings``) asks
    for at most ``max_evaluations`` distinct masked pairs (no cap: ``exact_levels``); never below 0."""
    if max_evaluations is None:
        return exact_levels
    fitting = 0
    for levels in range(1, min(exact_levels, words.depth(*words.players_span(players))) + 1):  # deeper than the tree changes nothing
        recorded: list[tuple[str, str]] = []
        _owen_estimate(_recording_model(recorded), words, levels, players, siblings)
        if len(set(recorded)) > max_evaluations:
            break
        fitting = levels
    return fitting


def _recording_model(recorded: list[tuple[str, str]]) -> PairModel:
    def model(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
        recorded.extend(zip(queries, documents))
        return np.zeros(len(queries))

    return model


def _cache_model(cache: ScoreCache) -> PairModel:
    def model(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
        try:
            return np.fromiter((cache[(q, d)] for q, d in zip(queries, documents)), dtype=np.float64, count=len(queries))
        except KeyError as missing:
            raise RuntimeError(f"shap asked for a masked pair its recording pass never saw: {missing}") from missing

    return model


def _scored_once(scorer: Scorer, cache: ScoreCache, explain: Callable[[PairModel], list[np.ndarray]]) -> list[np.ndarray]:
    """``explain(model)`` run twice: recording the masked pairs it asks for, which are scored in
    one ``score_pairs`` call through ``cache``; then reading their scores back from the cache."""
    recorded: list[tuple[str, str]] = []
    explain(_recording_model(recorded))
    cached_scores(scorer, [q for q, _ in recorded], [d for _, d in recorded], cache)
    return explain(_cache_model(cache))


def owen_values(scorer: Scorer, query: str, document: str, cache: ScoreCache | None = None, players: str = "pair") -> np.ndarray:
    """Exact Owen values of the players' words (``players="pair"``: query words first, then the
    document's; ``"document"``: the document's, the query kept): shap's PartitionExplainer, both
    contexts at every node, the whole tree expanded. About n² evaluations: a reference."""
    words = WordHierarchy(query, document)
    masker = GroupMasker(words, *words.players_span(players), words.kept_context(players))

    def explain(model: PairModel) -> list[np.ndarray]:
        return [_partition_values(model, masker, fixed_context=None, max_evals=2**62)]

    return _scored_once(scorer, {} if cache is None else cache, explain)[0]


def explain_pairs(
    scorer: Scorer,
    queries: Sequence[str],
    documents: Sequence[str],
    *,
    exact_levels: int,
    max_evaluations: int | None = None,
    players: str = "pair",
    siblings: str = "absent",
    cache: ScoreCache | None = None,
    pairs_per_call: int = PAIRS_PER_CALL,
    query_ids: Sequence[str] | None = None,
    doc_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """SHAP (Owen) attributions of every word of each (query, document) pair to ``scorer``'s score.

    ``exact_levels``: levels at the top of the word hierarchy where both contexts are
    averaged (0: none, 1: the query–document level, ...); about 2^levels · 2n evaluations
    for n words. ``max_evaluations``: a cap on each pair's evaluations (distinct masked
    pairs); a pair then gets the deepest level up to ``exact_levels`` that fits, at least 0
    (None: ``exact_levels`` for every pair). ``players``: ``"pair"`` (the query's and the
    document's words) or ``"document"`` (the document's, the query kept whole; see the module
    docstring). ``siblings``: the one context below the exact levels, ``"absent"`` or
    ``"present"`` (module docstring). Deterministic: a pair gets the same
    attributions whatever else is explained with it. ``cache``: a score cache of this scorer (see ``score_cache``) reused
    and filled; pass the same dict to ``faithfulness``. ``pairs_per_call``: pairs whose masked
    texts go to the scorer in one ``score_pairs`` call. ``query_ids`` / ``doc_ids``:
    identifiers of the pairs (default: the pair index as str).

    Returns one row per player word: query_id, doc_id, part ("query" | "document"), position
    (word index within its part), token (the word), attribution (float64, score units).
    """
    if len(queries) != len(documents):
        raise ValueError(f"{len(queries)} queries but {len(documents)} documents")
    if players not in PLAYERS:
        raise ValueError(f"unknown players {players!r}; choose one of {PLAYERS}")
    if siblings not in SIBLINGS:
        raise ValueError(f"unknown siblings {siblings!r}; choose one of {SIBLINGS} (config explain.siblings)")
    if exact_levels < 0 or pairs_per_call < 1 or (max_evaluations is not None and max_evaluations < 1):
        raise ValueError(
            f"exact_levels must be >= 0, pairs_per_call and max_evaluations positive, got {exact_levels}, {pairs_per_call} and {max_evaluations}"
        )
    query_ids = [str(i) for i in range(len(queries))] if query_ids is None else list(query_ids)
    doc_ids = [str(i) for i in range(len(documents))] if doc_ids is None else list(doc_ids)
    cache = {} if cache is None else cache
    frames, used = [], Counter()
    with tqdm(total=len(queries), desc="SHAP attributions", unit="pair") as progress:
        for start in range(0, len(queries), pairs_per_call):
            chunk = range(start, min(start + pairs_per_call, len(queries)))
            hierarchies = [WordHierarchy(queries[i], documents[i]) for i in chunk]
            levels = [levels_within(words, exact_levels, max_evaluations, players, siblings) for words in hierarchies]
            used.update(levels)
            values = _scored_once(
                scorer, cache, lambda model: [_owen_estimate(model, words, depth, players, siblings) for words, depth in zip(hierarchies, levels)]
            )
            for i, pair_values in zip(chunk, values):
                frame = _pair_frame(query_ids[i], doc_ids[i], queries[i], documents[i], pair_values)
                frames.append(frame if players == "pair" else frame[frame.part == "document"])
            progress.update(len(chunk))
    if max_evaluations is not None:
        logger.info("pairs per exact level within %d evaluations each: %s", max_evaluations, dict(sorted(used.items())))
    empty = pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in _DTYPES.items()})
    return pd.concat([empty, *frames], ignore_index=True).astype(_DTYPES)


def _pair_frame(query_id: str, doc_id: str, query: str, document: str, values: np.ndarray) -> pd.DataFrame:
    tokens = [split_words(query), split_words(document)]
    return pd.DataFrame(
        {
            "query_id": query_id,
            "doc_id": doc_id,
            "part": [part for part, words in zip(PARTS, tokens) for _ in words],
            "position": np.concatenate([np.arange(len(words), dtype=np.int64) for words in tokens]),
            "token": tokens[0] + tokens[1],
            "attribution": values,
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
