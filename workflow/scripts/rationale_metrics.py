# First, before torch starts CUDA: this job's own GPU on a machine with several (rerank_audit.gpu).
from rerank_audit.gpu import claim_gpu
from rerank_audit.logs import log_to

log = log_to(snakemake.log[0])
claim_gpu()

import torch

from rerank_audit.data import schemas
from rerank_audit.explain.faithfulness import candidate_spreads, rationale_comprehensiveness
from rerank_audit.explain.rationale import rationale_metrics, with_rationales
from rerank_audit.explain.selection import explained_head, rationale_items, reranked_head
from rerank_audit.io import read_table, write_table
from rerank_audit.models.scoring import ScoringSettings, load_scorer

torch.set_num_threads(snakemake.threads)
p, w, inp = snakemake.params, snakemake.wildcards, snakemake.input
run = read_table(inp.run, schemas.RUN)
# The items the writer was given (recomputed from the same inputs), with what it wrote.
items = rationale_items(
    read_table(inp.keywords, schemas.ATTRIBUTIONS),
    explained_head(run, p.depth, p.top_documents, p.bottom_documents),
    read_table(inp.queries, schemas.QUERIES),
    read_table(inp.corpus, schemas.CORPUS),
)
items = with_rationales(items, read_table(inp.rationales, schemas.RATIONALES), inp.rationales)
scorer = load_scorer(w.method, p.model_dir, p.base_model, settings=ScoringSettings.of_job(snakemake), beta=p.beta, template=p.template)
faithful = rationale_comprehensiveness(
    scorer, items["query"].tolist(), items.document.tolist(), items.rationale.tolist(), n_random=p.random_sets, seed=p.seed,
    normalisation=p.normalisation, pairs_per_call=p.pairs_per_call, query_ids=items.query_id.tolist(), doc_ids=items.doc_id.tolist(),
    candidate_spread=candidate_spreads(reranked_head(run, p.depth)),
)
metrics = rationale_metrics(items).merge(faithful, on=["query_id", "doc_id"], validate="one_to_one")
write_table(metrics.assign(method=w.method, budget=w.budget), snakemake.output.metrics, schemas.RATIONALE_METRICS)
log.info(
    "%d rationales: %d name words of their document; rationale comprehensiveness %.3f vs %.3f for as many random words (means)",
    len(metrics), int((metrics.rationale_words > 0).sum()), metrics.rationale_comprehensiveness.mean(), metrics.rationale_comprehensiveness_random.mean(),
)
