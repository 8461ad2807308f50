"""Explanation cost and accuracy: the project's SHAP path vs. shap's default text call.

On CLIMATE-FEVER (claim, ``article: evidence``) pairs and the bundled SmolLM2-135M-Instruct
scored zero-shot, measured side by side in one run, on the same model in the same dtype:

  default   ``shap.Explainer(f, shap.maskers.Text(tokenizer))`` on the document with the
            claim fixed: Partition explainer over subword tokens, "..." mask, shap's
            default max_evals and batch size. Two f's: ``plain``, the model's forward on
            the padded prompts of each call (logit("yes") - logit("no") at the last
            position), as a user writes it; ``project scorer``, the project's batched
            scorer with prefix reuse. It explains only the document, fewer players than
            the project path: conservative for the ratio.
  project   ``explain_pairs``: Owen values over the words of query + document, masked
            words removed, shap's PartitionExplainer with both contexts in the top
            ``--exact-levels`` levels, every masked text of the pairs in one
            ``score_pairs`` call through the score cache; ``--max-evaluations N``: each
            pair at the deepest level (up to 8) whose evaluations fit in N.

Prints per explanation: model evaluations (pairs the scorer computed), scorer calls and
seconds; the speed-up of each project setting over both default calls on the same pairs;
and the Spearman correlation over words between the project's attributions and the exact
Owen values (shap's PartitionExplainer, both contexts at every node, unlimited budget: about
n² evaluations per pair), per pair and pooled.

    .venv/bin/python bench/attribution.py [--model resources/models/smollm2-135m-instruct]
        [--pairs 4] [--default-pairs 2] [--reference-pairs 4] [--exact-levels 0 1 2]
        [--max-evaluations 400 800]
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

from rerank_audit.explain.attribution import explain_pairs, owen_values
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
    """Passes ``score_pairs`` through, keeping the number of pairs of each call and the pairs."""

    def __init__(self, scorer):
        self.scorer = scorer
        self.calls: list[int] = []
        self.pairs: set[tuple[str, str]] = set()

    def score_pairs(self, queries, documents):
        self.calls.append(len(queries))
        self.pairs.update(zip(queries, documents))
        return self.scorer.score_pairs(queries, documents)


def run_project(scorer, queries, documents, setting: dict) -> tuple[dict, object]:
    counting = CountingScorer(scorer)
    started = time.perf_counter()
    attributions = explain_pairs(counting, queries, documents, **setting, batch_size=len(queries))
    return _stats(counting.calls, time.perf_counter() - started, len(queries)), attributions


def plain_scorer(scorer):
    """shap's f as a user writes it: one forward of the model on the padded prompts of a call."""
    model, tokenizer = scorer.model, scorer.tokenizer

    def score_pairs(queries, documents):
        texts = [prompts.pointwise_prompt(tokenizer, q, d) for q, d in zip(queries, documents)]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left").to(model.device)
        with torch.inference_mode():
            logits = model(**encoded).logits[:, -1].float()
        return (logits[:, scorer.yes_id] - logits[:, scorer.no_id]).cpu().numpy()

    return score_pairs


def run_default(score_pairs, tokenizer, queries, documents) -> dict:
    """shap's default text call on each document with its query fixed, f = ``score_pairs``."""
    calls: list[int] = []
    started = time.perf_counter()
    for query, document in zip(queries, documents):
        def f(docs, query=query):
            calls.append(len(docs))
            return score_pairs([query] * len(docs), list(docs))

        shap.Explainer(f, shap.maskers.Text(tokenizer))([document], silent=True)
    return _stats(calls, time.perf_counter() - started, len(queries))


def _stats(calls: list[int], seconds: float, n: int) -> dict:
    return {"evals": sum(calls) / n, "calls": len(calls) / n, "seconds": seconds / n}


def exact_owen(scorer, query: str, document: str) -> tuple[np.ndarray, int]:
    """The reference: exact Owen values and their evaluation count, every masked pair scored in one batched call."""
    cache = {}
    return owen_values(scorer, query, document, cache=cache), len(cache)


def print_row(name: str, stats: dict) -> None:
    print(f"{name:<36} {stats['evals']:>8.1f} {stats['calls']:>7.1f} {stats['seconds']:>10.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "resources/models/smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/climate-fever/climate-fever.jsonl")
    parser.add_argument("--pairs", type=int, default=4, help="pairs explained by the project path")
    parser.add_argument("--default-pairs", type=int, default=2, help="the first of them also explained by shap's default calls")
    parser.add_argument("--reference-pairs", type=int, default=4, help="the first of them also given exact Owen values")
    parser.add_argument("--exact-levels", type=int, nargs="+", default=[0, 1, 2], help="project settings")
    parser.add_argument("--max-evaluations", type=int, nargs="*", default=[], help="more project settings: caps, levels up to 8")
    parser.add_argument("--dtype", default="bfloat16", help="scoring dtype, as in the pipeline's config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.model.is_dir():
        raise SystemExit(f"{args.model} is missing; convert the bundled model first (rerank_audit.models.bundled.convert_bundled)")

    scorer = load_scorer("zeroshot", args.model, progress=False, dtype=args.dtype)
    queries, documents = read_pairs(args.data, args.pairs, args.seed)
    words = [len(split_words(q)) + len(split_words(d)) for q, d in zip(queries, documents)]
    print(f"model {args.model.name} ({args.dtype}), {args.pairs} pairs, words per pair {words}, torch threads {torch.get_num_threads()}")
    scorer.score_pairs(queries[:2], documents[:2])  # warm-up: first-call allocations and numba compilation
    explain_pairs(scorer, ["warm up"], ["numba compiles shap's helpers once"], exact_levels=1)

    print(f"\n{'per explanation':<36} {'evals':>8} {'calls':>7} {'seconds':>10}")
    k = args.default_pairs
    defaults = {"plain f": run_default(plain_scorer(scorer), scorer.tokenizer, queries[:k], documents[:k])}
    print_row(f"shap default, plain f ({k} pairs)", defaults["plain f"])
    defaults["project scorer"] = run_default(scorer.score_pairs, scorer.tokenizer, queries[:k], documents[:k])
    print_row(f"shap default, project scorer ({k} pairs)", defaults["project scorer"])
    settings = {f"exact_levels={levels}": {"exact_levels": levels} for levels in args.exact_levels}
    settings |= {f"max_evaluations={cap}": {"exact_levels": 8, "max_evaluations": cap} for cap in args.max_evaluations}
    same, estimates = {}, {}
    for name, setting in settings.items():
        same[name], _ = run_project(scorer, queries[:k], documents[:k], setting)
        print_row(f"project {name} ({k} pairs)", same[name])
    for name, setting in settings.items():
        stats, estimates[name] = run_project(scorer, queries, documents, setting)
        print_row(f"project {name} ({args.pairs} pairs)", stats)
    for name, stats in same.items():
        print(
            f"speed-up {name} on the same {k} pairs: "
            + ", ".join(f"{default['seconds'] / stats['seconds']:.1f}x seconds vs. {name}" for name, default in defaults.items())
            + f"; {defaults['plain f']['evals'] / stats['evals']:.1f}x fewer evaluations"
        )

    r = args.reference_pairs
    print(f"\nSpearman over words vs. exact Owen values, {r} pairs")
    reference = []
    for i in range(r):
        started = time.perf_counter()
        values, evals = exact_owen(scorer, queries[i], documents[i])
        reference.append(values)
        print(f"reference pair {i}: {words[i]} words, {evals} evaluations, {time.perf_counter() - started:.0f} s", flush=True)
    for name, estimate in estimates.items():
        ours = [estimate[estimate.query_id == str(i)].attribution.to_numpy() for i in range(r)]
        per_pair = [spearmanr(a, b).statistic for a, b in zip(ours, reference)]
        pooled = spearmanr(np.concatenate(ours), np.concatenate(reference)).statistic
        print(f"{name}: per pair {np.round(per_pair, 3).tolist()}, mean {np.mean(per_pair):.3f}, pooled {pooled:.3f}")


if __name__ == "__main__":
    main()
