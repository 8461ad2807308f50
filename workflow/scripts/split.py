from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.data.splits import check_fits, evaluable_queries, split_queries
from rerank_audit.io import read_table, write_table
from rerank_audit.methods import trained_methods

log = log_to(snakemake.log[0])
p = snakemake.params
# The first point where the query count is known: split sizes, budgets and explained queries that
# ask for more stop here. Read from the config, not params, so that editing them does not re-split.
config, spec = snakemake.config, snakemake.config["datasets"][snakemake.wildcards.dataset]
# A dataset that re-ranks with another's models (models_from) trains nothing on its own queries.
trains = spec.get("models_from") is None and bool(set(config["methods"]) & set(trained_methods()))
query_ids = evaluable_queries(read_table(snakemake.input.qrels, schemas.QRELS), p.relevance_threshold)
try:
    splits = split_queries(query_ids, seed=p.seed, dev=p.dev, test=p.test, trains=trains)
except ValueError as error:
    raise ValueError(f"dataset {snakemake.wildcards.dataset}: {error}") from None
if config["methods"]:
    key = f"datasets.{snakemake.wildcards.dataset}.explain_queries" if "explain_queries" in spec else "explain.queries"
    check_fits(splits, config["budgets"], spec.get("explain_queries", config["explain"]["queries"]), key)
write_table(splits, snakemake.output.splits, schemas.SPLITS)
log.info("split sizes: %s", splits.split.value_counts().to_dict())
