"""How much compute an Owen-value estimate needs for a given agreement with the exact values.

The project's explainer (``explain.exact_levels``) is one family of estimators of the exact
Owen values of the word hierarchy; ``bench/attribution.py`` measures it. This bench asks
whether any estimator of the same values can meet both of that bench's targets at once
(>= 20x faster than shap's default call, Spearman >= 0.9 against the exact values). It
scores the exact game of each pair once (every coalition the exact values need), replays
estimators of other families on those recorded scores, and prints for each its evaluations,
the tokens the project's scorer would run for them, its Spearman with the exact values, and
how many of the exact values' top 5 words by |value| (the pipeline's keywords) it also ranks top 5.
A second token count, "shared", is what an ideal engine would run that computes every
distinct token prefix of the family's prompts once (a key/value trie): no reuse of
computation across coalitions can go below it, so it bounds what a smarter scorer could gain.

All estimators keep both contexts (sibling absent / present, averaged) in the top
``levels`` levels of the hierarchy; below that they differ:

  absent    the sibling absent (shap's fixed_context=0): the project's explainer
  present   the sibling present (fixed_context=1)
  ends      the mean of absent and present: exact whenever words interact at most pairwise
  sampled   at every node one context drawn at random (S draws averaged): unbiased

The projected speed-up over shap's default call (plain f, as in bench/attribution.py) is
its measured seconds per explanation over the family's tokens at the scorer's tokens per
second, both measured in this run on the first ``--default-pairs`` pairs (the scorer's rate
on the project's own explanation batches, shap's overhead included).

``--compare-dtype float32`` also scores every exact game in that dtype: it prints how far
the exact values of the two dtypes agree (is bf16 scoring precise enough to attribute?) and
replays the families on that game too (are the games' word interactions real, or rounding?).

    .venv/bin/python bench/attribution_frontier.py [--pairs 6] [--default-pairs 2]
        [--compare-dtype float32]
        [--method reward --model results/climate-fever/models/reward/100 --default-pairs 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from attribution import REPO, CountingScorer, plain_scorer, read_pairs, run_default
from scipy.stats import spearmanr

from rerank_audit.explain.attribution import WordHierarchy, explain_pairs, owen_values
from rerank_audit.text import prompts
from rerank_audit.config import load_config
from rerank_audit.models.scoring import ScoringSettings, YesNoScorer, load_scorer

FAMILIES = [("absent", k, 1) for k in range(5)] + [("ends", k, 1) for k in range(4)]
FAMILIES += [("sampled", k, s) for k in range(4) for s in (1, 2, 4)]
TOP = 5  # the pipeline's default number of keywords


def top_overlap(values: np.ndarray, reference: np.ndarray, k: int) -> float:
    """Share of the reference's k words of largest |value| that are among the estimate's k."""
    largest = lambda v: set(np.argsort(-np.abs(v), kind="stable")[:k])
    return len(largest(values) & largest(reference)) / min(k, len(reference))


def estimate(words: WordHierarchy, game, levels: int, below: str, rng) -> tuple[np.ndarray, set[bytes]]:
    """Owen-value estimate under one context rule; also the coalitions it evaluated.

    The recursion of shap's PartitionExplainer: a node with context c splits into L and R,
    evaluated as c+L and c+R; with one context the node keeps its interaction
    f(c+L+R) - f(c+L) - f(c+R) + f(c), spread evenly over its words (+ when the sibling is
    absent, - when present), so the values always sum to f(all) - f(none).
    """
    values, used = np.zeros(words.n_words), set()

    def f(mask: np.ndarray) -> float:
        used.add(mask.tobytes())
        return game(mask)

    def visit(lo: int, hi: int, context: np.ndarray, f00: float, f11: float, weight: float, depth: int) -> None:
        if hi - lo == 1:
            values[lo] += (f11 - f00) * weight
            return
        mid = words.split(lo, hi)
        m10, m01 = context.copy(), context.copy()
        m10[lo:mid], m01[mid:hi] = True, True
        f10, f01 = f(m10), f(m01)
        rule = "both" if depth < levels else below
        if rule == "sampled":
            rule = "absent" if rng.random() < 0.5 else "present"
        absent = [((lo, mid), context, f00, f10), ((mid, hi), context, f00, f01)]
        present = [((lo, mid), m01, f01, f11), ((mid, hi), m10, f10, f11)]
        interaction = (f11 - f10 - f01 + f00) * weight / (hi - lo)
        if rule == "absent":
            values[lo:hi] += interaction
        elif rule == "present":
            values[lo:hi] -= interaction
        children = {"both": absent + present, "absent": absent, "present": present}[rule]
        share = weight / 2 if rule == "both" else weight
        for (a, b), c, low, high in children:
            visit(a, b, c, low, high, share, depth + 1)

    none, every = np.zeros(words.n_words, dtype=bool), np.ones(words.n_words, dtype=bool)
    visit(0, words.n_words, none, f(none), f(every), 1.0, 0)
    return values, used


def family_estimate(words, game, family, seed: int) -> tuple[np.ndarray, set[bytes]]:
    below, levels, samples = family
    rng = np.random.default_rng(seed)
    rules = ["absent", "present"] if below == "ends" else [below] * samples
    runs = [estimate(words, game, levels, rule, rng) for rule in rules]
    return np.mean([values for values, _ in runs], axis=0), set().union(*(used for _, used in runs))


def masked_pairs(words: WordHierarchy, coalitions: set[bytes]) -> set[tuple[str, str]]:
    """The distinct (query, document) texts of the coalitions: what the score cache scores."""
    return {words.texts(np.frombuffer(key, dtype=bool)) for key in coalitions}


def scorer_tokens(tokenizer, texts: set[tuple[str, str]]) -> int:
    """Tokens the project's scorer runs for these pairs: each distinct masked query once (its
    prefix is shared; the template before it is shared by all), each masked document and the prompt's tail."""
    count = lambda text: len(tokenizer(" " + text, add_special_tokens=False)["input_ids"]) if text else 0
    # the yes/no prompt's "\n\nDocument: ", end of turn, assistant header and answer cue around the document
    prompt = prompts.pointwise_prompt(tokenizer, "q", "")
    before = prompt[: prompt.index("Search query: q") + len("Search query: q")]
    tail = len(tokenizer(prompt)["input_ids"]) - len(tokenizer(before)["input_ids"])
    return sum(count(q) for q in {q for q, _ in texts}) + sum(count(d) + tail for _, d in texts)


def prefix_tokens(tokenizer, texts: set[tuple[str, str]]) -> int:
    """Tokens an engine runs that computes each distinct token prefix of the pairs' prompts once."""
    rows = sorted(tokenizer(prompts.pointwise_prompt(tokenizer, q, d))["input_ids"] for q, d in texts)
    total, previous = 0, []
    for row in rows:  # in sorted order a row shares the most with the row before it
        shared = 0
        while shared < min(len(row), len(previous)) and row[shared] == previous[shared]:
            shared += 1
        total += len(row) - shared
        previous = row
    return total


def exact_games(scorer, hierarchies, queries, documents, label: str) -> tuple[list, list]:
    """Each pair's exact Owen values and its game: the recorded score of every coalition they need."""
    games, references = [], []
    for i, (query, document) in enumerate(zip(queries, documents)):
        cache: dict = {}
        started = time.perf_counter()
        references.append(owen_values(scorer, query, document, cache=cache))
        games.append(lambda mask, words=hierarchies[i], cache=cache: cache[words.texts(mask)])
        print(f"exact game of pair {i} ({label}): {hierarchies[i].n_words} words, {len(cache)} evaluations, {time.perf_counter() - started:.0f} s", flush=True)
    return games, references


def print_frontier(tokenizer, hierarchies, games, references, seeds: int, timed_pairs: int, speed) -> None:
    """One row per family: evaluations, tokens (the project's scorer, an ideal prefix trie),
    Spearman (mean, min over pairs) and top-5 overlap with the exact values, projected speed-up."""
    print(f"\n{'below':<8} {'levels':>6} {'draws':>5} {'evals':>7} {'tokens':>8} {'shared':>8} {'Spearman':>9} {'min':>6} {f'top-{TOP}':>6} {'proj. speed-up':>15}")
    for family in FAMILIES:
        rho, top, evals, tokens, shared, timed = [], [], [], [], [], []
        for i, (words, game, reference) in enumerate(zip(hierarchies, games, references)):
            for seed in range(seeds) if family[0] == "sampled" else range(1):
                values, used = family_estimate(words, game, family, seed)
                rho.append(spearmanr(values, reference).statistic)
                top.append(top_overlap(values, reference, TOP))
                texts = masked_pairs(words, used)
                evals.append(len(texts))
                tokens.append(scorer_tokens(tokenizer, texts))
                shared.append(prefix_tokens(tokenizer, texts))
                if i < timed_pairs:
                    timed.append(tokens[-1])
        projected = f"{speed(np.mean(timed)):>14.1f}x" if timed_pairs else ""  # on the pairs the default call was timed on
        print(
            f"{family[0]:<8} {family[1]:>6} {family[2]:>5} {np.mean(evals):>7.0f} {np.mean(tokens):>8.0f} {np.mean(shared):>8.0f}"
            f" {np.mean(rho):>9.3f} {np.min(rho):>6.3f} {np.mean(top):>6.2f} {projected}",
            flush=True,
        )


def time_default_and_project(scorer, queries, documents, pairs_per_call: int) -> tuple[float, float]:
    """Seconds per explanation of shap's default call (plain f) and the scorer's tokens per
    second on the project's explanation batches (levels 0 and 1, shap's overhead included)."""
    default = run_default(plain_scorer(scorer), scorer.tokenizer, queries, documents)
    rates = []
    for levels in (0, 1):
        counting = CountingScorer(scorer)
        started = time.perf_counter()
        explain_pairs(counting, queries, documents, exact_levels=levels, pairs_per_call=pairs_per_call)
        seconds = time.perf_counter() - started
        tokens = scorer_tokens(scorer.tokenizer, counting.pairs)
        rates.append(tokens / seconds)
        print(f"project exact_levels={levels}: {tokens / k:.0f} tokens, {seconds / k:.2f} s per explanation, {tokens / seconds:.0f} tokens/s")
    rate = float(np.mean(rates))
    print(f"shap default call, plain f: {default['evals']:.0f} evaluations, {default['seconds']:.2f} s per explanation ({k} pairs)")
    print(f"20x the default call allows {default['seconds'] / 20 * rate:.0f} tokens per explanation at {rate:.0f} tokens/s\n")
    return default["seconds"], rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "resources/models/smollm2-135m-instruct")
    parser.add_argument("--method", default="zeroshot", help="the scorer the model folder holds (e.g. reward with a trained reward model)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/climate-fever/climate-fever.jsonl")
    parser.add_argument("--pairs", type=int, default=6, help="pairs given exact games (as bench/attribution.py's first pairs)")
    parser.add_argument(
        "--default-pairs", type=int, default=2, help="the first of them also timed with shap's default call (0: no timing; needs a zeroshot or qlm scorer)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="draws of each sampled family")
    parser.add_argument("--config", nargs="+", default=[REPO / "config/config.yaml"], help="the pipeline's config file(s): the explain stage's scoring settings and pairs per call")
    parser.add_argument("--dtype", help="override the config's model.dtype (auto: chosen by the precision probe)")
    parser.add_argument("--compare-dtype", help="also score the exact games in this dtype (e.g. float32) and compare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(*args.config)
    settings = ScoringSettings.from_config(config, "explain").but(progress=False, **({"dtype": args.dtype} if args.dtype else {}))
    scorer = load_scorer(args.method, args.model, settings=settings)
    if not isinstance(scorer, YesNoScorer):
        print(f"note: token counts and projected speed-ups model the yes/no prompt, not {args.method}'s; evaluations and Spearman are {args.method}'s")
    queries, documents = read_pairs(args.data, args.pairs, args.seed)
    hierarchies = [WordHierarchy(q, d) for q, d in zip(queries, documents)]
    explain_pairs(scorer, ["warm up"], ["numba compiles shap's helpers once"], exact_levels=1)

    k = args.default_pairs
    speed = None
    if k:
        default_seconds, rate = time_default_and_project(scorer, queries[:k], documents[:k], config["explain"]["pairs_per_call"])
        speed = lambda tokens: default_seconds / (tokens / rate)

    games, references = exact_games(scorer, hierarchies, queries, documents, settings.dtype)
    print(f"\nOn the exact games scored in {settings.dtype}:")
    print_frontier(scorer.tokenizer, hierarchies, games, references, args.seeds, k, speed)
    if args.compare_dtype:
        other = load_scorer(args.method, args.model, settings=settings.but(dtype=args.compare_dtype))
        games, compared = exact_games(other, hierarchies, queries, documents, args.compare_dtype)
        print(f"\nExact values in {settings.dtype} vs. {args.compare_dtype}, per pair:")
        for i, (ours, theirs) in enumerate(zip(references, compared)):
            print(f"pair {i}: Spearman {spearmanr(ours, theirs).statistic:.3f}, top-{TOP} overlap {top_overlap(ours, theirs, TOP):.2f}")
        print(f"\nOn the exact games scored in {args.compare_dtype}:")
        print_frontier(scorer.tokenizer, hierarchies, games, compared, args.seeds, 0, None)


if __name__ == "__main__":
    main()
