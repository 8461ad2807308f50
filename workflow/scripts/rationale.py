# First, before torch starts CUDA: this job's own GPU on a machine with several (rerank_audit.gpu).
from rerank_audit.gpu import claim_gpu
from rerank_audit.logs import log_to

log = log_to(snakemake.log[0])
claim_gpu()

import torch

from rerank_audit.data import schemas
from rerank_audit.explain.rationale import write_rationales
from rerank_audit.explain.selection import explained_head, rationale_items
from rerank_audit.io import read_table, write_table
from rerank_audit.models.loading import load_causal_lm, load_tokenizer

torch.set_num_threads(snakemake.threads)
p, w = snakemake.params, snakemake.wildcards
run = read_table(snakemake.input.run, schemas.RUN)
items = rationale_items(
    read_table(snakemake.input.keywords, schemas.ATTRIBUTIONS),
    explained_head(run, p.depth, p.top_documents, p.bottom_documents),
    read_table(snakemake.input.queries, schemas.QUERIES),
    read_table(snakemake.input.corpus, schemas.CORPUS),
)
texts = write_rationales(load_causal_lm(p.generator, dtype=p.dtype), load_tokenizer(p.generator), items.to_dict("records"), p.max_new_tokens, p.batch_size, p.show_decision)
items = items.assign(rationale=texts, generator=p.generator, method=w.method, budget=w.budget)
write_table(items, snakemake.output.rationales, schemas.RATIONALES)
