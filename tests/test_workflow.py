"""End-to-end Snakemake runs of a tiny config: outputs, idempotence, partial re-runs, config errors."""

import hashlib
import shutil

import pandas as pd
import pytest

from workflow_runner import REPO, planned_rules, snakemake, tiny_config, write_config, write_tiny_collection

pytestmark = pytest.mark.slow

@pytest.fixture
def workdir(tmp_path):
    write_tiny_collection(tmp_path)
    return tmp_path


def test_tiny_config_runs_end_to_end_and_then_has_nothing_to_do(workdir):
    config = write_config(workdir, tiny_config())
    snakemake(workdir, config)
    results = workdir / "results" / "tiny"
    metrics = pd.read_parquet(results / "evaluate" / "metrics.parquet")
    # BM25 over test and all queries; the random re-ordering control over the test queries.
    assert set(zip(metrics.method, metrics.split)) == {("bm25", "test"), ("bm25", "all"), ("random", "test")}
    assert metrics[metrics.split == "all"].queries.unique().tolist() == [4]
    run = pd.read_parquet(results / "retrieve" / "bm25.parquet")
    assert run[run.query_id == "q1"].doc_id.iloc[0] == "ds1"
    trec = (results / "retrieve" / "bm25.trec").read_text().splitlines()
    assert len(trec) == len(run) and trec[0].split()[1:4] == ["Q0", run.doc_id.iloc[0], "1"]
    assert (results / "evaluate" / "metrics.md").read_text().startswith("# Ranking: tiny")
    for rule in ["ingest", "split", "retrieve", "evaluate"]:
        assert (workdir / "logs" / "tiny" / f"{rule}.log").exists()
        assert (workdir / "benchmarks" / "tiny" / f"{rule}.tsv").exists()
    assert planned_rules(workdir, config) == {}


def test_changing_retrieval_depth_reruns_retrieval_and_evaluation_only(workdir):
    snakemake(workdir, write_config(workdir, tiny_config(k=5)))
    corpus = workdir / "results" / "tiny" / "ingest" / "corpus.parquet"
    before = corpus.stat().st_mtime_ns
    deeper = write_config(workdir, tiny_config(k=3), "deeper.yaml")
    assert planned_rules(workdir, deeper) == {"retrieve": 1, "evaluate": 1, "all": 1}
    snakemake(workdir, deeper)
    assert corpus.stat().st_mtime_ns == before
    assert pd.read_parquet(workdir / "results" / "tiny" / "retrieve" / "bm25.parquet").groupby("query_id").size().max() <= 3


def test_unknown_config_key_fails_before_any_job(workdir):
    config = tiny_config()
    config["retrieve"]["depth"] = 10
    result = snakemake(workdir, write_config(workdir, config), check=False)
    assert result.returncode != 0
    assert "depth" in result.stdout + result.stderr and "Additional properties are not allowed" in result.stdout + result.stderr
    assert not (workdir / "results").exists()


def test_wrong_type_fails_naming_the_key(workdir):
    config = tiny_config()
    config["retrieve"]["k"] = "many"
    result = snakemake(workdir, write_config(workdir, config), check=False)
    assert result.returncode != 0 and "'many' is not of type 'integer'" in result.stdout + result.stderr


def test_absent_source_is_downloaded_and_its_hash_checked(workdir, climate_fever):
    head = "".join(climate_fever.read_text().splitlines(keepends=True)[:20])
    remote = workdir / "remote" / "climate-fever.jsonl"
    remote.parent.mkdir()
    remote.write_text(head)
    good = hashlib.sha256(head.encode()).hexdigest()
    config = tiny_config()
    config["datasets"] = {
        "cf": {
            "format": "climate-fever",
            "sources": {"claims": "not/here.jsonl"},
            "download": {"claims": {"url": remote.as_uri(), "sha256": "0" * 64}},
        }
    }
    bad = snakemake(workdir, write_config(workdir, config), check=False)
    assert bad.returncode != 0 and "differs from the configured" in bad.stdout + bad.stderr
    config["datasets"]["cf"]["download"]["claims"]["sha256"] = good
    snakemake(workdir, write_config(workdir, config))
    assert (workdir / "resources" / "downloads" / "cf" / "claims" / "climate-fever.jsonl").read_text() == head
    assert len(pd.read_parquet(workdir / "results" / "cf" / "ingest" / "queries.parquet")) == 20


def test_bad_input_fails_the_ingest_rule_with_the_adapter_message(workdir):
    with open(workdir / "input" / "ratings.csv", "a") as out:
        out.write("q9,unknown doc,ds99,5\n")
    result = snakemake(workdir, write_config(workdir, tiny_config()), check=False)
    log = (workdir / "logs" / "tiny" / "ingest.log").read_text()
    assert result.returncode != 0 and "line 10: judgement names unknown document id 'ds99'" in log
    assert not (workdir / "results" / "tiny" / "ingest" / "corpus.parquet").exists()


# The shipped configs and overlays, planned from scratch: trained models, re-ranked runs and
# control reports counted by hand from their methods (zeroshot and qlm need no training; the
# CLIMATE-FEVER study and the tuning overlays add qlm_lce),
# budgets and datasets (a models_from dataset trains nothing; a flipped control re-ranks).
# Every re-ranked run is probed once (probe), and BM25 once per dataset (probe_bm25), unless the
# config turns the probes off (probe.probes: []: the CLIMATE-FEVER study and learning curve) and
# the config/probes.yaml overlay does not turn them on.
SHIPPED = {
    ("config.yaml",): {"train": 5, "rerank": 7, "probe": 7, "probe_bm25": 1},
    ("config.yaml", "controls.yaml"): {"train": 10, "rerank": 21, "probe": 21, "probe_bm25": 3, "control_report": 1},
    ("config.yaml", "controls.yaml", "controls-steps.yaml"): {"train": 2, "rerank": 3, "probe": 3, "probe_bm25": 3, "control_report": 1},
    ("climate-fever.yaml",): {"train": 6, "rerank": 16},
    ("climate-fever.yaml", "probes.yaml"): {"train": 6, "rerank": 16, "probe": 16, "probe_bm25": 2},
    ("climate-fever.yaml", "climate-fever-controls.yaml"): {"train": 12, "rerank": 32, "control_report": 1},
    ("climate-fever.yaml", "climate-fever-controls.yaml", "probes.yaml"): {"train": 12, "rerank": 32, "probe": 32, "probe_bm25": 4, "control_report": 1},
    # Model selection changes how each model trains, not which: the same models as the study.
    ("climate-fever.yaml", "tuning.yaml"): {"train": 6, "rerank": 16},
    ("config.yaml", "tuning-demo.yaml"): {"train": 2, "rerank": 3, "probe": 3, "probe_bm25": 1},
    ("learning-curve.yaml",): {"train": 6, "rerank": 8},
    # More claims explained: the same models. The untrained methods only: nothing trained.
    ("climate-fever.yaml", "explanations.yaml"): {"train": 6, "rerank": 16},
    ("climate-fever.yaml", "untrained.yaml", "probes.yaml"): {"train": 0, "rerank": 4, "probe": 4, "probe_bm25": 2},
}


@pytest.mark.parametrize("configs", list(SHIPPED), ids="+".join)
def test_shipped_configs_plan_every_model_once(tmp_path, configs):
    (tmp_path / "resources").symlink_to(REPO / "resources")  # the demo collection and converted models
    jobs = planned_rules(tmp_path, [REPO / "config" / name for name in configs])
    assert {rule: jobs.get(rule, 0) for rule in ("train", "rerank", "probe", "probe_bm25", "control_report")} == {
        "control_report": 0, "probe": 0, "probe_bm25": 0, **SHIPPED[configs]
    }
