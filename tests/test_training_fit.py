"""Training fit: each trained method's accuracy on its own training pairs, beside the untrained model's.

Hand-made collection; the test scorer scores a (query, document) pair by how many distinct query
words the document holds:

    q1 "sea level"   a "Sea level: tide gauge" 2   b "sea ice" 1   e "sea floor" 1   d "river discharge" 0
    q2 "snow alps"   c "Snow: alps snow depth" 2   d 0
"""

import re

import numpy as np
import pandas as pd
import pytest

from rerank_audit.evaluation.statistics import compare_methods
from rerank_audit.evaluation.summary import summary_markdown, training_markdown
from rerank_audit.text import prompts
from rerank_audit.training.examples import answer_pairs
from rerank_audit.training.fit import pairwise_accuracy, training_fit, training_pairs
from rerank_audit.models.settings import ScoringSettings

CORPUS = pd.DataFrame(
    {
        "doc_id": ["a", "b", "c", "d", "e"],
        "title": ["Sea level", "", "Snow", "", ""],
        "text": ["tide gauge", "sea ice", "alps snow depth", "river discharge", "sea floor"],
    }
)
QUERIES = pd.DataFrame({"query_id": ["q1", "q2", "q3"], "text": ["sea level", "snow alps", "river"]})
# q1: a relevant (listed twice), b and e not; q2: c relevant, d not; q3: d relevant, no negative.
SFT = pd.DataFrame(
    [("q1", "a", 1), ("q1", "b", 0), ("q1", "a", 1), ("q2", "c", 1), ("q1", "e", 0), ("q2", "d", 0), ("q3", "d", 1)],
    columns=["query_id", "doc_id", "label"],
).assign(prompt=lambda t: "prompt " + t.doc_id, completion=lambda t: np.where(t.label == 1, "Yes", "No"))
SFT_PAIRS = [("q1", "a", "b"), ("q1", "a", "e"), ("q2", "c", "d")]
# Scores 2 > 1, 1 = 1, 0 < 2, 2 > 0: accuracy (1 + 0.5 + 0 + 1) / 4.
DOCUMENT_PAIRS = pd.DataFrame(
    [("q1", "a", "b"), ("q1", "b", "e"), ("q1", "d", "a"), ("q2", "c", "d")], columns=["query_id", "chosen_doc_id", "rejected_doc_id"]
).assign(prompt="p", chosen="x", rejected="y")
RECORD = {"steps": 12, "loss_first": 0.6931, "loss_last": 0.12, "method": "ignored"}


class QueryWordsScorer:
    """Test double for the arithmetic: score = number of distinct query words in the document; records its calls."""

    def __init__(self):
        self.calls = []

    def score_pairs(self, queries, documents):
        self.calls.append(list(zip(queries, documents)))
        words = [set(re.findall(r"\w+", text.lower())) for text in documents]
        return np.array([len(set(query.split()) & doc) for query, doc in zip(queries, words)], dtype="float64")


class ConstantScorer:
    def score_pairs(self, queries, documents):
        return np.zeros(len(queries))


def rows(frame):
    return [tuple(row) for row in frame[["query_id", "chosen_doc_id", "rejected_doc_id"]].itertuples(index=False)]


def test_sft_pairs_are_each_relevant_document_over_each_non_relevant_one_of_its_query():
    assert rows(training_pairs("sft", SFT)) == SFT_PAIRS


def test_dpo_pairs_read_the_label_from_the_chosen_answer():
    assert rows(training_pairs("dpo", answer_pairs(SFT), relevant_answer="Yes")) == SFT_PAIRS
    # Read with the other answer as the relevant one, every pair turns round.
    assert rows(training_pairs("dpo", answer_pairs(SFT), relevant_answer="No")) == [("q1", "b", "a"), ("q1", "e", "a"), ("q2", "d", "c")]


def test_document_pairs_are_the_table_rows_and_qlm_sft_has_none():
    assert rows(training_pairs("reward", DOCUMENT_PAIRS)) == rows(DOCUMENT_PAIRS)
    with pytest.raises(ValueError, match="relevant documents only"):
        training_pairs("qlm_sft", SFT)


def test_lce_pairs_are_each_groups_relevant_document_over_each_of_its_negatives_shared_pairs_once():
    groups = pd.DataFrame(
        [(0, 0, "q1", "a"), (0, 1, "q1", "b"), (0, 2, "q1", "e"), (1, 0, "q2", "c"), (1, 1, "q2", "d"), (2, 0, "q1", "a"), (2, 1, "q1", "b")],
        columns=["group", "position", "query_id", "doc_id"],
    )
    assert rows(training_pairs("qlm_lce", groups)) == [("q1", "a", "b"), ("q1", "a", "e"), ("q2", "c", "d")]


def test_accuracy_counts_correct_orders_ties_as_half_and_scores_each_pair_once():
    scorer = QueryWordsScorer()
    assert pairwise_accuracy(scorer, DOCUMENT_PAIRS, QUERIES, CORPUS) == (1 + 0.5 + 0 + 1) / 4
    assert len(scorer.calls) == 1
    assert sorted(scorer.calls[0]) == sorted(
        [("sea level", "Sea level: tide gauge"), ("sea level", "sea ice"), ("sea level", "sea floor"),
         ("sea level", "river discharge"), ("snow alps", "Snow: alps snow depth"), ("snow alps", "river discharge")]
    )  # fmt: skip


def test_a_pair_naming_a_document_missing_from_the_corpus_is_an_error_naming_it():
    bad = DOCUMENT_PAIRS.assign(rejected_doc_id=["b", "zz", "a", "d"])
    with pytest.raises(ValueError, match=r"not in the corpus table: \['zz'\].*training_data"):
        pairwise_accuracy(QueryWordsScorer(), bad, QUERIES, CORPUS)


def test_training_fit_scores_the_trained_and_the_untrained_scorer_of_the_same_family():
    loaded = []

    def load(method):
        loaded.append(method)
        return QueryWordsScorer() if method == "sft" else ConstantScorer()

    fit = training_fit("sft", "1", SFT, QUERIES, CORPUS, RECORD, load)
    assert loaded == ["sft", "zeroshot"]
    assert fit == {
        "method": "sft", "budget": "1", "pairs": 3, "accuracy": 1.0, "base_accuracy": 0.5, "note": None,
        "base_note": None, "loss_first": 0.6931, "loss_last": 0.12, "steps": 12,
    }  # fmt: skip


@pytest.mark.parametrize("method, base, note", [("dpo_pairs", 0.5, "implicit reward is 0"), ("reward", None, "no trained reward head")])
def test_document_pair_methods_have_no_untrained_scorer_to_run(method, base, note):
    fit = training_fit(method, "all", DOCUMENT_PAIRS, QUERIES, CORPUS, RECORD, lambda m: QueryWordsScorer() if m == method else None)
    assert (fit["pairs"], fit["accuracy"], fit["base_accuracy"]) == (4, 0.625, base)
    assert note in fit["base_note"]


def test_a_model_kept_at_step_0_by_selection_says_so_and_scores_as_its_untrained_counterpart():
    record = RECORD | {"steps": 0, "loss_first": None, "loss_last": None,
                       "selection": {"choice": {"learning_rate": None, "step": 0, "value": 0.8, "untrained_value": 0.8, "trained": False}}}
    groups = pd.DataFrame([(0, 0, "q1", "a"), (0, 1, "q1", "b"), (1, 0, "q2", "c"), (1, 1, "q2", "d")], columns=["group", "position", "query_id", "doc_id"])
    fit = training_fit("qlm_lce", "1", groups, QUERIES, CORPUS, record, lambda method: QueryWordsScorer())
    assert (fit["steps"], fit["pairs"], fit["accuracy"], fit["base_accuracy"]) == (0, 2, 1.0, 1.0)
    assert "model selection kept the untrained model" in fit["note"]


def test_qlm_sft_reports_no_accuracy_and_loads_no_model():
    def load(method):
        raise AssertionError("no scorer is needed without pairs")

    fit = training_fit("qlm_sft", "1", SFT, QUERIES, CORPUS, RECORD, load)
    assert (fit["pairs"], fit["accuracy"], fit["base_accuracy"]) == (0, None, None)
    assert "relevant documents only" in fit["note"]
    assert (fit["loss_first"], fit["loss_last"], fit["steps"]) == (0.6931, 0.12, 12)


FITS = [
    {"dataset": "toy", "method": "reward", "budget": "1", "pairs": 4, "accuracy": 0.625, "base_accuracy": None, "note": None,
     "base_note": "the untrained base model has no trained reward head", "loss_first": 0.7, "loss_last": 0.2, "steps": 8},
    {"dataset": "toy", "method": "sft", "budget": "1", "pairs": 3, "accuracy": 1.0, "base_accuracy": 0.5, "note": None,
     "base_note": None, "loss_first": 0.6931, "loss_last": 0.12, "steps": 12},
]  # fmt: skip


def test_training_table_has_a_row_per_model_in_method_order_and_explains_missing_values():
    text = training_markdown(FITS, methods=["sft", "reward"])
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[1:] == [
        "| sft | budget 1 training queries | 12 | 0.693 → 0.120 | 3 | 1.000 vs 0.500 |",
        "| reward | budget 1 training queries | 8 | 0.700 → 0.200 | 4 | 0.625 vs – |",
    ]
    assert text.startswith("## Training — models trained on toy")
    assert "> reward: the untrained base model has no trained reward head." in text


def test_summary_closes_with_the_training_table_when_given():
    ranking = pd.DataFrame(
        [("toy", m, b, "test", f"q{i}", "nDCG@10", v + 0.1 * i) for m, b, v in [("bm25", "0", 0.3), ("sft", "1", 0.5)] for i in range(4)],
        columns=["dataset", "method", "budget", "split", "query_id", "measure", "value"],
    )
    stats = compare_methods(ranking, n_resamples=20, seed=0)
    assert "## Training" not in summary_markdown(stats, methods=["sft"])
    summary = summary_markdown(stats, methods=["sft"], training=FITS[1:])
    assert summary.rstrip().endswith(training_markdown(FITS[1:], methods=["sft"]).rstrip())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # TRL's, as in test_training
def test_a_trained_dpo_model_orders_its_own_training_pairs_better_than_the_untrained_model(tiny_lm_dir, tmp_path):
    """dpo on the toy glacier-vs-desert task of test_training (it learns it there); the accuracies
    equal a naive per-pair count from the real scorers, and the trained model gets every pair right."""
    import torch

    from rerank_audit.models.scoring import load_scorer
    from rerank_audit.training.examples import sft_examples
    from rerank_audit.training.trainers import train_reranker
    from test_training import FILLERS, TOY_TRAINING, hyper, toy_collection
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    corpus, queries, qrels, run = toy_collection()
    examples = sft_examples(corpus, queries, qrels, run, list(queries.query_id), tokenizer, negatives_per_positive=1,
                            max_positives_per_query=len(FILLERS), relevance_threshold=1, seed=0)  # fmt: skip
    settings = hyper(**TOY_TRAINING["dpo"], save_steps=1000, logging_steps=10)
    record = train_reranker("dpo", tiny_lm_dir, answer_pairs(examples), tmp_path, settings, seed=0)

    def load(method):
        folder = tiny_lm_dir if method == "zeroshot" else tmp_path
        return load_scorer(method, folder, tiny_lm_dir, beta=settings.beta, settings=ScoringSettings(device="cpu", dtype="float32"))

    yes = prompts.pointwise_completions(tokenizer)[0]
    fit = training_fit("dpo", "all", answer_pairs(examples), queries, corpus, record, load, relevant_answer=yes)
    # Every glacier (relevant) over every desert of the same query: 8 x 8 per query.
    assert fit["pairs"] == 2 * len(FILLERS) ** 2

    def naive(scorer):
        text = dict(zip(queries.query_id, queries.text))
        docs = dict(zip(corpus.doc_id, prompts.corpus_texts(corpus, corpus.doc_id)))
        labelled = examples.drop_duplicates(["query_id", "doc_id"])
        wins = []
        for query_id, group in labelled.groupby("query_id"):
            for good in group.doc_id[group.label == 1]:
                for bad in group.doc_id[group.label == 0]:
                    high, low = scorer.score_pairs([text[query_id]] * 2, [docs[good], docs[bad]])
                    wins.append(1.0 if high > low else 0.5 if high == low else 0.0)
        return sum(wins) / len(wins)

    assert fit["accuracy"] == pytest.approx(naive(load("dpo")), abs=1e-12)
    assert fit["base_accuracy"] == pytest.approx(naive(load("zeroshot")), abs=1e-12)
    print(f"dpo training-pair accuracy {fit['accuracy']:.3f}, untrained {fit['base_accuracy']:.3f}, loss {fit['loss_first']:.3f} -> {fit['loss_last']:.3f}")
    assert fit["accuracy"] == 1.0 and fit["base_accuracy"] < 1.0
    assert (fit["steps"], fit["loss_first"], fit["loss_last"]) == (record["steps"], record["loss_first"], record["loss_last"])
