"""The whole DAG with every method on a tiny random-weight model, and resumable training."""

import json
import os
import signal
import subprocess
import time

import pandas as pd
import psutil
import pytest
import yaml

from rerank_audit.text import prompts
from transformers import AutoTokenizer
from workflow_runner import job_counts, planned_rules, snakemake, snakemake_command, tiny_config, write_config, write_tiny_collection

pytestmark = pytest.mark.slow
# A method is one registry entry: "toy" is added to rerank_audit.methods in every process of
# these runs (sitecustomize) and nowhere else, and must go through the whole DAG like the others.
TOY_ENTRY = """
from rerank_audit.methods import REGISTRY, Method

REGISTRY["toy"] = Method("toy", family="yesno", display="toy method", trainer="sft", training_table="sft_examples", untrained="zeroshot")
"""
# Every registry entry but sft and qlm_lce: toy is sft under another name (its family, trainer and training
# table), so it takes every path sft takes, 7 jobs fewer; sft itself runs end to end in test_slurm and
# test_controls, qlm_lce in test_workflow_selection.
METHODS = ["zeroshot", "dpo", "dpo_pairs", "reward", "qlm", "qlm_sft", "toy"]
UNTRAINED = ["zeroshot", "qlm"]
TRAINED = [(m, "0") for m in UNTRAINED] + [(m, "1") for m in METHODS if m not in UNTRAINED]  # (method, budget) of every model
MODELS = len(TRAINED)  # re-ranked, explained and rationalised once each


@pytest.fixture
def workdir(tmp_path, tiny_lm_dir, monkeypatch):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(TOY_ENTRY)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    write_tiny_collection(tmp_path)
    return tmp_path


def test_every_method_trains_reranks_and_is_evaluated(workdir, tiny_lm_dir):
    fused = tiny_config(methods=METHODS, base_model=str(tiny_lm_dir), budgets=[1])
    fused["rerank"]["fusion"] = ["qlm", "qlm_sft"]
    config = write_config(workdir, fused)
    snakemake(workdir, config)
    results = workdir / "results" / "tiny"
    metrics = pd.read_parquet(results / "evaluate" / "metrics.parquet")
    expected = {("bm25", "0"), ("random", "0"), *TRAINED, ("qlm+bm25", "0"), ("qlm_sft+bm25", "1")}
    assert set(zip(metrics.method, metrics.budget)) == expected
    stats = pd.read_parquet(results / "report" / "summary.parquet")
    assert {"qlm+bm25", "qlm_sft+bm25"} <= set(stats.method)
    toy = stats[(stats.method == "toy") & (stats.measure == "nDCG@10")]
    assert list(toy.untrained_method) == ["zeroshot"] and toy.untrained_p.notna().all()  # tested against its counterpart
    assert "| toy method |" in (results / "report" / "summary.md").read_text()
    examples = pd.read_parquet(results / "train" / "1" / "sft_examples.parquet")
    assert examples.query_id.nunique() == 1 and set(examples.completion) == set(prompts.pointwise_completions(AutoTokenizer.from_pretrained(tiny_lm_dir)))
    for method in [m for m, budget in TRAINED if budget == "1"]:
        record = json.loads((results / "models" / method / "1" / "training_config.json").read_text())
        assert record["method"] == method and record["steps"] >= 1
        fit = json.loads((results / "models" / method / "1" / "training_fit.json").read_text())
        assert (fit["method"], fit["steps"], fit["loss_last"]) == (method, record["steps"], record["loss_last"])
        assert (fit["accuracy"] is None) == (method == "qlm_sft")
        run = pd.read_parquet(results / "rerank" / method / "1" / "run.parquet")
        assert set(run.query_id) <= set(pd.read_parquet(results / "split" / "splits.parquet").query("split == 'test'").query_id)
    assert planned_rules(workdir, config) == {}
    assert "## Training" in (results / "report" / "summary.md").read_text()
    # The HTML report holds the table, the figures and the configuration that made them.
    assert yaml.safe_load((results / "report" / "config.yaml").read_text())["methods"] == METHODS
    snakemake(workdir, config, "--report", str(workdir / "report.html"))
    html = (workdir / "report.html").read_text()
    assert all(name in html for name in ("summary.md", "learning_curves.png", "ndcg_differences.png", "config.yaml", "probes.md", "probes.png", "accuracy_vs_shortcut.png"))
    # Shortcut probes of BM25 and of every model, on the test queries only; BM25 reads a bag of
    # words, so shuffling a document's words moves its score by exactly 0.
    test_queries = set(pd.read_parquet(results / "split" / "splits.parquet").query("split == 'test'").query_id)
    probed = {(m, b): pd.read_parquet(results / "probe" / m / b / "probes.parquet") for m, b in [("bm25", "0"), *TRAINED]}
    assert all(set(table.query_id) <= test_queries and {"stuffing", "shuffle"} <= set(table.probe) for table in probed.values())
    bm25 = probed[("bm25", "0")].dropna(subset=["delta"])
    shuffle, stuffing = (bm25[bm25.probe == probe].delta for probe in ("shuffle", "stuffing"))
    assert len(shuffle) and (shuffle == 0).all() and len(stuffing) and (stuffing > 0).all()
    tests = pd.read_parquet(results / "report" / "probes.parquet")
    assert set(zip(tests.method, tests.budget)) == {("bm25", "0"), *TRAINED}
    assert (results / "report" / "probes.md").read_text().startswith("# Shortcut probes: tiny")
    # A rationale parameter re-runs rationales and what follows, never training, re-ranking or attribution.
    changed = fused | {"rationale": {**fused["rationale"], "max_new_tokens": 12}}
    assert planned_rules(workdir, write_config(workdir, changed, "rationale.yaml")) == {"rationale": MODELS, "rationale_metrics": MODELS, "evaluate": 1, "report": 1, "all": 1}
    # An explanation parameter re-runs attribution and what follows, no training or re-ranking.
    changed = fused | {"explain": dict(fused["explain"])}
    # 1 -> 2, values that top_documents (2) and seed (1) already have: Snakemake 9.27.1 compares
    # parameter values as a set without names and missed this until rules passed them by name.
    changed["explain"]["exact_levels"] = 2
    explain_changed = write_config(workdir, changed, "explain.yaml")
    after_attribution = {"explain": MODELS, "rationale": MODELS, "rationale_metrics": MODELS, "evaluate": 1, "report": 1, "all": 1}
    dry = snakemake(workdir, explain_changed, "--dry-run")
    assert job_counts(dry.stdout + dry.stderr) == after_attribution
    # The dry run names the reason for exactly the attribution jobs; the rest follow their inputs.
    assert (dry.stdout + dry.stderr).count("reason: Params have changed since last execution") == MODELS
    # --list-changes params names the changed attributions. Snakemake 9.27.1 also prints one
    # output of every job whose parameters did not change (its per-file merge keeps their
    # names), so the list is a superset.
    listed = set(snakemake(workdir, explain_changed, "--list-changes", "params").stdout.split())
    assert {f"results/tiny/explain/{m}/{b}/attributions.parquet" for m, b in TRAINED} <= listed
    # --forcerun re-runs one stage and what follows with the parameters unchanged.
    assert planned_rules(workdir, config, "--forcerun", "explain") == after_attribution


def test_until_stops_after_the_named_stage(workdir, tiny_lm_dir):
    config = write_config(workdir, tiny_config(methods=METHODS, base_model=str(tiny_lm_dir), budgets=[1]))
    planned = planned_rules(workdir, config, "--until", "rerank")
    assert planned == {"ingest": 1, "split": 1, "retrieve": 1, "training_data": 1, "train": MODELS - len(UNTRAINED), "rerank": MODELS}


def test_interrupted_training_resumes_from_its_checkpoint(workdir, tiny_lm_dir):
    config = tiny_config(methods=["sft"], base_model=str(tiny_lm_dir))
    config["train"]["defaults"].update(max_steps=400, save_steps=50)
    configfile = write_config(workdir, config)
    target = "results/tiny/models/sft/all/training_config.json"  # relative to --directory
    model = workdir / "results" / "tiny" / "models" / "sft" / "all"
    command = snakemake_command(workdir, configfile, target, cores=1)
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (model / "checkpoints" / "checkpoint-100" / "trainer_state.json").exists():
        assert first.poll() is None and time.time() < deadline, "training ended before its second checkpoint"
        time.sleep(0.2)
    # Kill the training process itself, as an out-of-memory kill or a lost node would.
    trainers = [p for p in psutil.Process(first.pid).children(recursive=True) if "train.py" in " ".join(p.cmdline())]
    assert trainers
    for process in trainers:
        process.send_signal(signal.SIGKILL)
    assert first.wait(timeout=60) != 0
    assert not (model / "training_config.json").exists()
    snakemake(workdir, configfile, target)
    record = json.loads((model / "training_config.json").read_text())
    assert record["steps"] == 400 and record["resumed_from"] in {"checkpoint-100", "checkpoint-150", "checkpoint-200"}
    log = (workdir / "logs" / "tiny" / "train" / "sft" / "all.log").read_text()
    assert "resuming from" in log
