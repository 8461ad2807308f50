"""Rationale generation: a fixed batch size against ``rationale.batch_size: auto`` (as many prompts as
the job's memory holds), side by side on the same explained items of a finished run.

Reads a method's explained items as the rationale job does (its keywords, its run's head, the
queries and the corpus), then writes every rationale with each setting in turn, alternating
``--repeats`` times (so a background load weighs on both alike), greedy decoding with the
pipeline's writer and ``max_new_tokens``. Prints each pass's seconds, the ratio of the medians,
the batches each setting made, and how many rationales the two wrote alike (greedy text can
change with the padding of a batch in bf16).

    .venv/bin/python bench/rationale.py --run-dir /path/to/finished/run --dataset climate-fever-judged \\
        --method zeroshot --budget 0 [--configfile config/climate-fever.yaml] [--fixed 8] [--repeats 2] [--items N] [--memory-mb 4321]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from rerank_audit.config import load_config
from rerank_audit.data import schemas
from rerank_audit.explain.rationale import rationale_prompt, write_rationales
from rerank_audit.explain.selection import explained_head, rationale_items
from rerank_audit.io import read_table
from rerank_audit.models.batching import Batching, generation_batching
from rerank_audit.models.bundled import resolve_base_model
from rerank_audit.models.loading import load_causal_lm, load_tokenizer

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished run (a clone's root) with explanations")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--budget", default="0")
    parser.add_argument("--configfile", nargs="+", default=[REPO / "config/config.yaml"])
    parser.add_argument("--fixed", type=int, default=8, help="the fixed batch size (the default before auto)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--items", type=int, help="the first N items only (default: all the job writes)")
    parser.add_argument("--memory-mb", type=int, default=4321, help="the rationale job's mem_mb (the bundled writer's rule declares 4321)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(*args.configfile)
    results = args.run_dir / "results" / args.dataset
    run = read_table(results / f"rerank/{args.method}/{args.budget}/run.parquet", schemas.RUN)
    items = rationale_items(
        read_table(results / f"explain/{args.method}/{args.budget}/keywords.parquet", schemas.ATTRIBUTIONS),
        explained_head(run, config["rerank"]["depth"], config["explain"]["top_documents"], config["explain"]["bottom_documents"]),
        read_table(results / "ingest/queries.parquet", schemas.QUERIES),
        read_table(results / "ingest/corpus.parquet", schemas.CORPUS),
    ).to_dict("records")[: args.items]
    writer = resolve_base_model(config["rationale"]["generator"], REPO / "resources/models")
    model, tokenizer = load_causal_lm(writer, dtype=config["model"]["dtype"]), load_tokenizer(writer)
    new_tokens = config["rationale"]["max_new_tokens"]
    lengths = sorted((len(tokenizer(rationale_prompt(tokenizer, item), add_special_tokens=False)["input_ids"]) for item in items), reverse=True)
    auto = generation_batching(model, args.memory_mb)
    print(f"{len(items)} items of {args.method} ({args.dataset}), prompts of {lengths[-1]}-{lengths[0]} tokens, {new_tokens} new tokens, "
          f"{model.dtype}, {args.threads} threads")  # fmt: skip
    print(f"batches: fixed {len(Batching(rows=args.fixed).split(lengths))} of {args.fixed}; auto {len(auto.split(lengths, extra=new_tokens))} ({auto.describe()})")
    seconds: dict[str, list[float]] = {"fixed": [], "auto": []}
    texts = {}
    write_rationales(model, tokenizer, items[:2], 4, 2)  # warm-up
    for _ in range(args.repeats):
        for name, batch_size in (("fixed", args.fixed), ("auto", None)):
            started = time.perf_counter()
            texts[name] = write_rationales(model, tokenizer, items, new_tokens, batch_size, memory_mb=args.memory_mb)
            seconds[name].append(time.perf_counter() - started)
            print(f"{name}: {seconds[name][-1]:.1f} s", flush=True)
    fixed, auto_s = statistics.median(seconds["fixed"]), statistics.median(seconds["auto"])
    alike = sum(a == b for a, b in zip(texts["fixed"], texts["auto"]))
    print(f"\nmedian: fixed {args.fixed} {fixed:.1f} s, auto {auto_s:.1f} s: auto / fixed = {auto_s / fixed:.2f}x; written alike: {alike} of {len(items)}")


if __name__ == "__main__":
    main()
