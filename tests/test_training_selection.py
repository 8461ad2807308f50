"""train_reranker with train.selection: the grid is trained, the dev curve recorded, the chosen model saved.

The toy collection is test_lce's: four queries, each with its relevant document and three
judged non-relevant ones; a fifth query is a test query that selection must never score.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rerank_audit.models.settings import ScoringSettings
from rerank_audit.text.prompts import DEFAULT_QLM_TEMPLATE
from rerank_audit.training.examples import lce_groups
from rerank_audit.training.selection import DevSelection
from test_lce import TOY

# TRL 1.16 itself calls a transformers 5.24 deprecated alias; not ours to fix.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")]
SETTINGS = ScoringSettings(max_length=64, dtype="float32", device="cpu", progress=False)
TEST_QUERY = ("t1", "a test claim nobody may read")


@pytest.fixture(scope="module")
def tables():
    """(corpus, queries, qrels, splits): TOY's four queries are dev queries, t1 a test query."""
    corpus = pd.DataFrame([(f"{q}d{i}", "", text) for q, (_, docs) in TOY.items() for i, text in enumerate(docs)], columns=["doc_id", "title", "text"])
    queries = pd.DataFrame([(q, text) for q, (text, _) in TOY.items()] + [TEST_QUERY], columns=["query_id", "text"])
    qrels = pd.DataFrame(
        [(q, f"{q}d{i}", 2 if i == 0 else 0) for q in TOY for i in range(4)] + [("t1", "q1d1", 1), ("t1", "q2d1", 0)],
        columns=["query_id", "doc_id", "relevance"],
    )
    splits = pd.DataFrame({"query_id": [*TOY, "t1"], "split": ["dev"] * len(TOY) + ["test"], "position": [*range(len(TOY)), 0]})
    return corpus, queries, qrels, splits


@pytest.fixture(scope="module")
def groups(tables):
    corpus, queries, qrels, _ = tables
    run = qrels.assign(rank=qrels.groupby("query_id").cumcount() + 1)[["query_id", "doc_id", "rank"]]
    return lce_groups(corpus, queries, qrels, run, list(TOY), negatives_per_group=3, max_positives_per_query=1, relevance_threshold=1,
                      seed=0, unjudged_negatives=False)


def _hyper(**changes):
    from rerank_audit.training.settings import TrainingSettings

    return TrainingSettings.from_dict(dict(learning_rate=1.0, epochs=1, batch_size=4, gradient_accumulation=1, max_length=999, save_steps=1000,
                                           logging_steps=1, temperature=1.0, lora={"enabled": False}, max_steps=1) | changes)


def _selection(tables, measure, learning_rates, epochs, eval_steps):
    corpus, queries, qrels, splits = tables
    grid = {"learning_rates": learning_rates, "epochs": epochs, "eval_steps": eval_steps, "measure": measure}
    return grid, DevSelection.from_config(grid, queries=queries, corpus=corpus, qrels=qrels, splits=splits, relevance_threshold=1)


def _spy_on_scored_queries(monkeypatch) -> list[str]:
    """Every query text the dev scorers are given during training."""
    import rerank_audit.models.scoring as scoring

    seen, build = [], scoring.model_scorer

    def spied(*args, **kwargs):
        scorer = build(*args, **kwargs)
        score_pairs = scorer.score_pairs
        scorer.score_pairs = lambda queries, documents: (seen.extend(queries), score_pairs(queries, documents))[1]
        return scorer

    monkeypatch.setattr(scoring, "model_scorer", spied)
    return seen


def _dev_value(scorer, tables, measure) -> float:
    from rerank_audit.training.selection import dev_measure

    corpus, queries, qrels, splits = tables
    return dev_measure(lambda _: scorer, queries, corpus, qrels, list(TOY), splits, measure=measure, relevance_threshold=1)(None)


def test_selection_trains_the_grid_records_the_curves_and_saves_the_chosen_checkpoint(tmp_path, tiny_lm_dir, tables, groups, monkeypatch):
    from rerank_audit.models.scoring import load_scorer
    from rerank_audit.training.trainers import train_reranker

    seen = _spy_on_scored_queries(monkeypatch)
    grid, selection = _selection(tables, "nDCG@5", [1e-3, 1e-2], epochs=6, eval_steps=3)
    record = train_reranker("qlm_lce", tiny_lm_dir, groups, tmp_path, _hyper(), seed=0, template=DEFAULT_QLM_TEMPLATE, scoring=SETTINGS,
                            selection=selection)

    chosen = record["selection"]
    assert chosen["grid"] == grid and chosen["dev_queries"] == len(TOY) and chosen["measure"] == "nDCG@5"
    # step 0 once (the untrained model, shared by the grid), then every 3 steps and the last (6) of each run
    steps = [(row["learning_rate"], row["step"]) for row in chosen["dev_curve"]]
    assert steps == [(1e-3, 0), (1e-3, 3), (1e-3, 6), (1e-2, 3), (1e-2, 6)]
    # the choice, by the rule of training/selection.py read off the recorded curve: the highest dev value,
    # among equals the earliest step, then the smaller learning rate; step 0 is the untrained model (no rate)
    best = max(row["value"] for row in chosen["dev_curve"])
    step, rate = min((row["step"], row["learning_rate"]) for row in chosen["dev_curve"] if row["value"] == best)
    untrained = next(row["value"] for row in chosen["dev_curve"] if row["step"] == 0)
    assert chosen["choice"] == {"learning_rate": rate if step else None, "step": step, "value": best, "untrained_value": untrained, "trained": step != 0}
    assert chosen["choice"]["trained"] and chosen["choice"]["value"] > chosen["choice"]["untrained_value"]
    assert record["steps"] == chosen["choice"]["step"] and [run["steps"] for run in chosen["runs"]] == [6, 6]
    # "hyper": what the saved model trained with (the grid's rate and epochs), beside the configured values
    assert (record["hyper"]["learning_rate"], record["hyper"]["epochs"]) == (chosen["choice"]["learning_rate"], 6)
    assert record["hyper_configured"] == json.loads(json.dumps(_hyper().as_dict()))
    assert (record["hyper_configured"]["learning_rate"], record["hyper_configured"]["max_steps"], record["hyper"]["max_steps"]) == (1.0, 1, None)
    assert json.loads((tmp_path / "training_config.json").read_text()) == record
    # the model saved is the chosen checkpoint: re-scored from the folder, it has the chosen dev value
    saved = load_scorer("qlm_lce", tmp_path, tiny_lm_dir, settings=SETTINGS, template=DEFAULT_QLM_TEMPLATE)
    assert _dev_value(saved, tables, "nDCG@5") == pytest.approx(chosen["choice"]["value"], abs=1e-9)
    # selection scored the dev queries only, never the test query it was handed with them
    assert seen and set(seen) == {text for text, _ in TOY.values()}


def test_when_step_0_is_chosen_the_saved_model_is_the_base_model(tmp_path, tiny_lm_dir, tables, groups):
    from rerank_audit.models.scoring import load_scorer
    from rerank_audit.training.trainers import train_reranker

    # Judged@5 of a judged pool is 1 at every step: a tie, which goes to the untrained model
    _, selection = _selection(tables, "Judged@5", [1e-2], epochs=2, eval_steps=1)
    lora = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    record = train_reranker("qlm_lce", tiny_lm_dir, groups, tmp_path, _hyper(lora=lora), seed=0, template=DEFAULT_QLM_TEMPLATE, scoring=SETTINGS,
                            selection=selection)

    assert record["selection"]["choice"] == {"learning_rate": None, "step": 0, "value": 1.0, "untrained_value": 1.0, "trained": False}
    assert record["selection"]["model"] == "the untrained base model (step 0)"
    assert (record["steps"], record["loss_first"], record["adapter"]) == (0, None, True)
    pairs = [(query, document) for query, documents in TOY.values() for document in documents]
    queries, documents = [q for q, _ in pairs], [d for _, d in pairs]
    trained = load_scorer("qlm_lce", tmp_path, tiny_lm_dir, settings=SETTINGS, template=DEFAULT_QLM_TEMPLATE).score_pairs(queries, documents)
    base = load_scorer("qlm", tiny_lm_dir, settings=SETTINGS, template=DEFAULT_QLM_TEMPLATE).score_pairs(queries, documents)
    np.testing.assert_allclose(trained, base, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["sft", "dpo", "dpo_pairs", "reward"])
def test_every_trainer_selects_on_dev_with_its_own_scorer_and_saves_what_it_chose(method, tmp_path, tiny_lm_dir):
    """The yes/no, DPO (scored against the adapter-disabled reference) and reward-head paths of selection:
    the model saved, re-scored from its folder, has the dev value of the choice."""
    from test_training import CORPUS, LORA, QRELS, QUERIES, hyper, training_data
    from transformers import AutoTokenizer

    from rerank_audit.models.scoring import load_scorer
    from rerank_audit.training.selection import dev_measure
    from rerank_audit.training.trainers import train_reranker

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    splits = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4"], "split": ["dev", "dev", "train", "train"], "position": [0, 1, 0, 1]})
    grid = {"learning_rates": [1e-2], "epochs": 1, "eval_steps": 1, "measure": "nDCG@5"}
    selection = DevSelection.from_config(grid, queries=QUERIES, corpus=CORPUS, qrels=QRELS, splits=splits, relevance_threshold=2)
    settings = hyper(lora=LORA, max_length=128, batch_size=4)
    record = train_reranker(method, tiny_lm_dir, training_data(method, tokenizer), tmp_path, settings, seed=0, scoring=SETTINGS, selection=selection)

    chosen = record["selection"]
    assert chosen["choice"]["trained"] or method == "sft"  # step 0 ranks nothing for dpo, dpo_pairs, reward
    assert [row["step"] for row in chosen["dev_curve"]] == list(range(record["selection"]["runs"][0]["steps"] + 1))
    saved = load_scorer(method, tmp_path, tiny_lm_dir, settings=SETTINGS, beta=settings.beta)
    value = dev_measure(lambda _: saved, QUERIES, CORPUS, QRELS, ["q1", "q2"], splits, measure="nDCG@5", relevance_threshold=2)(None)
    assert value == pytest.approx(chosen["choice"]["value"], abs=1e-9)
