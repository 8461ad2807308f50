from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.data.splits import budget_queries
from rerank_audit.io import read_table, write_table
from rerank_audit.models.loading import load_tokenizer
from rerank_audit.training.examples import answer_pairs, preference_pairs, sft_examples

log = log_to(snakemake.log[0])
p = snakemake.params
tables = dict(
    corpus=read_table(snakemake.input.corpus, schemas.CORPUS),
    queries=read_table(snakemake.input.queries, schemas.QUERIES),
    qrels=read_table(snakemake.input.qrels, schemas.QRELS),
    run=read_table(snakemake.input.run, schemas.RUN),
    train_query_ids=budget_queries(read_table(snakemake.input.splits, schemas.SPLITS), snakemake.wildcards.budget),
    tokenizer=load_tokenizer(p.base_model),
)
common = dict(relevance_threshold=p.relevance_threshold, seed=p.seed)
examples = sft_examples(**tables, **common, negatives_per_positive=p.negatives_per_positive, max_positives_per_query=p.max_positives_per_query)
documents = preference_pairs(**tables, **common, pairs_per_query=p.pairs_per_query)
write_table(examples, snakemake.output.sft_examples, schemas.SFT_EXAMPLES)
write_table(answer_pairs(examples), snakemake.output.answer_pairs, schemas.PREFERENCE_PAIRS)
write_table(documents, snakemake.output.document_pairs, schemas.PREFERENCE_PAIRS)
log.info("%d training queries: %d sft examples, %d document pairs", len(tables["train_query_ids"]), len(examples), len(documents))
