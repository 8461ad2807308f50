"""Specification of model selection on dev queries (training/selection.py).

The choice over a grid is checked on hand-made dev curves with a known answer (step 0, the
untrained model, included); the callback inside a real Trainer run on the tiny model with a
scripted dev measure; and the guard: no test query ever reaches selection.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rerank_audit.models.loading import load_tokenizer
from rerank_audit.training.examples import lce_groups
from rerank_audit.training.lce import LCEConfig, LCETrainer, group_dataset
from rerank_audit.training.selection import (
    Choice,
    DevSelectionCallback,
    QueryLeakError,
    check_dev_queries,
    dev_curve,
    dev_measure,
    select_checkpoint,
    selection_record,
)
from tiny_model import spread_weights

SPLITS = pd.DataFrame(
    [("t1", "train"), ("t2", "train"), ("v1", "dev"), ("v2", "dev"), ("x1", "test"), ("x2", "test")], columns=["query_id", "split"]
)
DEV = ["v1", "v2"]


# --------------------------------------------------------------------------------------
# the choice over a grid


def test_selection_picks_the_best_learning_rate_and_step():
    curves = {
        1e-5: {0: 0.40, 10: 0.45, 20: 0.47},
        1e-4: {0: 0.40, 10: 0.52, 20: 0.49},
        1e-3: {0: 0.40, 10: 0.30, 20: 0.20},
    }
    assert select_checkpoint(curves) == Choice(learning_rate=1e-4, step=10, value=0.52, untrained_value=0.40)


def test_selection_keeps_the_untrained_model_when_training_only_hurts():
    curves = {1e-5: {0: 0.40, 10: 0.39, 20: 0.38}, 1e-4: {0: 0.40, 10: 0.35}, 1e-3: {0: 0.40, 10: 0.10}}
    choice = select_checkpoint(curves)
    assert choice == Choice(learning_rate=None, step=0, value=0.40, untrained_value=0.40)
    assert not choice.trained


def test_selection_ties_go_to_the_untrained_model_then_the_earliest_step_then_the_smallest_learning_rate():
    assert select_checkpoint({1e-4: {0: 0.5, 10: 0.5}}).step == 0
    choice = select_checkpoint({1e-4: {0: 0.4, 5: 0.5, 10: 0.6}, 1e-3: {0: 0.4, 5: 0.6, 10: 0.6}, 1e-5: {0: 0.4, 10: 0.6}})
    assert (choice.learning_rate, choice.step) == (1e-3, 5)
    choice = select_checkpoint({1e-3: {0: 0.4, 10: 0.6}, 1e-5: {0: 0.4, 10: 0.6}})
    assert (choice.learning_rate, choice.step) == (1e-5, 10)


def test_selection_needs_the_untrained_model_on_a_curve():
    with pytest.raises(ValueError, match="step 0"):
        select_checkpoint({1e-4: {10: 0.5}})
    # one run scoring step 0 is enough (the others may skip it: it is the same model)
    assert select_checkpoint({1e-4: {0: 0.5, 10: 0.4}, 1e-3: {10: 0.45}}).step == 0


def test_a_method_whose_untrained_form_ranks_nothing_gets_its_best_trained_step():
    # DPO before training scores 0 everywhere (ties: a chance ranking); step 0 is reported, not chosen
    curves = {1e-5: {0: 0.60, 10: 0.41, 20: 0.43}, 1e-4: {0: 0.60, 10: 0.45, 20: 0.44}}
    choice = select_checkpoint(curves, untrained_selectable=False)
    assert choice == Choice(learning_rate=1e-4, step=10, value=0.45, untrained_value=0.60)
    assert select_checkpoint(curves).step == 0  # the same curves, step 0 selectable
    with pytest.raises(ValueError, match="no trained step"):
        select_checkpoint({1e-4: {0: 0.5}}, untrained_selectable=False)


@pytest.mark.parametrize("method, drawn_steps", [("qlm_lce", {0, 10, 20}), ("dpo", {10, 20})])
def test_the_dev_curve_figure_draws_step_0_only_where_the_untrained_form_ranks(tmp_path, method, drawn_steps):
    from rerank_audit.evaluation.plots import dev_curves

    curves = {1e-4: {0: 0.60, 10: 0.45, 20: 0.44}}
    choice = select_checkpoint(curves, untrained_selectable=method == "qlm_lce")
    record = {"method": method, "selection": selection_record({"learning_rates": [1e-4], "epochs": 1, "eval_steps": 10}, curves, choice,
                                                            measure="nDCG@5", dev_query_ids=DEV)}
    ax = dev_curves([record], tmp_path / "dev.png").axes[0]
    drawn = {int(x) for line in ax.lines for x in line.get_xdata() if line.get_label() == "lr 0.0001"}
    assert drawn == drawn_steps
    assert any(line.get_label() == "untrained (step 0)" for line in ax.lines) == (method == "qlm_lce")


def test_selection_record_is_plain_json():
    curves = {1e-4: {0: 0.40, 10: 0.52}, 1e-5: {0: 0.40, 10: 0.45}}
    choice = select_checkpoint(curves)
    record = selection_record({"learning_rates": (1e-5, 1e-4), "epochs": 2, "eval_steps": 10}, curves, choice, measure="nDCG@5", dev_query_ids=DEV)
    assert json.loads(json.dumps(record)) == {
        "measure": "nDCG@5",
        "dev_queries": 2,
        "grid": {"learning_rates": [1e-5, 1e-4], "epochs": 2, "eval_steps": 10},
        "dev_curve": [
            {"learning_rate": 1e-5, "step": 0, "value": 0.40},
            {"learning_rate": 1e-5, "step": 10, "value": 0.45},
            {"learning_rate": 1e-4, "step": 0, "value": 0.40},
            {"learning_rate": 1e-4, "step": 10, "value": 0.52},
        ],
        "choice": {"learning_rate": 1e-4, "step": 10, "value": 0.52, "untrained_value": 0.40, "trained": True},
    }


# --------------------------------------------------------------------------------------
# no test query


def test_selection_refuses_a_test_query():
    assert check_dev_queries(["v2", "v1", "v2"], SPLITS) == ["v2", "v1"]
    with pytest.raises(QueryLeakError, match="x1"):
        check_dev_queries(["v1", "x1"], SPLITS)
    with pytest.raises(QueryLeakError, match="t1"):
        check_dev_queries(["t1"], SPLITS)  # a training query is no dev query either
    with pytest.raises(QueryLeakError, match="unknown"):
        check_dev_queries(["unknown"], SPLITS)
    with pytest.raises(QueryLeakError):
        DevSelectionCallback(lambda model: 0.0, ["v1", "x2"], SPLITS, eval_steps=5)


def _tables():
    """Queries, corpus and qrels of every split: each query has a relevant and a non-relevant document."""
    ids = SPLITS.query_id.tolist()
    queries = pd.DataFrame({"query_id": ids, "text": [f"query {q}" for q in ids]})
    corpus = pd.DataFrame({"doc_id": [f"{q}-{k}" for q in ids for k in ("rel", "non")], "title": "", "text": [f"doc {q} {k}" for q in ids for k in ("rel", "non")]})
    qrels = pd.DataFrame([(q, f"{q}-{k}", grade) for q in ids for k, grade in (("rel", 1), ("non", 0))], columns=["query_id", "doc_id", "relevance"])
    return queries, corpus, qrels


class _SpyScorer:
    """Scores 1.0 for documents whose text ends in ``favoured``, else 0.0; records every query it sees."""

    def __init__(self, favoured: str, seen: list):
        self.favoured, self.seen = favoured, seen

    def score_pairs(self, queries, documents):
        self.seen.extend(queries)
        return [1.0 if d.endswith(self.favoured) else 0.0 for d in documents]


def test_dev_measure_scores_only_the_dev_queries_judged_pool():
    queries, corpus, qrels = _tables()
    seen = []
    measure = dev_measure(lambda model: _SpyScorer(model, seen), queries, corpus, qrels, DEV, SPLITS, measure="nDCG@5", relevance_threshold=1)
    assert measure("rel") == pytest.approx(1.0)  # the relevant document first in both dev queries
    assert measure("non") == pytest.approx(1 / 1.5849625007211563)  # 1/log2(3): the relevant one second
    assert set(seen) == {"query v1", "query v2"}
    assert len(seen) == 2 * 2 * 2  # two calls, two queries, two judged documents each
    with pytest.raises(QueryLeakError):
        dev_measure(lambda model: _SpyScorer(model, seen), queries, corpus, qrels, ["v1", "x1"], SPLITS, measure="nDCG@5", relevance_threshold=1)


# --------------------------------------------------------------------------------------
# the callback in a Trainer run


class _Scripted:
    """A dev measure that returns the given values in turn and counts its calls (fails when asked once too often)."""

    def __init__(self, values):
        self.values, self.calls, self.modes = list(values), 0, []

    def __call__(self, model) -> float:
        self.modes.append(model.training)
        self.calls += 1
        return self.values.pop(0)


@pytest.fixture(scope="module")
def groups():
    corpus = pd.DataFrame({"doc_id": ["a", "b", "c", "d"], "title": "", "text": ["Snow in the Alps.", "Sea level at Venice.", "Polar bears.", "Boreal forest flux."]})
    queries = pd.DataFrame({"query_id": ["t1", "t2"], "text": ["snow cover", "sea level rise"]})
    qrels = pd.DataFrame([("t1", "a", 1), ("t1", "c", 0), ("t1", "d", 0), ("t2", "b", 1), ("t2", "c", 0), ("t2", "d", 0)], columns=["query_id", "doc_id", "relevance"])
    run = qrels.assign(rank=1)[["query_id", "doc_id", "rank"]]
    table = lce_groups(corpus, queries, qrels, run, ["t1", "t2"], negatives_per_group=2, max_positives_per_query=1, relevance_threshold=1, seed=0, unjudged_negatives=False)
    return group_dataset(table)


def _args(folder, max_steps=6, save_steps=1000, **changes) -> LCEConfig:
    settings = dict(
        output_dir=str(folder), learning_rate=1e-3, max_steps=max_steps, per_device_train_batch_size=1, save_strategy="steps",
        save_steps=save_steps, save_total_limit=1, logging_steps=1000, report_to="none", disable_tqdm=True, seed=0, use_cpu=True,
        max_length=None, model_init_kwargs={"dtype": "float32"},
    )  # fmt: skip
    return LCEConfig(**settings | changes)


def _trainer(folder, tiny_lm_dir, groups, callback, **changes):
    return LCETrainer(str(tiny_lm_dir), _args(folder, **changes), groups, load_tokenizer(tiny_lm_dir), callbacks=[callback])


# save_steps 1: every step is saved and rotated away but the best; 1000: only the best step is saved.
@pytest.mark.slow
@pytest.mark.parametrize("save_steps", [1, 1000])
def test_callback_records_the_dev_curve_and_keeps_the_best_checkpoint(tmp_path, tiny_lm_dir, groups, save_steps):
    measure = _Scripted([0.50, 0.70, 0.60, 0.65])  # steps 0, 2, 4, 6
    callback = DevSelectionCallback(measure, DEV, SPLITS, eval_steps=2, measure_name="nDCG@5")
    trainer = _trainer(tmp_path, tiny_lm_dir, groups, callback, save_steps=save_steps)
    trainer.train()
    assert callback.curve == {0: 0.50, 2: 0.70, 4: 0.60, 6: 0.65}
    assert callback.best_step == 2
    assert measure.modes == [False] * 4  # scored in eval mode
    assert trainer.model.training
    # the checkpoint of the best step survives the rotation (save_total_limit 1: the Trainer drops the last at the end)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]
    assert trainer.state.best_model_checkpoint == str(tmp_path / "checkpoint-2")
    assert dev_curve(trainer.state.log_history, "nDCG@5") == callback.curve

    # resumed from the checkpoint: the curve comes back from it, nothing is evaluated twice
    again = _Scripted([0.60, 0.65])  # steps 4, 6
    resumed = DevSelectionCallback(again, DEV, SPLITS, eval_steps=2, measure_name="nDCG@5")
    _trainer(tmp_path / "resumed", tiny_lm_dir, groups, resumed).train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert again.calls == 2
    assert resumed.curve == callback.curve


def test_callback_keeps_no_checkpoint_when_training_only_hurts(tmp_path, tiny_lm_dir, groups):
    callback = DevSelectionCallback(_Scripted([0.50, 0.40, 0.30]), DEV, SPLITS, eval_steps=2, measure_name="nDCG@5")
    trainer = _trainer(tmp_path, tiny_lm_dir, groups, callback, max_steps=4)
    trainer.train()
    assert callback.curve == {0: 0.50, 2: 0.40, 4: 0.30}
    assert callback.best_step == 0
    assert trainer.state.best_model_checkpoint is None
    assert not (tmp_path / "checkpoint-2").exists()  # no checkpoint for a step that did not improve
    assert select_checkpoint({1e-3: callback.curve}).step == 0


def test_callback_saves_the_best_trained_step_when_step_0_cannot_be_chosen(tmp_path, tiny_lm_dir, groups):
    callback = DevSelectionCallback(_Scripted([0.50, 0.30, 0.40]), DEV, SPLITS, eval_steps=2, measure_name="nDCG@5", untrained_selectable=False)
    trainer = _trainer(tmp_path, tiny_lm_dir, groups, callback, max_steps=4)
    trainer.train()
    assert callback.curve == {0: 0.50, 2: 0.30, 4: 0.40}
    assert callback.best_step == 4
    assert trainer.state.best_model_checkpoint == str(tmp_path / "checkpoint-4")


def test_callback_scores_a_bf16_autocast_model_as_it_is_saved(tmp_path, tiny_lm_dir, groups):
    """The Trainer wraps the model's forward in bf16 autocast; the callback must score the model as it
    will be loaded from disk. Each value of its curve equals the float32 scorer on the saved weights
    reloaded: step 0 the model before training, steps 1 and 2 their checkpoints; and bf16 autocast
    would give other values (the check can tell the two apart)."""
    import torch

    from rerank_audit.models.loading import load_causal_lm
    from rerank_audit.models.scoring.likelihood import QueryLikelihoodScorer
    from rerank_audit.models.settings import ScoringSettings

    tokenizer = load_tokenizer(tiny_lm_dir)
    model = spread_weights(load_causal_lm(tiny_lm_dir, "cpu", "float32"))  # logits large enough for bf16's rounding to show
    model.save_pretrained(tmp_path / "untrained")

    def measure(model) -> float:
        scorer = QueryLikelihoodScorer(model, tokenizer, settings=ScoringSettings(max_length=None, progress=False))
        return float(scorer.score_pairs(["snow cover"], ["Snow in the Alps."])[0])

    callback = DevSelectionCallback(measure, DEV, SPLITS, eval_steps=1, measure_name="qlm")
    output = tmp_path / "run"
    trainer = LCETrainer(model, _args(output, max_steps=2, bf16=True, save_steps=1, save_total_limit=None), groups, tokenizer, callbacks=[callback])
    trainer.train()
    assert trainer.accelerator.mixed_precision == "bf16"

    saved = {0: tmp_path / "untrained", 1: output / "checkpoint-1", 2: output / "checkpoint-2"}
    reloaded = {step: load_causal_lm(folder, "cpu", "float32") for step, folder in saved.items()}
    expected = {step: measure(reloaded[step]) for step in saved}
    assert callback.curve == pytest.approx(expected, rel=0, abs=1e-6)
    assert len(set(expected.values())) == 3  # training moved the score at each step
    for step in saved:  # bf16 autocast lands 100 times the tolerance away or more: the check above tells them apart
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert abs(measure(reloaded[step]) - expected[step]) > 1e-4, f"step {step}: bf16 autocast scores as float32"
