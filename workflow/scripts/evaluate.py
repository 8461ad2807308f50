import pandas as pd

from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.evaluation.ranking import aggregate, evaluate_random_reordering, evaluate_run, parse_measures
from rerank_audit.evaluation.statistics import explain_per_query
from rerank_audit.evaluation.tables import metrics_markdown
from rerank_audit.io import atomic_path, read_table, write_table
from rerank_audit.rerank import fuse_with_first_stage

log = log_to(snakemake.log[0])
p = snakemake.params


def read_all(paths, schema):
    return pd.concat([read_table(path, schema) for path in paths], ignore_index=True) if paths else None


dataset = snakemake.wildcards.dataset
qrels = read_table(snakemake.input.qrels, schemas.QRELS)
splits = read_table(snakemake.input.splits, schemas.SPLITS)
measures = parse_measures(p.measures, p.relevance_threshold)
scopes = {"test": splits.query_id[splits.split == "test"].tolist(), "all": splits.query_id.tolist()}
tables = []
runs = [read_table(path, schemas.RUN) for path in snakemake.input.runs]
first_stage = next(run for run in runs if run.method.iloc[0] == "bm25")
for run in runs:
    # Re-rankers score test queries only; the first stage is also reported over all queries.
    for scope in ["test", "all"] if run.method.iloc[0] == "bm25" else ["test"]:
        tables.append(evaluate_run(run, qrels, scopes[scope], measures, dataset, scope))
    if run.method.iloc[0] == "bm25":
        # The control every method must beat: the same head as re-ranked, in random order.
        tables.append(evaluate_random_reordering(run, qrels, scopes["test"], measures, p.depth, p.random_seeds, dataset, "test"))
    if run.method.iloc[0] in p.fused_methods:
        # rerank.fusion: the method's head scores mixed with BM25's (no model needed, no explanations).
        fused = fuse_with_first_stage(run, first_stage, p.depth, p.fusion_weight)
        tables.append(evaluate_run(fused, qrels, scopes["test"], measures, dataset, "test"))
per_query = pd.concat(tables, ignore_index=True)
metrics = aggregate(per_query)
write_table(per_query, snakemake.output.per_query, schemas.PER_QUERY_METRICS)

# Faithfulness and rationale checks, per query (mean over the query's explained documents).
explained = explain_per_query(
    read_all(snakemake.input.faithfulness, schemas.FAITHFULNESS), read_all(snakemake.input.rationales, schemas.RATIONALE_METRICS), dataset
)
write_table(explained, snakemake.output.explain_per_query, schemas.PER_QUERY_METRICS)
write_table(metrics, snakemake.output.metrics, schemas.AGGREGATE_METRICS)
legend = (
    f"random: what a re-ranker re-orders (each test query's first {p.depth} first-stage candidates, the whole pool "
    f"when smaller; the rest stays beneath in BM25 order) in random order, mean over {p.random_seeds} seeded shuffles per query.\n"
)
if p.fused_methods:
    legend += (
        f"\n<method>+bm25: per query, (1 - {p.fusion_weight:g}) x the method's head scores + {p.fusion_weight:g} x BM25's, "
        "each min-max normalised over the head; attributions and rationales are the pure method's.\n"
    )
with atomic_path(snakemake.output.table) as tmp:
    tmp.write_text(f"# Ranking: {dataset}\n\n" + metrics_markdown(metrics) + "\n" + legend)
log.info("\n%s", metrics_markdown(metrics))
