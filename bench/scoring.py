"""Re-ranking throughput: naive scoring loops vs. the batched scorers (yes/no fp32, bf16 and auto; query likelihood).

Scores the same CLIMATE-FEVER pairs (each claim with its evidence sentences) with the
bundled SmolLM2-135M-Instruct, zero-shot, eight ways, measured side by side in one run:

  naive         yes/no log-odds one pair at a time, fp32, full prompt, full logits (what one writes first)
  batched-plain YesNoScorer fp32 without prefix reuse (batching + length bucketing only)
  batched-fp32  YesNoScorer fp32 (+ instruction/query prefix computed once per claim)
  batched-bf16  YesNoScorer with bf16 weights
  auto (…)      YesNoScorer with the model loaded as ``dtype: auto`` (the pipeline default):
                the dtype the start-up matmul probe chose, named in the row; it should be
                the faster of batched-fp32 and batched-bf16
  qlm naive     the ``qlm`` score (mean log P(claim | ``--qlm-template`` with the evidence))
                one pair at a time, fp32, full text, full logits
  qlm batched-fp32  QueryLikelihoodScorer fp32 (the document's prompt computed once per evidence)
  qlm auto (…)  QueryLikelihoodScorer on the ``auto`` model (the pipeline's ``qlm`` scorer);
                the qlm rows' speed-up and score agreement are read against ``qlm naive``

Prints pairs/s, speed-up over naive, useful GFLOP/s (2 × parameters × real tokens pushed
through the model / s; padding not counted, the skipped vocabulary projections not
subtracted) next to the machine's measured fp32 and bf16 matmul throughput, and agreement
of the scores (max |Δ| against naive, Kendall's tau of bf16 vs fp32).

    .venv/bin/python bench/scoring.py [--claims 40] [--per-claim 5] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from rerank_audit.models import prompts
from rerank_audit.models.loading import load_causal_lm, load_tokenizer
from rerank_audit.models.precision import cpu_probe
from rerank_audit.models.scoring import DEFAULT_QLM_TEMPLATE, QueryLikelihoodScorer, YesNoScorer, answer_token_sets


def read_pairs(path: Path, n_claims: int, per_claim: int) -> tuple[list[str], list[str]]:
    """(claim, evidence as ``article: sentence``) pairs of the first ``n_claims`` claims."""
    queries, documents = [], []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if len(set(queries)) == n_claims:
                break
            record = json.loads(line)
            for evidence in record["evidences"][:per_claim]:
                queries.append(record["claim"])
                documents.append(prompts.document_text(evidence["article"], evidence["evidence"]))
    return queries, documents


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` throughput of an n×n @ n×n matmul, GFLOP/s."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def count_tokens(module: torch.nn.Module, run):
    """(result of ``run()``, real tokens of ``input_ids`` in all forward calls of ``module`` during it).

    Real = unmasked: padding is not counted, and a cached prefix counts once, when computed.
    """
    tokens = 0

    def count(_module, args, kwargs):
        nonlocal tokens
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        tokens += int(mask[:, -ids.shape[1]:].sum()) if mask is not None else ids.numel()

    handle = module.register_forward_pre_hook(count, with_kwargs=True)
    try:
        return run(), tokens
    finally:
        handle.remove()


def plain_log_odds(model, tokenizer, queries, documents) -> np.ndarray:
    """Yes/no log-odds as one writes them first: the full pointwise prompts, left-padded, through
    the model's forward; logsumexp of the yes ids' logits minus the no ids', float32 (float64 out)."""
    yes, no = answer_token_sets(tokenizer)
    texts = [prompts.pointwise_prompt(tokenizer, q, d) for q, d in zip(queries, documents)]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left").to(model.device)
    with torch.inference_mode():
        logits = model(**encoded).logits[:, -1].float()
    return (torch.logsumexp(logits[:, yes], -1) - torch.logsumexp(logits[:, no], -1)).double().cpu().numpy()


def plain_query_log_probs(model, tokenizer, template: str, queries, documents) -> np.ndarray:
    """Query likelihood as one writes it first: the full texts (``template`` with the document,
    a space, the query), right-padded, through the model's forward; the mean log-probability of
    the query's tokens (those after the prompt's own tokens), float32 (float64 out). An empty query scores 0."""
    prompt_texts = [template.replace("{document}", d) for d in documents]
    texts = [p + " " + q if q else p for p, q in zip(prompt_texts, queries)]
    starts = [len(ids) for ids in tokenizer(prompt_texts)["input_ids"]]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right").to(model.device)
    ends = encoded["attention_mask"].sum(1).tolist()
    with torch.inference_mode():
        log_probs = torch.log_softmax(model(**encoded).logits.float(), dim=-1)
    scores = np.zeros(len(texts))
    for i, (start, end) in enumerate(zip(starts, ends)):
        if end > start:  # position t predicts token t + 1
            targets = encoded["input_ids"][i, start:end]
            scores[i] = log_probs[i, start - 1 : end - 1].gather(-1, targets[:, None]).mean().item()
    return scores


def one_at_a_time(plain):
    """The naive loop over ``plain(queries, documents)``: one pair per forward."""
    return lambda queries, documents: np.concatenate([plain([q], [d]) for q, d in zip(queries, documents)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims-file", type=Path, default=Path("../shared/data/climate-fever/climate-fever.jsonl"))
    parser.add_argument("--claims", type=int, default=40, help="number of claims (queries)")
    parser.add_argument("--per-claim", type=int, default=5, help="evidence sentences per claim")
    parser.add_argument("--model", type=Path, default=Path("resources/models/smollm2-135m-instruct"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--qlm-template", default=DEFAULT_QLM_TEMPLATE, help="the qlm rows' prompt ({document} once)")
    parser.add_argument("--rounds", type=int, default=4, help="slices of the claims the methods take turns on")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch threads (default: torch's, one per core). On cores shared with other jobs use 1: "
        "OpenMP threads that wait for each other at every op slow small batches down many times over",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if not (args.model / "config.json").is_file():
        from rerank_audit.models.bundled import convert_bundled

        start = time.perf_counter()
        convert_bundled(args.model)
        print(f"converted bundled model to {args.model} in {time.perf_counter() - start:.1f} s")

    queries, documents = read_pairs(args.claims_file, args.claims, args.per_claim)
    tokenizer = load_tokenizer(args.model)
    fp32 = load_causal_lm(args.model, "cpu", "float32")
    bf16 = load_causal_lm(args.model, "cpu", "bfloat16")
    auto = load_causal_lm(args.model, "cpu", "auto")  # runs the precision probe at this thread count
    auto_dtype = {torch.float32: "fp32", torch.bfloat16: "bf16"}[auto.dtype]
    n_params = fp32.num_parameters()
    lengths = [len(ids) for ids in tokenizer([prompts.pointwise_prompt(tokenizer, q, d) for q, d in zip(queries, documents)])["input_ids"]]
    print(
        f"{len(queries)} pairs ({len(set(queries))} claims × ≤{args.per_claim} evidences), prompt tokens mean "
        f"{np.mean(lengths):.0f} (min {min(lengths)}, max {max(lengths)}); {n_params / 1e6:.1f}M parameters; "
        f"{torch.get_num_threads()} torch threads; batch size {args.batch_size}; load average {os.getloadavg()[0]:.1f}"
    )

    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"matmul 2048³ peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    probe = cpu_probe()
    print(f"precision probe (auto's evidence): fp32 {probe.fp32_gflops:.0f} GFLOP/s, bf16 {probe.bf16_gflops:.0f} GFLOP/s -> auto = {auto_dtype}")

    def batched(model, prefix_reuse, family=YesNoScorer, **options):
        scorer = family(model, tokenizer, batch_size=args.batch_size, prefix_reuse=prefix_reuse, progress=False, **options)
        scorer.score_pairs(queries[: args.per_claim * 2], documents[: args.per_claim * 2])  # warm-up
        return lambda q, d: count_tokens(model.base_model, lambda: scorer.score_pairs(q, d))

    def naive(plain):
        loop = one_at_a_time(lambda q, d: plain(fp32, tokenizer, q, d))
        loop(queries[:2], documents[:2])  # warm-up
        return lambda q, d: count_tokens(fp32.base_model, lambda: loop(q, d))

    plain_qlm = lambda model, tokenizer, q, d: plain_query_log_probs(model, tokenizer, args.qlm_template, q, d)
    # name: (dtype, run, the naive row its speed-up and score agreement are read against)
    runs = {
        "naive": ("fp32", naive(plain_log_odds), "naive"),
        "batched-plain": ("fp32", batched(fp32, prefix_reuse=False), "naive"),
        "batched-fp32": ("fp32", batched(fp32, prefix_reuse=True), "naive"),
        "batched-bf16": ("bf16", batched(bf16, prefix_reuse=True), "naive"),
        f"auto ({auto_dtype})": (auto_dtype, batched(auto, prefix_reuse=True), "naive"),
        "qlm naive": ("fp32", naive(plain_qlm), "qlm naive"),
        "qlm batched-fp32": ("fp32", batched(fp32, prefix_reuse=True, family=QueryLikelihoodScorer, template=args.qlm_template), "qlm naive"),
        f"qlm auto ({auto_dtype})": (
            auto_dtype, batched(auto, prefix_reuse=True, family=QueryLikelihoodScorer, template=args.qlm_template), "qlm naive"
        ),
    }
    # Other processes share these cores and their load drifts: the methods take turns on
    # slices of the claims (in a rotating order), so that drift hits all of them alike.
    claims = list(dict.fromkeys(queries))
    slices = np.array_split(np.arange(len(claims)), args.rounds)
    seconds = dict.fromkeys(runs, 0.0)
    tokens = dict.fromkeys(runs, 0)
    scores = {name: [] for name in runs}
    for round_, claim_slice in enumerate(slices):
        chosen = {claims[c] for c in claim_slice}
        pairs = [i for i, q in enumerate(queries) if q in chosen]
        q, d = [queries[i] for i in pairs], [documents[i] for i in pairs]
        names = list(runs)
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            start = time.perf_counter()
            slice_scores, slice_tokens = runs[name][1](q, d)
            seconds[name] += time.perf_counter() - start
            tokens[name] += slice_tokens
            scores[name].append(slice_scores)
    scores = {name: np.concatenate(parts) for name, parts in scores.items()}

    print("yes/no rows: log-odds of yes (zeroshot); qlm rows: mean log P(claim | passage prompt); × naive and max|Δ| against the naive loop of the same score")
    print(f"{'method':<17} {'dtype':<5} {'s':>7} {'pairs/s':>8} {'× naive':>8} {'tokens':>7} {'GFLOP/s':>8} {'% peak':>7} {'max|Δ| vs naive':>16}")
    for name, (dtype, _, baseline) in runs.items():
        gflops = 2 * n_params * tokens[name] / seconds[name] / 1e9
        delta = np.abs(scores[name] - scores[baseline]).max()
        print(
            f"{name:<17} {dtype:<5} {seconds[name]:>7.1f} {len(queries) / seconds[name]:>8.2f} "
            f"{seconds[baseline] / seconds[name]:>8.2f} {tokens[name]:>7} {gflops:>8.1f} {100 * gflops / peak[dtype]:>6.0f}% {delta:>16.2e}"
        )
    tau_bf16, _ = kendalltau(scores["batched-bf16"], scores["batched-fp32"])
    tau_fp32, _ = kendalltau(scores["batched-fp32"], scores["naive"])
    print(f"Kendall tau: bf16 vs fp32 batched {tau_bf16:.4f}; fp32 batched vs naive {tau_fp32:.4f}")
    faster = min(("fp32", "bf16"), key=lambda dtype: seconds[f"batched-{dtype}"])
    print(
        f"auto chose {auto_dtype}; the faster forced dtype here is {faster} "
        f"({len(queries) / seconds['batched-fp32']:.2f} fp32 vs {len(queries) / seconds['batched-bf16']:.2f} bf16 pairs/s): "
        f"{'auto is the faster' if auto_dtype == faster else 'AUTO CHOSE THE SLOWER'}"
    )
    print(
        "GFLOP/s counts 2 × all parameters per token, as the naive loops compute; the batched yes/no scorer "
        "skips the vocabulary projection (the tied embedding) except for the answer logits, and the qlm scorer "
        "runs it only at the query's positions, so they execute up to about 21% fewer FLOPs than counted for SmolLM2-135M"
    )
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other processes share these cores)")


if __name__ == "__main__":
    main()
