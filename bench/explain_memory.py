"""Peak memory and speed of an explain job's scoring: the code of a commit before against this checkout, side by side.

The workload that ran a query-likelihood ``explain`` job out of memory (issue 32): long
claims (20–30 words) over report-length paragraphs (bench/long_collection.py, built from
CLIMATE-FEVER); the first ``--queries`` claims with two relevant and two non-relevant
paragraphs, each pair explained with SHAP by the bundled model, at the pipeline's settings
(batch ``auto``, max length 256, dtype ``auto``), its token budget sized on this machine, or
as if sysfs reported a ``--cache-mb`` last-level cache (the host that reported 480 MB), and
within ``--memory-mb`` (a rule's ``mem_mb``; 0: what the machine has free).

Each row runs in its own process (``--run``), so its peak resident memory (getrusage) is
its own; the address space is capped at ``--cap-gib`` after the model is loaded, so code
that does not bound its memory fails instead of taking the machine down. ``--before
COMMIT`` runs that commit's ``src/`` (a git worktree) beside this checkout's.

    .venv/bin/python bench/explain_memory.py --before 844f92d [--queries 1] [--families qlm,yesno] [--cache-mb 0,480]

Prints, per family and budget: masked pairs scored per second and peak resident memory,
before and after, and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from long_collection import build_long_beir  # noqa: E402  (bench/long_collection.py, beside this file)

REPO = Path(__file__).resolve().parents[1]
CLAIMS = REPO.parent / "shared" / "data" / "climate-fever" / "climate-fever.jsonl"
MODEL = REPO / "resources" / "models" / "smollm2-135m-instruct"
TEMPLATE = "Passage: {document}\nA claim about this passage:"
METHOD = {"qlm": "qlm", "yesno": "zeroshot"}


def long_pairs(claims_file: Path, queries: int) -> tuple[list[str], list[str]]:
    """(claims, paragraphs as document_text): two relevant and two non-relevant paragraphs of each of the first ``queries`` claims that have them."""
    from rerank_audit.data.ingest import read_collection
    from rerank_audit.text.prompts import document_text

    with tempfile.TemporaryDirectory() as folder:
        collection = read_collection("beir", folder=build_long_beir(claims_file, Path(folder)))
    corpus = collection.corpus.set_index("doc_id")
    text = collection.queries.set_index("query_id").text
    claims, documents = [], []
    for query_id, judged in collection.qrels.groupby("query_id", sort=False):
        relevant, other = judged[judged.relevance > 0].doc_id[:2], judged[judged.relevance == 0].doc_id[:2]
        if len(relevant) == 2 and len(other) == 2:
            for doc_id in [*relevant, *other]:
                claims.append(text[query_id])
                documents.append(document_text(corpus.title[doc_id], corpus.text[doc_id]))
        if len(claims) == 4 * queries:
            break
    return claims, documents


def run_once(args) -> dict:
    """Explain the workload in this process; its peak resident memory, time and masked pairs."""
    import torch

    from rerank_audit.explain.attribution import explain_pairs
    from rerank_audit.models import batching
    from rerank_audit.models.scoring import ScoringSettings, load_scorer

    torch.set_num_threads(2)
    if args.cache_mb:
        batching._last_level_cache_bytes = lambda: args.cache_mb << 20  # as if sysfs reported it
    claims, documents = long_pairs(args.claims_file, args.queries)
    memory = {"memory_mb": args.memory_mb} if args.memory_mb else {}  # --before code may predate the setting
    scorer = load_scorer(METHOD[args.family], args.model, settings=ScoringSettings(max_length=256, dtype=args.dtype, **memory), template=TEMPLATE)
    if args.cap_gib:
        resource.setrlimit(resource.RLIMIT_AS, (int(args.cap_gib * 2**30),) * 2)
    start, cache = time.perf_counter(), {}
    result = {"pairs": len(claims)}
    try:
        explain_pairs(scorer, claims, documents, exact_levels=1, max_evaluations=None, cache=cache, pairs_per_call=64)
        result["completed"] = True
    except (MemoryError, RuntimeError) as error:  # the allocator's "can't allocate memory" under the cap
        result["completed"], result["error"] = False, str(error)[:200]
    return result | {"seconds": time.perf_counter() - start, "masked_pairs": len(cache),
                     "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def measure(src: Path | None, args, family: str, cache_mb: int) -> dict:
    """One row in a fresh process, on the code of ``src`` (None: this checkout)."""
    env = dict(os.environ) | ({"PYTHONPATH": str(src)} if src else {})
    command = [sys.executable, __file__, "--run", "--family", family, "--cache-mb", str(cache_mb), "--queries", str(args.queries),
               "--model", str(args.model), "--claims-file", str(args.claims_file), "--dtype", args.dtype, "--cap-gib", str(args.cap_gib),
               "--memory-mb", str(args.memory_mb)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="store_true", help="run one row in this process and print it as JSON")
    parser.add_argument("--before", help="a commit whose src/ runs beside this checkout's")
    parser.add_argument("--families", default="qlm,yesno")
    parser.add_argument("--family", default="qlm", choices=sorted(METHOD))
    parser.add_argument("--cache-mb", default="0,480", help="0: this machine's cache; a list with --before")
    parser.add_argument("--queries", type=int, default=1)
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--claims-file", type=Path, default=CLAIMS)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--cap-gib", type=float, default=12)
    parser.add_argument("--memory-mb", type=int, default=0, help="the job's memory (a rule's mem_mb); 0: what the machine has free")
    args = parser.parse_args()
    if args.run:
        args.cache_mb = int(args.cache_mb)
        print(json.dumps(run_once(args)))
        return
    codes = {"after": None}
    if args.before:
        old = Path(tempfile.mkdtemp()) / "before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-f", "--detach", str(old), args.before], check=True, capture_output=True)
        codes = {f"before ({args.before})": old / "src", "after": None}
    print(f"{args.queries} claim(s) x 4 long pairs, SHAP exact_levels 1, max length 256, dtype {args.dtype}, 2 threads, cap {args.cap_gib} GB, "
          f"mem_mb {args.memory_mb or 'none'}\n")
    print("| family | budget | code | masked pairs/s | peak RSS | completed |")
    print("|---|---|---|---:|---:|---|")
    try:
        for family in args.families.split(","):
            for cache_mb in (int(c) for c in args.cache_mb.split(",")):
                budget = f"auto, {cache_mb} MB cache" if cache_mb else "auto, this machine"
                rows = {name: measure(src, args, family, cache_mb) for name, src in codes.items()}
                for name, row in rows.items():
                    rate = row["masked_pairs"] / row["seconds"]
                    print(f"| {family} | {budget} | {name} | {rate:.1f} | {row['peak_rss_bytes'] / 2**30:.2f} GiB | {row['completed']} |", flush=True)
                if len(rows) == 2:
                    before, after = rows.values()
                    speed = (after["masked_pairs"] / after["seconds"]) / (before["masked_pairs"] / before["seconds"])
                    print(f"| {family} | {budget} | after / before | {speed:.2f}x | {after['peak_rss_bytes'] / before['peak_rss_bytes']:.2f}x | |", flush=True)
    finally:
        if args.before:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)


if __name__ == "__main__":
    main()
