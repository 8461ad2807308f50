"""One place per concept: the method and trainer registries, the scoring and training settings, the config checks.

A method is one registry entry (a toy entry runs the whole DAG in tests/test_workflow_training.py;
a toy trainer kind trains in tests/test_training.py); an entry that names an unknown trainer,
family or table stops the config check; scoring and training settings are typed objects whose
defaults equal config/config.yaml and which reach the scorer and the trainer from the config;
the config checks run at parse time without torch.
"""

import importlib
import re
import sys
from dataclasses import fields, replace

import numpy as np
import pandas as pd
import pytest
import yaml

from rerank_audit.config import check_config, load_config
from rerank_audit.explain.score_cache import PAIRS_PER_CALL
from rerank_audit.methods import REGISTRY, TRAINING_COLUMNS, display_name, method
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.trainer_kinds import TRAINERS
from rerank_audit.training.settings import MODEL_KEYS, TRAIN_KEYS, LoraSettings, TrainingSettings
from workflow_runner import REPO, run_bounded, snakemake, tiny_config, write_config, write_tiny_collection

CONFIG = REPO / "config" / "config.yaml"


def test_every_entry_names_a_scoring_module_a_training_table_and_an_untrained_counterpart():
    for name, spec in REGISTRY.items():
        module = importlib.import_module(f"rerank_audit.models.scoring.{spec.family}")
        assert callable(module.from_folder), name
        if spec.trained:
            assert spec.trainer in TRAINERS and spec.training_table in TRAINERS[spec.trainer].tables, name
            assert spec.training_table in TRAINING_COLUMNS, name
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
    # memory_mb (Snakemake's mem_mb) and holds_bytes (counted when the scorer loads) are the job's, never a config key
    # or a rule parameter
    assert {f.name for f in fields(ScoringSettings)} == {"batch_size", "batch_tokens", "max_length", "dtype", "device", "prefix_reuse", "progress",
                                                         "memory_mb", "holds_bytes", "attn_implementation", "packing"}
    assert ScoringSettings().attn_implementation == config["model"]["attn_implementation"] == "auto"
    assert not {"memory_mb", "holds_bytes"} & set(ScoringSettings(memory_mb=4000, holds_bytes=1 << 30).as_dict())
    fixed = {**config, "rerank": {**config["rerank"], "batch_size": 16, "batch_tokens": 4096}}
    assert ScoringSettings.from_config(fixed) == ScoringSettings(batch_size=16, batch_tokens=4096)


@pytest.mark.parametrize(
    "entry, changes, message",
    [
        ("sft", {"trainer": "sfft"}, "method 'sft': trainer 'sfft' is not a trainer kind; use one of sft, dpo, reward, lce"),
        ("qlm", {"family": "likelyhood"}, "method 'qlm': family 'likelyhood' is not a scoring family; use one of document, likelihood, reward, yesno"),
        ("reward", {"training_table": "sft_examples"}, "method 'reward': training_table 'sft_examples' is not a table the reward trainer reads"),
        ("sft", {"untrained": "dpo"}, "method 'sft': untrained 'dpo' is not an untrained method"),
    ],
)
def test_a_misspelt_registry_entry_stops_the_config_check_naming_it(monkeypatch, entry, changes, message):
    """check_config runs when the Snakefile is parsed: a dry run stops with this message."""
    monkeypatch.setitem(REGISTRY, entry, replace(REGISTRY[entry], **changes))
    with pytest.raises(ValueError, match=re.escape(message)):
        check_config(load_config(CONFIG))


def test_an_unknown_trainer_kind_is_an_error_not_a_reward_model():
    from rerank_audit.trainer_kinds import trainer_kind

    with pytest.raises(ValueError, match="unknown trainer 'toy'; known trainers: sft, dpo, reward, lce"):
        trainer_kind("toy")


def test_a_dpo_method_without_beta_stops_the_config_check_naming_the_key():
    config = load_config(CONFIG)
    del config["train"]["methods"]["dpo"]["beta"]
    with pytest.raises(ValueError, match=re.escape("train.methods.dpo.beta: dpo trains with the dpo trainer, which requires beta; "
                                                   "set train.methods.dpo.beta (or train.defaults.beta for every method)")):
        check_config(config)
    # a configured method with no train.methods entry at all needs it too
    config = load_config(CONFIG)
    del config["train"]["methods"]["dpo_pairs"]
    with pytest.raises(ValueError, match=re.escape("train.methods.dpo_pairs.beta:")):
        check_config(config)
    # train.defaults.beta reaches every dpo method, and no other
    config["train"]["defaults"]["beta"] = 0.2
    check_config(config)
    assert [TrainingSettings.for_method(config, m).beta for m in ("dpo", "dpo_pairs", "sft", "reward")] == [0.1, 0.2, None, None]


def test_training_defaults_are_config_yaml_values_and_the_schema_keys():
    """The one place training settings are defaulted equals the default experiment's train.defaults;
    their fields are the schema's hyper-parameter keys (+ train.temperature, model.dtype, quantization, attn_implementation)."""
    config = yaml.safe_load(CONFIG.read_text())
    assert TrainingSettings.from_dict(config["train"]["defaults"]) == TrainingSettings()
    # by hand, from config/config.yaml: learning_rate 2.0e-4, epochs 1, batch_size 8, ..., bf16 auto, lora r 16 alpha 32
    assert TrainingSettings() == TrainingSettings(
        learning_rate=2.0e-4, epochs=1, max_steps=None, batch_size=8, gradient_accumulation=1, max_length=224, save_steps=5,
        logging_steps=1, beta=None, temperature=None, bf16=None, activation_checkpointing=None,
        lora=LoraSettings(enabled=True, r=16, alpha=32, dropout=0.05, target_modules="all-linear"), dtype="float32", quantization="auto",
        attn_implementation="auto",
    )
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    hyper = schema["$defs"]["hyper"]["properties"]
    assert set(hyper) | set(TRAIN_KEYS) | set(MODEL_KEYS) == {f.name for f in fields(TrainingSettings)}
    assert set(hyper["lora"]["properties"]) == {f.name for f in fields(LoraSettings)}
    assert all(key in schema["properties"]["train"]["properties"] for key in TRAIN_KEYS)


def test_a_method_trains_with_its_own_keys_over_the_defaults_and_the_rule_params_rebuild_it():
    config = load_config(CONFIG)
    config["train"]["methods"]["reward"] = {"learning_rate": 1.0e-4, "lora": {"r": 4}}
    config["model"]["dtype"] = "bfloat16"
    reward = TrainingSettings.for_method(config, "reward")
    assert (reward.learning_rate, reward.lora.r, reward.lora.alpha, reward.dtype, reward.temperature) == (1.0e-4, 4, 32, "bfloat16", None)
    # the lce trainer requires temperature: train.temperature (1.0 in config.yaml) reaches qlm_lce, no other method
    assert (TrainingSettings.for_method(config, "qlm_lce").temperature, TrainingSettings.for_method(config, "qlm_sft").temperature) == (1.0, None)
    # the train rule's params: plain values, rebuilt whole in the job
    params = reward.as_dict()
    assert params["lora"] == {"enabled": True, "r": 4, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    assert TrainingSettings.from_dict(params) == reward
    with pytest.raises(ValueError, match=r"unknown \['lr'\]"):
        TrainingSettings.from_dict({"lr": 1.0})


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
    assert "batches of <= 3 sequences" in rerank_log
    assert "ScoringSettings(batch_size=5, batch_tokens=None, max_length=40, dtype='float32'" in explain_log
    assert "batches of <= 5 sequences" in explain_log
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
