"""Re-ranking throughput on the device it runs on: naive scoring loops vs. the pipeline's batched scorers.

Scores the same (query, document) pairs eight ways, measured side by side in one run, with
the scoring settings the pipeline reads from a config file (``--config``:
``ScoringSettings.from_config(config, "rerank")``: batch size, max length, dtype):

  naive         yes/no log-odds one pair at a time, fp32, full prompt, full logits (what one writes first)
  batched-plain YesNoScorer fp32 without prefix reuse (batching + length bucketing only)
  batched-fp32  YesNoScorer fp32 (+ instruction/query prefix computed once per query)
  batched-bf16  YesNoScorer with bf16 weights
  pipeline (…)  YesNoScorer as the pipeline runs it: the config's settings (batch size, token
                budget, max length), its dtype resolved on this device (``auto``: bf16 on a GPU
                with bf16 units; on a CPU, the dtype the start-up matmul probe chose), named in the row
  qlm naive     the ``qlm`` score (mean log P(query | ``--qlm-template`` with the document))
                one pair at a time, fp32, full text, full logits
  qlm batched-fp32  QueryLikelihoodScorer fp32 (the document's prompt computed once per document)
  qlm pipeline (…)  QueryLikelihoodScorer as the pipeline runs it

``--rows`` picks some of them; ``--variants batch_size=16 batch_size=256`` adds a ``pipeline``
and a ``qlm pipeline`` row per variant, each the config's settings with that change (any
``ScoringSettings`` field, values as YAML; ``auto`` sizes a batch field at run time, as in
the config).

Models: ``--model FOLDER`` (default: the converted bundled SmolLM2-135M-Instruct, converted
first if missing), or random weights of an architecture (``--shape smollm2-135m``,
``--shape smollm2-1.7b``, or ``--shape hidden=2048,layers=24,...``; see random_models.py),
so that a 1–8B shape can be measured anywhere; random weights say nothing of ranking
quality, and their score agreement columns only show that the code paths agree.
``--device auto|cpu|cuda`` (auto: CUDA when a GPU is visible).

Pairs: ``--pairs climate-fever`` (each claim with its evidence sentences, from
``--claims-file``) or ``--pairs demo`` (each query of the embedded demo collection with its
rated documents).

Prints pairs/s, tokens/s (real tokens run through the model: padding not counted, a shared
prefix counted once), speed-up over the naive loop of the same score, useful GFLOP/s
(2 × parameters × real tokens / s) and its share of the device's matmul peak *measured here*
for the row's dtype (square matmuls timed with synchronisation: 8192³ on CUDA, 2048³ on the
CPU), peak GPU memory per row on CUDA, and agreement of the scores (max |Δ| against naive,
Kendall's tau of bf16 vs fp32). ``--json FILE`` writes the table for other scripts
(bench/gpu_check.py).

    .venv/bin/python bench/scoring.py [--device auto] [--config config/config.yaml] [--shape smollm2-1.7b]
        [--pairs climate-fever] [--claims 40] [--per-claim 5] [--variants batch_size=64]

One script past 400 lines, on purpose: every row it compares (naive loop, batching, prefix
reuse, pipeline) runs on the same pairs in one process, so the ratios are measured side by side.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import kendalltau

from rerank_audit.models.loading import load_causal_lm, resolve_dtype
from rerank_audit.models.precision import cpu_probe
from rerank_audit.models.scoring import QueryLikelihoodScorer, YesNoScorer, answer_token_sets
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.text import prompts
from rerank_audit.text.prompts import DEFAULT_QLM_TEMPLATE

sys.path.insert(0, str(Path(__file__).resolve().parent))
import random_models  # bench/random_models.py, beside this file

REPO = Path(__file__).resolve().parents[1]
ROWS = ("naive", "batched-plain", "batched-fp32", "batched-bf16", "pipeline", "qlm naive", "qlm batched-fp32", "qlm pipeline")
SHORT = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
AUTO = "auto"  # a config value sized at run time: None in ScoringSettings
# Square matmuls timed for the peak: big enough to saturate the device, short on each.
PEAK_SIZE = {"cuda": 8192, "cpu": 2048}


def make_scorer(family, model, tokenizer, settings: ScoringSettings, **options):
    """A scorer of ``family`` as the pipeline builds one (the one place the bench calls the scorers' API)."""
    return family(model, tokenizer, settings=settings, **options)


# ------------------------------------------------------------------ pairs


def climate_fever_pairs(path: Path, n_queries: int, per_query: int) -> tuple[list[str], list[str]]:
    """(claim, evidence as ``article: sentence``) pairs of the first ``n_queries`` claims."""
    queries, documents = [], []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if len(set(queries)) == n_queries:
                break
            record = json.loads(line)
            for evidence in record["evidences"][:per_query]:
                queries.append(record["claim"])
                documents.append(prompts.document_text(evidence["article"], evidence["evidence"]))
    return queries, documents


def demo_pairs(folder: Path, n_queries: int, per_query: int) -> tuple[list[str], list[str]]:
    """(query, rated document as ``title: text``) pairs of the demo collection's first ``n_queries`` queries."""
    with open(folder / "documents.csv", encoding="utf-8") as rows:
        texts = {row["doc_id"]: prompts.document_text(row["title"], row["text"]) for row in csv.DictReader(rows)}
    queries, documents, per = [], [], {}
    with open(folder / "ratings.csv", encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            if row["query"] not in per and len(per) == n_queries:
                break
            per[row["query"]] = per.get(row["query"], 0) + 1
            if per[row["query"]] <= per_query:
                queries.append(row["query"])
                documents.append(texts[row["doc_id"]])
    return queries, documents


# ------------------------------------------------------------------ measuring


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, repeats: int = 10) -> float:
    """Best-of-``repeats`` throughput of an n×n @ n×n matmul on ``device``, GFLOP/s (n: :data:`PEAK_SIZE`).

    fp32 on CUDA is plain fp32 (torch's default: TF32 off), as the fp32 models run.
    """
    n = PEAK_SIZE.get(device.type, 2048)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, dtype=dtype, device=device, generator=generator)
    b = torch.randn(n, n, dtype=dtype, device=device, generator=generator)
    for _ in range(3):  # warm-up: kernel choice, clocks
        torch.matmul(a, b)
    synchronize(device)
    best = float("inf")
    for _ in range(repeats if device.type == "cuda" else 3):
        start = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def count_tokens(module: torch.nn.Module, run):
    """(result of ``run()``, real tokens of ``input_ids`` in all forward calls of ``module`` during it).

    Real = unmasked: padding is not counted, and a cached prefix counts once, when computed.
    Counted on the device, read once at the end (no synchronisation per call).
    """
    counts = []

    def count(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        counts.append(mask[:, -ids.shape[1]:].sum() if mask is not None else torch.tensor(ids.numel()))

    handle = module.register_forward_pre_hook(count, with_kwargs=True)
    try:
        result = run()
    finally:
        handle.remove()
    return result, int(sum(int(c) for c in counts))


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


def parse_variant(text: str) -> dict:
    """``batch_size=64`` or ``batch_size=auto,prefix_reuse=false`` -> {field: value}: YAML values, and
    ``auto`` of a field other than dtype None, as ``ScoringSettings.from_config`` reads the config."""
    changes = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"variant {text!r}: write field=value[,field=value]")
        key, value = key.strip(), yaml.safe_load(value)
        changes[key] = None if value == AUTO and key != "dtype" else value
    return changes


# ------------------------------------------------------------------ the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when a GPU is visible")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml", help="the scoring settings' source")
    parser.add_argument("--model", type=Path, default=random_models.BUNDLED_FOLDER, help="a model folder (ignored with --shape)")
    parser.add_argument("--shape", default=None, help="random weights of this architecture: " + ", ".join(random_models.SHAPES) + ", or key=value,...")
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder for --shape (default: the bundled model's)")
    parser.add_argument("--pairs", choices=("climate-fever", "demo"), default="climate-fever")
    parser.add_argument("--claims-file", type=Path, default=REPO.parent / "shared" / "data" / "climate-fever" / "climate-fever.jsonl")
    parser.add_argument("--demo-folder", type=Path, default=REPO / "resources" / "demo")
    parser.add_argument("--claims", "--queries", dest="queries", type=int, default=40, help="number of queries (claims)")
    parser.add_argument("--per-claim", "--per-query", dest="per_query", type=int, default=5, help="documents per query")
    parser.add_argument("--batch-size", type=int, default=None, help="override the config's rerank.batch_size (a number)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of: {', '.join(ROWS)}")
    parser.add_argument("--variants", nargs="*", type=parse_variant, default=[], help="extra pipeline rows: settings changes, e.g. batch_size=64")
    parser.add_argument("--qlm-template", default=None, help="the qlm rows' prompt ({document} once); default: the claim template for "
                        "CLIMATE-FEVER, the config's demo template for the demo")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=4, help="slices of the queries the rows take turns on")
    parser.add_argument("--seed", type=int, default=0, help="random weights' seed")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch threads (default: torch's, one per core). On cores shared with other jobs use 1: "
        "OpenMP threads that wait for each other at every op slow small batches down many times over",
    )
    args = parser.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"--rows: unknown {sorted(unknown)}; known: {', '.join(ROWS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("rerank_audit.models.scoring").setLevel(logging.WARNING)  # no line per scored slice
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")

    config = yaml.safe_load(args.config.read_text())
    settings = ScoringSettings.from_config(config, "rerank").but(device=str(device), progress=False)
    if args.batch_size:
        settings = settings.but(batch_size=args.batch_size)

    if args.pairs == "climate-fever":
        queries, documents = climate_fever_pairs(args.claims_file, args.queries, args.per_query)
        template = args.qlm_template or DEFAULT_QLM_TEMPLATE
    else:
        queries, documents = demo_pairs(args.demo_folder, args.queries, args.per_query)
        template = args.qlm_template or config.get("datasets", {}).get("demo", {}).get("qlm_template") or DEFAULT_QLM_TEMPLATE

    # The models, one per dtype a row needs; the pipeline's dtype resolved as the pipeline does.
    auto_dtype = resolve_dtype(settings.dtype, device)
    needed = {torch.float32} if any(r in rows for r in ("naive", "batched-plain", "batched-fp32", "qlm naive", "qlm batched-fp32")) else set()
    needed |= {torch.bfloat16} if "batched-bf16" in rows else set()
    needed |= {auto_dtype} if {"pipeline", "qlm pipeline"} & set(rows) or args.variants else set()
    if not args.shape and not (args.model / "config.json").is_file():
        from rerank_audit.models.bundled import convert_bundled

        convert_bundled(args.model)
        print(f"converted bundled model to {args.model}")
    started = time.perf_counter()
    if args.shape:
        shape = random_models.parse_shape(args.shape)
        tokenizer, tokenizer_source = random_models.bench_tokenizer(args.tokenizer, texts=queries + documents)
        built = random_models.random_causal_lm(random_models.llama_config(shape, tokenizer), device, args.seed)
        models = {dtype: random_models.as_dtype(built, dtype) for dtype in needed}
        del built
        model_name = f"random weights, shape {args.shape} ({random_models.describe_shape(shape)})"
    else:
        from rerank_audit.models.loading import load_tokenizer

        tokenizer, tokenizer_source = load_tokenizer(args.model), "the model's"
        models = {dtype: load_causal_lm(args.model, device, dtype) for dtype in needed}
        model_name = str(args.model)
    load_seconds = time.perf_counter() - started
    n_params = next(iter(models.values())).num_parameters()

    lengths = [len(ids) for ids in tokenizer([prompts.pointwise_prompt(tokenizer, q, d) for q, d in zip(queries, documents)])["input_ids"]]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"device: {device} ({device_name}); model: {model_name}, {n_params / 1e6:.1f}M parameters, loaded in {load_seconds:.1f} s; tokenizer: {tokenizer_source}")
    print(
        f"{len(queries)} pairs ({args.pairs}: {len(set(queries))} queries × ≤{args.per_query} documents), pointwise prompt tokens mean "
        f"{np.mean(lengths):.0f} (min {min(lengths)}, max {max(lengths)}); settings from {args.config.name}: {settings}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    peak = {"fp32": matmul_peak(device, torch.float32), "bf16": matmul_peak(device, torch.bfloat16)}
    print(f"measured matmul peak ({PEAK_SIZE.get(device.type)}³): fp32 {peak['fp32']:,.0f} GFLOP/s, bf16 {peak['bf16']:,.0f} GFLOP/s")
    if device.type == "cpu":
        probe = cpu_probe()
        print(f"precision probe (auto's evidence): fp32 {probe.fp32_gflops:.0f} GFLOP/s, bf16 {probe.bf16_gflops:.0f} GFLOP/s")
    auto_name = SHORT[auto_dtype]
    print(f"the pipeline's dtype ({settings.dtype}) on {device.type}: {auto_name}")

    def batched(dtype, family=YesNoScorer, **changes):
        model = models[dtype]
        options = {"template": template} if family is QueryLikelihoodScorer else {}
        scorer = make_scorer(family, model, tokenizer, settings.but(**changes), **options)
        scorer.score_pairs(queries[: args.per_query * 2], documents[: args.per_query * 2])  # warm-up
        return lambda q, d: count_tokens(model.base_model, lambda: scorer.score_pairs(q, d))

    def naive(plain):
        fp32 = models[torch.float32]
        loop = one_at_a_time(lambda q, d: plain(fp32, tokenizer, q, d))
        loop(queries[:2], documents[:2])  # warm-up
        return lambda q, d: count_tokens(fp32.base_model, lambda: loop(q, d))

    def plain_qlm(model, tokenizer, q, d):
        return plain_query_log_probs(model, tokenizer, template, q, d)

    # name: (dtype, family, run, the naive row its speed-up and score agreement are read against)
    builders = {
        "naive": lambda: ("fp32", "yes/no", naive(plain_log_odds), "naive"),
        "batched-plain": lambda: ("fp32", "yes/no", batched(torch.float32, prefix_reuse=False), "naive"),
        "batched-fp32": lambda: ("fp32", "yes/no", batched(torch.float32), "naive"),
        "batched-bf16": lambda: ("bf16", "yes/no", batched(torch.bfloat16), "naive"),
        "pipeline": lambda: (auto_name, "yes/no", batched(auto_dtype), "naive"),
        "qlm naive": lambda: ("fp32", "qlm", naive(plain_qlm), "qlm naive"),
        "qlm batched-fp32": lambda: ("fp32", "qlm", batched(torch.float32, family=QueryLikelihoodScorer), "qlm naive"),
        "qlm pipeline": lambda: (auto_name, "qlm", batched(auto_dtype, family=QueryLikelihoodScorer), "qlm naive"),
    }
    runs = {}
    for row in rows:
        name = f"{row} ({auto_name})" if row in ("pipeline", "qlm pipeline") else row
        runs[name] = builders[row]()
    for changes in args.variants:
        label = ",".join(f"{k}={AUTO if v is None else v}" for k, v in changes.items())
        runs[f"pipeline {label}"] = (auto_name, "yes/no", batched(auto_dtype, **changes), "naive")
        runs[f"qlm pipeline {label}"] = (auto_name, "qlm", batched(auto_dtype, family=QueryLikelihoodScorer, **changes), "qlm naive")

    # Other processes share these cores and their load drifts: the rows take turns on slices
    # of the queries (in a rotating order), so that drift hits all of them alike.
    distinct = list(dict.fromkeys(queries))
    slices = np.array_split(np.arange(len(distinct)), args.rounds)
    per_call = len(queries) / len(slices)
    largest = max([settings.batch_size or 0] + [c["batch_size"] or 0 for c in args.variants if "batch_size" in c])
    if largest > per_call:
        print(f"note: each row scores about {per_call:.0f} pairs per call ({args.rounds} rounds): a batch of {largest} is not filled; "
              "use fewer --rounds or more --claims")  # fmt: skip
    seconds = dict.fromkeys(runs, 0.0)
    tokens = dict.fromkeys(runs, 0)
    memory = dict.fromkeys(runs, 0)
    scores = {name: [] for name in runs}
    for round_, query_slice in enumerate(slices):
        chosen = {distinct[c] for c in query_slice}
        pairs = [i for i, q in enumerate(queries) if q in chosen]
        q, d = [queries[i] for i in pairs], [documents[i] for i in pairs]
        names = list(runs)
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            synchronize(device)
            start = time.perf_counter()
            slice_scores, slice_tokens = runs[name][2](q, d)
            synchronize(device)
            seconds[name] += time.perf_counter() - start
            tokens[name] += slice_tokens
            scores[name].append(slice_scores)
            if device.type == "cuda":
                memory[name] = max(memory[name], torch.cuda.max_memory_allocated(device))
    scores = {name: np.concatenate(parts) for name, parts in scores.items()}

    print("yes/no rows: log-odds of yes (zeroshot); qlm rows: mean log P(query | document prompt); × naive and max|Δ| against the naive loop of the same score")
    print(f"% peak: useful GFLOP/s over the measured matmul peak of the row's dtype{'; GiB: peak GPU memory allocated' if device.type == 'cuda' else ''}")
    header = f"{'row':<44} {'dtype':<5} {'s':>7} {'pairs/s':>9} {'× naive':>8} {'tokens/s':>10} {'GFLOP/s':>9} {'% peak':>7}"
    print(header + (f" {'GiB':>6}" if device.type == "cuda" else "") + f" {'max|Δ| vs naive':>16}")
    table = []
    for name, (dtype, family, _, baseline) in runs.items():
        gflops = 2 * n_params * tokens[name] / seconds[name] / 1e9
        delta = float(np.abs(scores[name] - scores[baseline]).max()) if baseline in scores else float("nan")
        speedup = seconds[baseline] / seconds[name] if baseline in seconds else float("nan")
        row = {
            "row": name, "family": family, "dtype": dtype, "seconds": seconds[name], "pairs": len(queries),
            "pairs_per_s": len(queries) / seconds[name], "speedup": speedup, "tokens": tokens[name],
            "tokens_per_s": tokens[name] / seconds[name], "gflops": gflops, "peak_share": gflops / peak[dtype],
            "gpu_gib": memory[name] / 2**30, "max_delta": delta,
        }  # fmt: skip
        table.append(row)
        print(
            f"{name:<44} {dtype:<5} {row['seconds']:>7.1f} {row['pairs_per_s']:>9.2f} {speedup:>8.2f} {row['tokens_per_s']:>10,.0f} "
            f"{gflops:>9,.1f} {100 * row['peak_share']:>6.1f}%" + (f" {row['gpu_gib']:>6.2f}" if device.type == "cuda" else "") + f" {delta:>16.2e}"
        )
    if {"batched-bf16", "batched-fp32"} <= set(scores):
        tau, _ = kendalltau(scores["batched-bf16"], scores["batched-fp32"])
        print(f"Kendall tau: bf16 vs fp32 batched {tau:.4f}")
    if {"batched-fp32", "naive"} <= set(scores):
        tau, _ = kendalltau(scores["batched-fp32"], scores["naive"])
        print(f"Kendall tau: fp32 batched vs naive {tau:.4f}")
    if {"batched-fp32", "batched-bf16"} <= set(seconds):
        faster = min(("fp32", "bf16"), key=lambda dtype: seconds[f"batched-{dtype}"])
        print(
            f"the pipeline's dtype is {auto_name}; the faster forced dtype here is {faster} "
            f"({len(queries) / seconds['batched-fp32']:.2f} fp32 vs {len(queries) / seconds['batched-bf16']:.2f} bf16 pairs/s): "
            f"{'it is the faster' if auto_name == faster else 'IT IS THE SLOWER'}"
        )
    print(
        "GFLOP/s counts 2 × all parameters per token, as the naive loops compute; the batched yes/no scorer "
        "skips the vocabulary projection (the tied embedding) except for the answer logits, and the qlm scorer "
        "runs it only at the query's positions, so they execute fewer FLOPs than counted (about 21% fewer for SmolLM2-135M, 6% for 1.7B)"
    )
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other processes share these cores)")
    if args.json:
        summary = {
            "device": str(device), "device_name": device_name, "model": model_name, "parameters": n_params,
            "pairs": len(queries), "settings": settings.as_dict(), "peak_gflops": peak, "rows": table,
        }  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
