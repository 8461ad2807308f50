# First, before torch starts CUDA: this job's own GPU on a machine with several (rerank_audit.gpu).
from rerank_audit.gpu import claim_gpu
from rerank_audit.logs import log_to

log = log_to(snakemake.log[0])
claim_gpu()

import torch

from rerank_audit.data import schemas
from rerank_audit.io import read_table, write_table, write_trec_run
from rerank_audit.models.scoring import ScoringSettings, load_scorer
from rerank_audit.rerank import rerank_candidates

torch.set_num_threads(snakemake.threads)
p, w = snakemake.params, snakemake.wildcards
splits = read_table(snakemake.input.splits, schemas.SPLITS)
first_stage = read_table(snakemake.input.run, schemas.RUN)
first_stage = first_stage[first_stage.query_id.isin(splits.query_id[splits.split == "test"])]
scorer = load_scorer(w.method, p.model_dir, p.base_model, settings=ScoringSettings.of_job(snakemake), beta=p.beta, template=p.template)
run = rerank_candidates(
    scorer,
    first_stage,
    read_table(snakemake.input.queries, schemas.QUERIES),
    read_table(snakemake.input.corpus, schemas.CORPUS),
    depth=p.depth,
    method=w.method,
    budget=w.budget,
)
write_table(run, snakemake.output.run, schemas.RUN)
write_trec_run(run, snakemake.output.trec, tag=f"{w.method}-{w.budget}")
