"""Explanations: SHAP word attributions, their faithfulness, and rationale checks.

The acceptance scorer counts the planted word "glacier" in the document, so every expected
value is computable by hand: the Shapley value of each "glacier" is 1 and of every other
word 0; deleting it drops the score by 1; keeping it alone keeps the score.
"""

import numpy as np
import pandas as pd
import pytest

from rerank_audit.explain.attribution import explain_pairs, owen_values, top_keywords
from rerank_audit.explain.faithfulness import deletion_curves, faithfulness, lexical_shortcut
from rerank_audit.explain.rationale import (
    keyword_coverage,
    model_decisions,
    rationale_metrics,
    rationale_verdict,
    unsupported_word_rate,
    write_rationales,
)
from rerank_audit.explain.score_cache import cached_scores
from rerank_audit.explain.words import split_words, word_key

QUERY = "glacier retreat in the Alps"
DOCUMENT = "The glacier lost mass this summer."  # 6 words, "glacier" at position 1
OTHER = "Fresh snow fell overnight on the pass."  # no glacier: scores 0


class GlacierCounter:
    """Score = occurrences of the word "glacier" in the document; counts its calls and pairs."""

    def __init__(self):
        self.calls = 0
        self.pairs = 0

    def score_pairs(self, queries, documents):
        self.calls += 1
        self.pairs += len(documents)
        return np.array([sum(word_key(w) == "glacier" for w in d.split()) for d in documents], dtype=float)


class AlpineGlacier:
    """Score 1 only when the query says "alps" and the document says "glacier": a pure interaction."""

    def score_pairs(self, queries, documents):
        return np.array([float("alps" in q.lower().split() and "glacier" in d.split()) for q, d in zip(queries, documents)])


def document_rows(attributions, doc_id="0"):
    return attributions[(attributions.doc_id == doc_id) & (attributions.part == "document")]


def test_shap_puts_the_whole_score_on_the_planted_word():
    attributions = explain_pairs(GlacierCounter(), [QUERY], [DOCUMENT], exact_levels=1)
    assert attributions.columns.tolist() == ["query_id", "doc_id", "part", "position", "token", "attribution"]
    assert attributions.part.tolist() == ["query"] * 5 + ["document"] * 6
    assert attributions.token.tolist() == split_words(QUERY) + split_words(DOCUMENT)
    assert document_rows(attributions).attribution.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert attributions[attributions.part == "query"].attribution.tolist() == [0.0] * 5


def test_attributions_sum_to_score_minus_empty_pair_and_split_an_interaction_equally():
    attributions = explain_pairs(AlpineGlacier(), [QUERY], [DOCUMENT], exact_levels=1)
    assert attributions.attribution.sum() == 1.0  # f(q, d) - f("", "")
    nonzero = attributions[attributions.attribution != 0]
    assert nonzero[["part", "token", "attribution"]].values.tolist() == [["query", "Alps", 0.5], ["document", "glacier", 0.5]]
    # Without both contexts at the query | document level the interaction is spread over all 11 words.
    spread = explain_pairs(AlpineGlacier(), [QUERY], [DOCUMENT], exact_levels=0).attribution
    assert spread.tolist() == pytest.approx([1 / 11] * 11)


class Interacting:
    """A score with main effects, a query–document interaction and a within-document one."""

    def score_pairs(self, queries, documents):
        scores = []
        for q, d in zip(queries, documents):
            query, document = set(q.lower().split()), d.lower().split()
            scores.append(
                2.0 * ("alps" in query and "glacier" in document) + 0.5 * len(document) ** 0.5
                + ("retreat" in query and "lost" in document) - 0.3 * ("the" in document and "mass" in document)
            )
        return np.array(scores)


@pytest.mark.parametrize("exact_levels", [0, 1, 2, 3])
def test_every_setting_is_efficient(exact_levels):
    attributions = explain_pairs(Interacting(), [QUERY], [DOCUMENT], exact_levels=exact_levels)
    full, empty = Interacting().score_pairs([QUERY, ""], [DOCUMENT, ""])
    assert attributions.attribution.sum() == pytest.approx(full - empty)


def test_deep_enough_levels_give_shaps_exact_owen_values():
    """exact_levels past the hierarchy's depth equals shap's PartitionExplainer with both contexts everywhere."""
    exact = owen_values(Interacting(), QUERY, DOCUMENT)
    estimate = explain_pairs(Interacting(), [QUERY], [DOCUMENT], exact_levels=4).attribution.to_numpy()
    np.testing.assert_allclose(estimate, exact, rtol=0, atol=1e-12)
    one_level = explain_pairs(Interacting(), [QUERY], [DOCUMENT], exact_levels=1).attribution.to_numpy()
    assert not np.allclose(one_level, exact)  # the toy has interactions below the top level


def evaluations(exact_levels: int, **cap) -> tuple[int, np.ndarray]:
    """Distinct masked pairs one explanation of (QUERY, DOCUMENT) scores, and its values."""
    scorer = GlacierCounter()
    values = explain_pairs(scorer, [QUERY], [DOCUMENT], exact_levels=exact_levels, **cap).attribution.to_numpy()
    return scorer.pairs, values


def test_an_evaluation_cap_gives_each_pair_the_deepest_level_that_fits():
    counts = [evaluations(levels)[0] for levels in range(5)]
    assert counts == sorted(counts) and counts[0] < counts[1] < counts[2] < counts[3] == counts[4]  # 11 words; level 3 is exact
    for levels in (1, 2, 3):
        for cap, fitting in ((counts[levels], levels), (counts[levels] - 1, levels - 1)):
            pairs, values = evaluations(8, max_evaluations=cap)
            assert pairs == counts[fitting]
            np.testing.assert_array_equal(values, evaluations(fitting)[1])
    assert evaluations(8, max_evaluations=1)[0] == counts[0]  # level 0 is the floor
    assert evaluations(2, max_evaluations=10**6)[0] == counts[2]  # the cap never deepens past exact_levels
    capped = explain_pairs(Interacting(), [QUERY], [DOCUMENT], exact_levels=8, max_evaluations=counts[4])
    np.testing.assert_allclose(capped.attribution.to_numpy(), owen_values(Interacting(), QUERY, DOCUMENT), rtol=0, atol=1e-12)


def test_one_scorer_call_explains_a_whole_batch_of_pairs():
    scorer = GlacierCounter()
    explain_pairs(scorer, [QUERY, QUERY, "snow"], [DOCUMENT, OTHER, "glacier glacier"], exact_levels=1, batch_size=3)
    assert scorer.calls == 1


def test_explaining_again_with_the_same_cache_calls_no_scorer():
    scorer, cache = GlacierCounter(), {}
    first = explain_pairs(scorer, [QUERY], [DOCUMENT], exact_levels=1, cache=cache)
    calls, pairs = scorer.calls, scorer.pairs
    again = explain_pairs(scorer, [QUERY], [DOCUMENT], exact_levels=1, cache=cache)
    assert (scorer.calls, scorer.pairs) == (calls, pairs) == (1, len(cache))
    pd.testing.assert_frame_equal(first, again)


def test_cache_hit_does_not_call_the_scorer_and_misses_are_scored_once():
    scorer = GlacierCounter()
    cache = {(QUERY, DOCUMENT): 7.0}
    assert cached_scores(scorer, [QUERY], [DOCUMENT], cache).tolist() == [7.0]
    assert scorer.calls == 0
    scores = cached_scores(scorer, [QUERY, QUERY, QUERY], [DOCUMENT, OTHER, OTHER], cache)
    assert scores.tolist() == [7.0, 0.0, 0.0] and scores.dtype == np.float64
    assert (scorer.calls, scorer.pairs) == (1, 1)


def test_attributions_do_not_depend_on_the_other_pairs_in_the_call():
    alone = explain_pairs(AlpineGlacier(), [QUERY], [DOCUMENT], exact_levels=1)
    together = explain_pairs(AlpineGlacier(), ["snow", QUERY], [OTHER, DOCUMENT], exact_levels=1, query_ids=["a", "b"], doc_ids=["x", "y"])
    assert together[together.query_id == "b"].attribution.tolist() == alone.attribution.tolist()


def test_top_keywords_rank_by_magnitude_and_keep_the_sign():
    attributions = pd.DataFrame(
        {
            "query_id": "q", "doc_id": "d", "part": ["query", "document", "document", "document"],
            "position": [0, 0, 1, 2], "token": ["ice", "glacier", "summer", "snow"], "attribution": [0.1, 0.8, -0.5, 0.2],
        }
    )  # fmt: skip
    top = top_keywords(attributions, 2)
    assert top[["token", "attribution"]].values.tolist() == [["glacier", 0.8], ["summer", -0.5]]
    assert top_keywords(attributions, 1, parts=("query",)).token.tolist() == ["ice"]


def test_removing_the_planted_word_is_comprehensive_and_keeping_it_alone_is_sufficient():
    scorer, cache = GlacierCounter(), {}
    attributions = explain_pairs(scorer, [QUERY], [DOCUMENT], exact_levels=1, cache=cache)
    result = faithfulness(
        scorer, [QUERY], [DOCUMENT], attributions, ks=[1], n_random=20, seed=0, deletion_steps=6, normalisation="none", cache=cache
    ).iloc[0]
    assert result.comprehensiveness == 1.0  # f = 1, without "glacier" 0
    assert result.sufficiency == 0.0  # "glacier" alone still scores 1
    assert result.comprehensiveness_random < 0.5 < result.comprehensiveness  # 1/6 expected
    assert result.sufficiency_random > 0.5 > result.sufficiency  # 5/6 expected
    # drop is 0 at fraction 0 and 1 from 1/6 on: area 1/12 + 5/6
    assert result.deletion_auc == pytest.approx(11 / 12)
    assert result.deletion_auc_random < result.deletion_auc
    assert result.lexical_shortcut == 1.0  # all positive mass on "glacier", also a query word


def test_candidate_std_normalisation_divides_by_the_spread_of_the_candidates_scores():
    scorer = GlacierCounter()
    attributions = explain_pairs(scorer, [QUERY, QUERY], [DOCUMENT, OTHER], exact_levels=1)
    result = faithfulness(scorer, [QUERY, QUERY], [DOCUMENT, OTHER], attributions, ks=[1, 3], n_random=2, seed=0, deletion_steps=4)
    assert result.scale.tolist() == [0.5] * 4  # std of the scores 1 and 0
    assert result.comprehensiveness.tolist() == [2.0, 2.0, 0.0, 0.0]
    assert result.sufficiency.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert result.k.tolist() == [1, 3, 1, 3]


def test_candidate_std_normalisation_refuses_candidates_that_all_score_the_same():
    attributions = explain_pairs(GlacierCounter(), [QUERY], [DOCUMENT], exact_levels=1)
    with pytest.raises(ValueError, match="different scores"):
        faithfulness(GlacierCounter(), [QUERY], [DOCUMENT], attributions, ks=[1], n_random=1, seed=0, deletion_steps=2)


def test_faithfulness_scores_each_batch_of_pairs_in_one_call():
    scorer, cache = GlacierCounter(), {}
    attributions = explain_pairs(scorer, [QUERY, QUERY], [DOCUMENT, OTHER], exact_levels=1, cache=cache)
    before = scorer.calls
    faithfulness(scorer, [QUERY, QUERY], [DOCUMENT, OTHER], attributions, ks=[1, 2], n_random=5, seed=0, deletion_steps=5, cache=cache)
    assert scorer.calls - before <= 1  # full and empty scores are cached; the rest is one batch


def test_deletion_curve_drops_once_the_planted_word_is_gone():
    attributions = explain_pairs(GlacierCounter(), [QUERY], [DOCUMENT], exact_levels=1)
    curve = deletion_curves(GlacierCounter(), [QUERY], [DOCUMENT], attributions, deletion_steps=3)
    assert curve.fraction.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert curve.score.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_lexical_shortcut_is_the_positive_mass_share_on_query_words():
    tokens = ["Glaciers", "the", "summer", "melt"]
    # "Glaciers" matches "glacier" (stemmed); "the" is a stop word and never counts; negatives are ignored
    assert lexical_shortcut("the glacier retreat", tokens, np.array([0.3, 0.5, 0.2, -1.0])) == pytest.approx(0.3)
    assert np.isnan(lexical_shortcut("glacier", tokens, np.array([0.0, -0.1, 0.0, 0.0])))


def test_keyword_coverage_counts_stemmed_mentions():
    rationale = "The document reports Glaciers melting fast in the Alps."
    assert keyword_coverage(rationale, ["glacier", "alps", "snow"]) == pytest.approx(2 / 3)
    assert keyword_coverage(rationale, ["melt", "Glacier,"]) == 1.0
    assert np.isnan(keyword_coverage(rationale, []))


@pytest.mark.parametrize(
    ("rationale", "verdict"),
    [
        ("The document is relevant because it reports glacier mass loss.", True),
        ("It reports snowfall. The document is not relevant to the query.", False),
        ("This document isn't really relevant.", False),
        ("The passage is irrelevant: it is about snow.", False),
        ("Not only does it mention glaciers, it is highly relevant.", True),
        ("It describes snowfall on a mountain pass.", None),
    ],
)
def test_rationale_verdict_reads_relevance_cues_and_negations(rationale, verdict):
    assert rationale_verdict(rationale) is verdict


def test_unsupported_word_rate_counts_content_words_in_neither_text():
    rationale = "The glacier lost mass, which suggests warming."
    # content words: glacier, lost, mass, suggests, warming; the last two are in neither text
    assert unsupported_word_rate(rationale, QUERY, DOCUMENT) == pytest.approx(2 / 5)
    assert np.isnan(unsupported_word_rate("The document is relevant to the query.", QUERY, DOCUMENT))  # task words only


def test_model_decision_is_the_top_half_of_each_query_list():
    run = pd.DataFrame({"query_id": ["a"] * 4 + ["b"] * 3, "rank": [1, 2, 3, 4, 1, 2, 3]})
    assert model_decisions(run).tolist() == [True, True, False, False, True, False, False]


def test_rationale_metrics_on_hand_written_rationales():
    frame = pd.DataFrame(
        {
            "query": [QUERY, QUERY],
            "document": [DOCUMENT, OTHER],
            "keywords": [["glacier", "summer"], ["snow", "pass"]],
            "rationale": ["The document is relevant: the glacier lost mass this summer.", "It mentions snow, so it is relevant."],
            "relevant": [True, False],
        }
    )
    metrics = rationale_metrics(frame)
    assert metrics.keyword_coverage.tolist() == [1.0, 0.5]
    assert metrics.verdict.tolist() == [True, True]
    assert metrics.verdict_agreement.tolist() == [1.0, 0.0]
    assert metrics.unsupported_rate.tolist() == [0.0, 0.0]  # "mentions" is task vocabulary, "snow" is in the document


def test_write_rationales_returns_one_string_per_item_with_the_tiny_model(tiny_lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    items = [
        {"query": QUERY, "document": DOCUMENT, "rank": 1, "score": 2.5, "keywords": ["glacier"], "attributions": [0.9]},
        {"query": "snow", "document": OTHER, "rank": 7, "score": -1.0, "keywords": ["snow", "pass"], "attributions": [0.4, -0.2]},
        {"query": "tide gauges", "document": "Sea level.", "rank": 2, "score": 0.1, "keywords": [], "attributions": []},
    ]
    rationales = write_rationales(model, tokenizer, items, max_new_tokens=6, batch_size=2)
    assert len(rationales) == 3 and all(isinstance(r, str) for r in rationales)
    assert tokenizer.padding_side == "right"  # restored after generation


def test_a_pair_without_words_gets_no_attribution_rows():
    attributions = explain_pairs(GlacierCounter(), ["", QUERY], ["", DOCUMENT], exact_levels=1)
    assert set(attributions.query_id) == {"1"}


def test_explain_outputs_write_with_the_data_model_schemas(tmp_path):
    from rerank_audit.data import schemas
    from rerank_audit.io import read_table, write_table

    scorer, cache = GlacierCounter(), {}
    ids = {"query_ids": ["q1", "q1"], "doc_ids": ["d1", "d2"]}
    attributions = explain_pairs(scorer, [QUERY, QUERY], [DOCUMENT, OTHER], exact_levels=1, cache=cache, **ids)
    scores = faithfulness(scorer, [QUERY, QUERY], [DOCUMENT, OTHER], attributions, ks=[1], n_random=2, seed=0, deletion_steps=2, cache=cache, **ids)
    frame = pd.DataFrame(
        {"query": [QUERY], "document": [DOCUMENT], "keywords": [["glacier"]], "rationale": ["Relevant."], "relevant": [True]}
    )
    checks = rationale_metrics(frame).assign(query_id="q1", doc_id="d1")
    rationales = frame.assign(query_id="q1", doc_id="d1", rank=1, score=1.0, generator="tiny")
    tables = [(attributions, schemas.ATTRIBUTIONS), (scores, schemas.FAITHFULNESS), (checks, schemas.RATIONALE_METRICS), (rationales, schemas.RATIONALES)]
    for number, (table, schema) in enumerate(tables):
        table = table.assign(method="toy", budget="all")[schema.names]
        path = tmp_path / f"table{number}.parquet"
        write_table(table, path, schema)
        assert len(read_table(path, schema)) == len(table)
