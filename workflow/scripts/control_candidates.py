import shutil

from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.io import atomic_path, read_table, write_table

log = log_to(snakemake.log[0])
# The source's BM25 run, unchanged: a control's versions re-order the same candidates.
run = read_table(snakemake.input.run, schemas.RUN)
write_table(run, snakemake.output.run, schemas.RUN)
with atomic_path(snakemake.output.trec) as tmp:
    shutil.copyfile(snakemake.input.trec, tmp)
log.info("%d candidates of %d queries from %s", len(run), run.query_id.nunique(), snakemake.input.run)
