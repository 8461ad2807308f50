"""The scorer on an explain job's masked texts: the engine of a commit before and of this checkout, side by side.

The explain stage's time is its scorer's time on masked texts (a document with words removed,
the claim kept). This bench rebuilds the texts the attributions of one method's explain job
score (``explain_pairs`` with the run's explain settings, read from the config its report wrote, on its tables; a
scorer that records its calls stands in for the model, so the texts come out as the job makes
them: the game is not adaptive), takes the first ``--pairs`` of its first call, and scores
them with the method's scorer as the job loads it, once with the package of ``--before`` (a git
worktree) and once with this checkout's, each in its own process, alternating ``--repeats``
times so that a machine's drift falls on both. Printed per run: seconds, CPU seconds, the
tokens the engine ran (its log line) and the after / before ratios of the medians; then the
largest score difference between the two codes.

    .venv/bin/python bench/masked_scoring.py --run-dir /path/to/finished/clone --before c0ab66a \\
        [--dataset climate-fever-judged] [--method zeroshot] [--pairs 1500] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENS = re.compile(r"(\d+) tokens \((\d+)% of the full prompts' (\d+)\)")


def run_config(args) -> dict:
    """The merged config the finished run was made with (its report writes it)."""
    import yaml

    return yaml.safe_load((args.run_dir / "results" / args.dataset / "report" / "config.yaml").read_text())


def record_texts(args, config: dict, into: Path) -> None:
    """The (queries, documents) of the first scorer call of the method's attributions, cut to ``--pairs``."""
    import numpy as np

    from rerank_audit.data import schemas
    from rerank_audit.explain.attribution import explain_pairs
    from rerank_audit.explain.selection import pairs_to_explain
    from rerank_audit.io import read_table

    explain, folder = config["explain"], args.run_dir / "results" / args.dataset
    run = next((folder / "rerank" / args.method).glob("*/run.parquet"))
    pairs = pairs_to_explain(
        read_table(run, schemas.RUN), read_table(folder / "split" / "splits.parquet", schemas.SPLITS),
        read_table(folder / "ingest" / "queries.parquet", schemas.QUERIES), read_table(folder / "ingest" / "corpus.parquet", schemas.CORPUS),
        n_queries=config["datasets"][args.dataset].get("explain_queries", explain["queries"]), top_documents=explain["top_documents"],
        bottom_documents=explain["bottom_documents"], depth=config["rerank"]["depth"],
    )  # fmt: skip
    calls = []

    class Recorder:
        def score_pairs(self, q, d):
            calls.append((list(q), list(d)))
            return np.zeros(len(q))

    explain_pairs(Recorder(), pairs["query"].tolist(), pairs.document.tolist(), exact_levels=explain["exact_levels"],
                  max_evaluations=explain["max_evaluations"], cache={}, pairs_per_call=explain["pairs_per_call"],
                  players=explain["players"], siblings=explain["siblings"], query_ids=pairs.query_id.tolist(), doc_ids=pairs.doc_id.tolist())  # fmt: skip
    queries, documents = calls[0]
    into.write_text(json.dumps({"queries": queries[: args.pairs], "documents": documents[: args.pairs]}))


# Run in a fresh interpreter with PYTHONPATH set to one code's package: loads the method's scorer as the
# explain job does (its model folder, settings of the job's memory) and scores the recorded texts once.
SCORE = r"""
import json, logging, resource, sys, time
import numpy as np, torch
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
from rerank_audit.models.scoring import ScoringSettings, load_scorer
texts, spec = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
torch.set_num_threads(spec.pop("threads"))
scorer = load_scorer(spec.pop("method"), spec.pop("model_dir"), spec.pop("base_model"), settings=ScoringSettings(**spec.pop("settings")), **spec)
scorer.score_pairs(texts["queries"][:16], texts["documents"][:16])  # warm up
started, cpu = time.perf_counter(), time.process_time()
scores = scorer.score_pairs(texts["queries"], texts["documents"])
print(json.dumps({"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu, "scores": np.asarray(scores).tolist()}))
"""


def scorer_spec(args, config: dict) -> dict:
    """How the explain job loads the method's scorer (workflow/rules/common.smk, scorer_params): its model folder,
    the base model, DPO's beta and the dataset's qlm template, the explain stage's settings at the job's memory."""
    from rerank_audit.config import qlm_template
    from rerank_audit.methods import method
    from rerank_audit.models.bundled import resolve_base_model
    from rerank_audit.models.settings import ScoringSettings
    from rerank_audit.training.settings import TrainingSettings

    spec = method(args.method)
    base = str(args.run_dir / resolve_base_model(config["model"]["base"], "resources/models"))
    trained = next((args.run_dir / "results").glob(f"*/models/{args.method}/*/training_config.json"), None) if spec.trained else None
    settings = ScoringSettings.from_config(config, "explain").as_dict() | {"memory_mb": args.memory_mb}
    return {"method": args.method, "model_dir": str(trained.parent) if trained else base, "base_model": base, "settings": settings,
            "threads": args.threads, "beta": TrainingSettings.for_method(config, args.method).beta if spec.trained else None,
            "template": qlm_template(config["datasets"][args.dataset]) if spec.family == "likelihood" else None}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished run (a clone's root) with the method's explain job done")
    parser.add_argument("--before", required=True, help="the commit whose engine runs as 'before'")
    parser.add_argument("--dataset", default="climate-fever-judged")
    parser.add_argument("--method", default="zeroshot")
    parser.add_argument("--pairs", type=int, default=1500, help="masked texts of the first attribution call")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-mb", type=int, default=4321, help="the explain job's mem_mb (bounds the batches)")
    args = parser.parse_args()
    args.run_dir = args.run_dir.resolve()
    scratch = Path(tempfile.mkdtemp(prefix="masked-scoring-"))
    texts, config = scratch / "texts.json", run_config(args)
    record_texts(args, config, texts)
    spec = json.dumps(scorer_spec(args, config))
    old = scratch / "before"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-f", "--detach", str(old), args.before], check=True, capture_output=True)
    codes = {f"before ({args.before})": old / "src", "after (this checkout)": REPO / "src"}
    runs: dict[str, list[dict]] = {name: [] for name in codes}
    try:
        for _ in range(args.repeats):
            for name, src in codes.items():
                done = subprocess.run([sys.executable, "-c", SCORE, str(texts), spec], env=dict(os.environ) | {"PYTHONPATH": str(src)},
                                      capture_output=True, text=True)  # fmt: skip
                if done.returncode:
                    raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.splitlines()[-1])
                result["tokens"] = TOKENS.findall(done.stderr)[-1]
                runs[name].append(result)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)
    n = len(json.loads(texts.read_text())["queries"])
    print(f"{args.method}: {n} masked texts of its explain job's first attribution call, {args.threads} threads, {args.repeats} alternating runs each\n")
    print("| code | seconds | CPU seconds | tokens run (share of the full prompts) |")
    print("|---|---|---|---|")
    for name, results in runs.items():
        seconds = " / ".join(f"{r['seconds']:.1f}" for r in results)
        cpu = " / ".join(f"{r['cpu']:.1f}" for r in results)
        tokens, share, _ = results[-1]["tokens"]
        print(f"| {name} | {seconds} | {cpu} | {int(tokens):,} ({share}%) |")
    (before, after) = runs.values()
    ratio = {key: statistics.median(r[key] for r in after) / statistics.median(r[key] for r in before) for key in ("seconds", "cpu")}
    print(f"\nafter / before, medians: {ratio['seconds']:.2f}x seconds, {ratio['cpu']:.2f}x CPU seconds")
    difference = max(abs(a - b) for a, b in zip(before[-1]["scores"], after[-1]["scores"]))
    print(f"largest |score difference| between the codes: {difference:.3g}")


if __name__ == "__main__":
    main()
