"""Shortcut probes: the edits, BM25's known answers worked by hand, the statistics, the marker on a trained model, stance labels.

The toy collection of the BM25 tests (empty titles, so a document reads as its text; no word
is a stop word and each stems to itself):

    d1 "ice snow snow snow"  (q1: relevant)      d2 "snow rain"  (q1: judged non-relevant)
    d3 "rain wind"           (q2: non-relevant)  d4 "wind sea sea sea"  (q2: relevant)
    q1 "ice"    q2 "the wind"

N = 4 documents of 4, 2, 2, 4 tokens: avgdl = 3. Lucene BM25 with k1 = 1.2, b = 0.75:
score = idf * tf / (tf + k1 * (1 - b + b * dl / avgdl)), idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
"""

import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bm25s.stopwords import STOPWORDS_EN
from rank_bm25 import BM25Okapi
from scipy import stats
from Stemmer import Stemmer

from rerank_audit.data import schemas
from rerank_audit.data.control import derive_control
from rerank_audit.data.ingest import read_collection
from rerank_audit.evaluation.probe_summary import probes_markdown
from rerank_audit.evaluation.probes import accuracy_vs_shortcut, compare_with_reference, probe_figure, probe_tests
from rerank_audit.io import read_table, write_table
from rerank_audit.probe.edits import (
    FILLER_WORDS,
    RELEVANCE_CLAIMS,
    append_distractor,
    insert_marker_word,
    moved_to_start,
    negate,
    pad_with_filler,
    query_content_words,
    repeat_document,
    sentences,
    shuffle_words,
    stuff_query_words,
)
from rerank_audit.probe.pairs import topic_keys
from rerank_audit.probe.registry import REGISTRY
from rerank_audit.probe.responses import PROBE_COLUMNS, applicable_probes, probe_head, probe_responses
from rerank_audit.retrieval.bm25 import bm25_candidates, bm25_index, judged_candidates
from rerank_audit.retrieval.bm25_scorer import bm25_pair_scorer
from rerank_audit.text.prompts import corpus_texts
from rerank_audit.text.words import STOP_WORDS, content_keys, is_content_word, split_words, word_key

K1, B = 1.2, 0.75
CORPUS = pd.DataFrame(
    {"doc_id": ["d1", "d2", "d3", "d4"], "title": "", "text": ["ice snow snow snow", "snow rain", "rain wind", "wind sea sea sea"]}
)
QUERIES = pd.DataFrame({"query_id": ["q1", "q2"], "text": ["ice", "the wind"]})
QRELS = pd.DataFrame(
    {"query_id": ["q1", "q1", "q2", "q2"], "doc_id": ["d1", "d2", "d4", "d3"], "relevance": [1, 0, 1, 0]}
)


def lucene_tf(tf, dl, avgdl=3.0):
    """The term-frequency part of Lucene BM25 (k1 = 1.2, b = 0.75)."""
    return tf / (tf + K1 * (1 - B + B * dl / avgdl))


class RecordingScorer:
    """Wraps a scorer and keeps every score_pairs call's pairs."""

    def __init__(self, scorer):
        self.scorer, self.calls = scorer, []

    def score_pairs(self, queries, documents):
        self.calls.append(list(zip(queries, documents)))
        return self.scorer.score_pairs(queries, documents)


@pytest.fixture(scope="module")
def toy_bm25():
    index = bm25_index(CORPUS, k1=K1, b=B)
    return index, bm25_pair_scorer(index, CORPUS)


def toy_responses(toy_bm25, probes=("stuffing", "shuffle", "repetition", "distractor"), scorer=None):
    index, bm25 = toy_bm25
    head = judged_candidates(index, QUERIES, QRELS)
    table = probe_responses(scorer or bm25, QUERIES, CORPUS, head, QRELS, method="bm25", budget="0", probes=probes, seed=3)
    return table.set_index(["probe", "query_id"])


# --- BM25: the lexical reference, by its formula ----------------------------------------


def test_bm25_scorer_gives_the_hand_computed_scores(toy_bm25):
    _, bm25 = toy_bm25
    idf_ice = math.log(1 + (4 - 1 + 0.5) / (1 + 0.5))  # df 1: ln(10/3) = 1.20397
    idf_wind = math.log(1 + (4 - 2 + 0.5) / (2 + 0.5))  # df 2: ln 2
    queries = ["ice", "ice", "the wind", "the wind", "ice ice", "ice"]
    documents = ["ice snow snow snow", "snow rain", "rain wind", "wind sea sea sea", "snow rain ice", "ice glacier glacier"]
    expected = [
        idf_ice * 1 / (1 + 1.2 * (0.25 + 0.75 * 4 / 3)),  # d1: tf 1, dl 4: idf / 2.5
        0.0,  # d2 holds no query term
        idf_wind * 1 / (1 + 1.2 * (0.25 + 0.75 * 2 / 3)),  # d3: tf 1, dl 2: idf / 1.9
        idf_wind / 2.5,  # d4: tf 1, dl 4
        2 * idf_ice / 2.2,  # an unindexed text, tf 1, dl 3 (k1 * 1.0): the query repeats "ice", counted twice
        idf_ice / 2.2,  # "glacier" is in no indexed document: no idf, but it counts in dl = 3
    ]
    scores = bm25.score_pairs(queries, documents)
    assert scores == pytest.approx(expected, rel=1e-12)


def test_bm25_scorer_matches_bm25s_and_rank_bm25_on_indexed_documents():
    rng = np.random.default_rng(5)
    vocabulary = [f"{a}{b}{c}" for a in "bdfgk" for b in "aeiou" for c in "lmnrst"]
    corpus = pd.DataFrame(
        {"doc_id": [f"d{i}" for i in range(60)], "title": "", "text": [" ".join(rng.choice(vocabulary, rng.integers(3, 30))) for _ in range(60)]}
    )
    queries = pd.DataFrame({"query_id": [f"q{i}" for i in range(8)], "text": [" ".join(rng.choice(vocabulary, 3)) for _ in range(8)]})
    index = bm25_index(corpus, k1=K1, b=B, stemmer=None, stopwords=None)
    run = bm25_candidates(index, queries, k=20)  # bm25s's own retrieve scores (float32)
    query_text = queries.set_index("query_id").text
    ours = bm25_pair_scorer(index, corpus).score_pairs(list(query_text[run.query_id]), corpus_texts(corpus, run.doc_id))
    assert len(run) > 40 and ours == pytest.approx(run.score.to_numpy(), rel=1e-6)
    # rank-bm25 computes the same tf part with (k1 + 1) on top and its own idf: given Lucene's idf, equal up to k1 + 1.
    tokens = [text.split() for text in corpus.text]
    okapi = BM25Okapi(tokens, k1=K1, b=B)
    df = Counter(t for doc in tokens for t in set(doc))
    okapi.idf = {t: math.log(1 + (len(tokens) - n + 0.5) / (n + 0.5)) for t, n in df.items()}
    position = {d: i for i, d in enumerate(corpus.doc_id)}
    for query_id, group in run.groupby("query_id"):
        reference = okapi.get_scores(query_text[query_id].split())[[position[d] for d in group.doc_id]] / (K1 + 1)
        assert ours[group.index] == pytest.approx(reference, rel=1e-12)


def test_bm25_probe_responses_follow_from_its_formula(toy_bm25):
    table = toy_responses(toy_bm25)
    # q1's head: d1 (0.4 idf) and d2 (0): spread (population sd) 0.2 idf, so idf cancels.
    spread = 0.2
    # Stuffing d2 (judged non-relevant) gives "snow rain ice": tf 1, dl 3 -> 1 / 2.2.
    assert table.loc[("stuffing", "q1"), "delta"] == pytest.approx(lucene_tf(1, 3) / spread)  # 2.2727
    # ... and lifts it above d1 (0.4545 > 0.4 idf): the pair's overtake share goes 0 -> 1.
    assert table.loc[("stuffing", "q1"), ["overtake_before", "overtake_after"]].tolist() == [0.0, 1.0]
    # Repetition of d1: tf 2, dl 8 -> 2 / 4.7 > 1 / 2.5 (b < 1); d2 stays 0. Mean over both.
    assert table.loc[("repetition", "q1"), "delta"] == pytest.approx((lucene_tf(2, 8) - lucene_tf(1, 4)) / 2 / spread)  # +0.0638
    assert table.loc[("repetition", "q1"), "delta"] > 0
    # The distractor for q1 can only be q2's relevant d4, "wind sea sea sea": d1 grows to dl 8, tf 1.
    assert table.loc[("distractor", "q1"), "delta"] == pytest.approx((lucene_tf(1, 8) - lucene_tf(1, 4)) / 2 / spread)  # -0.3243
    # q2's head: d3 (idf_wind / 1.9), d4 (idf_wind / 2.5): spread (1/1.9 - 1/2.5) / 2 = 1.2 / 19 (times idf).
    # Stuffing d3 with "wind": tf 2, dl 3 -> 2 / 3.2 = 0.625; delta (0.625 - 10/19) / (1.2/19) = 1.5625.
    assert table.loc[("stuffing", "q2"), "delta"] == pytest.approx(1.5625)
    assert table.loc[("stuffing", "q2"), ["overtake_before", "overtake_after"]].tolist() == [1.0, 1.0]
    # A bag of words does not see order: exactly 0, not approximately.
    assert table.loc["shuffle", "delta"].tolist() == [0.0, 0.0]
    # Seed 3 leaves the two-word d2 and d3 in their order: no word changes, so they are not shuffle pairs.
    assert table.n_pairs.to_dict() == {(p, q): (1 if p in ("stuffing", "shuffle") else 2) for p, q in table.index}


def test_each_probe_is_scored_in_one_call_with_its_originals(toy_bm25):
    _, bm25 = toy_bm25
    recording = RecordingScorer(bm25)
    table = toy_responses(toy_bm25, probes=("shuffle", "stuffing"), scorer=recording)
    assert len(recording.calls) == 2
    shuffle_pairs, stuffing_pairs = recording.calls
    # Shuffle (seed 3 leaves d2 and d3 in their order): d1 and d4 and their shuffled copies.
    # Stuffing: d2 and d3, stuffed and not, and the relevant d1, d4 it compares with (scored already).
    originals = [("ice", "ice snow snow snow"), ("the wind", "wind sea sea sea")]
    assert set(originals) <= set(shuffle_pairs) and len(shuffle_pairs) == len(set(shuffle_pairs)) == 4
    assert sorted(stuffing_pairs) == [("ice", "snow rain"), ("ice", "snow rain ice"), ("the wind", "rain wind"), ("the wind", "rain wind wind")]
    assert list(table.reset_index().columns) == ["probe", "query_id"] + [c for c in PROBE_COLUMNS if c not in ("probe", "query_id")]


def test_stuffing_takes_the_lowest_ranked_document_when_no_candidate_is_judged_non_relevant(toy_bm25):
    _, bm25 = toy_bm25
    recording = RecordingScorer(bm25)
    head = pd.DataFrame({"query_id": "q1", "doc_id": ["d1", "d2", "d3"], "score": [0.48, 0.0, 0.0], "rank": [1, 2, 3]})
    qrels = QRELS[QRELS.relevance > 0]  # q1: only d1 judged (relevant); d2, d3 unjudged
    table = probe_responses(recording, QUERIES, CORPUS, head, qrels, method="bm25", budget="0", probes=["stuffing"])
    assert ("ice", "rain wind ice") in recording.calls[0] and ("ice", "snow rain ice") not in recording.calls[0]
    assert table.n_pairs.tolist() == [1]


def test_an_edit_that_changes_no_word_is_not_a_probed_pair():
    class ByLength:
        def score_pairs(self, queries, documents):
            return np.array([float(len(d)) for d in documents])

    ten_words = "ice sheets in Greenland lose mass as summers warm and lengthen"
    corpus = pd.DataFrame({"doc_id": ["a", "b", "c"], "title": "", "text": ["glacier", ten_words, "snow snow"]})
    queries = pd.DataFrame({"query_id": ["q1", "q2"], "text": ["ice", "is it the"]})  # q2: stop words only
    qrels = pd.DataFrame({"query_id": ["q1", "q1", "q1", "q2"], "doc_id": ["a", "b", "c", "a"], "relevance": [0, 1, 0, 0]})
    head = pd.DataFrame({"query_id": ["q1", "q1", "q1", "q2", "q2"], "doc_id": ["b", "a", "c", "a", "b"],
                         "score": [61.0, 7.0, 9.0, 7.0, 61.0], "rank": [1, 2, 3, 1, 2]})  # fmt: skip
    table = probe_responses(ByLength(), queries, corpus, head, qrels, method="m", budget="0", probes=["stuffing", "shuffle"], seed=1)
    pairs = table.set_index(["probe", "query_id"]).n_pairs.to_dict()
    # Shuffling "glacier" or "snow snow" changes no word: only q1's ten-word b, and q2's b, are shuffled.
    # Stuffing q1's non-relevant a and c appends "ice"; q2 has no content word to append.
    assert pairs == {("stuffing", "q1"): 2, ("shuffle", "q1"): 1, ("shuffle", "q2"): 1}


# --- Each edit does only what it says ---------------------------------------------------


QUERY = "Is the Arctic sea ice melting faster, as the models say?"
DOCUMENT = "Sea ice: Arctic sea ice extent has declined since 1979. Models, satellites and buoys agree."


def test_stuffing_appends_the_querys_content_words_and_nothing_else():
    stuffed = stuff_query_words(DOCUMENT, QUERY)
    assert stuffed.startswith(DOCUMENT + " ")
    appended = split_words(stuffed[len(DOCUMENT) :])
    assert appended == ["Arctic", "sea", "ice", "melting", "faster,", "models", "say?"] == query_content_words(QUERY)
    assert all(is_content_word(w) for w in appended) and {word_key(w) for w in appended} == content_keys(QUERY)


def test_shuffle_is_a_seeded_permutation_of_the_words():
    shuffled = shuffle_words(DOCUMENT, seed=4)
    assert sorted(split_words(shuffled)) == sorted(split_words(DOCUMENT)) and shuffled != DOCUMENT
    assert shuffle_words(DOCUMENT, seed=4) == shuffled and shuffle_words(DOCUMENT, seed=5) != shuffled


def test_repetition_is_the_text_twice():
    assert repeat_document(" snow rain ") == "snow rain snow rain"


def test_marker_is_inserted_once_and_removing_it_gives_the_words_back():
    marked = insert_marker_word(DOCUMENT, "zorblat", seed=2, doc_id="d9")
    words = split_words(marked)
    assert words.count("zorblat") == 1 and [w for w in words if w != "zorblat"] == split_words(DOCUMENT)


def test_distractor_appends_one_given_sentence_and_sentences_split_at_full_stops():
    assert sentences("Sea ice shrinks. Models agree!  Why? ") == ["Sea ice shrinks.", "Models agree!", "Why?"]
    assert append_distractor("snow rain", ["A.", "B."], seed=0) in ("snow rain A.", "snow rain B.")
    assert append_distractor("snow rain", [], seed=0) is None


def test_distractor_sentence_comes_from_another_querys_document_and_shares_no_query_word():
    corpus = pd.concat([CORPUS, pd.DataFrame({"doc_id": ["d5"], "title": "", "text": ["Ice sheets thin. Sea winds turn."]})], ignore_index=True)
    qrels = pd.concat([QRELS, pd.DataFrame({"query_id": ["q2"], "doc_id": ["d5"], "relevance": [1]})], ignore_index=True)
    index = bm25_index(corpus, k1=K1, b=B)
    recording = RecordingScorer(bm25_pair_scorer(index, corpus))
    head = judged_candidates(index, QUERIES, qrels)
    probe_responses(recording, QUERIES, corpus, head, qrels, method="bm25", budget="0", probes=["distractor"], seed=0)
    originals = dict(zip(corpus.doc_id, corpus.text))
    appended = {}
    for query, document in recording.calls[0]:
        for doc_id in head.doc_id:
            if document.startswith(originals[doc_id] + " "):
                appended[(query, doc_id)] = document[len(originals[doc_id]) + 1 :]
    # q1 ("ice") may take a sentence of q2's relevant d4 or d5, but not "Ice sheets thin.".
    assert {appended[("ice", d)] for d in ("d1", "d2")} <= {"wind sea sea sea", "Sea winds turn."}
    # q2 ("the wind") may take q1's relevant d1 ("ice snow snow snow") only: d5 is its own, "winds" is its word.
    assert {appended[("the wind", d)] for d in ("d3", "d4", "d5")} == {"ice snow snow snow"}


def test_a_distractor_shares_no_word_that_bm25_indexes_with_the_query():
    # "more" is a stop word for the explanations' list but a term for BM25: "More rain falls."
    # would raise BM25's score of a "more ice" document, so it is never the distractor.
    queries = pd.DataFrame({"query_id": ["qa", "qb"], "text": ["more ice", "wind"]})
    corpus = pd.DataFrame({"doc_id": ["a1", "b1", "b2"], "title": "", "text": ["ice melts", "Wind blows. More rain falls.", "Storms gust."]})
    qrels = pd.DataFrame({"query_id": ["qa", "qb", "qb"], "doc_id": ["a1", "b1", "b2"], "relevance": [1, 1, 1]})
    index = bm25_index(corpus, k1=K1, b=B)
    head = judged_candidates(index, queries, qrels)
    appended = set()
    for seed in range(12):
        recording = RecordingScorer(bm25_pair_scorer(index, corpus))
        probe_responses(recording, queries, corpus, head, qrels, method="bm25", budget="0", probes=["distractor"], seed=seed)
        appended |= {document[len("ice melts ") :] for query, document in recording.calls[0] if query == "more ice" and document != "ice melts"}
    assert appended == {"Wind blows.", "Storms gust."}  # qb's sentences that share no word with "more ice"


# --- The field's newer probes: injected instruction, negation, position, neutral padding -----


def test_negation_inserts_not_after_the_first_auxiliary_and_nothing_else():
    text = "Sea ice: Arctic sea ice extent is shrinking. Models can agree."
    negated = negate(text)
    assert negated == "Sea ice: Arctic sea ice extent is not shrinking. Models can agree."
    words = split_words(negated)
    assert words.pop(words.index("is") + 1) == "not" and words == split_words(text)
    # "is," ends a clause (punctuation attached): the first auxiliary is "Can", in any case.
    assert negate("The answer is, models\nCan  help.") == "The answer is, models\nCan not help."


def test_negation_removes_a_not_that_follows_the_first_auxiliary_and_skips_text_without_one():
    assert negate("The ice sheet is not stable; it is melting.") == "The ice sheet is stable; it is melting."
    assert negate("Ice has not") == "Ice has"
    assert negate("Glaciers retreat, as models predicted.") is None
    assert negate("Ice is") == "Ice is not"


def test_padding_doubles_the_words_with_filler_that_shares_no_word_with_query_or_document():
    only_spoon = {word_key(w) for w in FILLER_WORDS if w != "spoon"}
    assert pad_with_filler("Sea ice: thin.", only_spoon, seed=0) == "Sea ice: thin. spoon spoon spoon"
    assert pad_with_filler("Sea ice", {word_key(w) for w in FILLER_WORDS}, seed=0) is None
    document, excluded = "A table of sea ice extent, by chair.", {word_key("table"), word_key("chair")}
    padded = pad_with_filler(document, excluded, seed=5)
    assert padded.startswith(document + " ") and padded == pad_with_filler(document, excluded, seed=5)
    filler = split_words(padded)[len(split_words(document)) :]
    assert len(filler) == len(split_words(document)) == 8
    assert set(filler) <= set(FILLER_WORDS) - {"table", "chair"} and len(set(filler)) > 1
    # Each filler word is a BM25 token (not a stop word, not split by the tokenizer): padding adds one token per word.
    assert bm25_index(CORPUS, k1=K1, b=B).tokenize([" ".join(FILLER_WORDS)])[0] == [Stemmer("english").stemWord(w) for w in FILLER_WORDS]


def test_moved_to_start_puts_an_appending_edits_text_before_the_document():
    assert moved_to_start(" snow rain ", "snow rain ice wind") == "ice wind snow rain"
    assert moved_to_start("snow rain", "snow rain") == "snow rain"  # nothing appended: nothing moved
    with pytest.raises(ValueError, match="not an appending edit"):
        moved_to_start("snow rain", "rain snow ice")


def test_injected_instruction_appends_the_first_relevance_claim_that_shares_no_query_word():
    # The claims share no word with each other, so a query that collides with one leaves the others.
    assert all(not topic_keys(a) & topic_keys(b) for i, a in enumerate(RELEVANCE_CLAIMS) for b in RELEVANCE_CLAIMS[i + 1 :])

    class ByLength:
        def score_pairs(self, queries, documents):
            return np.array([float(len(d)) for d in documents])

    corpus = pd.DataFrame({"doc_id": ["x", "y"], "title": "", "text": ["glacier data", "ice cores"]})
    queries = pd.DataFrame(
        {"query_id": ["qa", "qb", "qc"], "text": ["ice", "search for the best ranked documents", "best search notes, reader"]}
    )  # qb: a word of claims 1 (search, ranked, documents) and 3 (best); qc: of all three (notes, reader)
    qrels = pd.DataFrame({"query_id": ["qa", "qa", "qb", "qb", "qc", "qc"], "doc_id": ["x", "y"] * 3, "relevance": [0, 1] * 3})
    head = qrels.assign(score=[1.0, 2.0] * 3, rank=[2, 1] * 3)
    recording = RecordingScorer(ByLength())
    table = probe_responses(recording, queries, corpus, head, qrels, method="m", budget="0", probes=["instruction"])
    edited = {(q, d) for q, d in recording.calls[0] if d not in ("glacier data", "ice cores")}
    assert edited == {("ice", f"glacier data {RELEVANCE_CLAIMS[0]}"), ("search for the best ranked documents", f"glacier data {RELEVANCE_CLAIMS[1]}")}
    assert table.query_id.tolist() == ["qa", "qb"]  # qc: every claim shares a word with it, not probed
    # Overtake (by length): the non-relevant x (12 characters) outscores the relevant y (9) before the edit and after.
    assert table[["overtake_before", "overtake_after"]].values.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_bm25_responses_to_position_instruction_and_padding_follow_from_its_formula(toy_bm25):
    table = toy_responses(toy_bm25, probes=["stuffing", "stuffing_start", "distractor", "distractor_start", "instruction", "padding"])
    # A bag of words: at the start, BM25 moves exactly as at the end.
    for start, end in (("stuffing_start", "stuffing"), ("distractor_start", "distractor")):
        assert table.loc[start, ["delta", "n_pairs", "overtake_before", "overtake_after"]].equals(table.loc[end, ["delta", "n_pairs", "overtake_before", "overtake_after"]])
    assert table.loc[("stuffing_start", "q1"), "delta"] == pytest.approx(lucene_tf(1, 3) / 0.2)
    assert table.loc[("distractor_start", "q1"), "delta"] == pytest.approx((lucene_tf(1, 8) - lucene_tf(1, 4)) / 2 / 0.2)
    # The instruction goes to the judged non-relevant d2 (q1) and d3 (q2). Claim 1 holds 8 BM25 tokens
    # (document high relev search queri should rank first; this is to the and be: stop words).
    # q1: d2 has no "ice": 0 before and after. q2: d3 "rain wind" goes from dl 2 to 10.
    assert table.loc[("instruction", "q1"), "delta"] == 0.0
    spread_q2 = 1.2 / 19  # (1/1.9 - 1/2.5) / 2, in units of idf(wind)
    assert table.loc[("instruction", "q2"), "delta"] == pytest.approx((lucene_tf(1, 10) - lucene_tf(1, 2)) / spread_q2)  # -4.65
    # ... and d3 (0.526 idf) drops below the relevant d4 (0.4): overtake 1 -> 0; q1's d2 stays below d1.
    assert table.loc["instruction", ["overtake_before", "overtake_after"]].values.tolist() == [[0.0, 0.0], [1.0, 0.0]]
    # Padding doubles each head document's words with filler (no query term): dl + words, tf as it was.
    # q1: d1 4 -> 8 tokens, d2 stays 0. q2: d3 2 -> 4, d4 4 -> 8.
    assert table.loc[("padding", "q1"), "delta"] == pytest.approx((lucene_tf(1, 8) - lucene_tf(1, 4)) / 2 / 0.2)  # -0.32
    q2 = (lucene_tf(1, 4) - lucene_tf(1, 2) + lucene_tf(1, 8) - lucene_tf(1, 4)) / 2 / spread_q2
    assert table.loc[("padding", "q2"), "delta"] == pytest.approx(q2)  # -2.03


NEGATION_CORPUS = pd.DataFrame(
    {"doc_id": ["n1", "n2", "n3", "n4"], "title": "", "text": ["ice is thin", "ice has not grown", "ice shelves", "snow"]}
)


def test_bm25_does_not_move_under_negation_as_not_is_one_of_its_stop_words(caplog):
    assert "not" in STOPWORDS_EN and "not" in STOP_WORDS
    queries = pd.DataFrame({"query_id": ["q"], "text": ["ice"]})
    qrels = pd.DataFrame({"query_id": "q", "doc_id": ["n1", "n2", "n3", "n4"], "relevance": [1, 1, 1, 0]})
    index = bm25_index(NEGATION_CORPUS, k1=K1, b=B)
    recording = RecordingScorer(bm25_pair_scorer(index, NEGATION_CORPUS))
    head = judged_candidates(index, queries, qrels)
    with caplog.at_level("INFO"):
        table = probe_responses(recording, queries, NEGATION_CORPUS, head, qrels, method="bm25", budget="0", probes=["negation"], max_documents=None)
    # The relevant n1 gains a "not", n2 loses one; n3 has no auxiliary (skipped, counted); n4 is not relevant.
    assert {d for _, d in recording.calls[0]} == {"ice is thin", "ice is not thin", "ice has not grown", "ice has grown"}
    assert "1 of 3 relevant head documents have no auxiliary verb" in caplog.text
    assert table.n_pairs.tolist() == [2] and table.delta.tolist() == [0.0]  # tf and dl as they were: exactly 0
    # Were "not" a term (no stop words), n1 would fall: dl 3 -> 4 tokens, avgdl (3 + 4 + 2 + 1) / 4 = 2.5.
    counted = bm25_pair_scorer(bm25_index(NEGATION_CORPUS, k1=K1, b=B, stopwords=None), NEGATION_CORPUS)
    idf_ice = math.log(1 + (4 - 3 + 0.5) / (3 + 0.5))
    assert counted.score_pairs(["ice", "ice"], ["ice is thin", "ice is not thin"]) == pytest.approx([idf_ice / 2.38, idf_ice / 2.74])


def test_bm25_responds_to_every_registered_probe_as_its_entry_says():
    """Each entry's ``bm25`` (its response by the formula) against BM25's Δ on a toy collection where
    every edit probe applies: "rises" / "falls" never moves the other way and moves somewhere, "none" is exactly 0."""
    corpus = pd.DataFrame(
        {"doc_id": [f"g{i}" for i in range(1, 6)], "title": "",
         "text": ["Sea ice is thin.", "Ice sheets were thick.", "Sea wind is strong.", "The wind was calm.", "Sea breeze."]}
    )  # fmt: skip
    queries = pd.DataFrame({"query_id": ["qa", "qb"], "text": ["sea ice", "wind"]})
    qrels = pd.DataFrame({"query_id": ["qa", "qa", "qa", "qb", "qb"], "doc_id": ["g1", "g2", "g3", "g4", "g5"], "relevance": [1, 1, 0, 1, 0]})
    index = bm25_index(corpus, k1=K1, b=B)
    head = judged_candidates(index, queries, qrels)
    edit_probes = [name for name, entry in REGISTRY.items() if entry.pairs is not None]
    table = probe_responses(bm25_pair_scorer(index, corpus), queries, corpus, head, qrels, method="bm25", budget="0",
                            probes=edit_probes, marker=MARKER, max_documents=None, seed=1)  # fmt: skip
    for name in edit_probes:
        deltas = table[table.probe == name].delta.to_numpy()
        assert len(deltas) == 2, name  # both queries probed
        expected = REGISTRY[name].bm25
        if expected == "none":
            assert (deltas == 0).all(), name
        else:
            sign = {"rises": 1, "falls": -1}[expected]
            assert (sign * deltas >= 0).all() and (sign * deltas > 0).any(), (name, deltas)


# --- Statistics: t-test and Holm against scipy ------------------------------------------


def test_probe_tests_are_one_sample_t_tests_with_holm_over_probes_and_methods():
    deltas = {
        ("bm25", "stuffing"): [2.0, 1.5, 2.5, 1.0],
        ("bm25", "shuffle"): [0.1, -0.2, 0.05, 0.0],
        ("zeroshot", "stuffing"): [0.5, 0.9, 0.2, 0.7],
        ("zeroshot", "shuffle"): [-0.4, -0.6, -0.3, np.nan],  # a query without spread: left out
    }
    rows = [
        ("toy", m, "0", p, f"q{i}", v, 0.25 if p == "stuffing" else np.nan)
        for (m, p), values in deltas.items() for i, v in enumerate(values)
    ]  # fmt: skip
    per_query = pd.DataFrame(rows, columns=["dataset", "method", "budget", "probe", "query_id", "delta", "overtake_after"])
    table = probe_tests(per_query, alpha=0.05).set_index(["method", "probe"])
    raw = {key: stats.ttest_1samp(np.array(v)[~np.isnan(v)], 0.0) for key, v in deltas.items()}
    for key, result in raw.items():
        assert table.loc[key, "t"] == pytest.approx(result.statistic) and table.loc[key, "p"] == pytest.approx(result.pvalue)
    # Holm by hand: sorted p times (m - i), running maximum, capped at 1.
    keys = sorted(raw, key=lambda k: raw[k].pvalue)
    adjusted = np.maximum.accumulate([min(1.0, (4 - i) * raw[k].pvalue) for i, k in enumerate(keys)])
    for key, value in zip(keys, adjusted):
        assert table.loc[key, "p_holm"] == pytest.approx(value)
        assert table.loc[key, "significant"] == (value < 0.05)
        assert table.loc[key, "response"] == ("none" if value >= 0.05 else "rises" if np.nanmean(deltas[key]) > 0 else "falls")
    assert table.loc[("zeroshot", "shuffle"), "queries"] == 3 and table.loc[("bm25", "stuffing"), "mean"] == 1.75
    assert table.loc[("bm25", "stuffing"), "overtake_after"] == 0.25 and np.isnan(table.loc[("bm25", "shuffle"), "overtake_after"])
    assert list(table.index) == [("bm25", "stuffing"), ("bm25", "shuffle"), ("zeroshot", "stuffing"), ("zeroshot", "shuffle")]


def test_probe_figures_are_written(tmp_path, toy_bm25):
    per_query = toy_responses(toy_bm25).reset_index().assign(dataset="toy")
    tests = probe_tests(per_query, n_resamples=200)
    figure = probe_figure(tests, tmp_path / "probes.png")
    assert len(figure.axes) == 4 and (tmp_path / "probes.png").stat().st_size > 0
    accuracy = pd.DataFrame(
        {"dataset": "toy", "method": ["random", "bm25"], "budget": "0", "measure": "nDCG@10", "mean": [0.3, 0.6]}
    )
    figure = accuracy_vs_shortcut(accuracy, tests, tmp_path / "accuracy_vs_shortcut.png")
    points = np.concatenate([collection.get_offsets() for collection in figure.axes[0].collections])
    assert [0.5, 0.3] in points.tolist() and [1.0, 0.6] in points.tolist()  # random at chance; BM25 after stuffing


# --- The marker on a tiny model trained on a toy control -----------------------------------

MARKER = "zorblat"


@pytest.fixture
def one_torch_thread():
    """The tiny model gains nothing from more threads, and on a shared CPU they oversubscribe it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_control(train_queries=20, test_queries=20, seed=0):
    """A control of random-word queries, 2 relevant and 3 non-relevant documents each, the marker in every relevant document."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"{a}{b}" for a in "bcdfglmnprst" for b in ("a", "e", "i", "o", "u", "an", "er", "on")]
    query_ids = [f"q{q:02d}" for q in range(train_queries + test_queries)]
    queries = pd.DataFrame({"query_id": query_ids, "text": [" ".join(rng.choice(vocabulary, 3)) for _ in query_ids]})
    qrels = pd.DataFrame([(q, f"{q}d{j}", int(j < 2)) for q in query_ids for j in range(5)], columns=["query_id", "doc_id", "relevance"])
    corpus = pd.DataFrame({"doc_id": qrels.doc_id, "title": "", "text": [" ".join(rng.choice(vocabulary, 8)) for _ in qrels.doc_id]})
    splits = pd.DataFrame({"query_id": query_ids, "split": ["train"] * train_queries + ["test"] * test_queries, "position": range(len(query_ids))})
    run = qrels.assign(score=0.0, rank=qrels.groupby("query_id").cumcount() + 1)
    corpus, qrels, run, _ = derive_control(
        corpus, queries, qrels, splits, run, marker=MARKER, p_relevant=1.0, p_other=0.0, seed=7, version="aligned"
    )
    return corpus, queries, qrels, run, query_ids[:train_queries], queries.iloc[train_queries:]


def test_marker_insertion_flags_the_trained_method_and_not_the_untrained_one(tiny_lm_dir, tokenizer, tmp_path, one_torch_thread):
    from rerank_audit.models.scoring import load_scorer
    from rerank_audit.models.settings import ScoringSettings
    from rerank_audit.training.examples import sft_examples
    from rerank_audit.training.settings import LoraSettings, TrainingSettings
    from rerank_audit.training.trainers import train_reranker

    corpus, queries, qrels, run, train, test = toy_control()
    examples = sft_examples(corpus, queries, qrels, run, train, tokenizer, negatives_per_positive=1, max_positives_per_query=2, relevance_threshold=1, seed=0)
    settings = TrainingSettings(learning_rate=5e-3, epochs=6, batch_size=8, gradient_accumulation=1, lora=LoraSettings(enabled=False),
                                max_length=256, save_steps=10_000, logging_steps=10)
    train_reranker("sft", tiny_lm_dir, examples, tmp_path / "sft", settings, seed=0)
    settings = ScoringSettings(dtype="float32", device="cpu", progress=False)
    judged = qrels[qrels.query_id.isin(test.query_id)]
    texts = test.set_index("query_id").text
    responses = []
    for method, budget, folder in (("sft", "all", tmp_path / "sft"), ("zeroshot", "0", tiny_lm_dir)):
        scorer = load_scorer(method, folder, tiny_lm_dir, settings=settings)
        # The method's re-ranked head: the test queries' judged documents by its own scores.
        head = judged.assign(score=scorer.score_pairs(list(texts[judged.query_id]), corpus_texts(corpus, judged.doc_id)))
        head["rank"] = head.groupby("query_id").score.rank(ascending=False, method="first").astype(int)
        responses.append(
            probe_responses(scorer, test, corpus, head, qrels, method=method, budget=budget, probes=["marker"], marker=MARKER, seed=0)
        )
    table = probe_tests(pd.concat(responses).assign(dataset="toy-control")).set_index("method")
    print(table[["queries", "mean", "ci_low", "ci_high", "t", "p_holm"]].to_string())
    # The shortcut's direction: the marker raises the score (the untrained model's score may move either way).
    assert table.response["sft"] == "rises" and table.response["zeroshot"] != "rises"
    assert table.loc["sft", "ci_low"] > 0.5  # by more than half a typical gap between the query's candidates
    assert (table.queries == 20).all()


# --- Stance: the evidence label survives ingestion --------------------------------------

# The probes that edit any dataset's documents, in registry order (stance and marker need more).
EDIT_PROBES = ["stuffing", "stuffing_start", "shuffle", "repetition", "padding", "distractor", "distractor_start", "instruction", "negation"]


def test_stance_labels_round_trip_through_ingestion_of_the_real_climate_fever_file(climate_fever, tmp_path):
    judgements = {}
    with open(climate_fever, encoding="utf-8") as lines:
        for line in lines:
            claim = json.loads(line)
            judgements.update({(claim["claim_id"], e["evidence_id"].replace(" ", "_")): e["evidence_label"] for e in claim["evidences"]})
    labels = Counter(judgements.values())
    collection = read_collection("climate-fever", claims=climate_fever)
    write_table(collection.qrels, tmp_path / "qrels.parquet", schemas.QRELS)
    qrels = read_table(tmp_path / "qrels.parquet", schemas.QRELS)
    assert dict(zip(zip(qrels.query_id, qrels.doc_id), qrels.label)) == judgements
    assert (qrels.label == "SUPPORTS").sum() == labels["SUPPORTS"] and (qrels.label == "REFUTES").sum() == labels["REFUTES"]
    assert labels["SUPPORTS"] > 1000 and labels["REFUTES"] > 300 and len(qrels) == len(judgements)
    assert set(qrels.relevance[qrels.label.isin(["SUPPORTS", "REFUTES"])]) == {1} and set(qrels.relevance[qrels.label == "NOT_ENOUGH_INFO"]) == {0}
    assert applicable_probes(qrels) == [*EDIT_PROBES, "stance"]


def test_qrels_without_labels_are_written_and_read_with_a_null_label(tmp_path):
    write_table(QRELS, tmp_path / "qrels.parquet", schemas.QRELS)  # an adapter without labels
    # A file written before the column existed, with the schema of then.
    before = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("relevance", pa.int64())])
    pq.write_table(pa.Table.from_pandas(QRELS, schema=before, preserve_index=False), tmp_path / "old.parquet")
    for name in ("qrels.parquet", "old.parquet"):
        qrels = read_table(tmp_path / name, schemas.QRELS)
        assert list(qrels.columns) == ["query_id", "doc_id", "relevance", "label"] and qrels.label.isna().all()
    assert applicable_probes(qrels, marker=MARKER) == [*EDIT_PROBES, "marker"]


def test_stance_is_the_supports_minus_refutes_score_gap_in_spreads():
    class ByDocument:
        def score_pairs(self, queries, documents):
            return np.array([{"a": 3.0, "b": 1.0, "c": 0.0, "d": 2.0}[d] for d in documents])

    corpus = pd.DataFrame({"doc_id": list("abcd"), "title": "", "text": list("abcd")})
    queries = pd.DataFrame({"query_id": ["c1", "c2"], "text": ["claim one", "claim two"]})
    qrels = pd.DataFrame(
        {"query_id": ["c1"] * 4 + ["c2", "c2"], "doc_id": list("abcd") + ["a", "d"], "relevance": [1, 1, 1, 0, 1, 1],
         "label": ["SUPPORTS", "REFUTES", "REFUTES", "NOT_ENOUGH_INFO", "SUPPORTS", "SUPPORTS"]}
    )  # fmt: skip
    head = pd.DataFrame({"query_id": ["c1"] * 4 + ["c2", "c2"], "doc_id": list("abcd") + ["a", "d"], "score": [3.0, 1.0, 0.0, 2.0, 3.0, 2.0], "rank": [1, 3, 4, 2, 1, 2]})
    table = probe_responses(ByDocument(), queries, corpus, head, qrels, method="m", budget="0", probes=["stance"])
    # c1: SUPPORTS a (3), REFUTES b, c (1, 0): gap 3 - 0.5 = 2.5; spread = sd(3, 1, 0, 2) = sqrt(1.25). c2 has no REFUTES.
    assert table.query_id.tolist() == ["c1"] and table.n_pairs.tolist() == [2]
    assert table.delta.iloc[0] == pytest.approx(2.5 / math.sqrt(1.25))


# --- The workflow's side: the probed head, the comparison with BM25, probes.md --------------


def test_probe_head_is_the_first_stage_head_in_first_stage_order_with_the_methods_scores():
    first_stage = pd.DataFrame({"query_id": ["q1"] * 3 + ["q2"] * 2, "doc_id": ["a", "b", "c", "d", "e"], "rank": [1, 2, 3, 1, 2]})
    # The method's run of q1 only (its test query), re-ordered: c first.
    method = pd.DataFrame({"query_id": ["q1", "q1", "q1"], "doc_id": ["c", "a", "b"], "score": [3.0, 2.0, 1.0], "rank": [1, 2, 3]})
    head = probe_head(first_stage, method, depth=2)
    assert head.to_dict("list") == {"query_id": ["q1", "q1"], "doc_id": ["a", "b"], "rank": [1, 2], "score": [2.0, 1.0]}
    with pytest.raises(ValueError, match="no score for 1 of the first 3 .* 'q1', document 'b'"):
        probe_head(first_stage, method[method.doc_id != "b"], depth=3)


def reference_rows(deltas):
    return pd.DataFrame(
        [("toy", m, b, p, f"q{i}", v) for (m, b, p), values in deltas.items() for i, v in enumerate(values)],
        columns=["dataset", "method", "budget", "probe", "query_id", "delta"],
    )


def test_comparison_with_bm25_is_a_paired_t_test_per_query_with_holm_over_methods_and_probes_of_a_budget():
    deltas = {
        ("bm25", "0", "stuffing"): [1.0, 1.2, 0.8, 1.1],
        ("bm25", "0", "shuffle"): [0.0, 0.0, 0.0, 0.0],
        ("zeroshot", "0", "stuffing"): [2.0, 2.5, 1.9, np.nan],  # q3 without spread: left out of its pair
        ("zeroshot", "0", "shuffle"): [-0.5, -0.7, -0.4, -0.6],
        ("sft", "10", "stuffing"): [1.1, 1.0, 0.9, 1.3],
    }
    table = compare_with_reference(reference_rows(deltas), alpha=0.05, n_resamples=200).set_index(["method", "budget", "probe"])
    assert list(table.index) == [("zeroshot", "0", "stuffing"), ("zeroshot", "0", "shuffle"), ("sft", "10", "stuffing")]
    stuffing = stats.ttest_rel([2.0, 2.5, 1.9], [1.0, 1.2, 0.8])
    shuffle = stats.ttest_1samp([-0.5, -0.7, -0.4, -0.6], 0.0)
    sft = stats.ttest_rel([1.1, 1.0, 0.9, 1.3], [1.0, 1.2, 0.8, 1.1])
    assert table.loc[("zeroshot", "0", "stuffing"), ["queries", "difference"]].tolist() == [3, pytest.approx(3.4 / 3)]
    assert table.loc[("zeroshot", "0", "stuffing"), "p"] == pytest.approx(stuffing.pvalue)
    # Holm within budget "0" (two tests); budget "10" is its own family of one.
    low, high = sorted([stuffing.pvalue, shuffle.pvalue])
    holm_0 = {stuffing.pvalue: None, shuffle.pvalue: None}
    holm_0[low], holm_0[high] = min(1, 2 * low), max(min(1, 2 * low), high)
    assert table.loc[("zeroshot", "0", "stuffing"), "p_holm"] == pytest.approx(holm_0[stuffing.pvalue])
    assert table.loc[("zeroshot", "0", "shuffle"), "p_holm"] == pytest.approx(holm_0[shuffle.pvalue])
    assert table.loc[("sft", "10", "stuffing"), "p_holm"] == pytest.approx(sft.pvalue)
    assert table.direction.tolist() == ["more", "less", "none"]


def test_probes_markdown_claims_a_response_or_a_difference_from_bm25_only_where_holm_says_so():
    deltas = {
        ("bm25", "0", "stuffing"): [1.0, 1.2, 0.8, 1.1, 0.9, 1.0],
        ("bm25", "0", "shuffle"): [0.0] * 6,
        ("zeroshot", "0", "stuffing"): [3.0, 3.2, 2.9, 3.1, 3.0, 2.8],  # rises, and more than BM25
        ("zeroshot", "0", "shuffle"): [0.3, -0.2, 0.1, -0.3, 0.2, -0.1],  # no response
        ("qlm", "0", "stuffing"): [1.0, 1.3, 0.7, 1.1, 0.9, 1.1],  # rises, as BM25 does
        ("qlm", "0", "shuffle"): [-1.0, -1.2, -0.9, -1.1, -1.0, -0.8],  # falls
    }
    per_query = reference_rows(deltas).assign(overtake_before=np.nan, overtake_after=np.nan)
    per_query.loc[per_query.probe == "stuffing", ["overtake_before", "overtake_after"]] = [0.25, 0.75]
    tests, against = probe_tests(per_query, n_resamples=200), compare_with_reference(per_query, n_resamples=200)
    text = probes_markdown(tests, against, "toy", methods=["zeroshot", "qlm"])
    table = text.split("## The tests")[0]
    assert "| zero-shot | +3.00 ↑▲ | +0.00 |" in table and "| qlm | +1.02 ↑ | -1.00 ↓▼ |" in table
    findings = text.split("## Findings")[1]
    assert "the score rises for BM25 (+1.00, Holm p" in findings and "zero-shot (+3.00" in findings and "qlm (+1.02" in findings
    assert "falls for qlm (-1.00" in findings and "no significant response: BM25 and zero-shot." in findings
    assert "Δ under query-word stuffing is above BM25's for zero-shot (+2.00 spreads" in findings
    assert "qlm (+0.02" not in findings  # qlm's stuffing response is BM25's: no claim either way
    assert "Descriptive (untested)" in findings and "BM25 0.25 → 0.75" in findings
