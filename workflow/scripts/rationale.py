# First, before torch starts CUDA: this job's own GPU on a machine with several (rerank_audit.gpu).
from rerank_audit.gpu import claim_gpu
from rerank_audit.logs import log_to

log = log_to(snakemake.log[0])
claim_gpu()

import time

import pandas as pd
import torch

from rerank_audit.data import schemas
from rerank_audit.explain.rationale import verdict_log_odds, write_rationales
from rerank_audit.explain.selection import explained_head, rationale_items
from rerank_audit.io import read_table, write_table
from rerank_audit.models.loading import load_causal_lm, load_tokenizer
from rerank_audit.models.settings import ScoringSettings

torch.set_num_threads(snakemake.threads)
p, w = snakemake.params, snakemake.wildcards
run = read_table(snakemake.input.run, schemas.RUN)
items = rationale_items(
    read_table(snakemake.input.keywords, schemas.ATTRIBUTIONS),
    explained_head(run, p.depth, p.top_documents, p.bottom_documents),
    read_table(snakemake.input.queries, schemas.QUERIES),
    read_table(snakemake.input.corpus, schemas.CORPUS),
)
generator, tokenizer, records = load_causal_lm(p.generator, dtype=p.dtype), load_tokenizer(p.generator), items.to_dict("records")
batch_size = None if p.batch_size == "auto" else p.batch_size
memory_mb = snakemake.resources.get("mem_mb")
started = time.perf_counter()
texts = write_rationales(generator, tokenizer, records, p.max_new_tokens, batch_size, p.show_decision, memory_mb=memory_mb)
log.info("rationale timing: generation %.1f s", time.perf_counter() - started)  # bench/stage_cost.py reads these
# The writer's verdict as a probability, with its rationale and from the input alone: two forward passes, no generation.
settings = ScoringSettings(max_length=None, dtype=p.dtype, memory_mb=memory_mb)
started = time.perf_counter()
log_odds = verdict_log_odds(generator, tokenizer, records, texts, settings=settings, show_decision=p.show_decision)
log.info("rationale timing: verdicts %.1f s", time.perf_counter() - started)
items = pd.concat([items.reset_index(drop=True), log_odds], axis=1)
write_table(items.assign(rationale=texts, generator=p.generator, method=w.method, budget=w.budget), snakemake.output.rationales, schemas.RATIONALES)
