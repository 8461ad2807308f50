from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.data.splits import budget_queries
from rerank_audit.io import read_table, write_table
from rerank_audit.models.loading import load_tokenizer
from rerank_audit.training.examples import NoNegativesError, answer_pairs, lce_groups, negative_summary, preference_pairs, query_examples, sft_examples

log = log_to(snakemake.log[0])
p = snakemake.params
w = snakemake.wildcards
tables = dict(
    corpus=read_table(snakemake.input.corpus, schemas.CORPUS),
    queries=read_table(snakemake.input.queries, schemas.QUERIES),
    qrels=read_table(snakemake.input.qrels, schemas.QRELS),
    run=read_table(snakemake.input.run, schemas.RUN),
    train_query_ids=budget_queries(read_table(snakemake.input.splits, schemas.SPLITS), w.budget),
    tokenizer=load_tokenizer(p.base_model),
)
common = dict(relevance_threshold=p.relevance_threshold, seed=p.seed, unjudged_negatives=p.unjudged_negatives)
try:
    examples = sft_examples(**tables, **common, negatives_per_positive=p.negatives_per_positive, max_positives_per_query=p.max_positives_per_query)
    documents = preference_pairs(**tables, **common, pairs_per_query=p.pairs_per_query)
    positives = {key: tables[key] for key in ("corpus", "queries", "qrels", "run", "train_query_ids")}
    groups = lce_groups(**positives, **common, negatives_per_group=p.negatives_per_group, max_positives_per_query=p.max_positives_per_query)
except NoNegativesError as error:
    raise NoNegativesError(f"dataset {w.dataset}, training budget {w.budget}: {error}") from None
write_table(examples, snakemake.output.sft_examples, schemas.SFT_EXAMPLES)
write_table(answer_pairs(examples), snakemake.output.answer_pairs, schemas.PREFERENCE_PAIRS)
write_table(documents, snakemake.output.document_pairs, schemas.PREFERENCE_PAIRS)
write_table(groups, snakemake.output.lce_groups, schemas.LCE_GROUPS)
queries = query_examples(
    **positives, template=p.qlm_template, max_positives_per_query=p.max_positives_per_query,
    relevance_threshold=p.relevance_threshold, seed=p.seed,
)
write_table(queries, snakemake.output.query_examples, schemas.QUERY_EXAMPLES)
log.info(
    "%d training queries: %d sft examples, %d document pairs, %d query examples, %d lce groups of up to %d negatives "
    "(%d judged non-relevant, %d unjudged)",
    len(tables["train_query_ids"]), len(examples), len(documents), len(queries), groups.group.nunique(), p.negatives_per_group,
    (groups.source == "judged_non_relevant").sum(), (groups.source == "unjudged").sum(),
)
for name, table in (("sft examples", examples), ("document pairs", documents)):
    counts = negative_summary(table, tables["qrels"], tables["train_query_ids"], p.relevance_threshold)
    log.info(
        "%s negatives: %d judged non-relevant, %d unjudged (train.unjudged_negatives: %s); "
        "%d of %d queries without a negative, %d without a relevant document",
        name, counts["judged_non_relevant"], counts["unjudged"], p.unjudged_negatives,
        counts["queries_without_negative"], counts["queries"], counts["queries_without_positive"],
    )
