"""Counterfactual simulatability: do the summed attributions predict the score change of held-out word removals?

The toy scorer is additive over document words, so its Owen values are its word weights and
every removal's score change is minus the sum of the removed weights: the attributions
predict every edit exactly. Weights are powers of two, so every sum is exact in floating point.
"""

import numpy as np
import pandas as pd
import pytest

from rerank_audit.evaluation.statistics import compare_with_random
from rerank_audit.explain.attribution import explain_pairs
from rerank_audit.explain.faithfulness import faithfulness, matching_positions
from rerank_audit.explain.simulatability import held_out_edits, pair_simulatability
from rerank_audit.text.words import word_key, word_segments

QUERY = "glacier retreat in the Alps"
# Symmetric about 0: for every weight its negative, so permuting the attributions predicts -P as often as P.
WEIGHTS = {"ice": 1.0, "snow": -1.0, "melt": 2.0, "fog": -2.0, "glacier": 4.0, "dust": -4.0, "retreat": 8.0, "wind": -8.0}


class WordWeights:
    """Score = sum of the fixed weights of the document's words (every occurrence; unknown words 0)."""

    def __init__(self, weights):
        self.weights = weights

    def score_pairs(self, queries, documents):
        return np.array([sum(self.weights.get(w, 0.0) for w in d.split()) for d in documents])


def document_values(attributions: pd.DataFrame, doc_id: str) -> list[float]:
    rows = attributions[(attributions.doc_id == doc_id) & (attributions.part == "document")]
    return rows.sort_values("position").attribution.tolist()


def simulated(scorer, documents, **arguments):
    """faithfulness (K = 1, raw units) of ``documents`` for QUERY, explained by ``explain_pairs``: one row per pair."""
    queries = [QUERY] * len(documents)
    attributions = explain_pairs(scorer, queries, documents, exact_levels=1)
    result = faithfulness(scorer, queries, documents, attributions, ks=[1], n_random=1, seed=0, deletion_steps=2, normalisation="none", **arguments)
    return attributions, result


def test_an_additive_scorers_attributions_predict_every_held_out_edit_and_beat_their_permutations():
    rng = np.random.default_rng(7)
    documents = [" ".join(rng.permutation(list(WEIGHTS))) for _ in range(16)]
    attributions, result = simulated(WordWeights(WEIGHTS), documents, simulatability_edits=8, simulatability_max_words=5, simulatability_permutations=20)
    for i, document in enumerate(documents):  # the premise: Owen values of an additive score are its weights
        assert document_values(attributions, str(i)) == [WEIGHTS[w] for w in document.split()]
    assert result.simulatability.tolist() == pytest.approx([1.0] * 16, abs=1e-12)  # identical ranks
    assert result.sign_agreement.tolist() == [1.0] * 16
    # Permuted baseline. The weights are symmetric, so a permutation predicting P is as likely as
    # one predicting -P: E[Spearman] = 0 exactly. Over 8 edits its SD is about 1/sqrt(7) = 0.38;
    # counting each pair's 20 permutations as one draw (they share its edits), the mean over 16
    # pairs has SD <= 0.38 / 4 = 0.095, and |mean| < 0.3 leaves more than 3 SD.
    assert abs(result.simulatability_random.mean()) < 0.3
    # Signs: an edit agrees under exactly one of P, -P unless a change is 0, and both agree only
    # when both are 0; a sum of distinct powers of two is 0 only for complete (w, -w) pairs,
    # about 5% of removals of 1-5 of 8 words. So E[sign agreement] <= (1 + 0.05) / 2 = 0.53;
    # one draw per pair has SD <= 0.5 / sqrt(8) = 0.18, the mean of 16 <= 0.044: < 0.67 is 3 SD.
    assert result.sign_agreement_random.mean() < 0.67


def test_a_pairs_edits_do_not_depend_on_the_other_pairs_explained():
    scorer = WordWeights({**WEIGHTS, "lost": 0.5})
    noisy = "ice lost fog glacier wind melt"
    alone = simulated(scorer, [noisy])[1]
    among = simulated(scorer, ["snow dust retreat", noisy])[1]
    columns = ["simulatability", "simulatability_random", "sign_agreement", "sign_agreement_random"]
    assert among[columns].iloc[1].tolist() == alone[columns].iloc[0].tolist()


def test_hand_worked_edits_of_a_four_word_document():
    scorer = WordWeights({"ice": 4.0, "melts": 2.0, "fast": -1.0, "today": 0.5})  # "ice melts fast today": 5.5
    values = np.array([1.0, 3.0, 0.0, -2.0])  # an imperfect explanation of the four words
    removals = [np.array([0]), np.array([1, 2]), np.array([3]), np.array([0, 3])]
    # Predicted: -1, -3, +2, +1. Measured (texts written by hand): -4, -1, -0.5, -4.5.
    edited = ["melts fast today", "ice today", "ice melts fast", "melts fast"]
    measured = scorer.score_pairs([QUERY] * 4, edited) - 5.5
    assert measured.tolist() == [-4.0, -1.0, -0.5, -4.5]
    # Ranks 2 1 4 3 vs 2 3 4 1: Spearman 1 - 6 x 8 / (4 x 15) = 0.2; signs - - + + vs - - - -: 2 of 4.
    # Permuted by [1, 0, 3, 2]: values 3 1 -2 0 predict -3, +1, 0, -3 (ranks 1.5 4 3 1.5):
    # Pearson of the ranks 3.5 / sqrt(4.5 x 5) = 0.7379; signs - + 0 -: 2 of 4.
    result = pair_simulatability(values, removals, measured, [np.array([1, 0, 3, 2])])
    assert result == pytest.approx(
        {"simulatability": 0.2, "simulatability_random": 3.5 / np.sqrt(22.5), "sign_agreement": 0.5, "sign_agreement_random": 0.5}
    )


def test_constant_predictions_have_no_rank_correlation_but_a_sign_agreement():
    # No weighted word: every attribution 0 and every edit leaves the score alone.
    result = simulated(WordWeights(WEIGHTS), ["fresh powder fell overnight on the pass"])[1].iloc[0]
    assert np.isnan(result.simulatability) and np.isnan(result.simulatability_random)
    assert result.sign_agreement == 1.0 and result.sign_agreement_random == 1.0  # predicted 0, measured 0: equal signs
    nan_measured = pair_simulatability(np.array([1.0, 2.0]), [np.array([0]), np.array([1])], np.array([np.nan, 1.0]), [])
    assert all(np.isnan(v) for v in nan_measured.values())


def test_the_marker_removal_is_one_more_edit_only_where_the_document_carries_the_marker():
    segments = word_segments("The glacier lost mass as glaciers began to melt.")
    carried = matching_positions(segments, {word_key("Glacier")})
    assert carried.tolist() == [1, 5]
    with_marker = held_out_edits(len(segments), np.random.default_rng(0), edits=8, max_words=3, marker_positions=carried)
    without = held_out_edits(len(segments), np.random.default_rng(0), edits=8, max_words=3, marker_positions=np.zeros(0, np.int64))
    assert len(with_marker) == 9 and with_marker[-1].tolist() == [1, 5]
    assert len(without) == 8 and [e.tolist() for e in with_marker[:8]] == [e.tolist() for e in without]
    assert all(1 <= len(e) <= 3 and len(set(e.tolist())) == len(e) for e in without)


def test_too_few_edits_for_a_rank_correlation_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="simulatability_edits must be >= 3.*explain section"):
        simulated(WordWeights(WEIGHTS), ["ice snow"], simulatability_edits=2)


def test_simulatability_is_tested_against_its_permuted_baseline():
    per_pair = pd.DataFrame(
        {"simulatability": [0.5, 0.6] * 3, "simulatability_random": 0.1, "sign_agreement": 0.9, "sign_agreement_random": [0.5, 0.6] * 3}
    )
    per_query = per_pair.assign(dataset="toy", method="sft", budget="all", split="test", query_id=[f"q{i}" for i in range(6)])
    tests = compare_with_random(per_query.melt(id_vars=["dataset", "method", "budget", "split", "query_id"], var_name="measure")).set_index("measure")
    assert tests.loc["simulatability", "diff"] == pytest.approx(0.45) and bool(tests.loc["simulatability", "faithful"])
    assert tests.loc["sign_agreement", "diff"] == pytest.approx(0.35) and bool(tests.loc["sign_agreement", "faithful"])


def test_summary_shows_simulatability_against_its_permuted_baseline_with_a_finding():
    from rerank_audit.evaluation.statistics import compare_methods
    from rerank_audit.evaluation.summary import summary_markdown

    columns = ["dataset", "method", "budget", "split", "query_id", "measure", "value"]
    ranking = pd.DataFrame([("toy", m, "all", "test", f"q{i}", "nDCG@10", 0.1 * i) for m in ("bm25", "sft") for i in range(4)], columns=columns)
    values = {"comprehensiveness@1": 0.3, "comprehensiveness_random@1": 0.3, "simulatability": 0.8, "simulatability_random": 0.2}
    explain = pd.DataFrame([("toy", "sft", "all", "test", f"q{i}", m, v) for i in range(4) for m, v in values.items()], columns=columns)
    summary = summary_markdown(compare_methods(ranking, n_resamples=50, seed=0), explain, methods=["sft"])
    assert "simulatability vs permuted (↑)" in next(line for line in summary.splitlines() if line.startswith("| method"))
    assert "| 0.800 vs 0.200◆ |" in next(line for line in summary.splitlines() if line.startswith("| sft"))
    findings = summary.split("**Findings.**")[1]
    assert "For sft, the attributions predict the score changes of held-out word removals significantly better than the same attributions permuted." in findings
