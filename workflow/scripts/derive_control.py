import json

from rerank_audit.logs import log_to
from rerank_audit.data import schemas
from rerank_audit.data.control import derive_control, placement_rates
from rerank_audit.io import atomic_path, read_table, write_table

log = log_to(snakemake.log[0])
spec, inp, out = snakemake.params.control, snakemake.input, snakemake.output
queries, qrels = read_table(inp.queries, schemas.QUERIES), read_table(inp.qrels, schemas.QRELS)
corpus, placement = derive_control(
    read_table(inp.corpus, schemas.CORPUS), queries, qrels, read_table(inp.splits, schemas.SPLITS), read_table(inp.run, schemas.RUN),
    marker=spec["marker"], p_relevant=spec["p_relevant"], p_other=spec["p_other"], seed=spec["seed"], version=spec["version"],
    relevance_threshold=snakemake.params.relevance_threshold, source=spec["source"],
)
write_table(corpus, out.corpus, schemas.CORPUS)
write_table(queries, out.queries, schemas.QUERIES)
write_table(qrels, out.qrels, schemas.QRELS)
write_table(placement, out.placement, schemas.CONTROL_PLACEMENT)
rates = placement_rates(placement)
record = {**spec, "shared_documents": int(placement.shared.sum()), "rates": rates.to_dict(orient="records")}
with atomic_path(out.record) as tmp:
    tmp.write_text(json.dumps(record, indent=2, default=lambda v: v.item()))
log.info("marker %r, version %s: %d documents with it; %d documents seen by test and training queries keep the training placement\n%s",
         spec["marker"], spec["version"], int(placement.marker.sum()), record["shared_documents"], rates.to_string(index=False))
