"""qlm_lce and train.selection through the real workflow on the tiny random-weight model."""

import json

import numpy as np
import pandas as pd
import pytest

from workflow_runner import planned_rules, snakemake, tiny_config, write_config, write_tiny_collection

pytestmark = pytest.mark.slow


def test_qlm_lce_trains_and_with_selection_a_step_0_choice_reranks_with_the_base_model(tmp_path, tiny_lm_dir):
    write_tiny_collection(tmp_path)
    config = tiny_config(methods=["qlm", "qlm_lce"], base_model=str(tiny_lm_dir), budgets=[1])
    config["split"].update(seed=3, dev=1, test=2)  # q1 trains (it has a judged non-relevant document), q2 is the dev query
    config["train"].update(unjudged_negatives=True, negatives_per_group=2)
    # the first test query (q4) has one BM25 candidate: no spread to normalise score drops by
    config["explain"].update(queries=1, top_documents=1, bottom_documents=0, normalisation="none")
    config["probe"] = {"probes": []}  # no shortcut probes: no probe job, a report without its probe table
    results = tmp_path / "results" / "tiny"
    stale = results / "report" / "probes.md"  # as an earlier run with probes on left it
    stale.parent.mkdir(parents=True)
    stale.write_text("probe table of an earlier run\n")
    snakemake(tmp_path, write_config(tmp_path, config))
    assert not (results / "probe").exists() and not (results / "report" / "probes.md").exists()
    assert (results / "report" / "summary.md").exists()
    # The writer's verdict read as a probability, carried to the report's verdict AUC table.
    rationales = pd.read_parquet(results / "rationale" / "qlm" / "0" / "rationales.parquet")
    assert rationales.verdict_log_odds.notna().all() and rationales.verdict_log_odds_input_only.notna().all()
    assert (results / "report" / "verdict_auc.md").read_text().startswith("# Verdict AUC: tiny")
    # ... and to accuracy against explanation: each method's accuracy is its mean over the evaluate stage's test queries.
    profiles = pd.read_parquet(results / "report" / "accuracy_vs_explanation.parquet").set_index(["method", "budget"])
    per_query = pd.read_parquet(results / "evaluate" / "per_query.parquet").query("split == 'test'")
    accuracy = per_query[per_query.measure == profiles.accuracy_measure.iloc[0]].groupby(["method", "budget"]).value.mean()
    assert set(profiles.index) == {("qlm", "0"), ("qlm_lce", "1")}
    assert profiles.accuracy.to_dict() == pytest.approx(accuracy[list(profiles.index)].to_dict())
    assert (results / "report" / "accuracy_vs_explanation.md").read_text().startswith("# Do the methods that rank well explain well? tiny")
    # Turning them on afterwards plans the probes (of BM25, qlm, qlm_lce) and the report, nothing else.
    probing = dict(config, probe={"probes": None})
    assert planned_rules(tmp_path, write_config(tmp_path, probing, "probing.yaml")) == {"probe": 2, "probe_bm25": 1, "report": 1, "all": 1}
    models = results / "models" / "qlm_lce" / "1"
    record = json.loads((models / "training_config.json").read_text())
    groups = pd.read_parquet(results / "train" / "1" / "lce_groups.parquet")
    assert record["steps"] >= 1 and record["train_samples"] == groups.group.nunique() and "selection" not in record
    assert record["max_length"] == config["rerank"]["max_length"]  # trained on the tokens it is scored on
    fit = json.loads((models / "training_fit.json").read_text())
    assert fit["pairs"] == (groups.position > 0).sum() and fit["accuracy"] is not None and fit["base_accuracy"] is not None
    stats = pd.read_parquet(results / "report" / "summary.parquet")
    assert set(stats[stats.method == "qlm_lce"].untrained_method) == {"qlm"}
    assert not (results / "report" / "dev_curves.png").exists()

    # With selection: Judged@10 of a judged pool is 1 at every step, a tie, so the untrained model is chosen.
    config["train"]["selection"] = {"learning_rates": [1.0e-3, 1.0e-2], "epochs": 2, "eval_steps": 1, "measure": "Judged@10"}
    snakemake(tmp_path, write_config(tmp_path, config, "selection.yaml"))
    record = json.loads((models / "training_config.json").read_text())
    selection = record["selection"]
    assert selection["grid"] == config["train"]["selection"] and selection["dev_queries"] == 1
    assert {row["learning_rate"] for row in selection["dev_curve"]} == {1.0e-3, 1.0e-2}
    assert [row["step"] for row in selection["dev_curve"] if row["learning_rate"] == 1.0e-3][0] == 0
    assert selection["choice"]["step"] == 0 and selection["model"] == "the untrained base model (step 0)"
    # ... and re-ranks as qlm, the base model, does
    runs = {m: pd.read_parquet(results / "rerank" / m / b / "run.parquet").sort_values(["query_id", "doc_id"]) for m, b in [("qlm", "0"), ("qlm_lce", "1")]}
    assert list(runs["qlm"].doc_id) == list(runs["qlm_lce"].doc_id)
    # the same model, memory and count of what the job holds: the same batches (before jobs cut them by their resident
    # memory, and a full suite run here found them 2.2e-5 relative apart)
    np.testing.assert_allclose(runs["qlm_lce"].score, runs["qlm"].score, atol=1e-5)
    dev = set(pd.read_parquet(results / "split" / "splits.parquet").query("split == 'dev'").query_id)
    assert dev and not dev & set(runs["qlm_lce"].query_id)
    assert (results / "report" / "dev_curves.png").stat().st_size > 0
    summary = (results / "report" / "summary.md").read_text()
    assert "## Model selection — dev Judged@10 on 1 dev queries" in summary
    assert "Dev selection kept the untrained model for qlm_lce." in summary
