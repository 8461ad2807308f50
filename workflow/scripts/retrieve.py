from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.config import check_test_queries_unseen
from rerank_audit.io import read_table, write_table, write_trec_run
from rerank_audit.retrieval.bm25 import bm25_candidates, bm25_index, judged_candidates

log = log_to(snakemake.log[0])
p = snakemake.params
corpus = read_table(snakemake.input.corpus, schemas.CORPUS)
# Every evaluable query is retrieved: training queries need hard negatives, test queries candidates.
splits = read_table(snakemake.input.splits, schemas.SPLITS)
queries = read_table(snakemake.input.queries, schemas.QUERIES)
queries = queries[queries.query_id.isin(splits.query_id)]
index = bm25_index(corpus, k1=p.k1, b=p.b, stemmer=p.stemmer, stopwords=p.stopwords)
if p.candidates == "judged":
    run = judged_candidates(index, queries, read_table(snakemake.input.qrels, schemas.QRELS))
else:
    run = bm25_candidates(index, queries, p.k)
if snakemake.input.model_splits:
    # This dataset re-ranks with models trained on another dataset's training queries.
    check_test_queries_unseen(splits, read_table(snakemake.input.model_splits, schemas.SPLITS), p.models_from)
write_table(run, snakemake.output.run, schemas.RUN)
write_trec_run(run, snakemake.output.trec, tag="bm25")
pool = run.groupby("query_id").size()
log.info("%d queries, %d %s candidates (k=%d; per query %d to %d)", queries.query_id.nunique(), len(run), p.candidates, p.k, pool.min() if len(pool) else 0, pool.max() if len(pool) else 0)
