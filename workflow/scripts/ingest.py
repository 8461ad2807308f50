from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.data.ingest import read_collection
from rerank_audit.io import write_table

log = log_to(snakemake.log[0])
collection = read_collection(snakemake.params.format, **dict(snakemake.input.items()), **snakemake.params.options)
write_table(collection.corpus, snakemake.output.corpus, schemas.CORPUS)
write_table(collection.queries, snakemake.output.queries, schemas.QUERIES)
write_table(collection.qrels, snakemake.output.qrels, schemas.QRELS)
log.info("%d documents, %d queries, %d judgements", len(collection.corpus), len(collection.queries), len(collection.qrels))
