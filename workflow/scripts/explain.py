# First, before torch starts CUDA: this job's own GPU on a machine with several (rerank_audit.gpu).
from rerank_audit.gpu import claim_gpu
from rerank_audit.logs import log_to

log = log_to(snakemake.log[0])
claim_gpu()

import os
import time

# Before shap imports numba: interpreted, shap's Partition helpers give the same values bit for bit and
# cost less than compiling them (3.5-5 s of CPU a job) unless a job explains hundreds of pairs (bench/shap_jit.py).
os.environ.setdefault("NUMBA_DISABLE_JIT", "1")

import torch

from rerank_audit.data import schemas
from rerank_audit.explain.attribution import explain_pairs, top_keywords
from rerank_audit.explain.faithfulness import candidate_spreads, faithfulness
from rerank_audit.explain.selection import pairs_to_explain, reranked_head
from rerank_audit.io import read_table, write_table
from rerank_audit.models.scoring import ScoringSettings, load_scorer

torch.set_num_threads(snakemake.threads)
p, w = snakemake.params, snakemake.wildcards
run = read_table(snakemake.input.run, schemas.RUN)
pairs = pairs_to_explain(
    run,
    read_table(snakemake.input.splits, schemas.SPLITS),
    read_table(snakemake.input.queries, schemas.QUERIES),
    read_table(snakemake.input.corpus, schemas.CORPUS),
    n_queries=p.queries,
    top_documents=p.top_documents,
    bottom_documents=p.bottom_documents,
    depth=p.depth,
)


class Stopwatch:
    """Logs the seconds of each part of the job, and the masked pairs it scored: bench/stage_cost.py reads them."""

    def __init__(self) -> None:
        self.started, self.scored = time.perf_counter(), 0

    def lap(self, part: str, cache: dict | None = None) -> None:
        now, scored = time.perf_counter(), len(cache) if cache is not None else self.scored
        log.info("explain timing: %s %.1f s" + (", %d evaluations" if cache is not None else ""), part, now - self.started,
                 *([scored - self.scored] if cache is not None else []))  # fmt: skip
        self.started, self.scored = now, scored


watch = Stopwatch()
scorer = load_scorer(w.method, p.model_dir, p.base_model, settings=ScoringSettings.of_job(snakemake), beta=p.beta, template=p.template)
watch.lap("model load")
cache = {}  # attribution and faithfulness score many of the same masked pairs
ids = dict(query_ids=pairs.query_id.tolist(), doc_ids=pairs.doc_id.tolist())
texts = (pairs["query"].tolist(), pairs.document.tolist())
added = {key: getattr(p, key) for key in ("players", "siblings") if hasattr(p, key)}  # absent from params at their defaults (common.smk)
attributions = explain_pairs(
    scorer, *texts, exact_levels=p.exact_levels, max_evaluations=p.max_evaluations, cache=cache, pairs_per_call=p.pairs_per_call, **added, **ids
)
watch.lap("attributions", cache)
attributions = attributions.assign(method=w.method, budget=w.budget)
spreads = candidate_spreads(reranked_head(run, p.depth))  # candidate_std: each query's spread of the method's scores
faithful = faithfulness(
    scorer, *texts, attributions, ks=p.ks, n_random=p.random_sets, seed=p.seed, deletion_steps=p.deletion_steps,
    normalisation=p.normalisation, cache=cache, pairs_per_call=p.pairs_per_call, candidate_spread=spreads, marker=p.marker,
    simulatability_edits=p.simulatability_edits, simulatability_max_words=p.simulatability_max_words,
    simulatability_permutations=p.simulatability_permutations, **ids,
)
watch.lap("faithfulness", cache)
write_table(attributions, snakemake.output.attributions, schemas.ATTRIBUTIONS)
write_table(top_keywords(attributions, p.keywords), snakemake.output.keywords, schemas.ATTRIBUTIONS)
write_table(faithful.assign(method=w.method, budget=w.budget), snakemake.output.faithfulness, schemas.FAITHFULNESS)
log.info("explained %d pairs of %d queries; %d distinct masked pairs scored", len(pairs), pairs.query_id.nunique(), len(cache))
