"""The rationale writer's verdict as a probability: its log-odds (explain/rationale.py) and the
AUC against the method's decision with query-bootstrap CIs (evaluation/verdict.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rerank_audit.evaluation.auc import resampled_auc, roc_auc
from rerank_audit.evaluation.verdict import verdict_auc, verdict_markdown
from rerank_audit.explain.rationale import verdict_log_odds, verdict_prompt
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.text import prompts

ITEM = {"query": "glacier retreat in the Alps", "keywords": ["glacier", "snow"], "attributions": [0.8, -0.2], "rank": 1, "head_size": 10}


def test_roc_auc_counts_a_tie_as_half_a_win():
    # positives 0.2 and 0.5, negatives 0.5, 0.9 and 0.1: of the 6 (positive, negative) pairs the
    # positive wins (0.2, 0.1) and (0.5, 0.1), ties (0.5, 0.5), loses the other 3: 2.5 / 6.
    assert roc_auc([0.2, 0.5, 0.5, 0.9, 0.1], [True, True, False, False, False]) == pytest.approx(2.5 / 6)
    assert np.isnan(roc_auc([0.2, 0.5], [True, True]))


def test_a_bootstrap_resample_weighs_a_pair_as_often_as_it_was_drawn():
    scores, labels = np.array([0.2, 0.5, 0.5, 0.9, 0.1]), np.array([True, True, False, False, False])
    counts = np.array([[2, 0, 1, 1, 3], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    expected = [roc_auc(np.repeat(scores, c), np.repeat(labels, c)) for c in counts]
    np.testing.assert_allclose(resampled_auc(scores, labels, counts.astype(float)), expected)


def _pairs(log_odds: np.ndarray, relevant: np.ndarray, method: str = "zeroshot") -> pd.DataFrame:
    """Two explained pairs per query (log_odds rows: [query, with / input only, pair])."""
    n = len(relevant) // 2
    return pd.DataFrame(
        {"method": method, "budget": "0", "query_id": np.repeat([f"q{i}" for i in range(n)], 2), "relevant": relevant,
         "verdict_log_odds": log_odds[0], "verdict_log_odds_input_only": log_odds[1]}
    )  # fmt: skip


def test_decisions_assigned_at_random_give_an_auc_whose_ci_holds_one_half():
    rng = np.random.default_rng(7)
    log_odds = rng.normal(size=(2, 120))  # fixed log-odds of 60 queries' top and bottom pairs
    top_first = rng.random(60) < 0.5  # which of a query's two pairs the "method" put on top, at random
    relevant = np.column_stack([top_first, ~top_first]).ravel()
    row = verdict_auc(_pairs(log_odds, relevant), "toy", n_resamples=2000, seed=0).iloc[0]
    assert row.auc_ci_low < 0.5 < row.auc_ci_high
    assert row.auc_input_only_ci_low < 0.5 < row.auc_input_only_ci_high
    assert row.added_ci_low < 0 < row.added_ci_high
    # Decisions that follow the log-odds with the explanation (relevant above their median): AUC 1, its CI far from 0.5.
    informed = verdict_auc(_pairs(log_odds, log_odds[0] > np.median(log_odds[0])), "toy", n_resamples=2000).iloc[0]
    assert (informed.auc, informed.auc_ci_low) == (1.0, 1.0)
    assert informed.added_ci_low > 0


def test_a_method_with_one_class_among_its_explained_pairs_gets_no_auc_and_a_note():
    pairs = _pairs(np.zeros((2, 4)), np.array([False] * 4), method="qlm")
    table = verdict_auc(pairs, "toy", n_resamples=100)
    assert table.auc.isna().all() and table.added_ci_low.isna().all()
    assert table.note.iloc[0] == "no AUC: all 4 explained pairs are not relevant by the method's decision"
    assert "qlm (no training (budget 0)): no AUC: all 4 explained pairs are not relevant" in verdict_markdown(table, "toy")


def test_verdict_log_odds_are_the_answer_logits_at_the_end_of_each_prompt(tiny_lm_dir):
    import torch

    from rerank_audit.models.loading import load_causal_lm, load_tokenizer

    model, tokenizer = load_causal_lm(tiny_lm_dir, "cpu", "float32"), load_tokenizer(tiny_lm_dir)
    items = [ITEM | {"document": "The glacier lost mass this summer."}, ITEM | {"document": "Fresh snow fell overnight on the pass, and more."},
             ITEM | {"query": "sea ice", "document": "Ice."}]  # fmt: skip
    rationales = ["The document is relevant.", "Not relevant: it is about snow, not about glaciers at all.", ""]
    # batches of 2 sequences: both of the first query's prompts share a batch and their prefix
    table = verdict_log_odds(model, tokenizer, items, rationales, settings=ScoringSettings(batch_size=2, max_length=None, device="cpu"))
    yes, no = (list(set(variants.values())) for variants in prompts.answer_tokens(tokenizer))

    def by_hand(text: str) -> float:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tokenizer(text)["input_ids"]])).logits[0, -1].double()
        return float(torch.logsumexp(logits[yes], 0) - torch.logsumexp(logits[no], 0))

    expected = [[by_hand(verdict_prompt(tokenizer, i, r)) for i, r in zip(items, rationales)],
                [by_hand(prompts.pointwise_prompt(tokenizer, i["query"], i["document"])) for i in items]]  # fmt: skip
    assert table.dtypes.tolist() == [np.float64, np.float64]
    np.testing.assert_allclose(table.to_numpy().T, expected, atol=1e-5)


@pytest.mark.slow
def test_the_bundled_writer_leans_to_relevant_after_a_rationale_that_says_so(bundled_dir):
    """SmolLM2-135M-Instruct's log-odds follows the verdict its rationale states.

    Measured on 12 CLIMATE-FEVER pairs: +0.5 to +0.9 from the "not relevant" to the "relevant"
    rationale (the margin asserted here is 0.2). Told the method's decision as a rank
    (show_decision), its own rationales do not carry it: AUC 0.66 on 20 pairs (10 top, 10
    bottom), so that is not asserted.
    """
    from rerank_audit.models.loading import load_causal_lm, load_tokenizer
    from rerank_audit.models.scoring.yesno import answer_log_odds

    model, tokenizer = load_causal_lm(bundled_dir, "cpu", "float32"), load_tokenizer(bundled_dir)
    documents = ["Aletsch glacier, Swiss Alps, 1950-2024: annual surface mass balance from stakes.", "Daily PM10 in Milano, 2005-2024."]
    said = ["The document is relevant to the search query: it discusses exactly what the query asks about.",
            "The document is not relevant to the search query: it discusses something the query does not ask about."]  # fmt: skip
    texts = [verdict_prompt(tokenizer, ITEM | {"document": d}, r) for r in said for d in documents]
    log_odds = answer_log_odds(model, tokenizer, texts, settings=ScoringSettings(max_length=None, device="cpu"))
    relevant, not_relevant = log_odds.reshape(2, len(documents))
    assert (relevant - not_relevant > 0.2).all(), (relevant, not_relevant)


def test_findings_name_the_methods_whose_explanation_adds_to_the_input():
    from rerank_audit.evaluation.summary import verdict_auc_findings

    table = pd.DataFrame(
        {"method": ["sft", "qlm"], "auc": [0.8, 0.55], "auc_input_only": [0.6, 0.5], "added": [0.2, 0.05], "added_ci_low": [0.05, -0.2],
         "added_ci_high": [0.35, 0.3], "ci_level": 0.95}
    )  # fmt: skip
    assert verdict_auc_findings(table, ["qlm", "sft"]) == [
        'The rationale writer\'s verdict, read as its log-odds of "relevant", predicts each method\'s decision (top vs bottom '
        "of its head) with AUC, with the explanation vs from the query and document alone: qlm 0.55 vs 0.50 (added +0.05 "
        "[-0.20, +0.30]); sft 0.80 vs 0.60 (added +0.20 [+0.05, +0.35]). "
        "The explanation adds to the input alone for sft (95% CI of the difference above 0)."
    ]
