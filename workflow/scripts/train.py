# First, before torch starts CUDA: this job's own GPU on a machine with several (rerank_audit.gpu).
from rerank_audit.gpu import claim_gpu
from rerank_audit.logs import log_to

log = log_to(snakemake.log[0])
claim_gpu()

from pathlib import Path

import torch

from rerank_audit.io import read_table
from rerank_audit.training.trainers import train_reranker

torch.set_num_threads(snakemake.threads)
p = snakemake.params
train_reranker(
    snakemake.wildcards.method,
    p.base_model,
    read_table(snakemake.input.data),
    Path(snakemake.output.model).parent,
    p.hyper,
    seed=p.seed,
    dtype=p.dtype,
)
