"""One place per concept: the method registry, the scoring settings, the config checks.

A method is one registry entry (a toy entry runs the whole DAG in tests/test_workflow_training.py);
scoring settings are one typed object whose defaults equal config/config.yaml and which reaches
the scorer from the config; the config checks run at parse time without torch.
"""

import importlib
import sys
from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
import yaml

from rerank_audit.config import check_config, load_config
from rerank_audit.explain.score_cache import PAIRS_PER_CALL
from rerank_audit.methods import REGISTRY, TRAINING_COLUMNS, display_name, method
from rerank_audit.models.settings import ScoringSettings
from workflow_runner import REPO, run_bounded, snakemake, tiny_config, write_config, write_tiny_collection

CONFIG = REPO / "config" / "config.yaml"


def test_every_entry_names_a_scoring_module_a_training_table_and_an_untrained_counterpart():
    for name, spec in REGISTRY.items():
        module = importlib.import_module(f"rerank_audit.models.scoring.{spec.family}")
        assert callable(module.from_folder), name
        if spec.trained:
            assert spec.trainer in ("sft", "dpo", "reward", "lce") and spec.training_table in TRAINING_COLUMNS, name
            assert not method(spec.untrained).trained, f"{name}: its counterpart must be untrained"
        else:
            assert spec.training_table is None and spec.untrained is None, name


def test_only_methods_whose_untrained_form_ranks_may_keep_step_0_in_model_selection():
    # by hand: DPO scores policy - reference (0 everywhere at step 0); dpo_pairs and reward score
    # with another family than zero-shot's (a new head / the document family)
    assert {name for name, entry in REGISTRY.items() if entry.untrained_ranks} == {"sft", "qlm_sft", "qlm_lce"}


def test_display_names_cover_methods_baselines_and_fused_rows():
    assert display_name("zeroshot") == "zero-shot"
    assert display_name("random") == "random order"
    assert display_name("qlm_sft+bm25") == "qlm_sft+bm25"
    assert display_name("bm25") == "BM25"


def test_an_unknown_method_stops_the_config_check_naming_the_registry():
    config = load_config(CONFIG)
    config["methods"] = ["zeroshot", "colbert"]
    with pytest.raises(ValueError, match=r"methods: \['colbert'\] are not methods of rerank-audit"):
        check_config(config)
    config = load_config(CONFIG)
    config["train"]["methods"]["qlm"] = {"learning_rate": 1e-4}
    with pytest.raises(ValueError, match=r"train.methods: \['qlm'\] are not trained methods"):
        check_config(config)


def test_scoring_defaults_are_config_yaml_values():
    """The one place scoring settings are defaulted equals the default experiment's config."""
    config = yaml.safe_load(CONFIG.read_text())
    assert ScoringSettings.from_config(config, "rerank") == ScoringSettings() == ScoringSettings.from_config(config, "explain")
    assert ScoringSettings().batch_size is None and ScoringSettings().batch_tokens is None  # "auto": sized for the device
    assert PAIRS_PER_CALL == config["explain"]["pairs_per_call"]
    # memory_mb is the job's resource (Snakemake's mem_mb), never a config key or a rule parameter
    assert {f.name for f in fields(ScoringSettings)} == {"batch_size", "batch_tokens", "max_length", "dtype", "device", "prefix_reuse", "progress", "memory_mb"}
    assert "memory_mb" not in ScoringSettings().as_dict()
    fixed = {**config, "rerank": {**config["rerank"], "batch_size": 16, "batch_tokens": 4096}}
    assert ScoringSettings.from_config(fixed) == ScoringSettings(batch_size=16, batch_tokens=4096)


def test_parsing_the_snakefile_and_a_dry_run_import_no_torch(tmp_path):
    """python -X importtime lists every module a process imports: torch must not be among them."""
    command = [sys.executable, "-X", "importtime", "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO),
               "--configfile", str(REPO / "config" / "climate-fever.yaml"), "--dry-run", "--quiet"]
    result = run_bounded(command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "snakemake" in imported and "rerank_audit.methods" in imported  # the check reads the real import list
    assert not {"torch", "transformers", "trl", "shap"} & imported


@pytest.mark.slow
def test_rerank_and_explain_settings_reach_the_scorer(tmp_path, tiny_lm_dir):
    """rerank.max_length / batch_size and explain.batch_size travel config -> rule -> script -> scorer -> engine."""
    write_tiny_collection(tmp_path)
    config = tiny_config(methods=["zeroshot"], base_model=str(tiny_lm_dir))
    config["model"]["dtype"] = "float32"
    config["rerank"].update(batch_size=3, max_length=40)
    config["explain"].update(batch_size=5, queries=1, top_documents=1, bottom_documents=0)
    snakemake(tmp_path, write_config(tmp_path, config), "results/tiny/explain/zeroshot/0/faithfulness.parquet")
    rerank_log = (tmp_path / "logs/tiny/rerank/zeroshot/0.log").read_text()
    explain_log = (tmp_path / "logs/tiny/explain/zeroshot/0.log").read_text()
    assert "ScoringSettings(batch_size=3, batch_tokens=None, max_length=40, dtype='float32'" in rerank_log
    assert "in batches of <= 3 sequences" in rerank_log
    assert "ScoringSettings(batch_size=5, batch_tokens=None, max_length=40, dtype='float32'" in explain_log
    assert "in batches of <= 5 sequences" in explain_log
    # max_length reached the tokenizer: the run's scores are those of the documents cut to 40 tokens,
    # which differ from the uncut ones (scored here independently of the workflow).
    from rerank_audit.models.scoring import load_scorer
    from rerank_audit.text.prompts import corpus_texts

    run = pd.read_parquet(tmp_path / "results/tiny/rerank/zeroshot/0/run.parquet").query("rank <= 3")
    queries = pd.read_parquet(tmp_path / "results/tiny/ingest/queries.parquet").set_index("query_id").text
    corpus = pd.read_parquet(tmp_path / "results/tiny/ingest/corpus.parquet")
    texts = (queries.reindex(run.query_id).tolist(), corpus_texts(corpus, run.doc_id))
    cut = load_scorer("zeroshot", tiny_lm_dir, settings=ScoringSettings(max_length=40, dtype="float32", device="cpu"))
    whole = load_scorer("zeroshot", tiny_lm_dir, settings=ScoringSettings(max_length=None, dtype="float32", device="cpu"))
    np.testing.assert_allclose(run.score, cut.score_pairs(*texts), atol=1e-4)
    assert np.abs(whole.score_pairs(*texts) - run.score.to_numpy()).max() > 1e-3
