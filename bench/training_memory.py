"""One training step of a method at a random-weight shape: its peak GPU memory against the estimate the train job logs.

The trainer is the pipeline's (``build.build_trainer`` with ``TrainingSettings.for_method`` of
``--config``, the demo's training table of the method), with ``model.dtype`` bfloat16 and
``--quantization`` (none: LoRA over bf16 weights; 4bit: QLoRA). ``--cap-gib`` limits this
process to that much GPU memory (``torch.cuda.set_per_process_memory_fraction``), as a 24 GiB
card would, and activation checkpointing is then chosen as the train job's ``auto`` chooses it
(:func:`rerank_audit.training.memory.plan_training_memory`), against the cap. Peak = the
most memory torch allocated from loading the model to the end of the step
(``torch.cuda.max_memory_allocated``); the estimate = ``estimate_training_memory`` of the
settings the step ran with. Prints one ``RESULT {json}`` line.

The random weights (``--shape``, bench/random_models.py) are written once, in bfloat16, to
``--models`` (reused when there). ``--dry-run``: the tiny shape on the CPU (no peak: torch
reports none there), to check the script itself.

    python bench/training_memory.py --method sft --shape llama3-8b [--quantization 4bit --cap-gib 24]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import random_models  # bench/random_models.py, beside this file

REPO = Path(__file__).resolve().parents[1]
TINY = "hidden=64,layers=2,heads=4,kv_heads=2,intermediate=128"


def random_model_folder(models: Path, shape_name: str, tokenizer, device: torch.device) -> Path:
    """A bfloat16 model folder of random weights of ``shape_name`` under ``models`` (built on ``device`` once)."""
    folder = models / f"random-{shape_name.replace('=', '').replace(',', '-')}"
    if (folder / "config.json").is_file():
        return folder
    config = random_models.llama_config(random_models.parse_shape(shape_name), tokenizer)
    model = random_models.random_causal_lm(config, device).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="sft", help="a trained method of the registry")
    parser.add_argument("--shape", default="llama3-8b", help="random weights of this shape: " + ", ".join(random_models.SHAPES) + ", or key=value,...")
    parser.add_argument("--quantization", choices=("none", "8bit", "4bit"), default="none")
    parser.add_argument("--cap-gib", type=float, default=None, help="GPU memory this process may use, GiB (default: the whole GPU)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=224)
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "rerank-audit-random-models")
    parser.add_argument("--dry-run", action="store_true", help=f"the shape {TINY} on the CPU")
    args = parser.parse_args()
    if args.dry_run:
        args.shape, device = TINY, torch.device("cpu")
    elif not torch.cuda.is_available():
        parser.error("no CUDA device: --dry-run runs the tiny shape on the CPU")
    else:
        device = torch.device("cuda")
    import training as bench_training  # bench/training.py: the demo's training tables

    from rerank_audit.methods import method as method_spec
    from rerank_audit.models.batching import model_config
    from rerank_audit.trainer_kinds import trainer_kind
    from rerank_audit.training.build import build_trainer
    from rerank_audit.training.fit_documents import fit_documents
    from rerank_audit.training.memory import USABLE_SHARE, estimate_training_memory
    from rerank_audit.training.settings import TrainingSettings
    from rerank_audit.training.trainers import label_positions_only, logit_positions

    started = time.perf_counter()
    tokenizer, _ = random_models.bench_tokenizer()
    folder = random_model_folder(args.models, args.shape, tokenizer, device)
    config = bench_training.load_config(args.config)
    config["model"] = dict(config["model"], dtype="bfloat16", quantization=args.quantization)
    kind = trainer_kind(method_spec(args.method).trainer)
    settings = TrainingSettings.for_method(config, args.method).but(
        batch_size=args.batch_size, max_length=args.max_length, max_steps=1, save_steps=1000, logging_steps=1)
    data = bench_training.demo_training_table(config, args.method, tokenizer)
    sequences = kind.sequences_per_example or int(data.groupby("group").size().max())
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        if args.cap_gib:
            torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gib * 2**30 / total), device)
        budget = (args.cap_gib * 2**30 if args.cap_gib else torch.cuda.mem_get_info(device)[0]) * USABLE_SHARE
    else:
        budget = float("inf")
    weights_dtype, autocast = settings.precision()
    estimate_of = lambda on: estimate_training_memory(  # noqa: E731
        model_config(folder), settings.but(max_length=args.max_length), sequences, weights_dtype=weights_dtype, autocast=autocast,
        quantization=args.quantization, checkpointing=on, reference_copy=kind.scored_against_reference and not settings.lora.enabled,
        logits=kind.logits, logit_positions=logit_positions(kind, data, folder))
    checkpointing = settings.activation_checkpointing if settings.activation_checkpointing is not None else estimate_of(False).total > budget
    settings = settings.but(activation_checkpointing=checkpointing, quantization=args.quantization)
    estimate = estimate_of(checkpointing)
    if kind.fits_documents:
        data, _ = fit_documents(args.method, data, tokenizer, settings.max_length)
    data = data.head(args.batch_size * (1 if kind.sequences_per_example else sequences) * 2)  # a step or two, never the whole table
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    from rerank_audit.models.settings import ScoringSettings

    step = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="training-memory-") as checkpoints:
        trainer = build_trainer(args.method, str(folder), data, tokenizer, Path(checkpoints), settings, seed=0,
                                scoring=ScoringSettings(max_length=args.max_length))
        with label_positions_only():  # as the train job runs it
            trainer.train()
    seconds = time.perf_counter() - step
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    result = {
        "method": args.method, "shape": args.shape, "quantization": args.quantization, "cap_gib": args.cap_gib,
        "checkpointing": bool(checkpointing), "tokens": estimate.tokens, "estimate_gb": estimate.total / 1e9,
        "parts_gb": {k: getattr(estimate, k) / 1e9 for k in ("weights", "reference", "trainable", "activations", "logits")},
        "peak_gb": None if peak is None else peak / 1e9, "ratio": None if peak is None else peak / estimate.total,
        "step_seconds": seconds, "seconds": time.perf_counter() - started, "device": str(device),
    }  # fmt: skip
    print("RESULT " + json.dumps(result), flush=True)

if __name__ == "__main__":
    main()
