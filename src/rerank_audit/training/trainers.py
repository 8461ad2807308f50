"""Train one re-ranker: the trainer kind and training table its method's registry entry names.

``train_reranker`` is the single entry point of the ``train`` rule. Each trainer kind is one
entry of :mod:`rerank_audit.trainer_kinds` (TRL's own trainer on a dataset in TRL's
documented format, or, for a loss TRL does not have, one small Trainer subclass such as
:mod:`rerank_audit.training.lce`); which method uses which kind and table is said once, in
:mod:`rerank_audit.methods`; how it trains (hyper-parameters, precision) is one
:class:`~rerank_audit.training.settings.TrainingSettings`.

| trainer | class         | training tables (columns)                                     | model saved                    |
|---------|---------------|---------------------------------------------------------------|--------------------------------|
| sft     | SFTTrainer    | sft examples, query examples (prompt, completion)             | causal LM (or LoRA adapter)    |
| dpo     | DPOTrainer    | answer pairs, document pairs (prompt, chosen, rejected)       | causal LM (or LoRA adapter)    |
| reward  | RewardTrainer | document pairs (prompt, chosen, rejected)                     | sequence classifier, 1 label † |
| lce     | LCETrainer    | lce groups (group, position, query, document)                 | causal LM (or LoRA adapter)    |

† always a full model: a LoRA adapter is merged into it before saving (``merges_adapter``).

``lce`` reads the qlm scorer's tokens: the dataset's qlm ``template`` and the scoring
``max_length`` (the re-ranking settings), the document cut by the scorer's own code, so
``fit_documents`` leaves its groups alone and ``settings.max_length`` does not apply (its
registry entry has no ``fits_documents``).

The prompts are already rendered with the chat template (``text.prompts``; query examples:
the plain query-likelihood template, no chat template), so TRL sees
plain-text (non-conversational) data and appends the tokenizer's EOS token to every
completion / chosen / rejected text. A scorer that wants the trained quantity must score
the same text, EOS included. :func:`~rerank_audit.training.fit_documents.fit_documents`
cuts each too-long document so that the whole sequence fits. The reward head reads the last
non-pad token (``config.pad_token_id``): where the tokenizer pads with its EOS, the reward
model is trained (and saved) with another pad token, so that the head reads the EOS and not
the document's last token.

With LoRA, DPO's reference model is the base model with the adapter disabled (TRL does this
when ``ref_model`` is None and a ``peft_config`` is given). Without LoRA it is a second copy
of the base model.

Checkpoints (:mod:`rerank_audit.training.checkpoints`) go to ``output_dir/checkpoints``; a
run that finds one of the same run resumes from the newest complete one. The final model,
the tokenizer, ``training_config.json`` (written last: its presence means the training
finished) and ``trainer_log.jsonl`` go to ``output_dir``.

Model selection (``selection``, :class:`~rerank_audit.training.selection.DevSelection`):
the method trains once per learning rate of the grid, each run in
``checkpoints/lr-<rate>``, while :class:`~rerank_audit.training.selection.DevSelectionCallback`
scores the dev queries' judged pool with the model in memory (the method's own scorer,
:func:`rerank_audit.models.scoring.model_scorer`) at step 0 and every ``eval_steps``, and
keeps each run's best checkpoint. :func:`~rerank_audit.training.selection.select_checkpoint`
picks the (learning rate, step); the model saved to ``output_dir`` is that checkpoint's
weights, loaded into a freshly built trainer of that run and saved as a finished training
saves (a reward adapter merged). The choice of step 0 saves the untrained model that step 0
scored (rebuilt from the seed: a LoRA adapter starts at zero, so it is the base model), so
re-ranking scores the base model. ``training_config.json`` records the grid, every dev
curve and the choice (``selection``).

Checkpoints are written every ``save_steps`` (to resume a killed run) and, with selection,
at each new best dev value; each costs a write of the adapter (or the weights) and the
optimizer state, so ``save_steps`` is sized to the run's length (``bench/training.py``).
The LM head of TRL's SFT and DPO losses projects only the positions that carry a label
(:func:`label_positions_only`): the completion's, not the prompt's or the padding's.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch
import transformers
from peft import PeftModel
from transformers import AutoTokenizer

from rerank_audit.io import atomic_path
from rerank_audit.methods import method as method_spec, trained_methods
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.training.build import build_trainer
from rerank_audit.training.checkpoints import (
    CHECKPOINTS,
    RUN_FINGERPRINT,
    checkpoint_step,
    remove_previous_outputs,
    remove_runs,
    resumable_checkpoint,
    run_fingerprint,
    run_folder,
    settings_fingerprint,
)
from rerank_audit.training.fit_documents import fit_documents, training_columns
from rerank_audit.trainer_kinds import trainer_kind
from rerank_audit.training.selection import DevSelection, DevSelectionCallback, select_checkpoint, selection_record
from rerank_audit.training.settings import TrainingSettings

logger = logging.getLogger(__name__)

TRAINING_CONFIG = "training_config.json"
TRAINER_LOG = "trainer_log.jsonl"
VERSIONED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "rerank-audit")


def train_reranker(
    method: str,
    base_model_path: str | Path,
    data: pd.DataFrame,
    output_dir: str | Path,
    settings: TrainingSettings,
    seed: int,
    *,
    template: str | None = None,
    scoring: ScoringSettings | None = None,
    selection: DevSelection | None = None,
) -> dict[str, Any]:
    """Train a re-ranker of ``method`` from ``base_model_path`` on ``data``; save it to ``output_dir``.

    In: ``method`` a trained method of the method registry; a Hugging Face causal LM folder (or id); ``data`` the method's
    training table (its registry entry's ``training_table``: sft examples, query examples,
    answer or document pairs, lce groups); ``settings`` the method's
    :class:`~rerank_audit.training.settings.TrainingSettings` (with the keys its trainer kind
    requires set: ``beta`` for dpo, ``temperature`` for lce; their ``dtype`` and ``bf16``
    decide the precision, :meth:`~rerank_audit.training.settings.TrainingSettings.precision`);
    ``seed`` fixes weights initialisation and data order. ``template``: the dataset's qlm
    template (``None``: the default), which ``qlm_lce`` trains on and the likelihood family
    is scored with; ``scoring``: the re-ranking settings (``qlm_lce`` trains on their
    ``max_length``; dev scoring runs with them; ``None``: the defaults). ``selection``:
    choose the checkpoint on dev queries (module docstring; ``None``: one run at the
    settings' learning rate, the last step saved).

    Out: ``output_dir`` holds the model (or LoRA adapter) and tokenizer, loadable with
    ``from_pretrained`` of the kind's ``model_class`` (AutoPeftModelForCausalLM when
    ``adapter`` is true); plus ``training_config.json`` (returned as a dict; ``hyper``: the
    settings as plain values) and ``trainer_log.jsonl`` (one JSON object per logged step).
    ``output_dir`` belongs to this function: files left in it by an earlier run are removed
    first. A checkpoint of an identical run is resumed; checkpoints of a different run
    (method, base, settings, seed or data changed) are removed with a warning.
    """
    _check_arguments(method, data, settings)
    kind = trainer_kind(method_spec(method).trainer)
    output_dir = Path(output_dir)
    checkpoints = output_dir / CHECKPOINTS
    scoring = scoring or ScoringSettings()
    # what the memory plan resolves (checkpointing: by the free memory) goes to the trainer and the record, not
    # the fingerprint: a resumed job keeps its checkpoints whatever memory it finds
    resolved = fit_memory(method, base_model_path, data, settings, scoring)
    weights_dtype, _ = settings.precision()
    fingerprint = run_fingerprint(method, base_model_path, data, settings, seed) | {"dtype": weights_dtype}
    if not kind.fits_documents:  # it trains on the scorer's tokens
        fingerprint |= {"template": template, "scoring_max_length": scoring.max_length}
    remove_previous_outputs(output_dir)

    transformers.set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_path))
    if kind.fits_documents:
        fitted, truncated = fit_documents(method, data, tokenizer, settings.max_length)
        logger.info("%s: %d documents cut to fit max_length=%s", method, truncated, settings.max_length)
    else:
        fitted, truncated = data, None
        logger.info("%s: documents are cut as its scorer cuts them, to max_length=%s (rerank.max_length)", method, scoring.max_length)
    build = dict(method=method, base=str(base_model_path), data=fitted, tokenizer=tokenizer, seed=seed, template=template, scoring=scoring)

    if selection is None:
        remove_runs(checkpoints, keep=[])
        run = _train_run(build, checkpoints, settings, fingerprint, resolved)
        trainer, log_history, steps, chosen = run["trainer"], run["log_history"], run["steps"], None
        losses = [entry["loss"] for entry in log_history if "loss" in entry]
    else:
        remove_runs(checkpoints, keep=[run_folder(rate) for rate in selection.learning_rates])
        trainer, log_history, chosen = _train_grid(build, checkpoints, settings, fingerprint, selection, resolved)
        steps, rate = chosen["choice"]["step"], chosen["choice"]["learning_rate"]
        # the chosen run (none for step 0), its losses up to the chosen step
        run = next((r for r in chosen["runs"] if r["learning_rate"] == rate), None)
        losses = [entry["loss"] for entry in log_history if "loss" in entry and entry["run_learning_rate"] == rate and entry["step"] <= steps]

    adapter = _save_final_model(trainer, method, output_dir)
    record = {
        "method": method,
        "base_model": str(base_model_path),
        "hyper": settings.as_dict(),
        "resolved": resolved,  # auto settings as this job's memory plan resolved them
        "seed": seed,
        "steps": steps,
        "examples": len(data),
        "train_samples": len(trainer.train_dataset),
        "truncated_documents": truncated,
        "max_length": settings.max_length if kind.fits_documents else scoring.max_length,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "resumed_from": run["resumed_from"] if run else None,
        "seconds_per_step": run["seconds_per_step"] if run else None,
        "model_class": kind.model_class,
        "weights_dtype": str(next(trainer.model.parameters()).dtype).removeprefix("torch."),
        "adapter": adapter,
        "bf16": bool(trainer.args.bf16),
        "device": str(trainer.args.device),
        "eos_appended": trainer.processing_class.eos_token if kind.fits_documents else None,
        "pad_token": trainer.processing_class.pad_token,
        "versions": _versions(),
    }
    if chosen is not None:
        # The settings the saved model trained with (the grid's learning rate and epochs;
        # None for the untrained model), beside those configured.
        choice = chosen["choice"]
        trained_with = selection.settings_of(settings, choice["learning_rate"]).as_dict() if choice["trained"] else None
        record["hyper"], record["hyper_configured"] = trained_with, record["hyper"]
        record["selection"] = chosen
    with atomic_path(output_dir / TRAINER_LOG) as tmp:
        tmp.write_text("".join(json.dumps(entry) + "\n" for entry in log_history))
    with atomic_path(output_dir / TRAINING_CONFIG) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    logger.info("%s: %s steps on %d samples, saved to %s", method, steps, record["train_samples"], output_dir)
    return record


def _train_run(build: Mapping[str, Any], checkpoints: Path, settings: TrainingSettings, fingerprint: dict, resolved: Mapping[str, Any],
               callback_of=None) -> dict[str, Any]:
    """One training run in ``checkpoints`` (resumed when a checkpoint of the same run is there), trained with
    ``settings`` and the memory plan's ``resolved`` values (:func:`fit_memory`).

    ``callback_of(trainer)`` -> a callback added to the trainer (model selection), or None.
    Out: {"trainer", "log_history", "steps", "resumed_from", "seconds", "seconds_per_step",
    "best_checkpoint" (the Trainer's best_model_checkpoint), "callback"}.
    """
    resume_from = resumable_checkpoint(checkpoints, fingerprint)
    with atomic_path(checkpoints / RUN_FINGERPRINT) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=1))
    transformers.set_seed(build["seed"])
    trainer = build_trainer(checkpoints=checkpoints, settings=settings.but(**resolved), **build)
    callback = callback_of(trainer) if callback_of else None
    if callback is not None:
        trainer.add_callback(callback)
    if resume_from is not None:
        logger.info("%s: resuming from %s", build["method"], resume_from)
    started = time.perf_counter()
    steps_before = checkpoint_step(resume_from) if resume_from else 0
    with label_positions_only():
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    elapsed = time.perf_counter() - started
    steps = trainer.state.global_step
    return {
        "trainer": trainer,
        "log_history": list(trainer.state.log_history),
        "steps": steps,
        "resumed_from": resume_from.name if resume_from else None,
        "seconds": round(elapsed, 3),
        "seconds_per_step": elapsed / (steps - steps_before) if steps > steps_before else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "callback": callback,
    }


def _train_grid(build: Mapping[str, Any], checkpoints: Path, settings: TrainingSettings, fingerprint: dict, selection: DevSelection,
                resolved: Mapping[str, Any]):
    """Train every learning rate of ``selection``'s grid with a dev curve; rebuild the chosen model.

    Out: (a trainer whose model is the chosen checkpoint's, or the untrained model for step 0;
    every run's log history, each entry with ``run_learning_rate``; the ``selection`` record
    of ``training_config.json``: grid, dev curves, choice, and per run its steps and times).
    """
    method = build["method"]
    untrained_selectable = method_spec(method).untrained_ranks
    scorer_settings = replace(build["scoring"], progress=False)
    curves, runs, history, best = {}, [], [], {}
    for index, rate in enumerate(selection.learning_rates):
        run_settings = selection.settings_of(settings, rate)
        fingerprint_of_run = fingerprint | settings_fingerprint(run_settings) | {"selection": selection.fingerprint()}

        def callback_of(trainer, untrained=index == 0):
            def scorer_of(model):
                return _dev_scorer(method, model, trainer, build, scorer_settings, run_settings)

            return DevSelectionCallback(selection.measure_of(scorer_of), selection.dev_query_ids, selection.splits,
                                        eval_steps=selection.eval_steps, measure_name=selection.measure, untrained=untrained,
                                        untrained_selectable=untrained_selectable)

        logger.info("%s: selection run %d/%d, learning rate %g, %g epochs", method, index + 1, len(selection.learning_rates), rate, selection.epochs)
        run = _train_run(build, checkpoints / run_folder(rate), run_settings, fingerprint_of_run, resolved, callback_of)
        curves[rate], best[rate] = dict(run["callback"].curve), run["best_checkpoint"]
        history += [entry | {"run_learning_rate": rate} for entry in run["log_history"]]
        runs.append({"learning_rate": rate} | {key: run[key] for key in ("steps", "resumed_from", "seconds", "seconds_per_step", "best_checkpoint")})
        del run
        gc.collect()
    choice = select_checkpoint(curves, untrained_selectable=untrained_selectable)
    record = selection_record(selection.grid, curves, choice, measure=selection.measure, dev_query_ids=selection.dev_query_ids)
    record["runs"] = runs
    # The model that goes to test: the chosen run's best checkpoint, or the untrained model (step 0).
    rate = choice.learning_rate if choice.trained else selection.learning_rates[0]
    transformers.set_seed(build["seed"])
    trainer = build_trainer(checkpoints=checkpoints / run_folder(rate), settings=selection.settings_of(settings, rate).but(**resolved), **build)
    if choice.trained:
        checkpoint = Path(best[rate])
        if checkpoint_step(checkpoint) != choice.step:
            raise RuntimeError(f"{method}: the best checkpoint of learning rate {rate:g} is {checkpoint.name}, but step {choice.step} was chosen")
        trainer._load_from_checkpoint(str(checkpoint))
        record["model"] = f"learning rate {rate:g}, step {choice.step} ({checkpoint.name})"
    else:
        record["model"] = "the untrained base model (step 0)"
    logger.info("%s: dev %s chose %s: %.4f (untrained %.4f)", method, selection.measure, record["model"], choice.value, choice.untrained_value)
    return trainer, history, record



def _dev_scorer(method: str, model, trainer, build: Mapping[str, Any], scorer_settings: ScoringSettings, settings: TrainingSettings):
    """The method's scorer of the model being trained, as re-ranking will load it once saved."""
    from rerank_audit.models.scoring import model_scorer

    return model_scorer(
        method, model, trainer.processing_class, settings=scorer_settings, reference=getattr(trainer, "ref_model", None),
        beta=settings.beta, template=build["template"],
    )


def _save_final_model(trainer, method: str, output_dir: Path) -> bool:
    """Save the trained model and tokenizer to ``output_dir``; True when what is saved is a LoRA adapter.

    A trainer kind with ``merges_adapter`` (reward) merges its LoRA adapter first: loading an
    adapter for a sequence classifier needs the base rebuilt with num_labels=1 and
    pad_token_id, which a plain ``AutoModelForSequenceClassification.from_pretrained(output_dir)``
    of the merged model gets from its config. Causal LM adapters are kept: disabling them
    gives the reference model of the DPO implicit reward.
    """
    if trainer_kind(method_spec(method).trainer).merges_adapter and isinstance(trainer.model, PeftModel):
        trainer.model.merge_and_unload().save_pretrained(output_dir)
        trainer.processing_class.save_pretrained(output_dir)
        return False
    trainer.save_model(str(output_dir))
    return isinstance(trainer.model, PeftModel)


def fit_memory(method: str, base_model_path: str | Path, data: pd.DataFrame, settings: TrainingSettings, scoring: ScoringSettings) -> dict[str, Any]:
    """{"activation_checkpointing": bool, "quantization": str}: ``settings``' auto values resolved so that the step fits
    this job's memory (:func:`rerank_audit.training.memory.plan_training_memory`), logged with the estimate; ValueError
    naming the keys to change when it cannot fit. The memory is the GPU's free memory, or on the CPU the job's
    (``scoring.memory_mb``)."""
    import torch

    from rerank_audit.models.batching import model_config
    from rerank_audit.training.memory import plan_training_memory

    kind = trainer_kind(method_spec(method).trainer)
    sequences = kind.sequences_per_example or int(data.groupby("group").size().max())
    # a kind that trains on its scorer's tokens cuts them to the scoring max_length
    estimated = settings if kind.fits_documents else settings.but(max_length=scoring.max_length)
    plan = plan_training_memory(
        method, model_config(base_model_path), estimated, sequences, reference_copy=kind.scored_against_reference and not settings.lora.enabled,
        logits=kind.logits, device="cuda" if torch.cuda.is_available() else "cpu", memory_mb=scoring.memory_mb,
        logit_positions=logit_positions(kind, data, base_model_path),
    )
    logger.info(plan.describe(method))
    return {"activation_checkpointing": bool(plan.settings.activation_checkpointing), "quantization": plan.settings.quantization}


def logit_positions(kind, data: pd.DataFrame, base_model_path) -> int | None:
    """Positions per sequence whose logits a ``full``-logits loss keeps: the longest query's tokens and the one before them
    (lce reads the query's positions only); None (every token) for other kinds or without a query column."""
    if kind.logits != "full" or "query" not in data.columns:
        return None
    return 1 + max(len(ids) for ids in AutoTokenizer.from_pretrained(str(base_model_path))(list(data["query"].unique()))["input_ids"])


def _check_arguments(method: str, data: pd.DataFrame, settings: TrainingSettings) -> None:
    """Fail before loading anything when the method, the data columns or the required settings are wrong."""
    if not method_spec(method).trained:
        raise ValueError(f"{method} is not a trained method; expected one of {trained_methods()}")
    missing = [column for column in training_columns(method) if column not in data.columns]
    if missing:
        raise ValueError(f"{method}: training data lacks the columns {missing}")
    if data.empty:
        raise ValueError(f"{method}: no training examples")
    missing = settings.missing(method_spec(method).trainer)
    if missing:
        raise ValueError(f"{method}: its {method_spec(method).trainer} trainer requires the settings {missing}, which are not set")


@contextmanager
def label_positions_only():
    """While the context lasts, TRL's fused LM head projects only the positions that carry a label, on every device.

    TRL's SFT and DPO losses (``fused_lm_head``) take log-probabilities only where a label
    is set (the completion: an answer word, a query, a document), but outside CUDA/Triton
    TRL projects *every* position onto the vocabulary (prompt and padding too) and masks
    afterwards, so as not to recompile tile shapes on accelerators such as Neuron. A CPU
    compiles nothing, so there the unlabelled positions are pure cost: the vocabulary
    projection of an SFT yes/no example covers ~200 positions for 1 label. The loss and the
    logged metrics are the same (computed on the labelled positions either way); TRL's
    choice is one module-level function (``_use_triton``), replaced here for the duration.
    A TRL without it is left as it is.
    """
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: original(device) or torch.device(device).type == "cpu"
    try:
        yield
    finally:
        trl_utils._use_triton = original



def _versions() -> dict[str, str | None]:
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
