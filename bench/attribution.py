"""Explanation cost and accuracy: the project's SHAP path vs. shap's default text call, on both axes.

On CLIMATE-FEVER (claim, ``article: evidence``) pairs and the bundled SmolLM2-135M-Instruct
scored zero-shot (``--method zeroshot``: yes/no log-odds; ``--method qlm``: mean log
P(claim | passage prompt)), measured side by side in one run, on the same model in the same dtype:

  default   ``shap.Explainer(f, shap.maskers.Text(tokenizer))`` on the document with the
            claim fixed: Partition explainer over the document's subword tokens, "..." mask,
            shap's default max_evals and batch size. Two f's: ``plain``, the model's forward
            on the padded full texts of each call, as a user writes it (zeroshot: logsumexp of
            the yes ids' last logits minus the no ids'; qlm: the mean log-probability of the
            claim's tokens; ``bench/scoring.py``'s plain scores); ``project scorer``, the
            project's batched scorer with prefix reuse. It explains only the document, fewer
            players than the project path: conservative for the ratio.
  project   ``explain_pairs``: Owen values over the words of query + document, masked
            words removed, shap's PartitionExplainer with both contexts in the top
            ``--exact-levels`` levels, every masked text of the pairs in one
            ``score_pairs`` call through the score cache; ``--max-evaluations N``: each
            pair at the deepest level up to 8 whose evaluations fit in N;
            ``--document-levels L``: the same with ``players="document"`` (the claim kept whole,
            only the document's words valued), both contexts in the top L levels of the
            document's own tree. ``--siblings absent present``: every project setting in both
            contexts below its exact levels (``explain.siblings``).

Accuracy is Spearman's correlation with the exact Owen values (shap's PartitionExplainer,
both contexts at every node, unlimited budget: about n² evaluations per pair; query words
first, then document words) on the first ``--reference-pairs`` pairs, the mean over pairs:

  document words  shap's default explains document tokens: its token attributions are
                  summed to the document's words (``token_values_to_words``: token i of
                  ``tokenizer(document, return_offsets_mapping=True)``, the call shap's Text
                  masker makes, covers ``document[start_i:end_i]`` and goes to the word, a
                  ``\\S+`` run as ``split_words``, of its non-whitespace characters;
                  whitespace-only and special tokens belong to no word) and compared with the
                  exact values of the document's words (``owen_values(...)[n_query_words:]``);
                  the project settings' values of the same words likewise.
  all words       the project settings over query + document words (shap's default has no
                  query players).
  document game   every setting's document-word values against the exact Owen values of the
                  game with the claim kept whole (``owen_values(..., players="document")``),
                  the game shap's default and the document-players settings estimate.

shap's default values on reference pairs beyond ``--default-pairs`` come from an untimed
call with the project scorer as f (the same f up to rounding; the two f's agreement on the
timed pairs is printed).

Prints per explanation: model evaluations (pairs the scorer computed), scorer calls and
seconds; then one table: setting, seconds per explanation on the first ``--default-pairs``
pairs, speed-up over both default calls on them, Spearman on document words and on all words.

    .venv/bin/python bench/attribution.py [--method zeroshot|qlm] [--model resources/models/smollm2-135m-instruct]
        [--pairs 4] [--default-pairs 2] [--reference-pairs 4] [--exact-levels 0 1 2]
        [--max-evaluations 400 800] [--document-levels 0 1] [--siblings absent present] [--dtype auto]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import shap
import torch
from scipy.stats import spearmanr
from scoring import plain_log_odds, plain_query_log_probs

from rerank_audit.explain.attribution import SIBLINGS, explain_pairs, owen_values
from rerank_audit.text.words import split_words
from rerank_audit.text import prompts
from rerank_audit.config import load_config
from rerank_audit.models.scoring import QueryLikelihoodScorer, ScoringSettings, YesNoScorer, load_scorer

REPO = Path(__file__).resolve().parents[1]
METHODS = ("zeroshot", "qlm")


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


def run_project(scorer, queries, documents, setting: dict, pairs_per_call: int) -> tuple[dict, object]:
    counting = CountingScorer(scorer)
    started = time.perf_counter()
    attributions = explain_pairs(counting, queries, documents, **setting, pairs_per_call=pairs_per_call)
    return _stats(counting.calls, time.perf_counter() - started, len(queries)), attributions


def plain_scorer(scorer):
    """shap's f as a user writes it: one forward of the model on the padded full texts of a call,
    the same score as ``scorer`` (a zeroshot YesNoScorer or a QueryLikelihoodScorer) computes."""
    model, tokenizer = scorer.model, scorer.tokenizer
    if isinstance(scorer, QueryLikelihoodScorer):
        return lambda queries, documents: plain_query_log_probs(model, tokenizer, scorer.template, queries, documents)
    if isinstance(scorer, YesNoScorer) and scorer.beta is None:
        return lambda queries, documents: plain_log_odds(model, tokenizer, queries, documents)
    raise ValueError(f"no plain f for {type(scorer).__name__}: use --method {' or '.join(METHODS)}, or --default-pairs 0")


def run_default(score_pairs, tokenizer, queries, documents) -> dict:
    """shap's default text call on each document with its query fixed, f = ``score_pairs``.

    Besides the per-explanation stats, ``values`` holds each document's token attributions
    (shap's players: the tokens of ``tokenizer(document)``).
    """
    calls: list[int] = []
    values = []
    started = time.perf_counter()
    for query, document in zip(queries, documents):
        def f(docs, query=query):
            calls.append(len(docs))
            return score_pairs([query] * len(docs), list(docs))

        explanation = shap.Explainer(f, shap.maskers.Text(tokenizer))([document], silent=True)
        values.append(np.asarray(explanation.values[0], dtype=np.float64))
    return _stats(calls, time.perf_counter() - started, len(queries)) | {"values": values}


def _stats(calls: list[int], seconds: float, n: int) -> dict:
    return {"evals": sum(calls) / n, "calls": len(calls) / n, "seconds": seconds / n}


def token_values_to_words(tokenizer, document: str, token_values: np.ndarray) -> np.ndarray:
    """shap's token attributions of ``document`` summed to its words (``split_words`` order).

    Token i is token i of ``tokenizer(document, return_offsets_mapping=True)`` (shap's Text
    masker makes the same call; special tokens included) and covers ``document[start:end]``
    of its offset mapping (byte-level BPE offsets include a token's leading space). Its value
    goes to the word (a maximal ``\\S+`` run) holding its non-whitespace characters, split
    evenly should they fall in several words; a whitespace-only or special token (an empty
    span) belongs to no word and its value is left out.
    """
    offsets = [(0, 0) if o is None else o for o in tokenizer(document, return_offsets_mapping=True)["offset_mapping"]]
    if len(offsets) != len(token_values):
        raise ValueError(f"{len(token_values)} shap values but {len(offsets)} tokens in {document!r}")
    spans = [match.span() for match in re.finditer(r"\S+", document)]
    if [document[a:b] for a, b in spans] != split_words(document):
        raise ValueError(f"the \\S+ runs of {document!r} are not its split_words")
    word_of_char = np.full(len(document), -1)
    for word, (a, b) in enumerate(spans):
        word_of_char[a:b] = word
    values = np.zeros(len(spans))
    for (a, b), value in zip(offsets, token_values):
        words = np.unique(word_of_char[a:b][word_of_char[a:b] >= 0])
        values[words] += value / max(len(words), 1)
    return values


def exact_owen(scorer, query: str, document: str, players: str = "pair") -> tuple[np.ndarray, int]:
    """The reference: exact Owen values (query words, then document words; or the document's with
    ``players="document"``) and their evaluation count, every masked pair scored in one batched call."""
    cache = {}
    return owen_values(scorer, query, document, cache=cache, players=players), len(cache)


def print_row(name: str, stats: dict) -> None:
    print(f"{name:<40} {stats['evals']:>8.1f} {stats['calls']:>7.1f} {stats['seconds']:>10.2f}", flush=True)


def mean_spearman(estimates: list[np.ndarray], references: list[np.ndarray]) -> tuple[float, list[float]]:
    """Mean over pairs of Spearman's rho between each estimate and its reference; and the per-pair values.

    A constant estimate has no rank order: its rho is nan (Spearman undefined), and so is the mean.
    """
    per_pair = [float(spearmanr(a, b).statistic) if np.ptp(a) > 0 else float("nan") for a, b in zip(estimates, references)]
    return float(np.mean(per_pair)), per_pair


def rho_cell(rho: float | None, width: int = 14) -> str:
    return f"{'-':>{width}}" if rho is None else f"{'undefined':>{width}}" if np.isnan(rho) else f"{rho:>{width}.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=METHODS, default="zeroshot", help="the scorer explained (base model, untrained)")
    parser.add_argument("--template", help="qlm's prompt ({document} once; default: the scorer's DEFAULT_QLM_TEMPLATE)")
    parser.add_argument("--model", type=Path, default=REPO / "resources/models/smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data/climate-fever/climate-fever.jsonl")
    parser.add_argument("--pairs", type=int, default=4, help="pairs explained by the project path")
    parser.add_argument("--default-pairs", type=int, default=2, help="the first of them also explained (and timed) by shap's default calls")
    parser.add_argument("--reference-pairs", type=int, default=4, help="the first of them also given exact Owen values")
    parser.add_argument("--exact-levels", type=int, nargs="+", default=[0, 1, 2], help="project settings")
    parser.add_argument("--max-evaluations", type=int, nargs="*", default=[], help="more project settings: caps, levels up to 8")
    parser.add_argument("--document-levels", type=int, nargs="*", default=[], help="more project settings: document players at these levels")
    parser.add_argument("--siblings", nargs="+", choices=SIBLINGS, default=["absent"], help="each project setting with each context below its exact levels")
    parser.add_argument("--config", nargs="+", default=[REPO / "config/config.yaml"], help="the pipeline's config file(s): the explain stage's scoring settings and pairs per call")
    parser.add_argument("--dtype", help="override the config's model.dtype (auto: chosen by the precision probe)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.default_pairs <= args.pairs or not 1 <= args.reference_pairs <= args.pairs:
        raise SystemExit(f"--default-pairs and --reference-pairs must be between 1 and --pairs ({args.pairs})")
    torch.set_num_threads(args.threads)
    if not args.model.is_dir():
        raise SystemExit(f"{args.model} is missing; convert the bundled model first (rerank_audit.models.bundled.convert_bundled)")

    config = load_config(*args.config)
    settings = ScoringSettings.from_config(config, "explain").but(progress=False, **({"dtype": args.dtype} if args.dtype else {}))
    pairs_per_call = config["explain"]["pairs_per_call"]
    scorer = load_scorer(args.method, args.model, settings=settings, template=args.template)
    queries, documents = read_pairs(args.data, args.pairs, args.seed)
    n_query = [len(split_words(q)) for q in queries]
    words = [n + len(split_words(d)) for n, d in zip(n_query, documents)]
    print(
        f"model {args.model.name}, method {args.method} ({settings.dtype}: {scorer.model.dtype}, batch {settings.batch_size}, max length {settings.max_length}), {args.pairs} pairs, "
        f"words per pair {words}, torch threads {torch.get_num_threads()}"
    )
    scorer.score_pairs(queries[:2], documents[:2])  # warm-up: first-call allocations and numba compilation
    explain_pairs(scorer, ["warm up"], ["numba compiles shap's helpers once"], exact_levels=1)

    print(f"\n{'per explanation':<40} {'evals':>8} {'calls':>7} {'seconds':>10}")
    k, r = args.default_pairs, args.reference_pairs
    defaults = {"plain f": run_default(plain_scorer(scorer), scorer.tokenizer, queries[:k], documents[:k])}
    print_row(f"shap default, plain f ({k} pairs)", defaults["plain f"])
    defaults["project scorer f"] = run_default(scorer.score_pairs, scorer.tokenizer, queries[:k], documents[:k])
    print_row(f"shap default, project scorer f ({k} pairs)", defaults["project scorer f"])
    settings = {f"exact_levels={levels}": {"exact_levels": levels} for levels in args.exact_levels}
    settings |= {f"max_evaluations={cap}": {"exact_levels": 8, "max_evaluations": cap} for cap in args.max_evaluations}
    settings |= {f"document players, levels={levels}": {"exact_levels": levels, "players": "document"} for levels in args.document_levels}
    if args.siblings != ["absent"]:
        settings = {f"{name}, {siblings}": setting | {"siblings": siblings} for name, setting in settings.items() for siblings in args.siblings}
    same, estimates = {}, {}
    for name, setting in settings.items():
        same[name], _ = run_project(scorer, queries[:k], documents[:k], setting, pairs_per_call)
        print_row(f"project {name} ({k} pairs)", same[name])
    for name, setting in settings.items():
        stats, estimates[name] = run_project(scorer, queries, documents, setting, pairs_per_call)
        print_row(f"project {name} ({args.pairs} pairs)", stats)

    print(f"\nexact Owen values, {r} pairs")
    reference = []
    for i in range(r):
        started = time.perf_counter()
        values, evals = exact_owen(scorer, queries[i], documents[i])
        reference.append(values)
        print(f"reference pair {i}: {words[i]} words, {evals} evaluations, {time.perf_counter() - started:.0f} s", flush=True)
    reference_document = [values[n_query[i] :] for i, values in enumerate(reference)]
    reference_game = []  # the claim kept whole: the game shap's default and the document players estimate
    for i in range(r):
        values, evals = exact_owen(scorer, queries[i], documents[i], players="document")
        reference_game.append(values)
        print(f"reference pair {i}, document game: {evals} evaluations", flush=True)

    # shap's default on the reference pairs: each f's own timed values, then untimed project-scorer-f calls
    extra = run_default(scorer.score_pairs, scorer.tokenizer, queries[k:r], documents[k:r])["values"] if r > k else []
    default_words = {
        name: [token_values_to_words(scorer.tokenizer, documents[i], v) for i, v in enumerate((default["values"] + extra)[:r])]
        for name, default in defaults.items()
    }
    f_agreement, _ = mean_spearman(*(words_[:k] for words_ in default_words.values()))
    print(f"shap default, plain f vs. project scorer f on {min(k, r)} timed pairs: Spearman over document words {f_agreement:.3f}")

    # setting, seconds, Spearman on document words (and per pair), Spearman on all words (and per pair), Spearman vs the document game
    rows = []
    for name, default in defaults.items():
        words_ = default_words[name]
        rows.append((f"shap default, {name}", default["seconds"], *mean_spearman(words_, reference_document), None, [], mean_spearman(words_, reference_game)[0]))
    for name, estimate in estimates.items():
        ours = [estimate[estimate.query_id == str(i)] for i in range(r)]
        document_part = [pair[pair.part == "document"].attribution.to_numpy() for pair in ours]
        all_words = mean_spearman([pair.attribution.to_numpy() for pair in ours], reference) if not name.startswith("document") else (None, [])
        rows.append(
            (f"project {name}", same[name]["seconds"], *mean_spearman(document_part, reference_document), *all_words,
             mean_spearman(document_part, reference_game)[0])
        )  # fmt: skip

    print(
        f"\n{args.method}, {scorer.model.dtype}: seconds per explanation and speed-up on the first {k} pairs; "
        f"Spearman vs. exact Owen values, mean over {r} pairs"
    )
    print(f"{'setting':<34} {'s/expl':>8} {'x plain f':>10} {'x scorer f':>11} {'rho doc words':>14} {'rho all words':>14} {'rho doc game':>14}")
    for name, seconds, rho_document, _, rho_all, _, rho_game in rows:
        speed = "".join(f" {defaults[f]['seconds'] / seconds:>{w}.1f}x" for f, w in (("plain f", 9), ("project scorer f", 10)))
        print(f"{name:<34} {seconds:>8.2f}{speed} {rho_cell(rho_document)} {rho_cell(rho_all)} {rho_cell(rho_game)}")
    print("per pair (document words | all words):")
    for name, _, _, per_document, _, per_all, _ in rows:
        print(f"  {name}: {np.round(per_document, 3).tolist()}" + (f" | {np.round(per_all, 3).tolist()}" if per_all else ""))
    if any(np.isnan(rho) for row in rows for rho in row[3] + row[5]):
        print(
            "nan / undefined: an estimate constant over the words has no rank order (e.g. qlm at exact_levels=0: "
            "each document word is valued with the query absent, and an empty query scores 0 whatever the document)"
        )
    if r > k:
        print(f"(shap default rows: pairs {k}..{r - 1} explained with the project scorer as f, untimed)")


if __name__ == "__main__":
    main()
