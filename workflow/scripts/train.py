# First, before torch starts CUDA: this job's own GPU on a machine with several (rerank_audit.gpu).
from rerank_audit.gpu import claim_gpu
from rerank_audit.logs import log_to

log = log_to(snakemake.log[0])
claim_gpu()

from pathlib import Path

import torch

from rerank_audit.data import schemas
from rerank_audit.io import read_table
from rerank_audit.models.settings import ScoringSettings
from rerank_audit.training.selection import DevSelection
from rerank_audit.training.settings import TrainingSettings
from rerank_audit.training.trainers import train_reranker

torch.set_num_threads(snakemake.threads)
p = snakemake.params
selection = None
if p.selection is not None:  # train.selection: the grid, scored on the dev queries' judged pool
    tables = dict(
        queries=read_table(snakemake.input.queries, schemas.QUERIES),
        corpus=read_table(snakemake.input.corpus, schemas.CORPUS),
        qrels=read_table(snakemake.input.qrels, schemas.QRELS),
        splits=read_table(snakemake.input.splits, schemas.SPLITS),
    )
    selection = DevSelection.from_config(p.selection, **tables, relevance_threshold=p.relevance_threshold)
train_reranker(
    snakemake.wildcards.method,
    p.base_model,
    read_table(snakemake.input.data),
    Path(snakemake.output.model).parent,
    TrainingSettings.from_dict(p.training),
    seed=p.seed,
    template=p.template,
    scoring=ScoringSettings.of_job(snakemake),
    selection=selection,
)
