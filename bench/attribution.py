"""Explanation cost and accuracy: the project's SHAP path vs. shap's default text call.

On CLIMATE-FEVER (claim, ``article: evidence``) pairs and the bundled SmolLM2-135M-Instruct
scored zero-shot (``load_scorer("zeroshot", ...)``), measured side by side in one run:

  project   ``explain_pairs``: words of query + document, masked words removed, shap's
            PermutationExplainer, every masked text of a chunk of pairs in one
            ``score_pairs`` call through the score cache
  default   ``shap.Explainer(f, shap.maskers.Text(tokenizer))`` on the document with the
            claim fixed (f = score_pairs([claim] * n, docs)): Partition explainer over
            subword tokens, "..." mask, shap's default max_evals and batch size. It explains
            only the document, fewer players than the project path: conservative for the ratio.

Prints per method: model evaluations (pairs the scorer computed), scorer calls, tokens the
scorer recomputed (its per-query prefix reuse taken into account: a machine-independent
cost) and seconds per explanation; their ratio on the same pairs; and the Spearman
correlation over words between the project's attributions and a high-budget reference
(the same game and explainer, ``--reference-permutations`` antithetic permutations, another
seed), next to the reference's agreement with a replica of itself (a third seed): the
ceiling any cheaper estimate can reach against that reference.

    .venv/bin/python bench/attribution.py [--model resources/models/smollm2-135m-instruct]
        [--pairs 6] [--default-pairs 2] [--reference-pairs 3] [--max-evals 1 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import shap
import torch
from scipy.stats import spearmanr

from rerank_audit.explain.attribution import explain_pairs
from rerank_audit.explain.words import split_words
from rerank_audit.models import prompts
from rerank_audit.models.scorers import load_scorer

REPO = Path(__file__).resolve().parents[1]


def read_pairs(path: Path, n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` (claim, evidence) pairs: random claims, one random evidence sentence each."""
    with open(path, encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    rng = np.random.default_rng(seed)
    queries, documents = [], []
    for index in rng.choice(len(records), size=n, replace=False):
        record = records[index]
        evidence = record["evidences"][rng.integers(len(record["evidences"]))]
        queries.append(record["claim"])
        documents.append(prompts.document_text(evidence["article"], evidence["evidence"]))
    return queries, documents


class CountingScorer:
    """Passes ``score_pairs`` through, keeping each call's pairs and the seconds spent in the scorer."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.batches: list[tuple[list[str], list[str]]] = []
        self.seconds = 0.0

    def score_pairs(self, queries, documents):
        self.batches.append((list(queries), list(documents)))
        started = time.perf_counter()
        scores = self.scorer.score_pairs(queries, documents)
        self.seconds += time.perf_counter() - started
        return scores

    def tokens(self) -> int:
        """Tokens the scorer recomputed over all calls (counted after the timing, not inside it)."""
        return sum(recomputed_tokens(self.scorer.prompt_ids(q, d), q) for q, d in self.batches)


def recomputed_tokens(ids: list[list[int]], queries: list[str]) -> int:
    """Tokens the YesNoScorer pushes through the model: a query's shared prefix once, the rest per pair."""
    groups: dict[str, list[list[int]]] = {}
    for q, seq in zip(queries, ids):
        groups.setdefault(q, []).append(seq)
    total = 0
    for members in groups.values():
        prefix = 0
        if len(members) > 1:
            prefix = min(len(s) - 1 for s in members)  # never past the answer position
            for seq in members[1:]:
                prefix = next((k for k in range(prefix) if seq[k] != members[0][k]), prefix)
        total += prefix + sum(len(s) - prefix for s in members)
    return total


def run_project(scorer, queries, documents, max_evals: int, seed: int) -> tuple[dict, object]:
    counting = CountingScorer(scorer)
    started = time.perf_counter()
    attributions = explain_pairs(counting, queries, documents, max_evals=max_evals, seed=seed, batch_size=len(queries))
    return _stats(counting, time.perf_counter() - started, len(queries)), attributions


def run_default(scorer, tokenizer, queries, documents) -> dict:
    counting = CountingScorer(scorer)
    started = time.perf_counter()
    for query, document in zip(queries, documents):
        def f(docs, query=query):
            return counting.score_pairs([query] * len(docs), list(docs))

        explainer = shap.Explainer(f, shap.maskers.Text(tokenizer))
        explainer([document], silent=True)
    return _stats(counting, time.perf_counter() - started, len(queries))


def _stats(counting: CountingScorer, seconds: float, n: int) -> dict:
    return {
        "evals": sum(len(q) for q, _ in counting.batches) / n,
        "calls": len(counting.batches) / n,
        "tokens": counting.tokens() / n,
        "seconds": seconds / n,
        "scorer_seconds": counting.seconds / n,
    }


def reference_attributions(scorer, queries, documents, permutations: int, seed: int):
    frames = []
    for i, (query, document) in enumerate(zip(queries, documents)):
        n_words = len(split_words(query)) + len(split_words(document))
        frame = explain_pairs(scorer, [query], [document], max_evals=permutations * (2 * n_words + 1), seed=seed)
        frames.append(frame.assign(query_id=str(i), doc_id=str(i)))
    return frames


def print_row(name: str, stats: dict) -> None:
    print(
        f"{name:<28} {stats['evals']:>8.1f} {stats['calls']:>7.1f} {stats['tokens']:>9.0f} "
        f"{stats['seconds']:>10.2f} {stats['scorer_seconds']:>10.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "resources/models/smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/climate-fever/climate-fever.jsonl")
    parser.add_argument("--pairs", type=int, default=6, help="pairs explained by the project path")
    parser.add_argument("--default-pairs", type=int, default=2, help="the first of them also explained by shap's default call")
    parser.add_argument("--reference-pairs", type=int, default=3, help="the first of them also explained at high budget")
    parser.add_argument("--reference-permutations", type=int, default=10)
    parser.add_argument("--max-evals", type=int, nargs="+", default=[1], help="project budgets (1: one permutation per pair)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.model.is_dir():
        raise SystemExit(f"{args.model} is missing; convert the bundled model first (rerank_audit.models.bundled.convert_bundled)")

    scorer = load_scorer("zeroshot", args.model, progress=False)
    queries, documents = read_pairs(args.data, args.pairs, args.seed)
    words = [len(split_words(q)) + len(split_words(d)) for q, d in zip(queries, documents)]
    print(f"model {args.model.name}, {args.pairs} pairs, words per pair {words}, torch threads {torch.get_num_threads()}")
    scorer.score_pairs(queries[:2], documents[:2])  # warm-up: first-call allocations and numba compilation
    explain_pairs(scorer, ["warm up"], ["numba compiles shap's helpers once"], max_evals=1, seed=0)

    print(f"\n{'per explanation':<28} {'evals':>8} {'calls':>7} {'tokens':>9} {'seconds':>10} {'in scorer':>10}")
    k = args.default_pairs
    default = run_default(scorer, scorer.tokenizer, queries[:k], documents[:k])
    print_row(f"shap default ({k} pairs)", default)
    project_same = {}
    for max_evals in args.max_evals:
        project_same[max_evals], _ = run_project(scorer, queries[:k], documents[:k], max_evals, args.seed)
        print_row(f"project max_evals={max_evals} ({k} pairs)", project_same[max_evals])
    project_all, estimates = {}, {}
    for max_evals in args.max_evals:
        project_all[max_evals], estimates[max_evals] = run_project(scorer, queries, documents, max_evals, args.seed)
        print_row(f"project max_evals={max_evals} ({args.pairs} pairs)", project_all[max_evals])
    for max_evals, stats in project_same.items():
        print(
            f"speed-up max_evals={max_evals} on the same {k} pairs: {default['seconds'] / stats['seconds']:.1f}x seconds, "
            f"{default['evals'] / stats['evals']:.1f}x evaluations, {default['tokens'] / stats['tokens']:.1f}x tokens"
        )

    r = args.reference_pairs
    reference = reference_attributions(scorer, queries[:r], documents[:r], args.reference_permutations, args.seed + 1)
    print(f"\nSpearman over words vs. reference ({args.reference_permutations} permutations, seed {args.seed + 1}), {r} pairs")
    # The ceiling: how well the reference agrees with itself under another seed.
    replica = reference_attributions(scorer, queries[:r], documents[:r], args.reference_permutations, args.seed + 2)
    ceiling = [spearmanr(a.attribution, b.attribution).statistic for a, b in zip(reference, replica)]
    print(f"reference vs. its replica (seed {args.seed + 2}): per pair {np.round(ceiling, 3).tolist()}, mean {np.mean(ceiling):.3f}")
    for max_evals, estimate in estimates.items():
        estimate = estimate[estimate.query_id.astype(int) < r]  # attributions do not depend on the other pairs
        per_pair = []
        for i, ref in enumerate(reference):
            ours = estimate[estimate.query_id == str(i)].attribution.to_numpy()
            per_pair.append(spearmanr(ours, ref.attribution.to_numpy()).statistic)
        pooled_ours = estimate.attribution.to_numpy()
        pooled_ref = np.concatenate([ref.attribution.to_numpy() for ref in reference])
        print(
            f"max_evals={max_evals}: per pair {np.round(per_pair, 3).tolist()}, mean {np.mean(per_pair):.3f}, "
            f"pooled {spearmanr(pooled_ours, pooled_ref).statistic:.3f}"
        )


if __name__ == "__main__":
    main()
