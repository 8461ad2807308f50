"""Train one re-ranker: the trainer and training table its registry entry names.

``train_reranker`` is the single entry point of the ``train`` rule. Each method is TRL's own
trainer on a dataset in TRL's documented format, or (``lce``) the one small Trainer subclass
of :mod:`rerank_audit.training.lce`, for a loss TRL does not have. Which method uses which
trainer and table is said once, in :mod:`rerank_audit.methods`.

| trainer | class         | training tables (columns)                                     | model saved                    |
|---------|---------------|---------------------------------------------------------------|--------------------------------|
| sft     | SFTTrainer    | sft examples, query examples (prompt, completion)             | causal LM (or LoRA adapter)    |
| dpo     | DPOTrainer    | answer pairs, document pairs (prompt, chosen, rejected)       | causal LM (or LoRA adapter)    |
| reward  | RewardTrainer | document pairs (prompt, chosen, rejected)                     | sequence classifier, 1 label † |
| lce     | LCETrainer    | lce groups (group, position, query, document)                 | causal LM (or LoRA adapter)    |

† always a full model: a LoRA adapter is merged into it before saving.

``lce`` reads the qlm scorer's tokens: the dataset's qlm ``template`` and the scoring
``max_length`` (the re-ranking settings), the document cut by the scorer's own code, so
``fit_documents`` leaves its groups alone and ``hyper["max_length"]`` does not apply.

The prompts are already rendered with the chat template (``text.prompts``; query examples:
the plain query-likelihood template, no chat template), so TRL sees
plain-text (non-conversational) data and appends the tokenizer's EOS token to every
completion / chosen / rejected text. A scorer that wants the trained quantity must score
the same text, EOS included.

TRL would cut a sequence longer than ``max_length`` at its end (losing the answer and the
EOS) or drop the example; ``fit_documents`` cuts the *document* instead, so every sequence
fits whole. The reward head reads the last non-pad token (``config.pad_token_id``): where
the tokenizer pads with its EOS, the reward model is trained (and saved) with another pad
token, so that the head reads the EOS and not the document's last token.

With LoRA, DPO's reference model is the base model with the adapter disabled (TRL does this
when ``ref_model`` is None and a ``peft_config`` is given). Without LoRA it is a second copy
of the base model.

Checkpoints go to ``output_dir/checkpoints`` (the last two kept); a run that finds one
resumes from the newest complete one. The final model, the tokenizer,
``training_config.json`` (written last: its presence means the training finished) and
``trainer_log.jsonl`` go to ``output_dir``.

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
import hashlib
import json
import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
import transformers
from datasets import Dataset
from peft import LoraConfig, PeftModel
from transformers import AutoTokenizer, ProgressCallback
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, SFTConfig, SFTTrainer

from rerank_audit.io import atomic_path
from rerank_audit.methods import TRAINING_COLUMNS, method as method_spec, trained_methods
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.text import prompts
from rerank_audit.text.truncation import fit_document
from rerank_audit.training.selection import DevSelection, DevSelectionCallback, select_checkpoint, selection_record

logger = logging.getLogger(__name__)

METHODS = tuple(trained_methods())
REQUIRED_HYPER = ("learning_rate", "epochs", "batch_size", "gradient_accumulation", "lora", "max_length", "save_steps", "logging_steps")
# bf16: None/"auto"/absent = automatic (CUDA with bf16 support: on; CPU: off). activation_checkpointing
# (transformers' new name of gradient checkpointing): off unless asked.
# temperature: τ of qlm_lce's group softmax (required for the lce trainer).
OPTIONAL_HYPER = ("max_steps", "beta", "bf16", "activation_checkpointing", "temperature")
LORA_KEYS = ("enabled", "r", "alpha", "dropout", "target_modules")
CHECKPOINTS = "checkpoints"
TRAINING_CONFIG = "training_config.json"
TRAINER_LOG = "trainer_log.jsonl"
RUN_FINGERPRINT = "run.json"  # inside checkpoints/: what the checkpoints were trained on
KEEP_CHECKPOINTS = 2
VERSIONED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "rerank-audit")


def train_reranker(
    method: str,
    base_model_path: str | Path,
    data: pd.DataFrame,
    output_dir: str | Path,
    hyper: Mapping[str, Any],
    seed: int,
    dtype: str | None = None,
    *,
    template: str | None = None,
    scoring: ScoringSettings | None = None,
    selection: DevSelection | None = None,
) -> dict[str, Any]:
    """Train a re-ranker of ``method`` from ``base_model_path`` on ``data``; save it to ``output_dir``.

    In: ``method`` in METHODS; a Hugging Face causal LM folder (or id); ``data`` an ``sft
    examples`` table for ``sft``, a ``query examples`` table for ``qlm_sft``, an ``lce groups``
    table for ``qlm_lce``, else a ``preference pairs`` table (answer pairs for ``dpo``,
    document pairs for ``dpo_pairs`` and ``reward``); ``hyper`` with the keys REQUIRED_HYPER
    (+ OPTIONAL_HYPER; ``lora`` holds LORA_KEYS; ``beta`` is required for the DPO methods,
    ``temperature`` for ``qlm_lce``;
    ``max_steps`` overrides ``epochs``); ``seed`` fixes weights initialisation and data order;
    ``dtype`` (the config's ``model.dtype``): float32 / bfloat16 / float16 loads the base
    weights in that dtype where the device supports it, so a large base model trains in
    bf16; ``None``/``"auto"`` keeps float32 master weights with bf16 autocast where measured
    faster (``hyper["bf16"]``). ``template``: the dataset's qlm template (``None``: the
    default), which ``qlm_lce`` trains on and the likelihood family is scored with;
    ``scoring``: the re-ranking settings (``qlm_lce`` trains on their ``max_length``; dev
    scoring runs with them; ``None``: the defaults). ``selection``: choose the checkpoint
    on dev queries (module docstring; ``None``: one run at ``hyper``'s learning rate, the
    last step saved).

    Out: ``output_dir`` holds the model (or LoRA adapter) and tokenizer, loadable with
    ``from_pretrained``: AutoModelForSequenceClassification for ``reward``; for the others
    AutoModelForCausalLM, or AutoPeftModelForCausalLM when ``adapter`` is true; plus
    ``training_config.json`` (returned as a dict) and ``trainer_log.jsonl`` (one JSON object per
    logged step). ``output_dir`` belongs to this function: files left in it by an earlier
    run are removed first. A checkpoint of an identical run is resumed; checkpoints of a
    different run (method, base, hyper, seed or data changed) are removed with a warning.
    """
    _check_arguments(method, data, hyper)
    output_dir = Path(output_dir)
    checkpoints = output_dir / CHECKPOINTS
    scoring = scoring or ScoringSettings()
    weights_dtype = _weights_dtype(dtype)
    fingerprint = _run_fingerprint(method, base_model_path, data, hyper, seed) | {"dtype": weights_dtype}
    if method_spec(method).trainer == "lce":  # it trains on the scorer's tokens
        fingerprint |= {"template": template, "scoring_max_length": scoring.max_length}
    _remove_previous_outputs(output_dir)

    transformers.set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model_path))
    if method_spec(method).trainer == "lce":
        fitted, truncated = data, None
        logger.info("%s: documents are cut as the qlm scorer cuts them, to max_length=%s (rerank.max_length)", method, scoring.max_length)
    else:
        fitted, truncated = fit_documents(method, data, tokenizer, int(hyper["max_length"]))
        logger.info("%s: %d documents cut to fit max_length=%s", method, truncated, hyper["max_length"])
    build = dict(method=method, base=str(base_model_path), data=fitted, tokenizer=tokenizer, seed=seed, weights_dtype=weights_dtype,
                 template=template, scoring=scoring)

    if selection is None:
        _remove_runs(checkpoints, keep=[])
        run = _train_run(build, checkpoints, hyper, fingerprint)
        trainer, log_history, steps, chosen = run["trainer"], run["log_history"], run["steps"], None
        losses = [entry["loss"] for entry in log_history if "loss" in entry]
    else:
        _remove_runs(checkpoints, keep=[_run_folder(rate) for rate in selection.learning_rates])
        trainer, log_history, chosen = _train_grid(build, checkpoints, hyper, fingerprint, selection)
        steps, rate = chosen["choice"]["step"], chosen["choice"]["learning_rate"]
        # the chosen run (none for step 0), its losses up to the chosen step
        run = next((r for r in chosen["runs"] if r["learning_rate"] == rate), None)
        losses = [entry["loss"] for entry in log_history if "loss" in entry and entry["run_learning_rate"] == rate and entry["step"] <= steps]

    adapter = _save_final_model(trainer, method, output_dir)
    record = {
        "method": method,
        "base_model": str(base_model_path),
        "hyper": dict(hyper),
        "seed": seed,
        "steps": steps,
        "examples": len(data),
        "train_samples": len(trainer.train_dataset),
        "truncated_documents": truncated,
        "max_length": scoring.max_length if method_spec(method).trainer == "lce" else hyper["max_length"],
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "resumed_from": run["resumed_from"] if run else None,
        "seconds_per_step": run["seconds_per_step"] if run else None,
        "model_class": "AutoModelForSequenceClassification" if method_spec(method).trainer == "reward" else "AutoModelForCausalLM",
        "weights_dtype": str(next(trainer.model.parameters()).dtype).removeprefix("torch."),
        "adapter": adapter,
        "bf16": bool(trainer.args.bf16),
        "device": str(trainer.args.device),
        "eos_appended": None if method_spec(method).trainer == "lce" else trainer.processing_class.eos_token,
        "pad_token": trainer.processing_class.pad_token,
        "versions": _versions(),
    }
    if chosen is not None:
        # The hyper-parameters the saved model trained with (the grid's learning rate and epochs;
        # None for the untrained model), beside those configured.
        choice = chosen["choice"]
        trained_with = dict(selection.hyper_of(hyper, choice["learning_rate"])) if choice["trained"] else None
        record["hyper"], record["hyper_configured"] = trained_with, record["hyper"]
        record["selection"] = chosen
    with atomic_path(output_dir / TRAINER_LOG) as tmp:
        tmp.write_text("".join(json.dumps(entry) + "\n" for entry in log_history))
    with atomic_path(output_dir / TRAINING_CONFIG) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    logger.info("%s: %s steps on %d samples, saved to %s", method, steps, record["train_samples"], output_dir)
    return record


def _train_run(build: Mapping[str, Any], checkpoints: Path, hyper: Mapping[str, Any], fingerprint: dict, callback_of=None) -> dict[str, Any]:
    """One training run in ``checkpoints`` (resumed when a checkpoint of the same run is there).

    ``callback_of(trainer)`` -> a callback added to the trainer (model selection), or None.
    Out: {"trainer", "log_history", "steps", "resumed_from", "seconds", "seconds_per_step",
    "best_checkpoint" (the Trainer's best_model_checkpoint), "callback"}.
    """
    resume_from = _resumable_checkpoint(checkpoints, fingerprint)
    with atomic_path(checkpoints / RUN_FINGERPRINT) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=1))
    transformers.set_seed(build["seed"])
    trainer = _build_trainer(checkpoints=checkpoints, hyper=hyper, **build)
    callback = callback_of(trainer) if callback_of else None
    if callback is not None:
        trainer.add_callback(callback)
    if resume_from is not None:
        logger.info("%s: resuming from %s", build["method"], resume_from)
    started = time.perf_counter()
    steps_before = _checkpoint_step(resume_from) if resume_from else 0
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


def _train_grid(build: Mapping[str, Any], checkpoints: Path, hyper: Mapping[str, Any], fingerprint: dict, selection: DevSelection):
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
        run_hyper = selection.hyper_of(hyper, rate)
        run_fingerprint = fingerprint | _run_fingerprint_hyper(run_hyper) | {"selection": selection.fingerprint()}

        def callback_of(trainer, untrained=index == 0):
            def scorer_of(model):
                return _dev_scorer(method, model, trainer, build, scorer_settings, run_hyper)

            return DevSelectionCallback(selection.measure_of(scorer_of), selection.dev_query_ids, selection.splits,
                                        eval_steps=selection.eval_steps, measure_name=selection.measure, untrained=untrained,
                                        untrained_selectable=untrained_selectable)

        logger.info("%s: selection run %d/%d, learning rate %g, %g epochs", method, index + 1, len(selection.learning_rates), rate, selection.epochs)
        run = _train_run(build, checkpoints / _run_folder(rate), run_hyper, run_fingerprint, callback_of)
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
    trainer = _build_trainer(checkpoints=checkpoints / _run_folder(rate), hyper=selection.hyper_of(hyper, rate), **build)
    if choice.trained:
        checkpoint = Path(best[rate])
        if _checkpoint_step(checkpoint) != choice.step:
            raise RuntimeError(f"{method}: the best checkpoint of learning rate {rate:g} is {checkpoint.name}, but step {choice.step} was chosen")
        trainer._load_from_checkpoint(str(checkpoint))
        record["model"] = f"learning rate {rate:g}, step {choice.step} ({checkpoint.name})"
    else:
        record["model"] = "the untrained base model (step 0)"
    logger.info("%s: dev %s chose %s: %.4f (untrained %.4f)", method, selection.measure, record["model"], choice.value, choice.untrained_value)
    return trainer, history, record


def _run_fingerprint_hyper(hyper: Mapping[str, Any]) -> dict:
    return {"hyper": json.loads(json.dumps(dict(hyper)))}


def _run_folder(learning_rate: float) -> str:
    """The checkpoint folder of one learning rate of a selection grid (under ``checkpoints``)."""
    return f"lr-{learning_rate:g}"


def _remove_runs(checkpoints: Path, keep: list[str]) -> None:
    """Remove the checkpoints of runs that this training does not continue.

    With selection (``keep``: the grid's run folders) the top-level checkpoints of a run
    without selection and the folders of other learning rates go; without it (``keep``
    empty) every grid folder goes.
    """
    if not checkpoints.is_dir():
        return
    for path in checkpoints.iterdir():
        stale = path.name.startswith("lr-") and path.name not in keep
        if path.is_dir() and (stale or (keep and path.name.startswith("checkpoint-"))):
            logger.info("removing checkpoints of another run: %s", path)
            shutil.rmtree(path)


def _dev_scorer(method: str, model, trainer, build: Mapping[str, Any], settings: ScoringSettings, hyper: Mapping[str, Any]):
    """The method's scorer of the model being trained, as re-ranking will load it once saved."""
    from rerank_audit.models.scoring import model_scorer

    return model_scorer(
        method, model, trainer.processing_class, settings=settings, reference=getattr(trainer, "ref_model", None),
        beta=hyper.get("beta"), template=build["template"],
    )


def _save_final_model(trainer, method: str, output_dir: Path) -> bool:
    """Save the trained model and tokenizer to ``output_dir``; True when what is saved is a LoRA adapter.

    A reward model's LoRA adapter is merged first: loading an adapter for a sequence
    classifier needs the base rebuilt with num_labels=1 and pad_token_id, which a plain
    ``AutoModelForSequenceClassification.from_pretrained(output_dir)`` of the merged model
    gets from its config. Causal LM adapters are kept: disabling them gives the reference
    model of the DPO implicit reward.
    """
    if method_spec(method).trainer == "reward" and isinstance(trainer.model, PeftModel):
        trainer.model.merge_and_unload().save_pretrained(output_dir)
        trainer.processing_class.save_pretrained(output_dir)
        return False
    trainer.save_model(str(output_dir))
    return isinstance(trainer.model, PeftModel)


def _check_arguments(method: str, data: pd.DataFrame, hyper: Mapping[str, Any]) -> None:
    """Fail before loading anything when the method, the data columns or the hyperparameters are wrong."""
    if method not in METHODS:
        raise ValueError(f"unknown training method {method!r}; expected one of {METHODS}")
    missing = [column for column in _columns(method) if column not in data.columns]
    if missing:
        raise ValueError(f"{method}: training data lacks the columns {missing}")
    if data.empty:
        raise ValueError(f"{method}: no training examples")
    missing = [key for key in REQUIRED_HYPER if key not in hyper]
    unknown = [key for key in hyper if key not in REQUIRED_HYPER + OPTIONAL_HYPER]
    if method_spec(method).trainer == "dpo" and "beta" not in hyper:
        missing.append("beta")
    if method_spec(method).trainer == "lce" and "temperature" not in hyper:
        missing.append("temperature")
    if missing or unknown:
        raise ValueError(f"{method}: hyperparameters missing {missing}, unknown {unknown}")
    lora = hyper["lora"]
    missing = [key for key in ("enabled",) + (LORA_KEYS if lora.get("enabled") else ()) if key not in lora]
    if missing:
        raise ValueError(f"{method}: lora settings missing {missing}")


def _run_fingerprint(method: str, base_model_path, data: pd.DataFrame, hyper: Mapping[str, Any], seed: int) -> dict:
    """What makes two runs the same run: resuming is only safe between them."""
    rows = pd.util.hash_pandas_object(data[_columns(method)], index=False).to_numpy()
    return {
        "method": method,
        "base_model": str(base_model_path),
        "hyper": json.loads(json.dumps(dict(hyper))),
        "seed": seed,
        "data_sha1": hashlib.sha1(rows.tobytes()).hexdigest(),
    }


def _checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def _resumable_checkpoint(checkpoints: Path, fingerprint: dict) -> Path | None:
    """The newest complete checkpoint of this run, or None; other checkpoints are removed.

    Trainer writes ``trainer_state.json`` last, so a checkpoint folder without a readable one
    was cut off mid-save (the process was killed) and cannot be resumed from. Checkpoints of
    another run (its ``run.json`` differs) would continue the wrong training.
    """
    found = sorted(checkpoints.glob("checkpoint-*"), key=_checkpoint_step) if checkpoints.is_dir() else []
    if not found:
        return None
    recorded = checkpoints / RUN_FINGERPRINT
    if not recorded.exists() or json.loads(recorded.read_text()) != fingerprint:
        logger.warning("%s: checkpoints of a different run (method, base, hyper, seed or data changed); training from scratch", checkpoints)
        for path in found:
            shutil.rmtree(path)
        return None
    for path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return path
        except (OSError, ValueError):
            logger.warning("removing incomplete checkpoint %s", path)
            shutil.rmtree(path)
    return None


def _remove_previous_outputs(output_dir: Path) -> None:
    """Remove the files of an earlier run from ``output_dir`` (sub-folders, i.e. checkpoints, stay).

    A stale ``adapter_config.json`` next to a new full model would make loaders take the
    folder for an adapter; a stale ``training_config.json`` would mark an unfinished run done.
    """
    if output_dir.is_dir():
        for path in output_dir.iterdir():
            if path.is_file() or path.is_symlink():
                path.unlink()


def _use_bf16(hyper: Mapping[str, Any]) -> bool:
    """bf16 autocast: as ``hyper['bf16']`` says (true/false), else (null/"auto") where measured faster.

    Auto follows :func:`rerank_audit.models.precision.auto_dtype` on the device the trainer
    uses: CUDA's bf16 units on a GPU, the matmul probe on the CPU.
    """
    from rerank_audit.models.precision import auto_dtype

    if hyper.get("bf16") not in (None, "auto"):
        return bool(hyper["bf16"])
    return auto_dtype("cuda" if torch.cuda.is_available() else "cpu") == torch.bfloat16


def _columns(method: str) -> list[str]:
    """The columns of the method's training table that its trainer reads."""
    return list(TRAINING_COLUMNS[method_spec(method).training_table])


def _weights_dtype(dtype: str | None) -> str:
    """The dtype the base weights are loaded in: ``dtype`` where the device supports it, else float32.

    ``auto``/None: float32 master weights (bf16 then runs as autocast, ``_use_bf16``).
    """
    if dtype in (None, "auto", "float32"):
        return "float32"
    if dtype not in ("bfloat16", "float16"):
        raise ValueError(f"model.dtype {dtype!r}: use auto, float32, bfloat16 or float16")
    if torch.cuda.is_available() and dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        logger.warning("model.dtype bfloat16: this GPU has no bf16 support; training in float32")
        return "float32"
    return dtype


def _build_trainer(method: str, base: str, data: pd.DataFrame, tokenizer, checkpoints: Path, hyper: Mapping[str, Any], seed: int,
                   weights_dtype: str = "float32", template: str | None = None, scoring: ScoringSettings | None = None):
    """The trainer of ``method`` (its registry entry's ``trainer``) on ``data`` (documents already fitted to max_length).

    ``template`` and ``scoring`` (its ``max_length``): the qlm scorer's, for the ``lce`` trainer.
    """
    trainer_kind = method_spec(method).trainer
    common = dict(
        output_dir=str(checkpoints),
        learning_rate=float(hyper["learning_rate"]),
        num_train_epochs=float(hyper["epochs"]),
        max_steps=int(hyper.get("max_steps") or -1),
        per_device_train_batch_size=int(hyper["batch_size"]),
        gradient_accumulation_steps=int(hyper["gradient_accumulation"]),
        max_length=int(hyper["max_length"]),
        save_strategy="steps",
        save_steps=int(hyper["save_steps"]),
        save_total_limit=KEEP_CHECKPOINTS,
        logging_steps=int(hyper["logging_steps"]),
        report_to="none",
        disable_tqdm=False,
        seed=seed,
        data_seed=seed,
        bf16=_use_bf16(hyper) and weights_dtype == "float32",
        fp16=False,
        # transformers accepts bf16 autocast on the CPU only when told the CPU is the device.
        use_cpu=not torch.cuda.is_available(),
        # TRL turns it on by default; it only pays off for models much larger than the default base.
        activation_checkpointing=bool(hyper.get("activation_checkpointing", False)),
        dataloader_pin_memory=torch.cuda.is_available(),
        # float32 master weights with bf16 autocast, or the weights themselves in model.dtype
        model_init_kwargs={"dtype": weights_dtype},
    )
    peft_config = _lora_config(hyper["lora"], "SEQ_CLS" if trainer_kind == "reward" else "CAUSAL_LM")
    if trainer_kind == "lce":
        from rerank_audit.training.lce import LCEConfig, LCETrainer, group_dataset

        args = LCEConfig(
            **(common | {"max_length": (scoring or ScoringSettings()).max_length}),
            template=prompts.DEFAULT_QLM_TEMPLATE if template is None else template,
            temperature=float(hyper["temperature"]),
        )
        groups = group_dataset(data)
        trainer = LCETrainer(model=base, args=args, train_dataset=groups, processing_class=tokenizer, peft_config=peft_config)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_LoggedProgress())
        return trainer
    dataset = Dataset.from_pandas(data[_columns(method)].reset_index(drop=True), preserve_index=False)
    if trainer_kind == "sft":
        args = SFTConfig(**common, completion_only_loss=True)
        trainer = SFTTrainer(model=base, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    elif trainer_kind == "dpo":
        args = DPOConfig(**common, beta=float(hyper["beta"]))
        trainer = DPOTrainer(model=base, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    else:
        # RewardTrainer loads AutoModelForSequenceClassification(num_labels=1) from the causal LM and sets
        # config.pad_token_id to the tokenizer's pad (the head reads the last non-pad token); the tokenizer is
        # saved with the model, so the scorer pads the same way.
        tokenizer.pad_token = _reward_pad_token(tokenizer)
        args = RewardConfig(**common)
        trainer = RewardTrainer(model=base, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    dropped = len(data) - len(trainer.train_dataset)
    if dropped:  # fit_documents made every sequence fit: a drop means it and TRL count tokens differently
        raise RuntimeError(
            f"{method}: TRL dropped {dropped} of {len(data)} examples longer than max_length={hyper['max_length']} "
            "although fit_documents cut their documents to fit"
        )
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_LoggedProgress())
    return trainer


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


def _reward_pad_token(tokenizer) -> str:
    """The pad token a reward model trains with: the tokenizer's own if it is not the EOS, else its unk or <|endoftext|>.

    With pad == EOS the sequence classifier, which reads the last token that is not padding,
    would take the EOS that TRL appends for padding and read the document's last token.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return tokenizer.pad_token
    vocab = tokenizer.get_vocab()
    for token in (tokenizer.unk_token, "<|endoftext|>"):
        if token is not None and token in vocab and vocab[token] != tokenizer.eos_token_id:
            return token
    raise ValueError(
        f"the tokenizer pads with its EOS token {tokenizer.eos_token!r} and has no other token to pad with "
        "(no unk token, no <|endoftext|>), so the reward head could not read the EOS; save the base model's "
        "tokenizer with a pad token distinct from EOS (tokenizer.pad_token = ...; tokenizer.save_pretrained)"
    )


def fit_documents(method: str, data: pd.DataFrame, tokenizer, max_length: int) -> tuple[pd.DataFrame, int]:
    """``data`` with each document cut at its end, at a token boundary, so that every training sequence fits.

    A training sequence is what TRL tokenizes: prompt + completion + EOS (``sft``), prompt +
    chosen + EOS and prompt + rejected + EOS (the others). The documents are inside the
    pointwise prompt for ``sft`` and ``dpo`` (the prompt is parsed and rendered again with
    ``prompts.pointwise_prompt``), and they are chosen and rejected for ``dpo_pairs`` and
    ``reward``. For ``qlm_sft`` the document is the ``document`` column, found verbatim in
    the prompt (the query-likelihood template around it stays), and the completion (the
    query) is never cut. Out: (a copy of ``data`` with the cut texts, number of document
    texts cut). Raises ValueError naming the row when a sequence is too long even with an
    empty document.
    """
    eos = tokenizer.eos_token
    query_ids = data["query_id"] if "query_id" in data.columns else ["?"] * len(data)
    names = [f"training example {i} (query {query_id})" for i, query_id in enumerate(query_ids)]
    fitted, truncated = data.copy(), 0
    table = method_spec(method).training_table
    if table in ("sft_examples", "answer_pairs"):
        endings = [[text + eos for text in data[column]] for column in _columns(method)[1:]]
        too_long = _too_long(tokenizer, [[p + e for p, e in zip(data.prompt, ending)] for ending in endings], max_length)
        parse = _pointwise_parser(tokenizer)
        new_prompts = list(data.prompt)
        for i in np.flatnonzero(too_long):
            query, document = parse(new_prompts[i], names[i])
            for ending in (column[i] for column in endings):  # fit the longest ending: fit each in turn
                document = _cut_to_fit(tokenizer, lambda d: prompts.pointwise_prompt(tokenizer, query, d) + ending, document, max_length, names[i])
            new_prompts[i] = prompts.pointwise_prompt(tokenizer, query, document)
        fitted["prompt"] = new_prompts
        return fitted, int(too_long.sum())
    if table == "query_examples":
        return _fit_query_examples(method, data, tokenizer, max_length, names)
    if table == "lce_groups":
        raise ValueError(f"{method}: lce groups are cut by the qlm scorer's code when they are tokenized, not here")
    for column in ("chosen", "rejected"):
        documents = list(data[column])
        too_long = _too_long(tokenizer, [[p + d + eos for p, d in zip(data.prompt, documents)]], max_length)
        for i in np.flatnonzero(too_long):
            prompt = data.prompt.iloc[i]
            documents[i] = _cut_to_fit(tokenizer, lambda d: prompt + d + eos, documents[i], max_length, names[i])
        fitted[column] = documents
        truncated += int(too_long.sum())
    return fitted, truncated


def _fit_query_examples(method: str, data: pd.DataFrame, tokenizer, max_length: int, names: list[str]) -> tuple[pd.DataFrame, int]:
    """``fit_documents`` of query examples: cut each too-long row's ``document`` inside its prompt."""
    if "document" not in data.columns:
        raise ValueError(f"{method}: training data lacks the column 'document' (rebuild query_examples with rule training_data)")
    eos = tokenizer.eos_token
    fitted = data.copy()
    too_long = _too_long(tokenizer, [[p + c + eos for p, c in zip(data.prompt, data.completion)]], max_length)
    new_prompts, new_documents = list(data.prompt), list(data.document)
    for i in np.flatnonzero(too_long):
        prompt, document, completion = new_prompts[i], new_documents[i], data.completion.iloc[i]
        at = prompt.find(document)
        if not document or at < 0:
            raise ValueError(f"{names[i]}: its document is not in its prompt; rebuild query_examples (rule training_data)")
        head, tail = prompt[:at], prompt[at + len(document) :]
        new_documents[i] = _cut_to_fit(tokenizer, lambda d: head + d + tail + completion + eos, document, max_length, names[i])
        new_prompts[i] = head + new_documents[i] + tail
    fitted["prompt"], fitted["document"] = new_prompts, new_documents
    return fitted, int(too_long.sum())


def _too_long(tokenizer, sequences: list[list[str]], max_length: int) -> np.ndarray:
    """Per row: whether any of its sequences (``sequences[k][row]``) has more than ``max_length`` tokens."""
    lengths = [[len(ids) for ids in tokenizer(texts)["input_ids"]] for texts in sequences]
    return (np.array(lengths) > max_length).any(axis=0)


def _cut_to_fit(tokenizer, render, document: str, max_length: int, name: str) -> str:
    """:func:`~rerank_audit.text.truncation.fit_document`, an error naming the example when nothing fits."""
    kept = fit_document(tokenizer, render, document, max_length)
    if kept is None:
        raise ValueError(
            f"{name}: the training sequence has more than max_length={max_length} tokens even without its document; "
            "raise max_length for this method (train.defaults / train.methods)"
        )
    return kept


def _pointwise_parser(tokenizer):
    """A function prompt, name -> (query, document) inverting ``prompts.pointwise_prompt`` for ``tokenizer``.

    The template is located by rendering it with two marker strings; a prompt it does not
    reproduce exactly is an error (tables built for another base model or prompt version).
    """
    query_mark, document_mark = "\x1equery\x1e", "\x1edocument\x1e"
    head, rest = prompts.pointwise_prompt(tokenizer, query_mark, document_mark).split(query_mark)
    middle, tail = rest.split(document_mark)

    def parse(prompt: str, name: str) -> tuple[str, str]:
        found = prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head) + len(tail)
        query, _, document = prompt[len(head) : len(prompt) - len(tail)].partition(middle) if found else ("", "", "")
        if not found or prompts.pointwise_prompt(tokenizer, query, document) != prompt:
            raise ValueError(
                f"{name}: the prompt is not a pointwise prompt of this tokenizer's template, so its document cannot "
                "be cut to fit max_length; rebuild the training tables (rule training_data) with this base model"
            )
        return query, document

    return parse


def _lora_config(lora: Mapping[str, Any], task_type: str):
    """A peft LoraConfig from the ``lora`` settings, or None when LoRA is off."""
    if not lora.get("enabled"):
        return None
    return LoraConfig(
        r=int(lora["r"]),
        lora_alpha=float(lora["alpha"]),
        lora_dropout=float(lora["dropout"]),
        target_modules=lora["target_modules"],
        task_type=task_type,
        # The reward head is new: it must be trained in full and saved with the adapter.
        modules_to_save=["score"] if task_type == "SEQ_CLS" else None,
    )


def _versions() -> dict[str, str | None]:
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


class _LoggedProgress(ProgressCallback):
    """Trainer's tqdm bar (stderr), with the metric lines sent to ``logging`` instead of stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            shown = {key: f"{value:.4g}" if isinstance(value, float) else value for key, value in logs.items() if key != "total_flos"}
            logger.info("step %d/%d %s", state.global_step, state.max_steps, shown)
