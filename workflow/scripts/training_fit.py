# First, before torch starts CUDA: this job's own GPU on a machine with several (rerank_audit.gpu).
from rerank_audit.gpu import claim_gpu
from rerank_audit.logs import log_to

log = log_to(snakemake.log[0])
claim_gpu()

import json
from pathlib import Path

import torch

from rerank_audit.data import schemas
from rerank_audit.io import atomic_path, read_table
from rerank_audit.models.loading import load_tokenizer
from rerank_audit.text.prompts import pointwise_completions
from rerank_audit.methods import method as method_spec
from rerank_audit.models.scoring import ScoringSettings, load_scorer
from rerank_audit.training.fit import training_fit

torch.set_num_threads(snakemake.threads)
p, w = snakemake.params, snakemake.wildcards

def scorer(method):
    """The trained model's scorer for its own method, the base model's for an untrained one (as rule rerank loads them)."""
    model_dir = p.model_dir if method_spec(method).trained else p.base_model
    return load_scorer(method, model_dir, p.base_model, settings=ScoringSettings.of_job(snakemake), beta=p.beta, template=p.template)

record = json.loads(Path(snakemake.input.model[0]).read_text())
fit = training_fit(
    w.method,
    w.budget,
    read_table(snakemake.input.data),
    read_table(snakemake.input.queries, schemas.QUERIES),
    read_table(snakemake.input.corpus, schemas.CORPUS),
    record,
    scorer,
    relevant_answer=pointwise_completions(load_tokenizer(p.base_model))[0] if method_spec(w.method).training_table == "answer_pairs" else None,
)
fit = {"dataset": w.dataset, **fit}
log.info("training fit: %s", fit)
with atomic_path(snakemake.output.fit) as tmp:
    tmp.write_text(json.dumps(fit, indent=1))
