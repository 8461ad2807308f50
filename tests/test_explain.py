"""Explanations: SHAP word attributions, their faithfulness, and rationale checks.

The acceptance scorer counts the planted word "glacier" in the document, so every expected
value is computable by hand: the Shapley value of each "glacier" is 1 and of every other
word 0; deleting it drops the score by 1; keeping it alone keeps the score.
"""

import numpy as np
import pandas as pd
import pytest

from rerank_audit.explain.attribution import explain_pairs, owen_values, top_keywords
from rerank_audit.evaluation.statistics import explain_per_query
from rerank_audit.explain.faithfulness import (
    candidate_spreads, deletion_curves, faithfulness, lexical_baseline, lexical_shortcut, rationale_comprehensiveness,
)
from rerank_audit.explain.rationale import (
    keyword_coverage,
    model_decisions,
    rationale_metrics,
    rationale_prompt,
    rationale_verdict,
    unsupported_word_rate,
    write_rationales,
)
from rerank_audit.explain.score_cache import cached_scores
from rerank_audit.explain.selection import explained_head, pairs_to_explain, rationale_items, reranked_head
from rerank_audit.text.words import split_words, word_key
from rerank_audit.models.settings import ScoringSettings
from tiny_model import spread_weights

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


def test_document_players_give_the_document_word_the_whole_interaction_and_no_query_rows():
    """The query kept whole: "glacier" earns all of f(q, d) - f(q, "") = 1, where the pair game gives it half."""
    attributions = explain_pairs(AlpineGlacier(), [QUERY], [DOCUMENT], exact_levels=0, players="document")
    assert attributions.part.unique().tolist() == ["document"] and attributions.token.tolist() == split_words(DOCUMENT)
    assert attributions.attribution.tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="unknown players 'query'"):
        explain_pairs(AlpineGlacier(), [QUERY], [DOCUMENT], exact_levels=0, players="query")


@pytest.mark.parametrize("exact_levels", [0, 1, 2, 3])
def test_document_players_are_efficient_and_deep_levels_exact(exact_levels):
    values = explain_pairs(Interacting(), [QUERY], [DOCUMENT], exact_levels=exact_levels, players="document").attribution.to_numpy()
    full, query_alone = Interacting().score_pairs([QUERY, QUERY], [DOCUMENT, ""])
    assert values.sum() == pytest.approx(full - query_alone)
    exact = owen_values(Interacting(), QUERY, DOCUMENT, players="document")  # shap's PartitionExplainer, the query kept
    assert len(exact) == 6 and exact.sum() == pytest.approx(full - query_alone)
    if exact_levels == 3:  # 6 words: the document's tree is 3 levels deep
        np.testing.assert_allclose(values, exact, rtol=0, atol=1e-12)


def test_document_players_at_level_0_cost_half_the_pair_game_at_level_1():
    """6 document words: the whole tree expanded costs its 11 groups, each alone, and the query alone (12);
    the pair game at level 1 also scores the document's groups without the query, and the query's 9 groups."""
    counts = {}
    for players, levels in (("document", 0), ("pair", 1)):
        scorer = GlacierCounter()
        explain_pairs(scorer, [QUERY], [DOCUMENT], exact_levels=levels, players=players)
        counts[players] = scorer.pairs
    assert counts["document"] == 12
    assert counts["document"] <= counts["pair"] / 2


class GlacierMass:
    """Score 1 only when the document says both "glacier" and "mass": an interaction across its halves."""

    def score_pairs(self, queries, documents):
        return np.array([float({"glacier", "mass"} <= set(d.split())) for d in documents])


def test_siblings_present_value_each_word_as_it_is_removed_from_the_rest():
    """DOCUMENT's tree splits it into "The glacier lost" | "mass this summer." with "glacier" and "mass" on
    either side. Present: each half is explained with the other kept, so "glacier" and "mass" each get their
    removal effect, 1, and the top split's interaction f11 - f10 - f01 + f00 = 1 - 0 - 0 + 0 is taken back
    evenly from the 6 words: 5/6 for both, -1/6 for the rest. Absent: each half alone scores nothing, and the
    interaction is spread evenly: 1/6 for every word. Both sum to f(q, d) - f(q, "") = 1."""
    def values(siblings):
        frame = explain_pairs(GlacierMass(), [QUERY], [DOCUMENT], exact_levels=0, players="document", siblings=siblings)
        return frame.attribution.to_numpy()

    np.testing.assert_allclose(values("present"), [-1 / 6, 5 / 6, -1 / 6, 5 / 6, -1 / 6, -1 / 6], rtol=0, atol=1e-12)
    np.testing.assert_allclose(values("absent"), [1 / 6] * 6, rtol=0, atol=1e-12)
    # Exact levels leave no word to a single context, so siblings no longer matter there.
    exact = explain_pairs(GlacierMass(), [QUERY], [DOCUMENT], exact_levels=3, players="document", siblings="present")
    np.testing.assert_allclose(exact.attribution, owen_values(GlacierMass(), QUERY, DOCUMENT, players="document"), atol=1e-12)
    with pytest.raises(ValueError, match="unknown siblings 'none'"):
        explain_pairs(GlacierMass(), [QUERY], [DOCUMENT], exact_levels=0, siblings="none")


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
            present = evaluations(8, max_evaluations=cap, siblings="present")  # the cap counts the texts of the game it explains
            np.testing.assert_array_equal(present[1], evaluations(fitting, siblings="present")[1])
    assert evaluations(8, max_evaluations=1)[0] == counts[0]  # level 0 is the floor
    assert evaluations(2, max_evaluations=10**6)[0] == counts[2]  # the cap never deepens past exact_levels
    capped = explain_pairs(Interacting(), [QUERY], [DOCUMENT], exact_levels=8, max_evaluations=counts[4])
    np.testing.assert_allclose(capped.attribution.to_numpy(), owen_values(Interacting(), QUERY, DOCUMENT), rtol=0, atol=1e-12)


def test_one_scorer_call_explains_a_whole_batch_of_pairs():
    scorer = GlacierCounter()
    explain_pairs(scorer, [QUERY, QUERY, "snow"], [DOCUMENT, OTHER, "glacier glacier"], exact_levels=1, pairs_per_call=3)
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
    assert result.lexical_baseline == pytest.approx(1 / 6)  # 1 of the 6 document words occurs in the query
    assert result.lexical_excess == pytest.approx(5 / 6)


def run_of(scores: dict[str, list[float]]) -> pd.DataFrame:
    """A re-ranked run: per query, documents d1, d2, ... with the given scores, ranked in that order."""
    rows = [(q, f"d{i + 1}", score, i + 1) for q, values in scores.items() for i, score in enumerate(values)]
    return pd.DataFrame(rows, columns=["query_id", "doc_id", "score", "rank"])


def test_candidate_spreads_are_per_query_over_the_head_only():
    # Head (depth 2) of qa: 3, 1 (std 1); of qb: 40, 0 (std 20); the tails (-100, -200) were never re-scored.
    run = run_of({"qa": [3.0, 1.0, -100.0], "qb": [40.0, 0.0, -200.0]})
    assert candidate_spreads(reranked_head(run, depth=2)).to_dict() == {"qa": 1.0, "qb": 20.0}


def test_candidate_std_normalisation_divides_by_each_querys_candidate_spread():
    scorer = GlacierCounter()
    ids = {"query_ids": ["qa", "qb"], "doc_ids": ["d1", "d1"]}
    attributions = explain_pairs(scorer, [QUERY, QUERY], [DOCUMENT, DOCUMENT], exact_levels=1, **ids)
    spreads = pd.Series({"qa": 1.0, "qb": 20.0})
    result = faithfulness(
        scorer, [QUERY, QUERY], [DOCUMENT, DOCUMENT], attributions, ks=[1], n_random=2, seed=0, deletion_steps=4, candidate_spread=spreads, **ids
    )
    # Removing "glacier" drops the score by 1 in both: 1 spread of qa, 1/20 of qb's.
    assert result.scale.tolist() == [1.0, 20.0]
    assert result.comprehensiveness.tolist() == [1.0, 0.05]
    assert result.sufficiency.tolist() == [0.0, 0.0]


def test_candidate_std_normalisation_needs_a_spread_for_every_query_and_gives_nan_without_spread():
    ids = {"query_ids": ["qa"], "doc_ids": ["d1"]}
    attributions = explain_pairs(GlacierCounter(), [QUERY], [DOCUMENT], exact_levels=1, **ids)
    arguments = dict(ks=[1], n_random=1, seed=0, deletion_steps=2, **ids)
    with pytest.raises(ValueError, match="candidate_spread"):
        faithfulness(GlacierCounter(), [QUERY], [DOCUMENT], attributions, **arguments)
    with pytest.raises(ValueError, match=r"\['qa'\]"):
        faithfulness(GlacierCounter(), [QUERY], [DOCUMENT], attributions, candidate_spread=pd.Series({"qb": 1.0}), **arguments)
    flat = faithfulness(GlacierCounter(), [QUERY], [DOCUMENT], attributions, candidate_spread=pd.Series({"qa": 0.0}), **arguments)
    assert np.isnan(flat.comprehensiveness.iloc[0]) and flat.lexical_shortcut.iloc[0] == 1.0


def test_faithfulness_scores_each_batch_of_pairs_in_one_call():
    scorer, cache = GlacierCounter(), {}
    attributions = explain_pairs(scorer, [QUERY, QUERY], [DOCUMENT, OTHER], exact_levels=1, cache=cache)
    calls, pairs, cached = scorer.calls, scorer.pairs, len(cache)
    faithfulness(scorer, [QUERY, QUERY], [DOCUMENT, OTHER], attributions, ks=[1, 2], n_random=5, seed=0, deletion_steps=5, normalisation="none", cache=cache)
    # Two pairs, fewer than pairs_per_call: whatever the attributions left unscored goes in one call,
    # and only that reaches the scorer (each new pair once, every one kept in the cache).
    new = len(cache) - cached
    assert new > 0 and scorer.calls - calls == 1 and scorer.pairs - pairs == new


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


def test_lexical_baseline_is_the_share_of_document_words_found_in_the_query():
    # "Glaciers" -> glacier (a query word); "the" is a stop word; "summer", "melt" are not in the query: 1 of 4
    assert lexical_baseline("the glacier retreat", ["Glaciers", "the", "summer", "melt"]) == 0.25
    # "Retreating" and "retreat." both stem to "retreat", "glaciers," to "glacier"; "the" never counts: 3 of 4
    assert lexical_baseline("glacier retreat", split_words("Retreating glaciers, the retreat.")) == 0.75
    assert np.isnan(lexical_baseline("glacier", []))


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


def test_write_rationales_equal_greedy_generation_of_each_prompt_alone(tiny_lm_dir):
    """Batched, left-padded and reordered by length, each rationale is what greedy decoding writes for its
    prompt alone (no padding); ``show_decision`` adds the rank to the prompt and so changes what is written."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = spread_weights(AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval())  # text that varies with the prompt
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    items = [
        {"query": QUERY, "document": DOCUMENT, "rank": 1, "head_size": 8, "keywords": ["glacier"], "attributions": [0.9]},
        {"query": "snow", "document": OTHER, "rank": 7, "head_size": 8, "keywords": ["snow", "pass"], "attributions": [0.4, -0.2]},
        {"query": "tide gauges", "document": "Sea level.", "rank": 2, "head_size": 8, "keywords": [], "attributions": []},
    ]

    def alone(prompt: str) -> str:
        encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            generated = model.generate(**encoded, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(generated[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True).strip()

    written = {}
    for show_decision in (False, True):
        expected = [alone(rationale_prompt(tokenizer, item, show_decision)) for item in items]
        written[show_decision] = write_rationales(model, tokenizer, items, max_new_tokens=6, batch_size=2, show_decision=show_decision)
        assert written[show_decision] == expected
        # auto: as many prompts a batch as memory holds (here all three, padded to the longest)
        assert write_rationales(model, tokenizer, items, max_new_tokens=6, batch_size=None, show_decision=show_decision) == expected
    assert all(written[False]) and len(set(written[False])) == 3  # three texts, told apart: a mix-up of items would show
    rank_sentence = "A search engine ranked this document at position 7 of the 8 documents it ranked for the query."
    assert rank_sentence in rationale_prompt(tokenizer, items[1], True) and "position" not in rationale_prompt(tokenizer, items[1], False)
    assert written[True] != written[False]
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
    spreads = pd.Series({"q1": 0.5})
    scores = faithfulness(
        scorer, [QUERY, QUERY], [DOCUMENT, OTHER], attributions, ks=[1], n_random=2, seed=0, deletion_steps=2, cache=cache, candidate_spread=spreads, **ids
    )
    frame = pd.DataFrame(
        {"query": [QUERY], "document": [DOCUMENT], "keywords": [["glacier"]], "rationale": ["Relevant."], "relevant": [True], "end": ["top"],
         "verdict_log_odds": [0.4], "verdict_log_odds_input_only": [-0.1]}  # fmt: skip
    )
    stated = rationale_comprehensiveness(scorer, [QUERY], [DOCUMENT], ["The glacier."], n_random=2, seed=0, candidate_spread=spreads, **{k: v[:1] for k, v in ids.items()})
    checks = rationale_metrics(frame).assign(query_id="q1", doc_id="d1").merge(stated, on=["query_id", "doc_id"])
    rationales = frame.assign(query_id="q1", doc_id="d1", rank=1, score=1.0, generator="tiny")
    tables = [(attributions, schemas.ATTRIBUTIONS), (scores, schemas.FAITHFULNESS), (checks, schemas.RATIONALE_METRICS), (rationales, schemas.RATIONALES)]
    for number, (table, schema) in enumerate(tables):
        table = table.assign(method="toy", budget="all")[schema.names]
        path = tmp_path / f"table{number}.parquet"
        write_table(table, path, schema)
        assert len(read_table(path, schema)) == len(table)


def split_tables(test_queries: list[str]):
    """splits, queries and corpus tables for runs made by ``run_of`` (documents d1..d9)."""
    splits = pd.DataFrame({"query_id": ["qt", *test_queries], "split": ["train"] + ["test"] * len(test_queries), "position": range(len(test_queries) + 1)})
    queries = pd.DataFrame({"query_id": ["qt", *test_queries], "text": "glacier retreat"})
    corpus = pd.DataFrame({"doc_id": [f"d{i}" for i in range(1, 10)], "title": "", "text": [f"text {i}" for i in range(1, 10)]})
    return splits, queries, corpus


def test_pairs_to_explain_takes_the_top_and_the_bottom_of_the_reranked_head_not_of_the_run():
    # qa: 8 documents, the method re-scored the top 5 (depth); qb: a pool of 3, smaller than depth; qc: not chosen.
    run = run_of({"qa": [9, 8, 7, 6, 5, 4, 3, 2], "qb": [3, 2, 1], "qc": [2, 1]})
    pairs = pairs_to_explain(run, *split_tables(["qb", "qa", "qc"]), n_queries=2, top_documents=1, bottom_documents=2, depth=5)
    assert pairs[["query_id", "doc_id", "end", "relevant"]].values.tolist() == [
        ["qb", "d1", "top", True],  # head of 3: only rank 1 <= 1.5 is in the upper half
        ["qb", "d2", "bottom", False],
        ["qb", "d3", "bottom", False],
        ["qa", "d1", "top", True],
        ["qa", "d4", "bottom", False],  # ranks 4 and 5 end the head; 7 and 8 are BM25's tail
        ["qa", "d5", "bottom", False],
    ]
    assert pairs.document.tolist()[:1] == ["text 1"]


def test_bottom_documents_default_to_top_documents_and_a_short_head_explains_each_document_once():
    run = run_of({"qa": [5, 4, 3, 2, 1]})
    assert explained_head(run, 5, 2, None)["rank"].tolist() == [1, 2, 4, 5]
    short = explained_head(run, 3, 2, 2)  # head of 3: rank 2 is top, rank 3 bottom, nothing twice
    assert short.end.tolist() == ["top", "top", "bottom"]
    assert explained_head(run, None, 1, 1)["rank"].tolist() == [1, 5]  # depth None: the whole run is the head


def test_model_decisions_are_the_upper_half_of_the_head():
    run = run_of({"qa": [float(10 - i) for i in range(10)], "qb": [3.0, 2.0, 1.0]})
    head = reranked_head(run, depth=4)
    # qa: head of 4 (ranks 1, 2 relevant; 3, 4 not), its ranks 5-10 are not in it; qb: a pool of 3 (1 relevant).
    assert head[["query_id", "rank", "head_size", "relevant"]].values.tolist() == [
        ["qa", 1, 4, True], ["qa", 2, 4, True], ["qa", 3, 4, False], ["qa", 4, 4, False],
        ["qb", 1, 3, True], ["qb", 2, 3, False], ["qb", 3, 3, False],
    ]  # fmt: skip
    assert model_decisions(head).tolist() == head.relevant.tolist()


def test_rationale_items_carry_the_head_decision_and_end_and_refuse_unexplained_pairs():
    run = run_of({"qa": [9, 8, 7, 6, 5, 4]})
    splits, queries, corpus = split_tables(["qa"])
    keywords = pd.DataFrame({"query_id": "qa", "doc_id": ["d1", "d1", "d4"], "token": ["a", "b", "c"], "attribution": [0.5, -0.1, 0.2]})
    items = rationale_items(keywords, explained_head(run, 4, 1, 1), queries, corpus)
    assert items[["doc_id", "rank", "head_size", "relevant", "end"]].values.tolist() == [["d1", 1, 4, True, "top"], ["d4", 4, 4, False, "bottom"]]
    assert items.keywords.tolist() == [["a", "b"], ["c"]]
    with pytest.raises(ValueError, match=r"\(qa, d6\).*rerank.depth"):
        rationale_items(keywords.assign(doc_id="d6"), explained_head(run, 4, 1, 1), queries, corpus)


class NoChatTemplate:
    chat_template = None


PROMPT_ITEM = {"query": QUERY, "document": DOCUMENT, "rank": 3, "head_size": 20, "keywords": ["glacier"], "attributions": [0.9]}


def test_rationale_prompt_gives_neither_rank_nor_decision_by_default():
    prompt = rationale_prompt(NoChatTemplate(), PROMPT_ITEM)
    assert "position" not in prompt and " 3" not in prompt and "20" not in prompt
    assert QUERY in prompt and DOCUMENT in prompt and "- glacier: +0.9" in prompt


def test_rationale_prompt_gives_the_rank_in_the_head_when_asked():
    prompt = rationale_prompt(NoChatTemplate(), PROMPT_ITEM, show_decision=True)
    assert "ranked this document at position 3 of the 20 documents it ranked for the query" in prompt


def test_verdict_agreement_is_reported_for_top_and_bottom_documents_separately():
    # A writer that calls everything relevant: agrees on the top documents, never on the bottom ones.
    frame = pd.DataFrame(
        {
            "method": "sft", "budget": "10", "query_id": ["q1", "q1", "q1", "q2", "q2"], "doc_id": ["a", "b", "c", "a", "b"],
            "end": ["top", "bottom", "bottom", "top", "bottom"], "relevant": [True, False, False, True, True],
            "query": QUERY, "document": DOCUMENT, "keywords": [["glacier"]] * 5, "rationale": "It is relevant.",
        }
    )  # fmt: skip
    table = explain_per_query(None, rationale_metrics(frame), "toy")
    values = {(q, m): v for q, m, v in zip(table.query_id, table.measure, table.value)}
    assert values[("q1", "verdict_agreement")] == pytest.approx(1 / 3)
    assert (values[("q1", "verdict_agreement_top")], values[("q1", "verdict_agreement_bottom")]) == (1.0, 0.0)
    # q2's bottom document is in the upper half of a short head: the method decided "relevant" there too
    assert (values[("q2", "verdict_agreement_top")], values[("q2", "verdict_agreement_bottom")]) == (1.0, 1.0)


# --- Marker and rationale comprehensiveness: the same drop, for the planted word and the stated reasons ---

class MeltCounter:
    """Score = 2 x occurrences of "glacier" + occurrences of "melt" + 0.5 x words of the document."""

    def score_pairs(self, queries, documents):
        keys = [[word_key(w) for w in d.split()] for d in documents]
        return np.array([2 * k.count("glacier") + k.count("melt") + 0.5 * len(k) for k in keys], dtype=float)


MELT_DOCUMENT = "The glacier lost mass as ice began to melt."  # 9 words: glacier at 1, mass at 3, melt at 8


def test_marker_comprehensiveness_is_the_drop_when_only_the_marker_is_removed():
    scorer = MeltCounter()
    documents = [MELT_DOCUMENT, "Fresh snow fell overnight."]
    ids = {"query_ids": ["qa", "qa"], "doc_ids": ["d1", "d2"]}
    attributions = explain_pairs(scorer, [QUERY, QUERY], documents, exact_levels=1, **ids)
    result = faithfulness(
        scorer, [QUERY, QUERY], documents, attributions, ks=[1], n_random=4, seed=0, deletion_steps=2,
        candidate_spread=pd.Series({"qa": 0.5}), marker="Glaciers", **ids,
    ).set_index("doc_id")
    # Without "glacier": 2 (the word) + 0.5 (its length) = 2.5 lower; over the spread 0.5: 5.0.
    assert result.loc["d1", "marker_comprehensiveness"] == pytest.approx(5.0)
    # One random word each: as the random baseline of comprehensiveness@1 (the same draws).
    assert result.loc["d1", "marker_comprehensiveness_random"] == pytest.approx(result.loc["d1", "comprehensiveness_random"])
    assert np.isnan(result.loc["d2", "marker_comprehensiveness"]) and np.isnan(result.loc["d2", "marker_comprehensiveness_random"])


def test_without_a_marker_the_marker_columns_are_nan():
    attributions = explain_pairs(GlacierCounter(), [QUERY], [DOCUMENT], exact_levels=1)
    result = faithfulness(GlacierCounter(), [QUERY], [DOCUMENT], attributions, ks=[1], n_random=1, seed=0, deletion_steps=2, normalisation="none")
    assert result[["marker_comprehensiveness", "marker_comprehensiveness_random"]].isna().all(axis=None)


def test_rationale_comprehensiveness_removes_the_document_words_the_rationale_gives_as_reasons():
    rationales = [
        # Reasons: glacier, mass (task words "document", "relevant" and stop words left out; "losing" is not "lost").
        "The document is relevant because the glacier is losing mass.",
        "It is relevant.",  # names no word of the document
    ]
    result = rationale_comprehensiveness(
        MeltCounter(), [QUERY, QUERY], [MELT_DOCUMENT, MELT_DOCUMENT], rationales, n_random=3, seed=0, normalisation="none",
        query_ids=["qa", "qa"], doc_ids=["d1", "d2"],
    ).set_index("doc_id")
    # f = 2 + 1 + 4.5 = 7.5; without "glacier" and "mass": 1 + 3.5 = 4.5; drop 3.
    assert result.loc["d1", "rationale_words"] == 2
    assert result.loc["d1", "rationale_comprehensiveness"] == pytest.approx(3.0)
    assert result.loc["d2", "rationale_words"] == 0
    assert result.loc["d2", ["rationale_comprehensiveness", "rationale_comprehensiveness_random"]].isna().all()


def test_rationale_comprehensiveness_random_baseline_removes_as_many_words():
    class Length:  # every word weighs 1: any two removed words drop the score by exactly 2
        def score_pairs(self, queries, documents):
            return np.array([float(len(d.split())) for d in documents])

    result = rationale_comprehensiveness(
        Length(), [QUERY], [MELT_DOCUMENT], ["Glacier mass."], n_random=5, seed=3, candidate_spread=pd.Series({"0": 4.0})
    ).iloc[0]
    assert (result.rationale_comprehensiveness, result.rationale_comprehensiveness_random) == (0.5, 0.5)  # 2 / spread 4


def test_rationale_comprehensiveness_with_the_tiny_model_is_the_hand_masked_score_drop(tiny_lm_dir):
    from rerank_audit.models.scoring import load_scorer

    scorer = load_scorer("zeroshot", tiny_lm_dir, tiny_lm_dir, settings=ScoringSettings(dtype="float32", device="cpu"))
    result = rationale_comprehensiveness(
        scorer, [QUERY], [MELT_DOCUMENT], ["The glacier lost mass."], n_random=2, seed=0, normalisation="none"
    ).iloc[0]
    full, masked = scorer.score_pairs([QUERY, QUERY], [MELT_DOCUMENT, "The as ice began to melt."])
    assert result.rationale_words == 3
    assert result.rationale_comprehensiveness == pytest.approx(full - masked, abs=1e-5)


def test_rationale_checks_refuse_an_explained_pair_without_its_rationale():
    from rerank_audit.explain.rationale import with_rationales

    items = pd.DataFrame({"query_id": ["q1", "q1"], "doc_id": ["d1", "d2"]})
    rationales = pd.DataFrame({"query_id": ["q1"], "doc_id": ["d1"], "rationale": ["About ice."]})
    with pytest.raises(ValueError, match=r"rationales.parquet: no rationale for 1 explained pair\(s\), e.g. \(q1, d2\)"):
        with_rationales(items, rationales, "rationales.parquet")
    assert with_rationales(items[:1], rationales).rationale.tolist() == ["About ice."]


def test_summary_shows_rationale_comprehensiveness_next_to_attribution_comprehensiveness():
    from rerank_audit.evaluation.statistics import compare_methods
    from rerank_audit.evaluation.summary import summary_markdown

    columns = ["dataset", "method", "budget", "split", "query_id", "measure", "value"]
    ranking = pd.DataFrame(
        [("toy", m, b, "test", f"q{i}", "nDCG@10", 0.1 * i + gain) for m, b, gain in (("bm25", "0", 0.0), ("sft", "all", 0.2)) for i in range(4)],
        columns=columns,
    )
    values = {"comprehensiveness@5": 0.3, "comprehensiveness_random@5": 0.1, "rationale_comprehensiveness": 0.4, "rationale_comprehensiveness_random": 0.2}
    explain = pd.DataFrame([("toy", "sft", "all", "test", f"q{i}", m, v) for i in range(4) for m, v in values.items()], columns=columns)
    summary = summary_markdown(compare_methods(ranking, n_resamples=50, seed=0), explain, methods=["sft"])
    header = next(line for line in summary.splitlines() if line.startswith("| method"))
    assert "| compr.@5 vs random (↑) | rationale compr. vs random (↑) |" in header
    sft = next(line for line in summary.splitlines() if line.startswith("| sft"))
    # Every query's stated words drop the score 0.2 more than random ones: t = inf, faithful (◆).
    assert "| 0.300 vs 0.100◆ | 0.400 vs 0.200◆ |" in sft
    findings = summary.split("**Findings.**")[1]
    assert "For sft, removing the words the rationale gives as reasons lowers the score significantly more than removing as many random words." in findings
