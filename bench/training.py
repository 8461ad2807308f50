"""Training speed per optimizer step: the avoidable costs of a training run, measured side by side in one run.

Trains one method (``--method``: any trained method of the method registry) on the demo's
training table (the one its registry entry names, built here from the embedded demo
collection with the pipeline's own functions and ``--config``'s train settings: split, BM25,
negatives), with the trainer the pipeline builds (``build.build_trainer`` with the method's
``TrainingSettings.for_method``: ``train.defaults`` merged with ``train.methods.<method>``,
LoRA, ``model.dtype``, bf16 as ``auto`` resolves it here). One run, so that the settings
share the machine's load (the development machine is shared):

- the LM head: ``--steps`` optimizer steps alternate between TRL's projection of every
  position (its choice outside CUDA/Triton) and only the positions that carry a label
  (``trainers.label_positions_only``, what train_reranker runs), step by step (ABAB...), so
  load changes hit both alike; the first two steps warm up and are left out. The same batch's
  loss under both is compared (it should agree to float rounding);
- checkpoints: ``--saves`` checkpoint saves of the trained state (adapter, optimizer,
  scheduler, RNG, trainer state), timed; a run with ``save_steps`` k pays one per k steps.

Table, one row per setting: seconds per step (step + its share of a checkpoint), × the
first row, real tokens/s (non-padding), labelled tokens per step, useful GFLOP/s = (4 ×
backbone parameters × tokens + 6 × vocabulary × hidden × labelled tokens) / s (LoRA: the
forward and the activation gradients of the frozen weights; the LM head's forward, gradient
and recomputation at the labelled positions) and its share of the matmul peak measured here
for the dtype the run computes in.

    .venv/bin/python bench/training.py [--method qlm_sft] [--steps 10] [--saves 3] [--save-steps 5 50] [--config config/config.yaml]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import transformers

from rerank_audit.config import load_config, qlm_template
from rerank_audit.data.ingest import read_collection
from rerank_audit.data.splits import budget_queries, evaluable_queries, split_queries
from rerank_audit.methods import method as method_spec, trained_methods
from rerank_audit.models.bundled import resolve_base_model
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.retrieval.bm25 import bm25_candidates, bm25_index
from rerank_audit.training import examples
from rerank_audit.training.build import build_trainer
from rerank_audit.training.fit_documents import fit_documents
from rerank_audit.trainer_kinds import trainer_kind
from rerank_audit.training.settings import TrainingSettings
from rerank_audit.training.trainers import label_positions_only

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring import matmul_peak  # bench/scoring.py, beside this file

REPO = Path(__file__).resolve().parents[1]


def demo_training_table(config: dict, method: str, tokenizer):
    """The demo's training table of ``method`` (its registry entry's ``training_table``) for budget "all",
    built as rule training_data builds it."""
    spec = config["datasets"]["demo"]
    collection = read_collection(spec["format"], **{role: REPO / path for role, path in spec["sources"].items()}, **spec.get("options", {}))
    threshold, train = spec.get("relevance_threshold", 1), config["train"]
    splits = split_queries(evaluable_queries(collection.qrels, threshold), config["split"]["seed"], config["split"]["dev"], config["split"]["test"])
    queries = collection.queries[collection.queries.query_id.isin(splits.query_id)]
    run = bm25_candidates(bm25_index(collection.corpus), queries, config["retrieve"]["k"])
    tables = dict(corpus=collection.corpus, queries=collection.queries, qrels=collection.qrels, run=run, train_query_ids=budget_queries(splits, "all"))
    common = dict(relevance_threshold=threshold, seed=train["seed"])
    negatives = dict(common, unjudged_negatives=train.get("unjudged_negatives", False))
    positives = dict(max_positives_per_query=train["max_positives_per_query"])

    def sft_examples():
        return examples.sft_examples(**tables, tokenizer=tokenizer, negatives_per_positive=train["negatives_per_positive"], **positives, **negatives)

    builders = {
        "sft_examples": sft_examples,
        "answer_pairs": lambda: examples.answer_pairs(sft_examples()),
        "document_pairs": lambda: examples.preference_pairs(**tables, tokenizer=tokenizer, pairs_per_query=train["pairs_per_query"], **negatives),
        "query_examples": lambda: examples.query_examples(**tables, template=qlm_template(spec), **positives, **common),
        "lce_groups": lambda: examples.lce_groups(**tables, negatives_per_group=train["negatives_per_group"], **positives, **negatives),
    }
    return builders[method_spec(method).training_table]()


class _Alternating:
    """Wraps ``trainer.training_step``: odd steps project every position, even steps only labelled ones.

    Records per step its start time, its setting, its real tokens and its labelled tokens.
    """

    def __init__(self, trainer):
        self.starts, self.compact, self.tokens, self.labelled, self.batch = [], [], [], [], None
        step = trainer.training_step

        def training_step(model, inputs, *args, **kwargs):
            compact = len(self.starts) % 2 == 1
            self.starts.append(time.perf_counter())
            self.compact.append(compact)
            self.tokens.append(int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else int(inputs["input_ids"].numel()))
            labels = inputs.get("labels")
            self.labelled.append(int((labels[:, 1:] != -100).sum()) if labels is not None else 0)
            self.batch = self.batch or inputs
            with label_positions_only() if compact else nullcontext():
                return step(model, inputs, *args, **kwargs)

        trainer.training_step = training_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="qlm_sft", choices=trained_methods())
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps, alternating the two head settings (>= 4, even)")
    parser.add_argument("--saves", type=int, default=3, help="timed checkpoint saves")
    parser.add_argument("--save-steps", type=int, nargs=2, default=[5, 50], metavar=("BEFORE", "AFTER"), help="save_steps before and after")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    base = resolve_base_model(config["model"]["base"], str(REPO / "resources" / "models"))
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    configured = TrainingSettings.for_method(config, args.method)
    data = demo_training_table(config, args.method, tokenizer)
    if trainer_kind(method_spec(args.method).trainer).fits_documents:
        data, _ = fit_documents(args.method, data, tokenizer, configured.max_length)
    seed = config["train"]["seed"]
    scoring = ScoringSettings.from_config(config)  # the lce trainer trains on the scorer's max_length

    with tempfile.TemporaryDirectory() as folder:
        settings = configured.but(max_steps=args.steps, save_steps=10 * args.steps, logging_steps=1)
        transformers.set_seed(seed)
        trainer = build_trainer(args.method, base, data, tokenizer, Path(folder), settings, seed,
                                template=qlm_template(config["datasets"]["demo"]), scoring=scoring)
        print(f"{args.method}: {len(data)} training rows, batch {settings.batch_size}, max_length {trainer.args.max_length}, "
              f"LoRA r={settings.lora.r if settings.lora.enabled else None}, weights {settings.precision()[0]}, bf16 autocast {trainer.args.bf16}, "
              f"{args.steps} steps, {torch.get_num_threads()} threads", flush=True)
        steps = _Alternating(trainer)
        trainer.train()
        ended = time.perf_counter()  # the last step ends before its final save (save_steps > steps: only the end save)
        saves = []
        for i in range(args.saves):
            trainer.state.global_step = args.steps + 1 + i
            started = time.perf_counter()
            trainer._save_checkpoint(trainer.model, None)
            saves.append(time.perf_counter() - started)
        # the same batch's loss, both ways
        batch = trainer._prepare_inputs(steps.batch)
        trainer.model.eval()  # no dropout: the two losses see the same network
        with torch.no_grad():
            losses = []
            for compact in (False, True):
                with label_positions_only() if compact else nullcontext(), trainer.compute_loss_context_manager():
                    losses.append(float(trainer.compute_loss(trainer.model, dict(batch))))

    durations = [b - a for a, b in zip(steps.starts, steps.starts[1:] + [ended])]
    measured = range(2, args.steps)  # the first two steps warm up
    per = {compact: [i for i in measured if steps.compact[i] == compact] for compact in (False, True)}
    seconds = {compact: statistics.median(durations[i] for i in rows) for compact, rows in per.items()}
    tokens = statistics.mean(steps.tokens[i] for i in measured)
    labelled = statistics.mean(steps.labelled[i] for i in measured)
    save = statistics.median(saves)
    # each labelled-only step against the full step just before it: load drifts cancel in the pair
    paired = statistics.median(durations[i - 1] / durations[i] for i in measured if steps.compact[i] and i - 1 in measured)

    model = trainer.model
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings()
    vocab, hidden = head.weight.shape
    backbone = sum(p.numel() for name, p in inner.named_parameters() if "lora_" not in name)
    backbone -= inner.get_input_embeddings().weight.numel() + (0 if inner.config.tie_word_embeddings else head.weight.numel())
    dtype = torch.bfloat16 if trainer.args.bf16 or settings.precision()[0] == "bfloat16" else torch.float32
    peak = matmul_peak(torch.device("cpu"), dtype)
    useful = (4 * backbone * tokens + 6 * vocab * hidden * labelled) / 1e9
    print(f"backbone {backbone / 1e6:.1f} M parameters (embeddings and head excluded), head {vocab} x {hidden}; {tokens:.0f} real tokens, "
          f"{labelled:.0f} labelled per step; step medians over {len(per[False])} + {len(per[True])} steps; "
          f"checkpoint save {save:.2f} s (median of {len(saves)}: {', '.join(f'{s:.2f}' for s in saves)}); "
          f"same batch loss every position {losses[0]:.6f}, labelled only {losses[1]:.6f}; "
          f"matmul peak measured here, {'bf16' if dtype == torch.bfloat16 else 'fp32'}: {peak:,.0f} GFLOP/s")
    print("steps (s; * = labelled positions only): " + " ".join(
        f"{durations[i]:.1f}{'*' if steps.compact[i] else ''}" for i in range(len(durations))) + " (the first two warm up); "
        f"median of the paired ratios (full step / the labelled-only step after it): {paired:.2f}")
    before, after = args.save_steps
    rows = [
        (f"before: LM head at every position, save_steps {before}", seconds[False] + save / before),
        (f"save_steps {after}", seconds[False] + save / after),
        (f"after: LM head at labelled positions, save_steps {after}", seconds[True] + save / after),
    ]
    print(f"{'setting':<56} {'s/step':>7} {'x before':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'% peak':>7}")
    for name, per_step in rows:
        print(f"{name:<56} {per_step:>7.2f} {rows[0][1] / per_step:>8.2f} {tokens / per_step:>9.0f} {useful / per_step:>8.1f} {100 * useful / per_step / peak:>6.1f}%")


if __name__ == "__main__":
    main()
