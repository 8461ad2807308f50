import json

from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.data.control import derive_control, placement_rates
from rerank_audit.io import atomic_path, read_table, write_table, write_trec_run

log = log_to(snakemake.log[0])
spec, inp, out = snakemake.params.control, snakemake.input, snakemake.output
queries = read_table(inp.queries, schemas.QUERIES)
corpus, qrels, run, placement = derive_control(
    read_table(inp.corpus, schemas.CORPUS), queries, read_table(inp.qrels, schemas.QRELS), read_table(inp.splits, schemas.SPLITS),
    read_table(inp.run, schemas.RUN),
    marker=spec["marker"], p_relevant=spec["p_relevant"], p_other=spec["p_other"], seed=spec["seed"], version=spec["version"],
    relevance_threshold=snakemake.params.relevance_threshold, source=spec["source"],
)
write_table(corpus, out.corpus, schemas.CORPUS)
write_table(queries, out.queries, schemas.QUERIES)
write_table(qrels, out.qrels, schemas.QRELS)
write_table(placement, out.placement, schemas.CONTROL_PLACEMENT)
# The source's first-stage run (scores and ranks unchanged): both versions re-order the same candidates.
write_table(run, out.run, schemas.RUN)
write_trec_run(run, out.trec, tag="bm25")
rates = placement_rates(placement)
record = {**spec, "test_copies": int(placement.copy_of.notna().sum()), "rates": rates.to_dict(orient="records")}
with atomic_path(out.record) as tmp:
    tmp.write_text(json.dumps(record, indent=2, default=lambda v: v.item()))
log.info("marker %r, version %s: %d documents with it; %d documents seen by test and training queries copied for the test queries; "
         "%d candidates of %d queries\n%s", spec["marker"], spec["version"], int(placement.marker.sum()), record["test_copies"],
         len(run), run.query_id.nunique(), rates.to_string(index=False))
