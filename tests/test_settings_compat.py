"""Settings added by the gpu-scale branch re-run nothing at their defaults.

The ``train`` rule's params and a training run's fingerprint are ``TrainingSettings.as_dict``; the
scoring rules' params are ``ScoringSettings.as_dict``. The expected dicts are written by hand from
main before the branch (``git show main:src/rerank_audit/training/settings.py``: ``asdict`` of the
fields learning_rate … dtype, ``activation_checkpointing`` false; ``models/settings.py``: every field
but memory_mb), for the repository's config.
"""

from __future__ import annotations

from pathlib import Path

from rerank_audit.config import load_config
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.training.settings import TrainingSettings

CONFIG = load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
LORA = {"enabled": True, "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
MAIN_HYPER = {"learning_rate": 2.0e-4, "epochs": 1, "max_steps": None, "batch_size": 8, "gradient_accumulation": 1, "max_length": 224,
              "save_steps": 5, "logging_steps": 1, "beta": None, "temperature": None, "bf16": None, "activation_checkpointing": False,
              "lora": LORA, "dtype": "float32"}


def test_the_default_config_trains_with_the_same_params_and_fingerprint_as_main():
    assert TrainingSettings.for_method(CONFIG, "sft").as_dict() == MAIN_HYPER
    assert TrainingSettings.for_method(CONFIG, "dpo_pairs").as_dict() == MAIN_HYPER | {"beta": 0.1, "learning_rate": 5.0e-5}
    assert TrainingSettings.for_method(CONFIG, "reward").as_dict() == MAIN_HYPER | {"learning_rate": 1.0e-4}
    assert TrainingSettings().as_dict() == MAIN_HYPER


def test_the_default_config_scores_with_the_same_params_as_main():
    rerank = {"batch_size": None, "batch_tokens": None, "max_length": 256, "dtype": "auto", "device": None, "prefix_reuse": True, "progress": None}
    assert ScoringSettings.from_config(CONFIG, "rerank").as_dict() == rerank
    assert ScoringSettings.from_config(CONFIG, "explain").as_dict() == rerank  # explain.batch_size: auto, as rerank's


def test_activation_checkpointing_auto_round_trips_and_only_forcing_it_on_shows():
    """auto (and false, main's default) is written false, as main wrote it, and read back as auto."""
    auto = TrainingSettings.from_dict({"activation_checkpointing": "auto"})
    assert auto.activation_checkpointing is None
    assert TrainingSettings.from_dict(auto.as_dict()).activation_checkpointing is None
    assert TrainingSettings.from_dict({"activation_checkpointing": False}).activation_checkpointing is None
    assert TrainingSettings.from_dict({"activation_checkpointing": True}).as_dict()["activation_checkpointing"] is True


def test_new_keys_show_in_params_only_when_set():
    quantized = TrainingSettings().but(quantization="4bit", attn_implementation="eager").as_dict()
    assert (quantized["quantization"], quantized["attn_implementation"]) == ("4bit", "eager")
    assert TrainingSettings.from_dict(quantized) == TrainingSettings().but(quantization="4bit", attn_implementation="eager")
    scoring = ScoringSettings(packing=False, attn_implementation="sdpa").as_dict()
    assert (scoring["packing"], scoring["attn_implementation"]) == (False, "sdpa")
