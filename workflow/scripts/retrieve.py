from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.io import read_table, write_table, write_trec_run
from rerank_audit.retrieval.bm25 import bm25_candidates, bm25_index

log = log_to(snakemake.log[0])
p = snakemake.params
corpus = read_table(snakemake.input.corpus, schemas.CORPUS)
# Every evaluable query is retrieved: training queries need hard negatives, test queries candidates.
splits = read_table(snakemake.input.splits, schemas.SPLITS)
queries = read_table(snakemake.input.queries, schemas.QUERIES)
queries = queries[queries.query_id.isin(splits.query_id)]
index = bm25_index(corpus, k1=p.k1, b=p.b, stemmer=p.stemmer, stopwords=p.stopwords)
run = bm25_candidates(index, queries, p.k)
write_table(run, snakemake.output.run, schemas.RUN)
write_trec_run(run, snakemake.output.trec, tag="bm25")
log.info("%d queries, %d candidates (k=%d)", queries.query_id.nunique(), len(run), p.k)
