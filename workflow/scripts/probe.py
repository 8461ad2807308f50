# First, before torch starts CUDA: this job's own GPU on a machine with several (rerank_audit.gpu).
from rerank_audit.gpu import claim_gpu
from rerank_audit.logs import log_to

log = log_to(snakemake.log[0])
if snakemake.rule != "probe_bm25":  # BM25 runs on the CPU and takes no GPU slot
    claim_gpu()

from rerank_audit.data import schemas
from rerank_audit.io import read_table, write_table
from rerank_audit.probe.responses import applicable_probes, probe_head, probe_responses
from rerank_audit.rerank import rerank_candidates

p, w = snakemake.params, snakemake.wildcards
corpus = read_table(snakemake.input.corpus, schemas.CORPUS)
qrels = read_table(snakemake.input.qrels, schemas.QRELS)
splits = read_table(snakemake.input.splits, schemas.SPLITS)
queries = read_table(snakemake.input.queries, schemas.QUERIES)
queries = queries[queries.query_id.isin(splits.query_id[splits.split == "test"])]
first_stage = read_table(snakemake.input.run, schemas.RUN)
first_stage = first_stage[first_stage.query_id.isin(queries.query_id)]
if snakemake.rule == "probe_bm25":
    # The lexical reference: BM25 with the dataset's retrieve settings, its head re-scored by
    # the pair scorer (a control's first-stage scores are its source's, over unmarked texts).
    from rerank_audit.retrieval.bm25 import bm25_index
    from rerank_audit.retrieval.bm25_scorer import bm25_pair_scorer

    method, budget = p.method, p.budget
    scorer = bm25_pair_scorer(bm25_index(corpus, k1=p.k1, b=p.b, stemmer=p.stemmer, stopwords=p.stopwords), corpus)
    scores = rerank_candidates(scorer, first_stage, queries, corpus, depth=p.depth, method=method, budget=budget)
else:
    import torch

    from rerank_audit.models.scoring import ScoringSettings, load_scorer

    method, budget = w.method, w.budget
    torch.set_num_threads(snakemake.threads)
    scorer = load_scorer(w.method, p.model_dir, p.base_model, settings=ScoringSettings.of_job(snakemake), beta=p.beta, template=p.template)
    scores = read_table(snakemake.input.reranked, schemas.RUN)
applicable = applicable_probes(qrels, p.marker)
probes = applicable if p.probes is None else [name for name in p.probes if name in applicable]
log.info("probes %s (applicable here: %s)", probes, applicable)
table = probe_responses(
    scorer, queries, corpus, probe_head(first_stage, scores, p.depth), qrels, method=method, budget=budget, probes=probes,
    relevance_threshold=p.relevance_threshold, seed=p.seed, marker=p.marker, max_documents=p.max_documents,
)  # fmt: skip
write_table(table, snakemake.output.probes, schemas.PROBES)
